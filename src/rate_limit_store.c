/*-------------------------------------------------------------------------
 *
 * rate_limit_store.c
 *	  Direct heap and index access to regstack.auth_rate_limit_state and
 *	  regstack.auth_rate_limit_events.
 *
 * rate_limit_check runs on every login attempt, so, as for the tokens
 * (token_store.c), its reads and writes skip SQL: a key's state row is
 * found through the state table's primary key (key, event_type) under the
 * statement's MVCC snapshot, locked, updated or inserted with the table AM
 * (table_tuple_lock, regstack_heap_update, regstack_heap_insert: every
 * index gets its entry), and events are inserted the same way or probed
 * through the events' primary key (key, event_type, seq).  Each of these
 * does what the SQL statement it replaces does (SELECT ... FOR NO KEY
 * UPDATE, UPDATE, INSERT, an index range scan), including its waits, which
 * are PostgreSQL's own row-lock and transaction waits: a cancel ends them
 * and the deadlock detector sees them.
 *
 * What a lost race means is the caller's business (rate_limits.c): these
 * functions return the TM_Result after regstack_check_conflict() has
 * raised 40001 where UPDATE would.
 *
 * The tables are opened through tables.c, which refuses them when they
 * have anything these direct writes would skip, and maps the columns.
 * When Citus distributes them (by key, colocated), what is opened is the
 * key's shard of each, if this node holds it, under the shard's metadata
 * lock (citus.c, docs/citus.md); otherwise the caller routes the call.
 *
 *-------------------------------------------------------------------------
 */
#include "rate_limits.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/*
 * Open table for a call on k in lockmode: the table, or when Citus
 * distributes it its shard of k if on this node (locked by citus.c;
 * *shard_info gets where its columns are), or NULL when that shard is on
 * another node.  *shard says where the shard is.
 */
static Relation
rate_store_open_table(RegstackTable table, LOCKMODE lockmode,
					  const RegstackRateKey *k, RegstackTableInfo *shard_info,
					  const RegstackTableInfo **info, RegstackShard *shard)
{
	Relation	rel = regstack_table_open(table, lockmode, info);

	memset(shard, 0, sizeof(*shard));
	if (!(*info)->distributed)
		return rel;
	table_close(rel, NoLock);
	regstack_citus_row_shard(table, PointerGetDatum(k->key), shard);
	if (!shard->is_local)
		return NULL;
	*info = shard_info;
	return regstack_table_open_shard(table, shard->relid, lockmode, shard_info);
}

/* 55000: the rate-limit tables are not distributed together. */
static void
rate_store_not_colocated(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("tables regstack.auth_rate_limit_state and regstack.auth_rate_limit_events are not distributed together"),
			 errdetail("A rate-limit call reads and writes both tables on one node, so Citus must distribute both by key, colocated."),
			 errhint("Distribute the events with colocate_with => 'regstack.auth_rate_limit_state'.")));
}

/* Open the tables for a call on k; see rate_limits.h. */
bool
regstack_rate_store_open(RegstackRateStore *store, const char *writer,
						 const RegstackRateKey *k)
{
	LOCKMODE	lockmode = writer ? RowExclusiveLock : AccessShareLock;
	RegstackShard state_shard;
	RegstackShard events_shard;

	if (writer)
		PreventCommandIfReadOnly(writer);
	store->state_rel = rate_store_open_table(RS_TABLE_RATE_STATE, lockmode, k,
											 &store->state_shard_info,
											 &store->state_info, &state_shard);
	if (store->state_rel == NULL)
	{
		/* the other table must be on the same node, and is checked there */
		return false;
	}
	store->events_rel = rate_store_open_table(RS_TABLE_RATE_EVENTS, lockmode, k,
											  &store->events_shard_info,
											  &store->events_info, &events_shard);
	if (store->events_rel == NULL ||
		state_shard.distributed != events_shard.distributed ||
		state_shard.colocation_id != events_shard.colocation_id)
		rate_store_not_colocated();
	store->state_index =
		index_open(RelationGetPrimaryKeyIndex(store->state_rel, false), lockmode);
	store->events_index =
		index_open(RelationGetPrimaryKeyIndex(store->events_rel, false), lockmode);
	store->snapshot = NULL;
	store->state_slot = table_slot_create(store->state_rel, NULL);
	store->event_slot = table_slot_create(store->events_rel, NULL);
	store->state_write_slot = MakeSingleTupleTableSlot(RelationGetDescr(store->state_rel),
													   &TTSOpsVirtual);
	store->event_write_slot = MakeSingleTupleTableSlot(RelationGetDescr(store->events_rel),
													   &TTSOpsVirtual);
	memset(&store->state_indexes, 0, sizeof(store->state_indexes));
	memset(&store->event_indexes, 0, sizeof(store->event_indexes));
	return true;
}

/* Close what regstack_rate_store_open() opened (locks stay till commit). */
void
regstack_rate_store_close(RegstackRateStore *store)
{
	if (store->snapshot != NULL)
		UnregisterSnapshot(store->snapshot);
	regstack_index_writer_close(&store->state_indexes);
	regstack_index_writer_close(&store->event_indexes);
	ExecDropSingleTupleTableSlot(store->state_slot);
	ExecDropSingleTupleTableSlot(store->event_slot);
	ExecDropSingleTupleTableSlot(store->state_write_slot);
	ExecDropSingleTupleTableSlot(store->event_write_slot);
	index_close(store->events_index, NoLock);
	table_close(store->events_rel, NoLock);
	index_close(store->state_index, NoLock);
	table_close(store->state_rel, NoLock);
}

/* A new statement: see committed work and this transaction's own. */
void
regstack_rate_store_refresh(RegstackRateStore *store)
{
	regstack_statement_snapshot(&store->snapshot);
}

/* Scan keys key = k->key AND event_type = k->event_type on index. */
static void
rate_store_key_scankeys(Relation index, const RegstackRateKey *k,
						ScanKeyData *keys)
{
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(k->key));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[1], F_TEXTEQ,
						   PointerGetDatum(k->event_type));
}

/* Fill *state from the state row in store->state_slot. */
static void
rate_store_decode(RegstackRateStore *store, RegstackRateState *state)
{
	Datum		values[RS_STATE_NUM_COLS];
	bool		nulls[RS_STATE_NUM_COLS];

	regstack_slot_fetch_columns(store->state_slot, store->state_info,
								values, nulls);
	state->next_seq = DatumGetInt64(values[RS_STATE_NEXT_SEQ - 1]);
	state->start_seq = DatumGetInt64(values[RS_STATE_START_SEQ - 1]);
	state->start_at = nulls[RS_STATE_START_AT - 1] ? 0 :
		DatumGetTimestampTz(values[RS_STATE_START_AT - 1]);
	state->window_known = !nulls[RS_STATE_WINDOW_US - 1];
	state->window_us = state->window_known ?
		DatumGetInt64(values[RS_STATE_WINDOW_US - 1]) : 0;
	state->has_last = !nulls[RS_STATE_LAST_AT - 1];
	state->last_at = state->has_last ?
		DatumGetTimestampTz(values[RS_STATE_LAST_AT - 1]) : 0;
	state->clock_at = DatumGetTimestampTz(values[RS_STATE_CLOCK_AT - 1]);
	state->tid = store->state_slot->tts_tid;
	/* A pointer the window search can start from. */
	if (state->start_seq < 0 || state->start_seq > state->next_seq)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("rate-limit state row has start_seq " INT64_FORMAT " outside 0.." INT64_FORMAT,
						state->start_seq, state->next_seq)));
}

/* The state row of k under snapshot into *state (when given), if any. */
static bool
rate_store_find(RegstackRateStore *store, const RegstackRateKey *k,
				Snapshot snapshot, RegstackRateState *state)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	bool		found;

	rate_store_key_scankeys(store->state_index, k, keys);
	scan = index_beginscan(store->state_rel, store->state_index, snapshot,
						   NULL, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, store->state_slot);
	if (found && state != NULL)
		rate_store_decode(store, state);
	index_endscan(scan);
	ExecClearTuple(store->state_slot);
	return found;
}

/* The state row of k visible to the statement's snapshot, if any. */
bool
regstack_rate_store_read(RegstackRateStore *store, const RegstackRateKey *k,
						 RegstackRateState *state)
{
	return rate_store_find(store, k, store->snapshot, state);
}

/*
 * Whether a committed state row of k exists that the statement's snapshot
 * does not show (REPEATABLE READ, after another transaction made it).
 */
bool
regstack_rate_store_unseen(RegstackRateStore *store, const RegstackRateKey *k)
{
	return !rate_store_find(store, k, store->snapshot, NULL) &&
		rate_store_find(store, k, GetLatestSnapshot(), NULL);
}

/* Lock the state row version at *tid; see rate_limits.h. */
TM_Result
regstack_rate_store_lock(RegstackRateStore *store, ItemPointer tid,
						 bool *moved)
{
	TM_FailureData tmfd;
	TM_Result	result;
	uint8		flags = TUPLE_LOCK_FLAG_LOCK_UPDATE_IN_PROGRESS;

	/* As ExecLockRows: READ COMMITTED locks the newest version. */
	if (!IsolationUsesXactSnapshot())
		flags |= TUPLE_LOCK_FLAG_FIND_LAST_VERSION;
	result = table_tuple_lock(store->state_rel, tid, store->snapshot,
							  store->state_slot, GetCurrentCommandId(false),
							  LockTupleNoKeyExclusive, LockWaitBlock, flags,
							  &tmfd);
	ExecClearTuple(store->state_slot);
	*moved = tmfd.traversed;
	if (result == TM_Ok)
		return result;
	result = regstack_check_conflict(result);
	if (result != TM_Deleted)
		elog(ERROR, "unexpected result %d locking a rate-limit state row",
			 (int) result);
	return result;
}

/* Fill store->state_write_slot with k and *state. */
static TupleTableSlot *
rate_store_state_tuple(RegstackRateStore *store, const RegstackRateKey *k,
					   const RegstackRateState *state)
{
	Datum		values[RS_STATE_NUM_COLS];
	bool		nulls[RS_STATE_NUM_COLS];

	memset(nulls, false, sizeof(nulls));
	values[RS_STATE_KEY - 1] = PointerGetDatum(k->key);
	values[RS_STATE_EVENT_TYPE - 1] = PointerGetDatum(k->event_type);
	values[RS_STATE_NEXT_SEQ - 1] = Int64GetDatum(state->next_seq);
	values[RS_STATE_START_SEQ - 1] = Int64GetDatum(state->start_seq);
	values[RS_STATE_START_AT - 1] = TimestampTzGetDatum(state->start_at);
	nulls[RS_STATE_START_AT - 1] =
		state->start_seq >= state->next_seq || !state->window_known;
	values[RS_STATE_WINDOW_US - 1] = Int64GetDatum(state->window_us);
	nulls[RS_STATE_WINDOW_US - 1] = !state->window_known;
	values[RS_STATE_LAST_AT - 1] = TimestampTzGetDatum(state->last_at);
	nulls[RS_STATE_LAST_AT - 1] = !state->has_last;
	values[RS_STATE_CLOCK_AT - 1] = TimestampTzGetDatum(state->clock_at);
	regstack_slot_store_columns(store->state_write_slot, store->state_info,
								values, nulls);
	return store->state_write_slot;
}

/* Replace the row version at state->tid by *state; see rate_limits.h. */
TM_Result
regstack_rate_store_update(RegstackRateStore *store, const RegstackRateKey *k,
						   const RegstackRateState *state)
{
	ItemPointerData tid = state->tid;

	return regstack_heap_update(&store->state_indexes, store->state_rel, &tid,
								rate_store_state_tuple(store, k, state),
								store->snapshot);
}

/* Insert the state row of a key that has none. */
void
regstack_rate_store_insert(RegstackRateStore *store, const RegstackRateKey *k,
						   const RegstackRateState *state)
{
	regstack_heap_insert(&store->state_indexes, store->state_rel,
						 rate_store_state_tuple(store, k, state));
}

/*
 * The first event of k with seq >= from, or with backward the last event
 * of k (from is ignored), under the statement's snapshot: true and its seq
 * and time, or false when there is none.
 */
bool
regstack_rate_event_probe(RegstackRateStore *store, const RegstackRateKey *k,
						  int64 from, bool backward, int64 *seq,
						  TimestampTz *at)
{
	ScanKeyData keys[3];
	int			nkeys = backward ? 2 : 3;
	IndexScanDesc scan;
	TupleTableSlot *slot = store->event_slot;
	bool		found;

	rate_store_key_scankeys(store->events_index, k, keys);
	ScanKeyEntryInitialize(&keys[2], 0, 3, BTGreaterEqualStrategyNumber,
						   InvalidOid, InvalidOid, F_INT8GE,
						   Int64GetDatum(from));
	scan = index_beginscan(store->events_rel, store->events_index,
						   store->snapshot, NULL, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	found = index_getnext_slot(scan,
							   backward ? BackwardScanDirection : ForwardScanDirection,
							   slot);
	if (found)
	{
		Datum		values[RS_EVENT_NUM_COLS];
		bool		nulls[RS_EVENT_NUM_COLS];

		regstack_slot_fetch_columns(slot, store->events_info, values, nulls);
		*seq = DatumGetInt64(values[RS_EVENT_SEQ - 1]);
		*at = DatumGetTimestampTz(values[RS_EVENT_OCCURRED_AT - 1]);
	}
	index_endscan(scan);
	ExecClearTuple(slot);
	return found;
}

/* Record event seq of k at time at, with its index entries. */
void
regstack_rate_event_insert(RegstackRateStore *store, const RegstackRateKey *k,
						   int64 seq, TimestampTz at)
{
	Datum		values[RS_EVENT_NUM_COLS];
	bool		nulls[RS_EVENT_NUM_COLS] = {false, false, false, false};

	values[RS_EVENT_KEY - 1] = PointerGetDatum(k->key);
	values[RS_EVENT_EVENT_TYPE - 1] = PointerGetDatum(k->event_type);
	values[RS_EVENT_SEQ - 1] = Int64GetDatum(seq);
	values[RS_EVENT_OCCURRED_AT - 1] = TimestampTzGetDatum(at);
	regstack_slot_store_columns(store->event_write_slot, store->events_info,
								values, nulls);
	regstack_heap_insert(&store->event_indexes, store->events_rel,
						 store->event_write_slot);
}
