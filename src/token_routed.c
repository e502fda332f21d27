/*-------------------------------------------------------------------------
 *
 * token_routed.c
 *	  Token calls whose row lives in a shard on another node, when Citus
 *	  distributes regstack.auth_ephemeral_tokens: the same find, delete,
 *	  update and insert as token_store.c, as one SQL statement on the
 *	  distributed table, which Citus routes to the node holding the shard.
 *
 * Each statement names the shard's distribution value (subject_tag = $1),
 * so Citus sends it to that one shard, inside the caller's transaction
 * (Citus's coordinated transaction: the remote work commits or aborts with
 * it), and takes its own locks for it, its shard metadata lock among them.
 * A delete or update is one statement on one row, so of concurrent
 * callers on any nodes exactly one wins, as on a single node.
 *
 * The conditions a direct call checks in C (token type, expiry, challenge)
 * are in the statement's WHERE clause, with the time passed as a
 * parameter: Citus refuses volatile functions in the WHERE clause of a
 * distributed modification.  When no row qualifies, a second statement
 * reads the row, if any, only to count why the call missed in
 * regstack.stats.
 *
 * Callers are token_store.c's entry points; they have found the shard
 * (citus.c) and taken its metadata lock.
 *
 *-------------------------------------------------------------------------
 */
#include "tokens.h"
#include "heap_access.h"
#include "stats.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* The table's columns in RS_COL_* order, as a select list. */
#define ROUTED_COLUMNS \
	"subject_tag, token_hash, token_type, subject, provider, nonce," \
	" code_verifier, challenge_hash, redirect_to, mode, linking_user_id," \
	" result, payload, created_at, expires_at"

/* The live token of a key: $1 tag, $2 hash, $3 type, $4 now, $5/$6 challenge. */
#define ROUTED_LIVE_TOKEN \
	" WHERE subject_tag OPERATOR(pg_catalog.=) $1" \
	" AND token_hash OPERATOR(pg_catalog.=) $2" \
	" AND token_type OPERATOR(pg_catalog.=) $3" \
	" AND expires_at OPERATOR(pg_catalog.>) $4" \
	" AND (NOT $5 OR challenge_hash IS NULL" \
	"      OR challenge_hash OPERATOR(pg_catalog.=) $6)"

/* Copy row of the SPI result (ROUTED_COLUMNS) into values/nulls in context. */
static void
routed_copy_row(HeapTuple row, TupleDesc desc, MemoryContext context,
				Datum *values, bool *nulls)
{
	MemoryContext old = MemoryContextSwitchTo(context);

	for (int col = 0; col < RS_NUM_COLS; col++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, col);
		Datum		value = SPI_getbinval(row, desc, col + 1, &nulls[col]);

		values[col] = nulls[col] ? (Datum) 0 :
			datumCopy(value, att->attbyval, att->attlen);
	}
	MemoryContextSwitchTo(old);
}

/*
 * Why key found no live token: read its row (any type, any expiry), and
 * return what it fails, or RS_TOKEN_NOT_FOUND when there is none.
 */
static RegstackTokenOutcome
routed_miss_outcome(const RegstackTokenKey *key)
{
	static SPIPlanPtr plan = NULL;
	static const Oid argtypes[2] = {INT4OID, BYTEAOID};
	Datum		args[2];
	Datum		values[RS_NUM_COLS];
	bool		nulls[RS_NUM_COLS];
	RegstackTokenOutcome outcome;

	regstack_plan(&plan,
				  "SELECT " ROUTED_COLUMNS " FROM regstack.auth_ephemeral_tokens"
				  " WHERE subject_tag OPERATOR(pg_catalog.=) $1"
				  " AND token_hash OPERATOR(pg_catalog.=) $2",
				  2, argtypes);
	args[0] = Int32GetDatum(key->subject_tag);
	args[1] = PointerGetDatum(key->token_hash);
	if (SPI_execute_plan(plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read a token through Citus");
	if (SPI_processed == 0)
		return RS_TOKEN_NOT_FOUND;
	routed_copy_row(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
					CurrentMemoryContext, values, nulls);
	outcome = regstack_token_row_matches(key, values, nulls);
	/* It qualified only now (issued meanwhile): still a miss for this call. */
	return outcome == RS_TOKEN_HIT ? RS_TOKEN_NOT_FOUND : outcome;
}

/*
 * regstack_token_apply() for a token whose shard is on another node: the
 * same result, values/nulls and regstack.stats count.
 */
bool
regstack_token_apply_routed(const RegstackTokenKey *key,
							RegstackTokenAction action, text *new_result,
							Datum *values, bool *nulls)
{
	static SPIPlanPtr plans[3] = {NULL, NULL, NULL};
	static const Oid argtypes[7] = {INT4OID, BYTEAOID, TEXTOID, TIMESTAMPTZOID,
	BOOLOID, BYTEAOID, TEXTOID};
	static const char *const sql[3] = {
		[RS_TOKEN_FETCH] = "SELECT " ROUTED_COLUMNS
		" FROM regstack.auth_ephemeral_tokens" ROUTED_LIVE_TOKEN,
		[RS_TOKEN_DELETE] = "DELETE FROM regstack.auth_ephemeral_tokens"
		ROUTED_LIVE_TOKEN " RETURNING " ROUTED_COLUMNS,
		[RS_TOKEN_SET_RESULT] = "UPDATE regstack.auth_ephemeral_tokens"
		" SET result = $7" ROUTED_LIVE_TOKEN " RETURNING " ROUTED_COLUMNS,
	};
	MemoryContext caller_context = CurrentMemoryContext;
	RegstackCall call;
	Datum		args[7];
	char		arg_nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	RegstackTokenOutcome outcome = RS_TOKEN_NOT_FOUND;
	int			status;

	regstack_begin_call(&call);
	regstack_plan(&plans[action], sql[action],
				  action == RS_TOKEN_SET_RESULT ? 7 : 6, argtypes);
	args[0] = Int32GetDatum(key->subject_tag);
	args[1] = PointerGetDatum(key->token_hash);
	args[2] = PointerGetDatum(key->token_type);
	args[3] = TimestampTzGetDatum(GetCurrentTimestamp());
	args[4] = BoolGetDatum(key->check_challenge);
	args[5] = PointerGetDatum(key->challenge_hash);
	if (key->challenge_hash == NULL)
		arg_nulls[5] = 'n';
	args[6] = PointerGetDatum(new_result);
	status = SPI_execute_plan(plans[action], args, arg_nulls,
							  action == RS_TOKEN_FETCH, 1);
	if (status < 0)
		elog(ERROR, "could not reach a token through Citus: %s",
			 SPI_result_code_string(status));
	if (SPI_processed > 0)
	{
		routed_copy_row(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
						caller_context, values, nulls);
		outcome = RS_TOKEN_HIT;
	}
	else
		outcome = routed_miss_outcome(key);
	regstack_end_call(&call);
	regstack_stats_token_call(key->token_type, action, outcome);
	return outcome == RS_TOKEN_HIT;
}

/* regstack_token_insert() for a row whose shard is on another node. */
void
regstack_token_insert_routed(const Datum *values, const bool *nulls)
{
	static SPIPlanPtr plan = NULL;
	static const Oid argtypes[RS_NUM_COLS] = {
		INT4OID, BYTEAOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		BYTEAOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID
	};
	RegstackCall call;
	char		arg_nulls[RS_NUM_COLS];

	for (int col = 0; col < RS_NUM_COLS; col++)
		arg_nulls[col] = nulls[col] ? 'n' : ' ';
	regstack_begin_call(&call);
	regstack_plan(&plan,
				  "INSERT INTO regstack.auth_ephemeral_tokens (" ROUTED_COLUMNS ")"
				  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
				  " $13, $14, $15)",
				  RS_NUM_COLS, argtypes);
	if (SPI_execute_plan(plan, (Datum *) values, arg_nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert a token through Citus");
	regstack_end_call(&call);
}
