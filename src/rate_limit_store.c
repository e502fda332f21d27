/*-------------------------------------------------------------------------
 *
 * rate_limit_store.c
 *	  Direct heap and index access to regstack.auth_rate_limit_state and
 *	  regstack.auth_rate_limit_events.
 *
 * rate_limit_check runs on every login attempt, so, as for the tokens
 * (token_store.c), its reads and writes skip SQL: the state row is found
 * through its primary key, updated or locked with table_tuple_update/_lock
 * (waiting for a concurrent writer, like UPDATE and SELECT ... FOR UPDATE),
 * and events are inserted with table_tuple_insert plus every index entry,
 * or probed through the events' primary key (key, event_type, seq).
 *
 * What a lost race means is the caller's business (rate_limits.c): these
 * functions return the TM_Result after regstack_check_conflict() has
 * raised 40001 where UPDATE would.  All reads use the store's statement
 * snapshot, renewed by regstack_rate_store_refresh().
 *
 * As in token_store.c, no permission is checked and no trigger or rule is
 * applied: callers are SQL functions an application reaches through
 * EXECUTE, and the tables are regstack's own.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"

/* Open the tables (write: for writing, 25006 in read-only transactions). */
void
regstack_rate_store_open(RegstackRateStore *store, bool write)
{
	LOCKMODE	lockmode = write ? RowExclusiveLock : AccessShareLock;
	Oid			state_relid = regstack_table_relid(RS_TABLE_RATE_STATE);
	Oid			events_relid = regstack_table_relid(RS_TABLE_RATE_EVENTS);

	if (write)
		PreventCommandIfReadOnly("rate_limit_check()");
	store->state_rel = table_open(state_relid, lockmode);
	store->state_index = index_open(RelationGetPrimaryKeyIndex(store->state_rel),
									lockmode);
	store->events_rel = table_open(events_relid, lockmode);
	store->events_index = index_open(RelationGetPrimaryKeyIndex(store->events_rel),
									 lockmode);
	store->snapshot = NULL;
	memset(&store->state_indexes, 0, sizeof(store->state_indexes));
	memset(&store->event_indexes, 0, sizeof(store->event_indexes));
	store->state_slot = table_slot_create(store->state_rel, NULL);
	store->event_slot = table_slot_create(store->events_rel, NULL);
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

/* Probe the state's primary key for k under snapshot into store->state_slot. */
static bool
rate_store_find_state(RegstackRateStore *store, const RegstackRateKey *k,
					  Snapshot snapshot)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	bool		found;

	rate_store_key_scankeys(store->state_index, k, keys);
	scan = index_beginscan(store->state_rel, store->state_index, snapshot, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, store->state_slot);
	index_endscan(scan);
	return found;
}

/* The state row of k visible to the statement snapshot, into *state. */
bool
regstack_rate_state_find(RegstackRateStore *store, const RegstackRateKey *k,
						 RegstackRateState *state)
{
	TupleTableSlot *slot = store->state_slot;

	if (!rate_store_find_state(store, k, store->snapshot))
		return false;
	slot_getallattrs(slot);
	state->next_seq = DatumGetInt64(slot->tts_values[RS_STATE_NEXT_SEQ - 1]);
	state->start_seq = DatumGetInt64(slot->tts_values[RS_STATE_START_SEQ - 1]);
	state->start_at = slot->tts_isnull[RS_STATE_START_AT - 1] ? 0 :
		DatumGetTimestampTz(slot->tts_values[RS_STATE_START_AT - 1]);
	state->window_known = !slot->tts_isnull[RS_STATE_WINDOW_US - 1];
	state->window_us = state->window_known ?
		DatumGetInt64(slot->tts_values[RS_STATE_WINDOW_US - 1]) : 0;
	state->has_last = !slot->tts_isnull[RS_STATE_LAST_AT - 1];
	state->last_at = state->has_last ?
		DatumGetTimestampTz(slot->tts_values[RS_STATE_LAST_AT - 1]) : 0;
	state->clock_at = DatumGetTimestampTz(slot->tts_values[RS_STATE_CLOCK_AT - 1]);
	state->tid = slot->tts_tid;
	return true;
}

/* Whether any transaction has committed a state row for k by now. */
bool
regstack_rate_state_committed(RegstackRateStore *store,
							  const RegstackRateKey *k)
{
	return rate_store_find_state(store, k, GetLatestSnapshot());
}

/* Fill a virtual slot of the state table with k and *state. */
static TupleTableSlot *
rate_store_state_slot(RegstackRateStore *store, const RegstackRateKey *k,
					  const RegstackRateState *state)
{
	TupleDesc	desc = RelationGetDescr(store->state_rel);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	Datum	   *values = slot->tts_values;
	bool	   *nulls = slot->tts_isnull;

	ExecClearTuple(slot);
	for (int i = 0; i < desc->natts; i++)
		nulls[i] = true;
	values[RS_STATE_KEY - 1] = PointerGetDatum(k->key);
	values[RS_STATE_EVENT_TYPE - 1] = PointerGetDatum(k->event_type);
	values[RS_STATE_NEXT_SEQ - 1] = Int64GetDatum(state->next_seq);
	values[RS_STATE_START_SEQ - 1] = Int64GetDatum(state->start_seq);
	values[RS_STATE_START_AT - 1] = TimestampTzGetDatum(state->start_at);
	values[RS_STATE_WINDOW_US - 1] = Int64GetDatum(state->window_us);
	values[RS_STATE_LAST_AT - 1] = TimestampTzGetDatum(state->last_at);
	values[RS_STATE_CLOCK_AT - 1] = TimestampTzGetDatum(state->clock_at);
	for (int col = RS_STATE_KEY; col <= RS_STATE_NUM_COLS; col++)
		nulls[col - 1] = false;
	nulls[RS_STATE_START_AT - 1] =
		state->start_seq >= state->next_seq || !state->window_known;
	nulls[RS_STATE_WINDOW_US - 1] = !state->window_known;
	nulls[RS_STATE_LAST_AT - 1] = !state->has_last;
	return ExecStoreVirtualTuple(slot);
}

/*
 * Whether the state row version regstack_rate_state_find() just found is
 * being changed (updated, deleted or locked) by another transaction that
 * is still running: a hint for queueing (rate_limits.c), read under the
 * buffer's share lock.  A multixact or a key-share lock counts as not
 * busy, so that such a row is waited for as UPDATE would, without queueing.
 */
bool
regstack_rate_state_busy(RegstackRateStore *store)
{
	BufferHeapTupleTableSlot *slot = (BufferHeapTupleTableSlot *) store->state_slot;
	HeapTupleHeader header;
	uint16		infomask;
	TransactionId xmax;

	Assert(TTS_IS_BUFFERTUPLE(store->state_slot) && BufferIsValid(slot->buffer));
	LockBuffer(slot->buffer, BUFFER_LOCK_SHARE);
	header = slot->base.tuple->t_data;
	infomask = header->t_infomask;
	xmax = HeapTupleHeaderGetRawXmax(header);
	LockBuffer(slot->buffer, BUFFER_LOCK_UNLOCK);

	if (infomask & (HEAP_XMAX_INVALID | HEAP_XMAX_COMMITTED | HEAP_XMAX_IS_MULTI))
		return false;
	if (HEAP_XMAX_IS_LOCKED_ONLY(infomask) && HEAP_XMAX_IS_KEYSHR_LOCKED(infomask))
		return false;
	return !TransactionIdIsCurrentTransactionId(xmax) &&
		TransactionIdIsInProgress(xmax);
}

/* Let go of the row version found (its buffer pin) before sleeping. */
void
regstack_rate_state_release(RegstackRateStore *store)
{
	ExecClearTuple(store->state_slot);
}

/*
 * Replace the row version at state->tid by *state, waiting for a concurrent
 * writer; TM_Ok, or TM_Updated/TM_Deleted in READ COMMITTED (40001 in
 * REPEATABLE READ and SERIALIZABLE).
 */
TM_Result
regstack_rate_state_update(RegstackRateStore *store, const RegstackRateKey *k,
						   const RegstackRateState *state)
{
	TupleTableSlot *slot = rate_store_state_slot(store, k, state);
	ItemPointerData tid = state->tid;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	bool		update_indexes;
	TM_Result	result;

	result = table_tuple_update(store->state_rel, &tid, slot,
								GetCurrentCommandId(true), store->snapshot,
								InvalidSnapshot, true, &tmfd, &lockmode,
								&update_indexes);
	if (result == TM_Ok && update_indexes)
		regstack_index_writer_insert(&store->state_indexes, store->state_rel,
									 slot, true);
	ExecDropSingleTupleTableSlot(slot);
	return result == TM_Ok ? result : regstack_check_conflict(result);
}

/* Lock the row version at state->tid FOR UPDATE; results as for update. */
TM_Result
regstack_rate_state_lock(RegstackRateStore *store, const RegstackRateState *state)
{
	ItemPointerData tid = state->tid;
	TM_FailureData tmfd;
	TM_Result	result;

	result = table_tuple_lock(store->state_rel, &tid, store->snapshot,
							  store->state_slot, GetCurrentCommandId(false),
							  LockTupleExclusive, LockWaitBlock, 0, &tmfd);
	return result == TM_Ok ? result : regstack_check_conflict(result);
}

/* Insert a new state row for k (the caller holds the key's creation lock). */
void
regstack_rate_state_insert(RegstackRateStore *store, const RegstackRateKey *k,
						   const RegstackRateState *state)
{
	TupleTableSlot *slot = rate_store_state_slot(store, k, state);

	table_tuple_insert(store->state_rel, slot, GetCurrentCommandId(true), 0, NULL);
	regstack_index_writer_insert(&store->state_indexes, store->state_rel,
								 slot, false);
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * The first event of k with seq >= from, or with backward the last event
 * of k (from is ignored): true and its seq and time, or false when there
 * is none.
 */
bool
regstack_rate_event_probe(RegstackRateStore *store, const RegstackRateKey *k,
						  int64 from, bool backward,
						  int64 *seq, TimestampTz *at)
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
						   store->snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	found = index_getnext_slot(scan,
							   backward ? BackwardScanDirection : ForwardScanDirection,
							   slot);
	if (found)
	{
		bool		isnull;

		*seq = DatumGetInt64(slot_getattr(slot, RS_EVENT_SEQ, &isnull));
		*at = DatumGetTimestampTz(slot_getattr(slot, RS_EVENT_OCCURRED_AT, &isnull));
	}
	index_endscan(scan);
	return found;
}

/* Record event seq of k at time at, with its index entries. */
void
regstack_rate_event_insert(RegstackRateStore *store, const RegstackRateKey *k,
						   int64 seq, TimestampTz at)
{
	TupleDesc	desc = RelationGetDescr(store->events_rel);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);

	ExecClearTuple(slot);
	for (int i = 0; i < desc->natts; i++)
		slot->tts_isnull[i] = (i >= RS_EVENT_NUM_COLS);
	slot->tts_values[RS_EVENT_KEY - 1] = PointerGetDatum(k->key);
	slot->tts_values[RS_EVENT_EVENT_TYPE - 1] = PointerGetDatum(k->event_type);
	slot->tts_values[RS_EVENT_SEQ - 1] = Int64GetDatum(seq);
	slot->tts_values[RS_EVENT_OCCURRED_AT - 1] = TimestampTzGetDatum(at);
	ExecStoreVirtualTuple(slot);

	table_tuple_insert(store->events_rel, slot, GetCurrentCommandId(true), 0, NULL);
	regstack_index_writer_insert(&store->event_indexes, store->events_rel,
								 slot, false);
	ExecDropSingleTupleTableSlot(slot);
}
