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
 * The table is opened through tables.c, which refuses it (55000) when it
 * has a trigger, a rule or anything else the direct delete would skip.
 * When Citus distributes it, the shards placed on this node are purged,
 * each under Citus's shard metadata lock (citus.c, docs/citus.md).
 *
 * Callers must be inside regstack_begin_call().
 *
 *-------------------------------------------------------------------------
 */
#include "purge.h"
#include "heap_access.h"
#include "tokens.h"
#include "stats.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "tcop/utility.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(regstack_purge_expired);

/*
 * Delete up to limit (<= 0: no limit) expired tokens with ctid in (after,
 * stop), scanning in ctid order, without waiting for rows others hold;
 * move *after to the last one deleted.  Each deletion counts in
 * regstack.stats as counter (purged or reaped) of its token type; each row
 * left for another transaction is reported to the reaper's lag.
 */
static int64
purge_tokens_direct(Relation rel, const RegstackTableInfo *info, int64 limit,
					ItemPointer after, ItemPointer stop,
					RegstackStatsCounter counter)
{
	RegstackStatsTally tally;
	bool		counting = regstack_stats_enabled();
	Snapshot	snapshot = NULL;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TimestampTz now_ts = GetCurrentTimestamp();
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

	regstack_stats_tally_init(&tally, RS_STATS_TOKEN_TYPE, counter);

	/* After the snapshot's command counter increment: see our own rows. */
	regstack_statement_snapshot(&snapshot);
	scan = table_beginscan_tidrange(rel, snapshot, &first, &last);
	while ((limit <= 0 || deleted < limit) &&
		   table_scan_getnextslot_tidrange(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		expires_at = slot_getattr(slot,
											  info->attnum[RS_COL_EXPIRES_AT - 1],
											  &isnull);
		TM_Result	result;
		Datum		token_type = (Datum) 0;

		if (isnull || DatumGetTimestampTz(expires_at) > now_ts)
			continue;
		if (counting)
			token_type = slot_getattr(slot, info->attnum[RS_COL_TOKEN_TYPE - 1],
									  &isnull);
		/* wait = false: a row someone holds is skipped, not waited for */
		result = regstack_heap_delete(rel, &slot->tts_tid, snapshot, false);
		if (result == TM_Ok)
		{
			deleted++;
			*after = slot->tts_tid;
			if (counting && !isnull)
				regstack_stats_tally_add(&tally, DatumGetTextPP(token_type));
		}
		else if (result != TM_Deleted)
			regstack_stats_reaper_skipped(DatumGetTimestampTz(expires_at));
	}
	regstack_stats_tally_flush(&tally);
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	return deleted;
}

/*
 * Delete up to limit (<= 0: no limit) expired tokens from the shards of
 * the distributed tokens table that are on this node, each whole, with
 * its metadata lock (citus.c) so that no shard move switches it meanwhile.
 */
static int64
purge_tokens_local_shards(int64 limit, RegstackStatsCounter counter)
{
	List	   *shards = regstack_citus_local_shards(RS_TABLE_TOKENS);
	ListCell   *cell;
	int64		deleted = 0;

	foreach(cell, shards)
	{
		RegstackShard *shard = (RegstackShard *) lfirst(cell);
		RegstackTableInfo info;
		Relation	rel;
		ItemPointerData after;
		ItemPointerData stop;

		if (limit > 0 && deleted >= limit)
			break;
		rel = regstack_table_open_shard(RS_TABLE_TOKENS, shard->relid,
										RowExclusiveLock, &info);
		ItemPointerSet(&after, 0, 0);
		ItemPointerSet(&stop, MaxBlockNumber, 0);
		deleted += purge_tokens_direct(rel, &info,
									   limit > 0 ? limit - deleted : 0,
									   &after, &stop, counter);
		table_close(rel, NoLock);
	}
	list_free_deep(shards);
	return deleted;
}

/*
 * Delete up to limit expired tokens whose ctid lies after *after and before
 * block stop_block, and move *after to the last one deleted; set *nblocks
 * to the table's size in blocks; return how many were deleted, counted as
 * counter in regstack.stats.  When Citus distributes the table, the range
 * is ignored: the local shards are purged from their start, up to limit,
 * and *nblocks is 0, so that the reaper's pass ends with a batch that
 * deletes fewer than limit.
 */
static int64
purge_tokens_range(int64 limit, ItemPointer after, BlockNumber stop_block,
				   BlockNumber *nblocks, RegstackStatsCounter counter)
{
	const RegstackTableInfo *info;
	Relation	rel;
	ItemPointerData stop;
	int64		deleted;

	PreventCommandIfReadOnly("purge_expired()");
	rel = regstack_table_open(RS_TABLE_TOKENS, RowExclusiveLock, &info);
	if (info->distributed)
	{
		table_close(rel, NoLock);
		*nblocks = 0;
		return purge_tokens_local_shards(limit, counter);
	}
	ItemPointerSet(&stop, stop_block, 0);
	deleted = purge_tokens_direct(rel, info, limit, after, &stop, counter);
	*nblocks = RelationGetNumberOfBlocks(rel);
	table_close(rel, NoLock);
	return deleted;
}

/*
 * The reaper's batch: purge_tokens_range, counted as reaped.  The reaper
 * carries *after from batch to batch, so a pass reads the table once, in
 * ctid order, instead of rescanning the already-emptied leading pages in
 * every batch; stop_block bounds how much one batch may read when few
 * rows are expired, so that every transaction stays short.
 */
int64
regstack_purge_tokens_range(int64 limit, ItemPointer after,
							BlockNumber stop_block, BlockNumber *nblocks)
{
	return purge_tokens_range(limit, after, stop_block, nblocks,
							  RS_STAT_REAPED);
}

/* Delete every expired token (purge_expired()); return how many. */
int64
regstack_purge_tokens(void)
{
	ItemPointerData after;
	BlockNumber nblocks;

	ItemPointerSet(&after, 0, 0);
	return purge_tokens_range(0, &after, MaxBlockNumber, &nblocks,
							  RS_STAT_PURGED);
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
