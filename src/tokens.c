/*-------------------------------------------------------------------------
 *
 * tokens.c
 *	  The single-use token store: issue_token, consume_token, peek_token,
 *	  attach_result and revoke_tokens.
 *
 * A token is never stored: regstack.auth_ephemeral_tokens keeps only its
 * SHA-256 digest, so a dump or a read replica yields no usable token.  The
 * primary key is (subject_tag, token_hash): a token carries its subject's
 * tag (subject_tags.c), so consume finds it by the token alone and
 * revoke_tokens and the per-subject cap find a subject's tokens by the tag.  A challenge (e.g. an HttpOnly cookie value) is stored the
 * same way.
 *
 * Single use: consume_token does what one DELETE ... RETURNING on the
 * primary key would (token_store.c deletes the heap tuple directly).  Of
 * any number of concurrent callers the first to delete the row gets it; in
 * READ COMMITTED the others find the row gone and return zero rows (in
 * REPEATABLE READ or SERIALIZABLE they get a serialization failure, as any
 * DELETE would).  Type, expiry and challenge are conditions of that same
 * delete, so a wrong type or a wrong challenge leaves the token in place.
 * A type that is not in the registry is an error (22023), as for
 * issue_token and revoke_tokens: a typo must not look like a bad token.
 *
 * Expiry is judged against clock_timestamp(), not the transaction start, so
 * a long transaction never sees a token as live after it expired.
 *
 * Every SQL function here runs its table work inside regstack_begin_call().
 *
 *-------------------------------------------------------------------------
 */
#include "tokens.h"
#include "heap_access.h"
#include "stats.h"

#include "access/detoast.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(regstack_issue_token);
PG_FUNCTION_INFO_V1(regstack_consume_token);
PG_FUNCTION_INFO_V1(regstack_peek_token);
PG_FUNCTION_INFO_V1(regstack_attach_result);
PG_FUNCTION_INFO_V1(regstack_revoke_tokens);

/* Limit on the result field: a session JWT can be large. */
#define TOKENS_MAX_RESULT_BYTES REGSTACK_MAX_PAYLOAD_BYTES

/* Reject a payload larger than the documented limit (54000). */
static void
tokens_check_payload(Datum payload)
{
	Size		len = toast_raw_datum_size(payload) - VARHDRSZ;

	if (len > REGSTACK_MAX_PAYLOAD_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("payload is too large"),
				 errdetail("The limit is %d bytes; the value has %zu.",
						   REGSTACK_MAX_PAYLOAD_BYTES, len)));
}

/*
 * A token type must be in the registry (22023 with the known types in the
 * hint otherwise), so that a typo does not look like an invalid token.
 */
static void
tokens_check_type(const text *type_name)
{
	(void) regstack_token_type(text_to_cstring(type_name));
}

/* Check mode and its companion linking_user_id (22023, 22004). */
static void
tokens_check_mode(const RegstackTokenFields *fields)
{
	text	   *mode = fields->value[RS_FIELD_MODE];
	bool		is_link = false;

	if (mode != NULL)
	{
		is_link = (VARSIZE_ANY_EXHDR(mode) == 4 &&
				   memcmp(VARDATA_ANY(mode), "link", 4) == 0);
		if (!is_link && !(VARSIZE_ANY_EXHDR(mode) == 6 &&
						  memcmp(VARDATA_ANY(mode), "signin", 6) == 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("mode must be 'signin' or 'link'")));
	}
	if (is_link && fields->value[RS_FIELD_LINKING_USER_ID] == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("mode 'link' requires linking_user_id")));
	if (!is_link && fields->value[RS_FIELD_LINKING_USER_ID] != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("linking_user_id is only allowed with mode 'link'")));
}

/*
 * The trim of a per-subject cap, on table %s: $1 subject, $2 type, $3 how
 * many to keep, $4 the subject's tag.
 */
#define TOKENS_TRIM_SQL \
	"DELETE FROM %1$s" \
	" WHERE subject_tag OPERATOR(pg_catalog.=) $4" \
	" AND subject OPERATOR(pg_catalog.=) $1" \
	" AND token_type OPERATOR(pg_catalog.=) $2" \
	" AND token_hash OPERATOR(pg_catalog.<>) ALL (ARRAY(" \
	"   SELECT token_hash FROM %1$s" \
	"   WHERE subject_tag OPERATOR(pg_catalog.=) $4" \
	"   AND subject OPERATOR(pg_catalog.=) $1" \
	"   AND token_type OPERATOR(pg_catalog.=) $2" \
	"   AND expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()" \
	"   ORDER BY created_at DESC, token_hash DESC LIMIT $3))"

/*
 * Issue the token on the node that holds the subject's shard, for a type
 * with a cap: the whole issue_token call, routed there (citus_route.c),
 * where the cap's lock serializes it with every other issue of the
 * subject.  Returns the token, palloc'd.
 */
static char *
tokens_issue_on_owner(const RegstackTokenType *type,
					  const RegstackTokenFields *fields, const Interval *ttl,
					  int32 subject_tag)
{
	/* The field passed as each issue_token argument from $5 on. */
	static const RegstackTokenField field_args[] = {
		RS_FIELD_PROVIDER, RS_FIELD_NONCE, RS_FIELD_CODE_VERIFIER,
		RS_FIELD_CHALLENGE, RS_FIELD_REDIRECT_TO, RS_FIELD_MODE,
		RS_FIELD_LINKING_USER_ID, RS_FIELD_RESULT, RS_FIELD_PAYLOAD
	};
	static SPIPlanPtr plans[2] = {NULL, NULL};
	static const Oid argtypes[13] = {
		INT4OID, TEXTOID, TEXTOID, INTERVALOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID
	};
	MemoryContext caller_context = CurrentMemoryContext;
	Datum		args[13];
	char		nulls[13];
	RegstackCall call;
	char	   *token;
	bool		isnull;
	Datum		value;

	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int32GetDatum(subject_tag);
	args[1] = CStringGetTextDatum(type->name);
	args[2] = PointerGetDatum(fields->value[RS_FIELD_SUBJECT]);
	args[3] = IntervalPGetDatum(ttl);
	for (int i = 0; i < lengthof(field_args); i++)
	{
		args[4 + i] = PointerGetDatum(fields->value[field_args[i]]);
		if (fields->value[field_args[i]] == NULL)
			nulls[4 + i] = 'n';
	}
	regstack_begin_call(&call);
	regstack_citus_route(RS_TABLE_TOKENS, plans,
						 "regstack.issue_token($2, $3, $4, $5, $6, $7, $8, $9,"
						 " $10, $11, $12, $13)",
						 13, argtypes, args, nulls);
	if (SPI_processed != 1)
		elog(ERROR, "a routed issue_token returned " UINT64_FORMAT " rows",
			 SPI_processed);
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "a routed issue_token returned NULL");
	token = MemoryContextStrdup(caller_context, TextDatumGetCString(value));
	regstack_end_call(&call);
	return token;
}

/*
 * When Citus distributes the tokens table: the qualified name of the
 * subject's shard if it is on this node (with its metadata lock,
 * citus.c), else NULL.  The cap's advisory lock serializes the issues of a
 * subject only among the sessions of one node, so they all run on the
 * node that holds the subject's shard.
 */
static char *
tokens_cap_shard(int32 subject_tag)
{
	RegstackShard shard;

	regstack_citus_row_shard(RS_TABLE_TOKENS, Int32GetDatum(subject_tag), &shard);
	if (!shard.is_local)
		return NULL;
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(shard.relid)),
									  get_rel_name(shard.relid));
}

/*
 * Keep at most cap - 1 live tokens of (type, subject), so that the one
 * about to be issued makes cap: the oldest go first.  Expired rows of the
 * pair go too.  The advisory lock makes concurrent issues count exactly.
 *
 * The trim reads with the latest snapshot, taken after the lock, so it sees
 * what a concurrent issuer committed while we waited.  In REPEATABLE READ
 * and SERIALIZABLE the transaction snapshot is the crosscheck, as in
 * PostgreSQL's foreign-key checks: deleting a row that snapshot cannot see
 * is a serialization failure (40001) instead of a silent overshoot.
 *
 * When Citus distributes the table, the trim runs on the subject's shard,
 * and only on the node that holds it; elsewhere this returns false, doing
 * nothing, and the caller issues the token on that node.
 */
static bool
tokens_enforce_cap(const RegstackTokenType *type, text *subject,
				   int32 subject_tag)
{
	static SPIPlanPtr trim_plan = NULL;
	static const Oid trim_argtypes[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		values[4];
	RegstackCall call;
	SPIPlanPtr	plan;
	char	   *shard_name = NULL;
	int			status;

	if (regstack_table_distributed(RS_TABLE_TOKENS, RowExclusiveLock) &&
		(shard_name = tokens_cap_shard(subject_tag)) == NULL)
		return false;
	regstack_xact_lock(REGSTACK_LOCK_CLASS_TOKEN_CAP, type->name,
					   text_to_cstring(subject));
	regstack_begin_call(&call);
	if (shard_name == NULL)
		plan = regstack_plan(&trim_plan, psprintf(TOKENS_TRIM_SQL,
												  "regstack.auth_ephemeral_tokens"),
							 4, trim_argtypes);
	else if ((plan = SPI_prepare(psprintf(TOKENS_TRIM_SQL, shard_name), 4,
								 (Oid *) trim_argtypes)) == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	values[0] = PointerGetDatum(subject);
	values[1] = CStringGetTextDatum(type->name);
	values[2] = Int32GetDatum(type->max_live_per_subject - 1);
	values[3] = Int32GetDatum(subject_tag);
	CommandCounterIncrement();
	status = SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
								  IsolationUsesXactSnapshot() ?
								  GetTransactionSnapshot() : InvalidSnapshot,
								  false, false, 0);
	if (status != SPI_OK_DELETE)
		elog(ERROR, "could not trim tokens to the type's cap");
	regstack_stats_count(RS_STATS_TOKEN_TYPE, type->name, strlen(type->name),
						 RS_STAT_TRIMMED, SPI_processed);
	if (shard_name != NULL)
		SPI_freeplan(plan);
	regstack_end_call(&call);
	return true;
}

/*
 * Store a new token and return it, palloc'd.  Validates the type, its
 * required fields, the mode and the TTL.
 */
char *
regstack_issue(const char *type_name, const RegstackTokenFields *fields,
			   const Interval *ttl)
{
	/* Which table column each field is stored in. */
	static const RegstackTokenColumn field_column[RS_NUM_FIELDS] = {
		[RS_FIELD_SUBJECT] = RS_COL_SUBJECT,
		[RS_FIELD_PROVIDER] = RS_COL_PROVIDER,
		[RS_FIELD_NONCE] = RS_COL_NONCE,
		[RS_FIELD_CODE_VERIFIER] = RS_COL_CODE_VERIFIER,
		[RS_FIELD_CHALLENGE] = RS_COL_CHALLENGE_HASH,
		[RS_FIELD_REDIRECT_TO] = RS_COL_REDIRECT_TO,
		[RS_FIELD_MODE] = RS_COL_MODE,
		[RS_FIELD_LINKING_USER_ID] = RS_COL_LINKING_USER_ID,
		[RS_FIELD_RESULT] = RS_COL_RESULT,
		[RS_FIELD_PAYLOAD] = RS_COL_PAYLOAD,
	};
	RegstackTokenType type = *regstack_token_type(type_name);
	Datum		values[RS_NUM_COLS];
	bool		nulls[RS_NUM_COLS];
	char	   *token;
	TimestampTz now_ts;
	int32		subject_tag;

	for (int f = 0; f < RS_NUM_FIELDS; f++)
		if ((type.required_mask & (UINT32_C(1) << f)) &&
			fields->value[f] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("token type \"%s\" requires %s",
							type.name, regstack_field_names[f])));
	tokens_check_mode(fields);

	if (ttl == NULL)
		ttl = &type.default_ttl;
	else if (regstack_interval_lt(&type.max_ttl, ttl))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl exceeds the maximum for token type \"%s\"",
						type.name),
				 errdetail("The maximum is %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(&type.max_ttl))))));

	if (fields->value[RS_FIELD_SUBJECT] == NULL)
		subject_tag = regstack_random_subject_tag();
	else
		subject_tag = regstack_subject_tag(fields->value[RS_FIELD_SUBJECT]);
	if (type.max_live_per_subject > 0 && fields->value[RS_FIELD_SUBJECT] &&
		!tokens_enforce_cap(&type, fields->value[RS_FIELD_SUBJECT], subject_tag))
		return tokens_issue_on_owner(&type, fields, ttl, subject_tag);

	token = regstack_new_token(subject_tag);
	now_ts = GetCurrentTimestamp();

	memset(nulls, true, sizeof(nulls));
	values[RS_COL_SUBJECT_TAG - 1] = Int32GetDatum(subject_tag);
	values[RS_COL_TOKEN_HASH - 1] =
		PointerGetDatum(regstack_sha256_bytea(cstring_to_text_with_len(token, REGSTACK_TOKEN_CHARS)));
	values[RS_COL_TOKEN_TYPE - 1] = CStringGetTextDatum(type.name);
	for (int f = 0; f < RS_NUM_FIELDS; f++)
	{
		int			col = field_column[f] - 1;

		if (fields->value[f] == NULL)
			continue;
		values[col] = (f == RS_FIELD_CHALLENGE) ?
			PointerGetDatum(regstack_sha256_bytea(fields->value[f])) :
			PointerGetDatum(fields->value[f]);
		nulls[col] = false;
	}
	values[RS_COL_CREATED_AT - 1] = TimestampTzGetDatum(now_ts);
	values[RS_COL_EXPIRES_AT - 1] = DirectFunctionCall2(timestamptz_pl_interval,
														TimestampTzGetDatum(now_ts),
														IntervalPGetDatum(ttl));
	nulls[RS_COL_SUBJECT_TAG - 1] = false;
	nulls[RS_COL_TOKEN_HASH - 1] = false;
	nulls[RS_COL_TOKEN_TYPE - 1] = false;
	nulls[RS_COL_CREATED_AT - 1] = false;
	nulls[RS_COL_EXPIRES_AT - 1] = false;

	regstack_token_insert(values, nulls);
	regstack_stats_count(RS_STATS_TOKEN_TYPE, type.name, strlen(type.name),
						 RS_STAT_ISSUED, 1);
	return token;
}

/*
 * issue_token(token_type, subject, ttl, provider, nonce, code_verifier,
 * challenge, redirect_to, mode, linking_user_id, result, payload): store a
 * new single-use token and return it.
 */
Datum
regstack_issue_token(PG_FUNCTION_ARGS)
{
	/* SQL argument number of each field. */
	static const int field_argno[RS_NUM_FIELDS] = {
		[RS_FIELD_SUBJECT] = 1,
		[RS_FIELD_PROVIDER] = 3,
		[RS_FIELD_NONCE] = 4,
		[RS_FIELD_CODE_VERIFIER] = 5,
		[RS_FIELD_CHALLENGE] = 6,
		[RS_FIELD_REDIRECT_TO] = 7,
		[RS_FIELD_MODE] = 8,
		[RS_FIELD_LINKING_USER_ID] = 9,
		[RS_FIELD_RESULT] = 10,
		[RS_FIELD_PAYLOAD] = 11,
	};
	text	   *type_name = regstack_text_arg(fcinfo, 0, "token_type",
											  NAMEDATALEN - 1, true);
	Interval   *ttl = regstack_interval_arg(fcinfo, 2, "ttl");
	RegstackTokenFields fields;
	char	   *token;

	for (int f = 0; f < RS_NUM_FIELDS; f++)
	{
		int			argno = field_argno[f];

		if (f == RS_FIELD_PAYLOAD)
		{
			fields.value[f] = NULL;
			if (!PG_ARGISNULL(argno))
			{
				tokens_check_payload(PG_GETARG_DATUM(argno));
				fields.value[f] = (text *) PG_GETARG_JSONB_P(argno);
			}
		}
		else
			fields.value[f] =
				regstack_text_arg(fcinfo, argno, regstack_field_names[f],
								  f == RS_FIELD_RESULT ?
								  TOKENS_MAX_RESULT_BYTES :
								  REGSTACK_MAX_TEXT_BYTES,
								  false);
	}

	token = regstack_issue(text_to_cstring(type_name), &fields, ttl);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(token, REGSTACK_TOKEN_CHARS));
}

/*
 * Shared body of consume_token and peek_token: put the token's row, if it
 * is live, of that type, and the challenge matches, into the result set.
 */
static Datum
tokens_find(FunctionCallInfo fcinfo, RegstackTokenAction action)
{
	/* The table columns consume_token and peek_token return, in order. */
	static const RegstackTokenColumn output_columns[] = {
		RS_COL_TOKEN_TYPE, RS_COL_SUBJECT, RS_COL_PROVIDER, RS_COL_NONCE,
		RS_COL_CODE_VERIFIER, RS_COL_REDIRECT_TO, RS_COL_MODE,
		RS_COL_LINKING_USER_ID, RS_COL_RESULT, RS_COL_PAYLOAD,
		RS_COL_CREATED_AT, RS_COL_EXPIRES_AT
	};
	text	   *token = regstack_text_arg(fcinfo, 0, "token",
										  REGSTACK_MAX_TOKEN_BYTES, true);
	text	   *challenge;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RegstackTokenKey key;
	Datum		row[RS_NUM_COLS];
	bool		row_nulls[RS_NUM_COLS];

	key.token_type = regstack_text_arg(fcinfo, 1, "token_type",
									   REGSTACK_MAX_TEXT_BYTES, true);
	challenge = regstack_text_arg(fcinfo, 2, "challenge",
								  REGSTACK_MAX_TEXT_BYTES, false);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	tokens_check_type(key.token_type);

	/* A string of another shape was never issued: no row, no lookup. */
	if (!regstack_token_wellformed(token))
	{
		regstack_stats_token_call(key.token_type, action, RS_TOKEN_NOT_FOUND);
		return (Datum) 0;
	}

	key.subject_tag = regstack_token_tag(token);
	key.token_hash = regstack_sha256_bytea(token);
	key.check_challenge = true;
	key.challenge_hash = challenge ? regstack_sha256_bytea(challenge) : NULL;

	if (regstack_token_apply(&key, action, NULL, row, row_nulls))
	{
		Datum		values[lengthof(output_columns)];
		bool		nulls[lengthof(output_columns)];

		for (int i = 0; i < lengthof(output_columns); i++)
		{
			values[i] = row[output_columns[i] - 1];
			nulls[i] = row_nulls[output_columns[i] - 1];
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* consume_token(token, token_type, challenge): the token's row, once. */
Datum
regstack_consume_token(PG_FUNCTION_ARGS)
{
	return tokens_find(fcinfo, RS_TOKEN_DELETE);
}

/* peek_token(token, token_type, challenge): the row, leaving it in place. */
Datum
regstack_peek_token(PG_FUNCTION_ARGS)
{
	return tokens_find(fcinfo, RS_TOKEN_FETCH);
}

/* attach_result(token, token_type, result): store result on a live token. */
Datum
regstack_attach_result(PG_FUNCTION_ARGS)
{
	text	   *token = regstack_text_arg(fcinfo, 0, "token",
										  REGSTACK_MAX_TOKEN_BYTES, true);
	text	   *result;
	RegstackTokenKey key;
	Datum		row[RS_NUM_COLS];
	bool		row_nulls[RS_NUM_COLS];

	key.token_type = regstack_text_arg(fcinfo, 1, "token_type",
									   REGSTACK_MAX_TEXT_BYTES, true);
	result = regstack_text_arg(fcinfo, 2, "result", TOKENS_MAX_RESULT_BYTES,
							   true);
	tokens_check_type(key.token_type);
	if (!regstack_token_wellformed(token))
	{
		regstack_stats_token_call(key.token_type, RS_TOKEN_SET_RESULT,
								  RS_TOKEN_NOT_FOUND);
		PG_RETURN_BOOL(false);
	}

	key.subject_tag = regstack_token_tag(token);
	key.token_hash = regstack_sha256_bytea(token);
	key.check_challenge = false;
	key.challenge_hash = NULL;
	PG_RETURN_BOOL(regstack_token_apply(&key, RS_TOKEN_SET_RESULT, result,
										row, row_nulls));
}

/* revoke_tokens(subject, token_type): delete a subject's live tokens. */
Datum
regstack_revoke_tokens(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr revoke_plan = NULL;
	static const Oid revoke_argtypes[4] = {TEXTOID, TEXTOID, INT4OID,
	TIMESTAMPTZOID};
	text	   *subject = regstack_text_arg(fcinfo, 0, "subject",
											REGSTACK_MAX_TEXT_BYTES, true);
	text	   *type_name = regstack_text_arg(fcinfo, 1, "token_type",
											  REGSTACK_MAX_TEXT_BYTES, false);
	RegstackCall call;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	uint64		revoked;

	values[0] = PointerGetDatum(subject);
	values[1] = PointerGetDatum(type_name);
	if (type_name == NULL)
		nulls[1] = 'n';

	/* A typo in the type must not look like "nothing to revoke". */
	if (type_name != NULL)
		tokens_check_type(type_name);
	regstack_table_check(RS_TABLE_TOKENS, RowExclusiveLock);
	regstack_begin_call(&call);
	values[2] = Int32GetDatum(regstack_subject_tag(subject));
	/* the time as a parameter: Citus routes no volatile WHERE clause */
	values[3] = TimestampTzGetDatum(GetCurrentTimestamp());
	regstack_plan(&revoke_plan,
				  "DELETE FROM regstack.auth_ephemeral_tokens"
				  " WHERE subject_tag OPERATOR(pg_catalog.=) $3"
				  " AND subject OPERATOR(pg_catalog.=) $1"
				  " AND ($2 IS NULL OR token_type OPERATOR(pg_catalog.=) $2)"
				  " AND expires_at OPERATOR(pg_catalog.>) $4"
				  " RETURNING token_type",
				  4, revoke_argtypes);
	if (SPI_execute_plan(revoke_plan, values, nulls, false, 0) != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not revoke tokens");
	revoked = SPI_processed;
	/* per token type: a call without one revokes every type */
	regstack_stats_count_rows(RS_STATS_TOKEN_TYPE, RS_STAT_REVOKED,
							  SPI_tuptable, 1);
	regstack_end_call(&call);

	PG_RETURN_INT64((int64) revoked);
}
