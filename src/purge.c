/*-------------------------------------------------------------------------
 *
 * purge.c
 *	  Deleting expired rows: purge_expired() and the batch step the reaper
 *	  repeats.
 *
 * A batch locks the rows it deletes with FOR UPDATE SKIP LOCKED, so it
 * never waits for a foreground call that holds a token (a consume_token in
 * progress), and a foreground call never waits for more than one batch.
 * Rows are found by a sequential scan: the tokens table has no index on
 * expires_at, which keeps issue_token cheaper.
 *
 * Callers must be inside regstack_begin_call().
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"

PG_FUNCTION_INFO_V1(regstack_purge_expired);

/*
 * The reaper's batch statement; FOR UPDATE SKIP LOCKED is inserted where %s
 * stands when skip_locked, else nothing.
 */
#define PURGE_RANGE_SQL \
	"WITH deleted AS (" \
	" DELETE FROM regstack.auth_ephemeral_tokens" \
	" WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(" \
	"   SELECT ctid FROM regstack.auth_ephemeral_tokens" \
	"   WHERE ctid OPERATOR(pg_catalog.>) $2" \
	"     AND ctid OPERATOR(pg_catalog.<) $3" \
	"     AND expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()" \
	"   LIMIT $1%s))" \
	" RETURNING ctid)" \
	" SELECT pg_catalog.count(*), pg_catalog.max(ctid)," \
	"   pg_catalog.pg_relation_size('regstack.auth_ephemeral_tokens'::pg_catalog.regclass)" \
	"   OPERATOR(pg_catalog./) pg_catalog.current_setting('block_size')::pg_catalog.int8" \
	" FROM deleted"

/*
 * Delete up to limit expired tokens whose ctid lies after *after and before
 * block stop_block, and move *after to the last one deleted; set *nblocks
 * to the table's size in blocks; return how many were deleted.
 *
 * This is the reaper's batch.  The reaper carries *after from batch to
 * batch, so a pass reads the table once, in ctid order (a TID range scan),
 * instead of rescanning the already-emptied leading pages in every batch;
 * stop_block bounds how much one statement may read when few rows are
 * expired, so that every transaction stays short.
 *
 * skip_locked: lock the rows first (FOR UPDATE SKIP LOCKED) and skip those
 * locked by someone else; they are left for the next pass.  Without it the
 * DELETE waits for such rows, which the caller bounds with lock_timeout;
 * it is about twice as fast, since locking writes every row (and its WAL)
 * once more before the delete does.
 */
int64
regstack_purge_tokens_range(int64 limit, ItemPointer after,
							BlockNumber stop_block, bool skip_locked,
							BlockNumber *nblocks)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	static const Oid purge_argtypes[3] = {INT8OID, TIDOID, TIDOID};
	char		sql[sizeof(PURGE_RANGE_SQL) + 32];
	ItemPointerData stop;
	Datum		values[3];
	HeapTuple	row;
	TupleDesc	desc;
	bool		isnull;
	int64		deleted;
	Datum		last;

	if (plans[skip_locked] == NULL)
		snprintf(sql, sizeof(sql), PURGE_RANGE_SQL,
				 skip_locked ? " FOR UPDATE SKIP LOCKED" : "");
	regstack_plan(&plans[skip_locked], sql, 3, purge_argtypes);

	ItemPointerSet(&stop, stop_block, 0);
	values[0] = Int64GetDatum(limit);
	values[1] = PointerGetDatum(after);
	values[2] = PointerGetDatum(&stop);
	if (SPI_execute_plan(plans[skip_locked], values, NULL, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not delete expired tokens");
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	deleted = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
	last = SPI_getbinval(row, desc, 2, &isnull);
	if (!isnull)
		ItemPointerCopy((ItemPointer) DatumGetPointer(last), after);
	*nblocks = (BlockNumber) DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));
	return deleted;
}

/* Delete up to limit expired tokens (limit <= 0: all); return how many. */
int64
regstack_purge_tokens(int64 limit)
{
	static SPIPlanPtr purge_plan = NULL;
	static const Oid purge_argtypes[1] = {INT8OID};
	Datum		values[1];
	char		nulls[1] = {' '};

	values[0] = Int64GetDatum(limit);
	if (limit <= 0)
		nulls[0] = 'n';
	regstack_plan(&purge_plan,
				  "DELETE FROM regstack.auth_ephemeral_tokens"
				  " WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
				  "   SELECT ctid FROM regstack.auth_ephemeral_tokens"
				  "   WHERE expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()"
				  "   LIMIT $1 FOR UPDATE SKIP LOCKED))",
				  1, purge_argtypes);
	if (SPI_execute_plan(purge_plan, values, nulls, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete expired tokens");
	return (int64) SPI_processed;
}

/* purge_expired(): delete every expired row now; counts per table. */
Datum
regstack_purge_expired(PG_FUNCTION_ARGS)
{
	TupleDesc	result_desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	RegstackCall call;

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "purge_expired must return a composite type");

	regstack_begin_call(&call);
	values[0] = Int64GetDatum(regstack_purge_tokens(0));
	values[1] = Int64GetDatum(regstack_purge_events(0));
	regstack_end_call(&call);

	result_desc = BlessTupleDesc(result_desc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc, values, nulls)));
}
