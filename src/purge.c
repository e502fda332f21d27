/*-------------------------------------------------------------------------
 *
 * purge.c
 *	  Deleting expired rows: purge_expired() and the batch step the reaper
 *	  repeats.
 *
 * Tokens are deleted directly (table_tuple_delete while a TID range scan
 * walks the table), without SQL: an expired row that a foreground call has
 * locked or is changing is skipped, not waited for (the delete is asked
 * not to wait), so a purge never waits for a foreground transaction and
 * locks nothing beyond what it deletes; skipped rows go in a later purge.
 * A foreground call never waits for a purge either: consume_token and the
 * like only ever change live rows, and purges only delete expired ones.
 * Rows are found by that scan: the tokens table has no index on
 * expires_at, which keeps issue_token cheaper.
 *
 * If someone has put DELETE triggers or rules on the tokens table, the
 * purge runs the equivalent SQL statement instead (FOR UPDATE SKIP LOCKED,
 * then DELETE), so that they fire.
 *
 * Callers must be inside regstack_begin_call().
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "tcop/utility.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(regstack_purge_expired);

/*
 * The SQL form of a batch, for tables with DELETE triggers or rules:
 * delete up to $1 expired rows with ctid in ($2, $3), skipping rows others
 * have locked; returns how many and the last ctid deleted.
 */
#define PURGE_RANGE_SQL \
	"WITH deleted AS (" \
	" DELETE FROM regstack.auth_ephemeral_tokens" \
	" WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(" \
	"   SELECT ctid FROM regstack.auth_ephemeral_tokens" \
	"   WHERE ctid OPERATOR(pg_catalog.>) $2" \
	"     AND ctid OPERATOR(pg_catalog.<) $3" \
	"     AND expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()" \
	"   LIMIT $1 FOR UPDATE SKIP LOCKED))" \
	" RETURNING ctid)" \
	" SELECT pg_catalog.count(*), pg_catalog.max(ctid) FROM deleted"

/* Do DELETE triggers or rules on rel need the SQL form? */
static bool
purge_needs_sql(Relation rel)
{
	TriggerDesc *triggers = rel->trigdesc;

	return rel->rd_rules != NULL ||
		(triggers != NULL &&
		 (triggers->trig_delete_before_row || triggers->trig_delete_after_row ||
		  triggers->trig_delete_instead_row ||
		  triggers->trig_delete_before_statement ||
		  triggers->trig_delete_after_statement));
}

/* Run a (count, max(ctid)) purge statement; see regstack.h. */
int64
regstack_purge_execute(SPIPlanPtr plan, Datum *values, const char *nulls,
					   ItemPointer after, const char *what)
{
	HeapTuple	row;
	bool		isnull;
	int64		deleted;
	Datum		last;

	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not delete %s", what);
	row = SPI_tuptable->vals[0];
	deleted = DatumGetInt64(SPI_getbinval(row, SPI_tuptable->tupdesc, 1, &isnull));
	last = SPI_getbinval(row, SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
		ItemPointerCopy((ItemPointer) DatumGetPointer(last), after);
	SPI_freetuptable(SPI_tuptable);
	return deleted;
}

/* The SQL form of purge_tokens_direct(); see PURGE_RANGE_SQL. */
static int64
purge_tokens_sql(int64 limit, ItemPointer after, ItemPointer stop)
{
	static SPIPlanPtr plan = NULL;
	static const Oid purge_argtypes[3] = {INT8OID, TIDOID, TIDOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	regstack_plan(&plan, PURGE_RANGE_SQL, 3, purge_argtypes);
	values[0] = Int64GetDatum(limit);
	if (limit <= 0)
		nulls[0] = 'n';
	values[1] = PointerGetDatum(after);
	values[2] = PointerGetDatum(stop);
	return regstack_purge_execute(plan, values, nulls, after, "expired tokens");
}

/*
 * Delete up to limit (<= 0: no limit) expired tokens with ctid in (after,
 * stop), scanning in ctid order, without waiting for rows others hold;
 * move *after to the last one deleted.
 */
static int64
purge_tokens_direct(Relation rel, int64 limit, ItemPointer after,
					ItemPointer stop)
{
	Snapshot	snapshot = NULL;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TimestampTz now_ts = GetCurrentTimestamp();
	CommandId	cid;
	ItemPointerData first;
	ItemPointerData last;
	TableScanDesc scan;
	int64		deleted = 0;

	/* The range is inclusive: from just after *after to just before *stop. */
	ItemPointerSet(&first, ItemPointerGetBlockNumberNoCheck(after),
				   ItemPointerGetOffsetNumberNoCheck(after) + 1);
	if (ItemPointerGetOffsetNumberNoCheck(stop) > 1)
		ItemPointerSet(&last, ItemPointerGetBlockNumberNoCheck(stop),
					   ItemPointerGetOffsetNumberNoCheck(stop) - 1);
	else if (ItemPointerGetBlockNumberNoCheck(stop) > 0)
		ItemPointerSet(&last, ItemPointerGetBlockNumberNoCheck(stop) - 1,
					   MaxOffsetNumber);
	else
		ItemPointerSet(&last, 0, 0);	/* empty range */

	/* The command id after the snapshot's increment: see our own rows. */
	regstack_statement_snapshot(&snapshot);
	cid = GetCurrentCommandId(true);
	scan = table_beginscan_tidrange(rel, snapshot, &first, &last);
	while ((limit <= 0 || deleted < limit) &&
		   table_scan_getnextslot_tidrange(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		expires_at = slot_getattr(slot, RS_COL_EXPIRES_AT, &isnull);
		TM_FailureData tmfd;

		if (isnull || DatumGetTimestampTz(expires_at) > now_ts)
			continue;
		/* wait = false: a row someone holds is skipped, not waited for */
		if (table_tuple_delete(rel, &slot->tts_tid, cid, snapshot,
							   InvalidSnapshot, false, &tmfd, false) == TM_Ok)
		{
			deleted++;
			*after = slot->tts_tid;
		}
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	return deleted;
}

/*
 * Delete up to limit expired tokens whose ctid lies after *after and before
 * block stop_block, and move *after to the last one deleted; set *nblocks
 * to the table's size in blocks; return how many were deleted.
 *
 * This is the reaper's batch.  The reaper carries *after from batch to
 * batch, so a pass reads the table once, in ctid order, instead of
 * rescanning the already-emptied leading pages in every batch; stop_block
 * bounds how much one batch may read when few rows are expired, so that
 * every transaction stays short.
 */
int64
regstack_purge_tokens_range(int64 limit, ItemPointer after,
							BlockNumber stop_block, BlockNumber *nblocks)
{
	Relation	rel;
	ItemPointerData stop;
	int64		deleted;

	PreventCommandIfReadOnly("purge_expired()");
	rel = table_open(regstack_table_relid(RS_TABLE_TOKENS), RowExclusiveLock);
	ItemPointerSet(&stop, stop_block, 0);
	if (purge_needs_sql(rel))
		deleted = purge_tokens_sql(limit, after, &stop);
	else
		deleted = purge_tokens_direct(rel, limit, after, &stop);
	*nblocks = RelationGetNumberOfBlocks(rel);
	table_close(rel, NoLock);
	return deleted;
}

/* Delete every expired token; return how many. */
int64
regstack_purge_tokens(void)
{
	ItemPointerData after;
	BlockNumber nblocks;

	ItemPointerSet(&after, 0, 0);
	return regstack_purge_tokens_range(0, &after, MaxBlockNumber, &nblocks);
}

/* purge_expired(): delete every expired row now; counts per table. */
Datum
regstack_purge_expired(PG_FUNCTION_ARGS)
{
	TupleDesc	result_desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	RegstackCall call;
	RegstackPurgeCursor cursor;

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "purge_expired must return a composite type");

	regstack_begin_call(&call);
	values[0] = Int64GetDatum(regstack_purge_tokens());
	regstack_purge_cursor_init(&cursor);
	values[1] = Int64GetDatum(regstack_purge_events(0, &cursor));
	regstack_end_call(&call);

	result_desc = BlessTupleDesc(result_desc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc, values, nulls)));
}
