/*-------------------------------------------------------------------------
 *
 * rate_limit_store.c
 *	  Direct heap and index access to regstack.auth_rate_limit_state and
 *	  regstack.auth_rate_limit_events.
 *
 * rate_limit_check runs on every login attempt, so, as for the tokens
 * (token_store.c), its reads and writes skip SQL: a key's lane rows are
 * read through the state's primary key (key, event_type, lane), updated or
 * locked with table_tuple_update/_lock, and events are inserted with
 * table_tuple_insert plus every index entry, or probed through the events'
 * primary key (key, event_type, lane, seq).
 *
 * Reads use a dirty snapshot (SnapshotDirty): they see the rows running
 * transactions have written, which the caller counts as in flight, and
 * not those of aborted ones.  A lane row another transaction is updating
 * shows two versions, the committed one and its successor; the lanes
 * reader keeps the newest as the lane, notes the committed one, and says
 * which transaction holds the lane (regstack_rate_lanes_read()).
 *
 * What a lost race means is the caller's business (rate_limits.c): these
 * functions return the TM_Result after regstack_check_conflict() has
 * raised 40001 where UPDATE would.  The statement's MVCC snapshot, renewed
 * by regstack_rate_store_refresh(), is the one REPEATABLE READ checks use.
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
#include "access/multixact.h"
#include "access/table.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/fmgroids.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"

/*
 * The lock heap_update takes on a lane row: FOR NO KEY UPDATE, unless an
 * index a DBA added makes a column the update changes a key column (part
 * of a unique index), when it is FOR UPDATE.  A lane is locked in the same
 * mode before it is written: a stronger lock would make every update
 * record a multixact of our lock and our update.
 */
static LockTupleMode
rate_store_lane_lock(Relation state_rel)
{
	Bitmapset  *key_cols = RelationGetIndexAttrBitmap(state_rel,
													  INDEX_ATTR_BITMAP_KEY);

	for (int col = RS_STATE_NEXT_SEQ; col <= RS_STATE_NUM_COLS; col++)
		if (bms_is_member(col - FirstLowInvalidHeapAttributeNumber, key_cols))
			return LockTupleExclusive;
	return LockTupleNoKeyExclusive;
}

/*
 * Open the tables, for writing when writer names the calling function
 * (25006 in read-only transactions), else for reading.
 */
void
regstack_rate_store_open(RegstackRateStore *store, const char *writer)
{
	LOCKMODE	lockmode = writer ? RowExclusiveLock : AccessShareLock;
	Oid			state_relid = regstack_table_relid(RS_TABLE_RATE_STATE);
	Oid			events_relid = regstack_table_relid(RS_TABLE_RATE_EVENTS);

	if (writer)
		PreventCommandIfReadOnly(writer);
	store->state_rel = table_open(state_relid, lockmode);
	store->state_index = index_open(RelationGetPrimaryKeyIndex(store->state_rel),
									lockmode);
	store->events_rel = table_open(events_relid, lockmode);
	store->events_index = index_open(RelationGetPrimaryKeyIndex(store->events_rel),
									 lockmode);
	store->snapshot = NULL;
	InitDirtySnapshot(store->dirty);
	store->lane_lock = rate_store_lane_lock(store->state_rel);
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

/*
 * Open the index writers before deciding: under the decision lock a write
 * gives its tuple only the primary-key entry, without waiting, and
 * regstack_rate_store_finish_writes() the rest after it.
 */
void
regstack_rate_store_prepare_writes(RegstackRateStore *store)
{
	regstack_index_writer_open_split(&store->state_indexes, store->state_rel,
									 RelationGetRelid(store->state_index));
	regstack_index_writer_open_split(&store->event_indexes, store->events_rel,
									 RelationGetRelid(store->events_index));
}

/* After the decision lock: the index work left for then (may wait). */
void
regstack_rate_store_finish_writes(RegstackRateStore *store)
{
	regstack_index_writer_finish(&store->state_indexes);
	regstack_index_writer_finish(&store->event_indexes);
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

/*
 * Who holds a row lock of raw xmax xmax (infomask, and whether infomask2
 * has HEAP_KEYS_UPDATED): *mine when this transaction holds it in mode
 * lane_lock or stronger, under which its update of the lane goes on
 * without waiting; else *busy_xid when another running transaction holds
 * a lock that can make that update wait (FOR KEY SHARE only when the
 * update takes FOR UPDATE).  Our own weaker lock is neither: the lane is
 * locked in lane_lock mode, outside the decision lock if it must wait,
 * before it is written.
 */
static void
rate_store_locker(TransactionId xmax, uint16 infomask, bool keys_updated,
				  LockTupleMode lane_lock, bool *mine, TransactionId *busy_xid)
{
	bool		keyshare_blocks = lane_lock == LockTupleExclusive;

	if (!(infomask & HEAP_XMAX_IS_MULTI))
	{
		if (TransactionIdIsCurrentTransactionId(xmax))
			*mine = HEAP_XMAX_IS_EXCL_LOCKED(infomask) &&
				(keys_updated || !keyshare_blocks);
		else if ((keyshare_blocks || !HEAP_XMAX_IS_KEYSHR_LOCKED(infomask)) &&
				 TransactionIdIsInProgress(xmax))
			*busy_xid = xmax;
		return;
	}
	else
	{
		MultiXactMember *members;
		int			nmembers = GetMultiXactIdMembers(xmax, &members, false, true);
		bool		strong_mine = false;

		for (int i = 0; i < nmembers; i++)
		{
			MultiXactStatus status = members[i].status;

			if (TransactionIdIsCurrentTransactionId(members[i].xid))
				strong_mine |= status == MultiXactStatusForUpdate ||
					(status == MultiXactStatusForNoKeyUpdate && !keyshare_blocks);
			else if ((keyshare_blocks || status != MultiXactStatusForKeyShare) &&
					 TransactionIdIsInProgress(members[i].xid))
				*busy_xid = members[i].xid;
		}
		*mine = strong_mine && !TransactionIdIsValid(*busy_xid);
		if (nmembers > 0)
			pfree(members);
	}
}

/*
 * Classify the lane row version in store->state_slot, which the dirty
 * snapshot returned, into lanes[] (see regstack_rate_lanes_read()); returns
 * its lane number.
 */
static int16
rate_store_classify(RegstackRateStore *store, RegstackRateLane *lanes)
{
	BufferHeapTupleTableSlot *bslot = (BufferHeapTupleTableSlot *) store->state_slot;
	TupleTableSlot *slot = store->state_slot;
	HeapTupleHeader header;
	TransactionId xmin;
	bool		xmin_hinted;
	TransactionId xmax;
	TransactionId updater = InvalidTransactionId;
	uint16		infomask;
	bool		keys_updated;
	bool		moved;
	bool		xmin_mine;
	bool		xmin_running;
	bool		superseded = false;
	RegstackRateLane *lane;
	RegstackRateState *state;
	int16		lane_no;

	/* The header's transaction fields, read under the buffer's lock. */
	Assert(TTS_IS_BUFFERTUPLE(slot) && BufferIsValid(bslot->buffer));
	LockBuffer(bslot->buffer, BUFFER_LOCK_SHARE);
	header = bslot->base.tuple->t_data;
	xmin = HeapTupleHeaderGetXmin(header);
	xmin_hinted = HeapTupleHeaderXminCommitted(header);
	infomask = header->t_infomask;
	keys_updated = (header->t_infomask2 & HEAP_KEYS_UPDATED) != 0;
	xmax = HeapTupleHeaderGetRawXmax(header);
	moved = !ItemPointerEquals(&header->t_ctid, &bslot->base.tuple->t_self);
	if (!(infomask & HEAP_XMAX_INVALID) && !HEAP_XMAX_IS_LOCKED_ONLY(infomask))
		updater = HeapTupleHeaderGetUpdateXid(header);
	LockBuffer(bslot->buffer, BUFFER_LOCK_UNLOCK);

	/*
	 * The dirty snapshot returned no version of an aborted inserter, but
	 * the inserter may have aborted since: such a version is skipped.  (Its
	 * predecessor may then have been taken for superseded already, and the
	 * lane found without a newest version: the caller reads again.)
	 */
	slot_getallattrs(slot);
	lane_no = DatumGetInt16(slot->tts_values[RS_STATE_LANE - 1]);
	if (lane_no < 0 || lane_no >= REGSTACK_RATE_MAX_LANES)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("rate-limit state row has lane %d, outside 0..%d",
						lane_no, REGSTACK_RATE_MAX_LANES - 1)));
	lane = &lanes[lane_no];
	xmin_mine = !xmin_hinted && TransactionIdIsCurrentTransactionId(xmin);
	xmin_running = !xmin_hinted && !xmin_mine &&
		TransactionIdIsInProgress(xmin);
	if (!xmin_hinted && !xmin_mine && !xmin_running &&
		!TransactionIdDidCommit(xmin))
		return lane_no;
	if (TransactionIdIsValid(updater) && moved)
		superseded = TransactionIdIsCurrentTransactionId(updater) ||
			TransactionIdIsInProgress(updater) ||
			TransactionIdDidCommit(updater);

	/* A committed version: the lane's count without its holder's events. */
	if (!xmin_mine && !xmin_running &&
		(!superseded || !lane->has_committed))
	{
		lane->has_committed = true;
		lane->committed_next =
			DatumGetInt64(slot->tts_values[RS_STATE_NEXT_SEQ - 1]);
		lane->committed_tid = slot->tts_tid;
		lane->unseen = IsolationUsesXactSnapshot() &&
			XidInMVCCSnapshot(xmin, store->snapshot);
	}
	if (superseded)
	{
		lane->superseded_by = updater;
		return lane_no;
	}

	/* The newest version: the lane, and who holds it. */
	lane->exists = true;
	lane->mine = xmin_mine;
	lane->busy_xid = xmin_running ? xmin : InvalidTransactionId;
	if (TransactionIdIsValid(updater))
	{
		/* Being deleted (an update has a successor). */
		if (TransactionIdIsCurrentTransactionId(updater))
			lane->mine = true;
		else if (TransactionIdIsInProgress(updater))
			lane->busy_xid = updater;
	}
	else if (!(infomask & HEAP_XMAX_INVALID))
		rate_store_locker(xmax, infomask, keys_updated, store->lane_lock,
						  &lane->mine, &lane->busy_xid);

	state = &lane->state;
	state->lane = lane_no;
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
	return lane_no;
}

/* The lanes of k under the dirty snapshot; see regstack.h. */
int
regstack_rate_lanes_read(RegstackRateStore *store, const RegstackRateKey *k,
						 RegstackRateLane *lanes, TransactionId *wait_xid)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	int			nlanes = 0;

	bool		torn;

	*wait_xid = InvalidTransactionId;
	rate_store_key_scankeys(store->state_index, k, keys);
	scan = index_beginscan(store->state_rel, store->state_index,
						   &store->dirty, 2, 0);
	do
	{
		memset(lanes, 0, sizeof(RegstackRateLane) * REGSTACK_RATE_MAX_LANES);
		nlanes = 0;
		index_rescan(scan, keys, 2, NULL, 0);
		while (index_getnext_slot(scan, ForwardScanDirection, store->state_slot))
		{
			int			lane_no = rate_store_classify(store, lanes);

			nlanes = Max(nlanes, lane_no + 1);
		}

		/*
		 * A lane whose committed version was superseded, but whose newest
		 * version the scan did not return: its updater aborted after the
		 * committed version was classified (read again), or its new
		 * version is not reachable yet (its index entry is still to come,
		 * or it was written behind our back under another key): the caller
		 * waits for the updater, outside any lock of its own.
		 */
		torn = false;
		for (int i = 0; i < nlanes && !TransactionIdIsValid(*wait_xid); i++)
		{
			if (!lanes[i].has_committed || lanes[i].exists)
				continue;
			torn = true;
			if (TransactionIdIsInProgress(lanes[i].superseded_by))
				*wait_xid = lanes[i].superseded_by;
		}
	} while (torn && !TransactionIdIsValid(*wait_xid));
	index_endscan(scan);
	ExecClearTuple(store->state_slot);
	return nlanes;
}

/* Whether a lane the transaction snapshot sees has changed; see regstack.h. */
TM_Result
regstack_rate_lanes_changed(RegstackRateStore *store, const RegstackRateKey *k)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TM_Result	changed = TM_Ok;

	rate_store_key_scankeys(store->state_index, k, keys);
	scan = index_beginscan(store->state_rel, store->state_index,
						   store->snapshot, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (changed == TM_Ok &&
		   index_getnext_slot(scan, ForwardScanDirection, store->state_slot))
	{
		BufferHeapTupleTableSlot *bslot =
			(BufferHeapTupleTableSlot *) store->state_slot;
		HeapTupleHeader header;
		TransactionId updater = InvalidTransactionId;
		bool		moved;

		LockBuffer(bslot->buffer, BUFFER_LOCK_SHARE);
		header = bslot->base.tuple->t_data;
		if (!(header->t_infomask & HEAP_XMAX_INVALID) &&
			!HEAP_XMAX_IS_LOCKED_ONLY(header->t_infomask))
			updater = HeapTupleHeaderGetUpdateXid(header);
		moved = !ItemPointerEquals(&header->t_ctid, &bslot->base.tuple->t_self);
		LockBuffer(bslot->buffer, BUFFER_LOCK_UNLOCK);
		if (TransactionIdIsValid(updater) &&
			!TransactionIdIsCurrentTransactionId(updater) &&
			!TransactionIdIsInProgress(updater) &&
			TransactionIdDidCommit(updater))
			changed = moved ? TM_Updated : TM_Deleted;
	}
	index_endscan(scan);
	ExecClearTuple(store->state_slot);
	return changed;
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
	values[RS_STATE_LANE - 1] = Int16GetDatum(state->lane);
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
 * Replace the row version at state->tid, which this transaction holds
 * (wrote or locked), by *state; TM_Ok, or TM_Updated or TM_Deleted in READ
 * COMMITTED (40001 in REPEATABLE READ and SERIALIZABLE).
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
		regstack_index_writer_insert_primary(&store->state_indexes, slot, true);
	ExecDropSingleTupleTableSlot(slot);
	return result == TM_Ok ? result : regstack_check_conflict(result);
}

/*
 * Lock the row version at tid in store->lane_lock mode, waiting for its holder, or
 * without wait returning TM_WouldBlock when another transaction holds it;
 * other results as for update.
 */
TM_Result
regstack_rate_state_lock(RegstackRateStore *store, ItemPointer tid, bool wait)
{
	TM_FailureData tmfd;
	TM_Result	result;

	result = table_tuple_lock(store->state_rel, tid, store->snapshot,
							  store->state_slot, GetCurrentCommandId(false),
							  store->lane_lock,
							  wait ? LockWaitBlock : LockWaitSkip, 0, &tmfd);
	if (result == TM_Ok || result == TM_WouldBlock)
		return result;
	return regstack_check_conflict(result);
}

/* Insert a new lane row for k (the caller holds the key's lanes lock). */
void
regstack_rate_state_insert(RegstackRateStore *store, const RegstackRateKey *k,
						   const RegstackRateState *state)
{
	TupleTableSlot *slot = rate_store_state_slot(store, k, state);

	table_tuple_insert(store->state_rel, slot, GetCurrentCommandId(true), 0, NULL);
	regstack_index_writer_insert_primary(&store->state_indexes, slot, false);
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * The first event of lane of k with seq >= from, or with backward the last
 * event of the lane (from is ignored), under the dirty snapshot: true and
 * its seq and time, or false when there is none.
 */
bool
regstack_rate_event_probe(RegstackRateStore *store, const RegstackRateKey *k,
						  int16 lane, int64 from, bool backward,
						  int64 *seq, TimestampTz *at)
{
	ScanKeyData keys[4];
	int			nkeys = backward ? 3 : 4;
	IndexScanDesc scan;
	TupleTableSlot *slot = store->event_slot;
	bool		found;

	rate_store_key_scankeys(store->events_index, k, keys);
	ScanKeyEntryInitialize(&keys[2], 0, 3, BTEqualStrategyNumber,
						   InvalidOid, InvalidOid, F_INT2EQ,
						   Int16GetDatum(lane));
	ScanKeyEntryInitialize(&keys[3], 0, 4, BTGreaterEqualStrategyNumber,
						   InvalidOid, InvalidOid, F_INT8GE,
						   Int64GetDatum(from));
	scan = index_beginscan(store->events_rel, store->events_index,
						   &store->dirty, nkeys, 0);
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

/* Record event seq of lane of k at time at, with its index entries. */
void
regstack_rate_event_insert(RegstackRateStore *store, const RegstackRateKey *k,
						   int16 lane, int64 seq, TimestampTz at)
{
	TupleDesc	desc = RelationGetDescr(store->events_rel);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);

	ExecClearTuple(slot);
	for (int i = 0; i < desc->natts; i++)
		slot->tts_isnull[i] = (i >= RS_EVENT_NUM_COLS);
	slot->tts_values[RS_EVENT_KEY - 1] = PointerGetDatum(k->key);
	slot->tts_values[RS_EVENT_EVENT_TYPE - 1] = PointerGetDatum(k->event_type);
	slot->tts_values[RS_EVENT_LANE - 1] = Int16GetDatum(lane);
	slot->tts_values[RS_EVENT_SEQ - 1] = Int64GetDatum(seq);
	slot->tts_values[RS_EVENT_OCCURRED_AT - 1] = TimestampTzGetDatum(at);
	ExecStoreVirtualTuple(slot);

	table_tuple_insert(store->events_rel, slot, GetCurrentCommandId(true), 0, NULL);
	regstack_index_writer_insert_primary(&store->event_indexes, slot, false);
	ExecDropSingleTupleTableSlot(slot);
}
