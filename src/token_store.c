/*-------------------------------------------------------------------------
 *
 * token_store.c
 *	  Direct heap and index access to regstack.auth_ephemeral_tokens.
 *
 * issue_token, consume_token, peek_token and attach_result are the hot path.
 * Going through SPI would mean a cached plan per statement, and a generic
 * plan made while the table was small is a sequential scan that stays one
 * as the table grows.  So these functions probe the primary-key index and
 * work on the heap tuple directly, with the semantics of the SQL statement
 * each replaces:
 *	- find: the row visible to a fresh snapshot (taken after a command
 *	  counter increment, as SPI does before each statement);
 *	- delete/update: table_tuple_delete/_update, waiting for a concurrent
 *	  writer.  If the row was concurrently updated (attach_result) and we
 *	  are in READ COMMITTED, we look the token up again and re-check it, as
 *	  EvalPlanQual does for DELETE; if it was concurrently deleted the token
 *	  is gone.  In REPEATABLE READ and SERIALIZABLE both are serialization
 *	  failures (40001), exactly as for DELETE ... RETURNING.
 *	- insert: table_tuple_insert plus ExecInsertIndexTuples, so every index
 *	  of the table, including any a DBA adds, gets its entry, and unique
 *	  violations are reported as usual.
 * The index and heap access methods take the predicate locks SERIALIZABLE
 * needs, and heap_delete/heap_insert WAL-log and TOAST as usual.  The
 * table is opened through tables.c, which refuses it when it has anything
 * (a trigger, a CHECK constraint, a column default, ...) that these direct
 * writes would skip, and says where each column is.
 *
 * When Citus distributes the table, the relation worked on is the shard
 * of the token's subject tag if this node holds it (found and locked by
 * citus.c); otherwise the call goes through SQL that Citus routes
 * (token_routed.c).  docs/citus.md has the protocol.
 *
 * Writes refuse to run in a read-only transaction (25006), as the executor
 * does for INSERT/UPDATE/DELETE; that also covers hot standbys.
 *
 * No permission is checked here: callers are SQL functions an application
 * may only reach through EXECUTE.
 *
 *-------------------------------------------------------------------------
 */
#include "tokens.h"
#include "heap_access.h"
#include "stats.h"

#include "access/genam.h"
#include "access/heaptoast.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/* Is the varlena datum equal to len bytes at data? */
static bool
store_bytes_equal(Datum value, const char *data, Size len)
{
	struct varlena *v = PG_DETOAST_DATUM_PACKED(value);

	return VARSIZE_ANY_EXHDR(v) == len && memcmp(VARDATA_ANY(v), data, len) == 0;
}

/*
 * Does the row in values/nulls satisfy the type, expiry and challenge of
 * key?  RS_TOKEN_HIT if so, else the first condition it fails (counted by
 * regstack.stats).
 */
RegstackTokenOutcome
regstack_token_row_matches(const RegstackTokenKey *key, const Datum *values,
						   const bool *nulls)
{
	if (!store_bytes_equal(values[RS_COL_TOKEN_TYPE - 1],
						   VARDATA_ANY(key->token_type),
						   VARSIZE_ANY_EXHDR(key->token_type)))
		return RS_TOKEN_WRONG_TYPE;
	if (!(DatumGetTimestampTz(values[RS_COL_EXPIRES_AT - 1]) > GetCurrentTimestamp()))
		return RS_TOKEN_EXPIRED;
	if (key->check_challenge && !nulls[RS_COL_CHALLENGE_HASH - 1])
	{
		if (key->challenge_hash == NULL ||
			!store_bytes_equal(values[RS_COL_CHALLENGE_HASH - 1],
							   VARDATA_ANY(key->challenge_hash),
							   VARSIZE_ANY_EXHDR(key->challenge_hash)))
			return RS_TOKEN_WRONG_CHALLENGE;
	}
	return RS_TOKEN_HIT;
}

/*
 * Open the relation that holds the tokens of subject_tag in lockmode: the
 * tokens table, or when Citus distributes it, its shard if that is on this
 * node (with the shard's metadata lock, citus.c; the table stays locked in
 * lockmode too, as Citus's executor locks it).  *info points to where its
 * columns are (a shard's in *shard_info).  NULL when the shard is on
 * another node: the caller goes through token_routed.c.
 */
static Relation
store_open(LOCKMODE lockmode, int32 subject_tag, RegstackTableInfo *shard_info,
		   const RegstackTableInfo **info)
{
	Relation	rel = regstack_table_open(RS_TABLE_TOKENS, lockmode, info);
	RegstackShard shard;

	if (!(*info)->distributed)
		return rel;
	table_close(rel, NoLock);
	regstack_citus_row_shard(RS_TABLE_TOKENS, Int32GetDatum(subject_tag), &shard);
	if (!shard.is_local)
		return NULL;
	*info = shard_info;
	return regstack_table_open_shard(RS_TABLE_TOKENS, shard.relid, lockmode,
									 shard_info);
}

/*
 * Probe the primary key for (subject_tag, token_hash) under snapshot; on a
 * hit, copy the row (TOAST values fetched now, while still visible) into
 * values/nulls and its TID into tid.
 */
static bool
store_find(Relation rel, const RegstackTableInfo *info, Relation pk_index,
		   Snapshot snapshot, int32 subject_tag, const bytea *token_hash,
		   Datum *values, bool *nulls, ItemPointer tid)
{
	ScanKeyData scankeys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		found;

	ScanKeyInit(&scankeys[0], 1, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(subject_tag));
	ScanKeyInit(&scankeys[1], 2, BTEqualStrategyNumber, F_BYTEAEQ,
				PointerGetDatum(token_hash));
	scan = index_beginscan(rel, pk_index, snapshot, NULL, 2, 0);
	index_rescan(scan, scankeys, 2, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
	{
		bool		should_free;
		HeapTuple	row = ExecFetchSlotHeapTuple(slot, false, &should_free);
		TupleTableSlot *copy = MakeSingleTupleTableSlot(RelationGetDescr(rel),
														&TTSOpsHeapTuple);

		/* A copy that outlives the scan, with TOAST values fetched now. */
		if (HeapTupleHasExternal(row))
			row = toast_flatten_tuple(row, RelationGetDescr(rel));
		else
			row = heap_copytuple(row);
		ExecStoreHeapTuple(row, copy, false);
		regstack_slot_fetch_columns(copy, info, values, nulls);
		ExecDropSingleTupleTableSlot(copy);
		*tid = slot->tts_tid;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/* Replace the row at tid by values with result set; like UPDATE. */
static TM_Result
store_update_result(Relation rel, const RegstackTableInfo *info,
					ItemPointer tid, Snapshot snapshot, Datum *values,
					bool *nulls, text *new_result)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel),
													&TTSOpsVirtual);
	RegstackIndexWriter writer = {0};
	Datum		new_values[RS_NUM_COLS];
	bool		new_nulls[RS_NUM_COLS];
	TM_Result	result;

	memcpy(new_values, values, sizeof(new_values));
	memcpy(new_nulls, nulls, sizeof(new_nulls));
	new_values[RS_COL_RESULT - 1] = PointerGetDatum(new_result);
	new_nulls[RS_COL_RESULT - 1] = false;
	regstack_slot_store_columns(slot, info, new_values, new_nulls);

	result = regstack_heap_update(&writer, rel, tid, slot, snapshot);
	if (result == TM_Ok)
	{
		values[RS_COL_RESULT - 1] = PointerGetDatum(new_result);
		nulls[RS_COL_RESULT - 1] = false;
	}
	regstack_index_writer_close(&writer);
	ExecDropSingleTupleTableSlot(slot);
	return result;
}

/*
 * Find the live token that matches key and apply action to it.  On success
 * values/nulls (RS_NUM_COLS each) hold the row: as found for FETCH and
 * DELETE, with the new result for SET_RESULT.  Returns false when there is
 * no such live token (or a concurrent caller took it first).  Counts the
 * call's outcome in regstack.stats.
 */
bool
regstack_token_apply(const RegstackTokenKey *key, RegstackTokenAction action,
					 text *new_result, Datum *values, bool *nulls)
{
	LOCKMODE	lockmode = (action == RS_TOKEN_FETCH) ? AccessShareLock : RowExclusiveLock;
	Relation	rel;
	RegstackTableInfo shard_info;
	const RegstackTableInfo *info;
	Relation	pk_index;
	Datum		row_values[RS_NUM_COLS];
	bool		row_nulls[RS_NUM_COLS];
	bool		done = false;
	RegstackTokenOutcome outcome = RS_TOKEN_NOT_FOUND;
	Snapshot	snapshot = NULL;

	if (action == RS_TOKEN_DELETE)
		PreventCommandIfReadOnly("consume_token()");
	else if (action == RS_TOKEN_SET_RESULT)
		PreventCommandIfReadOnly("attach_result()");
	rel = store_open(lockmode, key->subject_tag, &shard_info, &info);
	if (rel == NULL)
		return regstack_token_apply_routed(key, action, new_result, values,
										   nulls);
	pk_index = index_open(RelationGetPrimaryKeyIndex(rel, false), lockmode);

	for (;;)
	{
		ItemPointerData tid;
		TM_Result	result = TM_Ok;
		bool		retry = false;

		/* Like SPI before a statement: see this transaction's own work. */
		regstack_statement_snapshot(&snapshot);

		outcome = RS_TOKEN_NOT_FOUND;
		if (store_find(rel, info, pk_index, snapshot, key->subject_tag,
					   key->token_hash, row_values, row_nulls, &tid))
			outcome = regstack_token_row_matches(key, row_values, row_nulls);
		if (outcome == RS_TOKEN_HIT)
		{
			if (action == RS_TOKEN_DELETE)
				result = regstack_heap_delete(rel, &tid, snapshot, true);
			else if (action == RS_TOKEN_SET_RESULT)
				result = store_update_result(rel, info, &tid, snapshot,
											 row_values, row_nulls, new_result);
			if (result == TM_Ok)
				done = true;

			/*
			 * Lost a race: a concurrent update (attach_result) means look
			 * the token up again, as EvalPlanQual does for DELETE; a
			 * concurrent delete means it is gone.
			 */
			else
			{
				outcome = RS_TOKEN_NOT_FOUND;
				retry = regstack_check_conflict(result) == TM_Updated;
			}
		}
		if (!retry)
			break;
	}
	UnregisterSnapshot(snapshot);

	if (done)
	{
		memcpy(values, row_values, sizeof(Datum) * RS_NUM_COLS);
		memcpy(nulls, row_nulls, sizeof(bool) * RS_NUM_COLS);
	}
	index_close(pk_index, NoLock);
	table_close(rel, NoLock);
	regstack_stats_token_call(key->token_type, action, outcome);
	return done;
}

/* Insert one row (RS_NUM_COLS values) with entries in every index. */
void
regstack_token_insert(const Datum *values, const bool *nulls)
{
	RegstackTableInfo shard_info;
	const RegstackTableInfo *info;
	Relation	rel;
	TupleTableSlot *slot;
	RegstackIndexWriter writer = {0};

	PreventCommandIfReadOnly("issue_token()");
	rel = store_open(RowExclusiveLock,
					 DatumGetInt32(values[RS_COL_SUBJECT_TAG - 1]),
					 &shard_info, &info);
	if (rel == NULL)
	{
		regstack_token_insert_routed(values, nulls);
		return;
	}
	slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsVirtual);
	regstack_slot_store_columns(slot, info, values, nulls);
	regstack_heap_insert(&writer, rel, slot);
	regstack_index_writer_close(&writer);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
}
