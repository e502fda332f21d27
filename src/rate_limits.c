/*-------------------------------------------------------------------------
 *
 * rate_limits.c
 *	  Exact sliding-window rate limits: rate_limit_check, rate_limit_record,
 *	  rate_limit_reset, and the purge step for their rows.
 *
 * Semantics.  An event of (key, event_type) recorded at time e counts at
 * time t when t - within < e, i.e. while it is less than within old.  A
 * check at time t is allowed when fewer than max_events events count.  A
 * window is a fixed number of microseconds: a day is 24 hours and a month
 * 30 days, as in interval comparison, so that "e + within" is exactly when
 * an event stops counting.
 *
 * Data: lanes.  A key's events are kept in one or more lanes.  A lane is a
 * row of regstack.auth_rate_limit_state (key, event_type, lane) with its
 * own numbered event log in regstack.auth_rate_limit_events and a pointer
 * to the first event inside the window, so that a lane's count is
 * next_seq - start_seq and no rows are counted (rate_limit_window.c).  A
 * lane is written by one transaction at a time: a recording call updates
 * its row and inserts the event, and holds the row until it commits.  A
 * key starts with lane 0 and gets another lane only when a call finds
 * every lane held by other running transactions (up to
 * regstack.rate_limit_lanes), so that calls on a hot key need not wait for
 * each other's commits: their WAL flushes overlap.  If a transaction rolls
 * back, its lane row and events go with it, and each lane's log stays
 * numbered without gaps.
 *
 * Deciding (rate_limits_decide).  A call takes the key's decision lock
 * (class REGSTACK_LOCK_CLASS_RATE_DECIDE: a session-level advisory lock it
 * releases as soon as it has decided and written, never held across a
 * commit), reads every lane with a dirty snapshot, and counts the events
 * inside the window: committed ones (and its own transaction's) and, apart,
 * those of running transactions (in flight), which the dirty snapshot
 * sees.  Under the decision lock every earlier decision on the key is
 * visible, committed or in flight, so:
 *   - committed >= max_events: denied; nothing written, nothing held;
 *   - committed + in flight < max_events: allowed, whatever the running
 *     transactions then do;
 *   - in between: the call depends on whether they commit, so it waits for
 *     one of them (outside the decision lock) and decides again.
 * Each decision is therefore the one a serial order would give, as when a
 * single row serialized the calls, but only a call near the limit waits.
 * An allowed call writes to a lane its transaction already holds, else a
 * free one, else a new one (taking the key's lanes lock in share mode,
 * class REGSTACK_LOCK_CLASS_RATE_KEY, to the end of the transaction); when
 * every lane is held and no more may be added, it waits for the holder of
 * one.  Nothing waits while holding the decision lock: a free lane is
 * locked without waiting before it is updated (one that a reset, a purge
 * or a check took meanwhile is locked, waiting, outside the decision lock,
 * and the call decides again).
 *
 * Checks with record => false lock the key, so that check, verify and
 * record in one transaction are atomic: they take the key's lanes lock in
 * exclusive mode (no lane can be added) and lock every lane row (in the
 * mode a lane update takes), waiting for their holders, to the end of the transaction; then
 * every event counted is committed or their own.
 *
 * Isolation.  In REPEATABLE READ and SERIALIZABLE, a call on a key whose
 * lanes a committed transaction changed after the transaction's snapshot
 * (updated, made or deleted one) raises a serialization failure (40001)
 * instead of deciding on counts the snapshot does not show.  Lanes that
 * running transactions hold are counted as in flight, as in READ
 * COMMITTED.
 *
 * All locks are transaction-scoped or released before the call returns:
 * nothing survives the transaction, so this works behind PgBouncer in
 * transaction mode.
 *
 * Time.  A call reads the system clock (GetCurrentTimestamp, not
 * transaction time) under the decision lock and judges the window at
 * now = max(clock, the lanes' clock_at): the key's clock never goes back,
 * so occurred_at is monotonic along each lane's seq, and in decision order
 * over the key, even if the system clock steps back.  The guarantee is
 * stated on the stamps: in the event log, no window of length within ever
 * holds more than max_events events of a key (each allowed call counted
 * the events stamped within its own stamp's window).  retry_after counts
 * from the system clock.
 *
 * Purge deletes events older than their policy's window (or than
 * regstack.event_retention without a policy) plus a margin, and lane rows
 * whose newest event is that old.  A lane row made again later starts
 * after any leftover events of its lane (next_seq = max(seq) + 1), with its
 * pointer unknown, so the first call searches for the window; while lane 0
 * has no row, its leftover events are counted all the same.
 *
 * rate_limit_reset and the purge run their SQL inside regstack_begin_call().
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(regstack_rate_limit_check);
PG_FUNCTION_INFO_V1(regstack_rate_limit_record);
PG_FUNCTION_INFO_V1(regstack_rate_limit_reset);

/* Longest window accepted (and allowed by the policies' CHECK). */
#define RATE_LIMITS_MAX_WINDOW_DAYS		(100 * 12 * 30)

/*
 * Purge keeps events this much longer than their window, so that a call in
 * flight, whose clock was read a moment before purge read its own, never
 * finds an event it counts already gone.
 */
#define RATE_LIMITS_PURGE_MARGIN		(60 * USECS_PER_SEC)

/* Filled in by regstack_rate_limits_define_settings(). */
static int	rate_limits_event_retention = SECS_PER_DAY;
static int	rate_limits_max_lanes = 16;

#define RATE_LIMITS_KEY_QUAL \
	" key OPERATOR(pg_catalog.=) $1 AND event_type OPERATOR(pg_catalog.=) $2"

/* Define regstack.event_retention and regstack.rate_limit_lanes. */
void
regstack_rate_limits_define_settings(void)
{
	DefineCustomIntVariable("regstack.event_retention",
							"How long rate-limit events of event types without a policy are kept.",
							"purge_expired() and the reaper delete such events once they are "
							"older than this; events of a type with a policy are kept for the "
							"policy's window.",
							&rate_limits_event_retention,
							SECS_PER_DAY, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("regstack.rate_limit_lanes",
							"How many lanes one rate-limit key may have.",
							"A key gets another lane when a recording call finds every lane "
							"held by other running transactions; with 1, calls on one key "
							"wait for each other's commits.",
							&rate_limits_max_lanes,
							16, 1, REGSTACK_RATE_MAX_LANES,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
}

/* A window as microseconds; see regstack.h. */
int64
regstack_rate_limit_window_us(const Interval *within, const char *name)
{
	Interval	zero = {0};
	Interval	longest = {0};
	int64		days_us;
	int64		result;

	longest.day = RATE_LIMITS_MAX_WINDOW_DAYS;
	if (!regstack_interval_lt(&zero, within))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a positive interval", name)));
	if (regstack_interval_lt(&longest, within))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not exceed 100 years", name)));
	/* Within those bounds only the parts can overflow, not the sum. */
	if (pg_mul_s64_overflow((int64) within->month * DAYS_PER_MONTH +
							within->day, USECS_PER_DAY, &days_us) ||
		pg_add_s64_overflow(days_us, within->time, &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", name)));
	return result;
}

/* ---- deciding a call ---- */

/* What a call is asked to do. */
typedef enum RateLimitMode
{
	RATE_LIMITS_CHECK_RECORD,	/* rate_limit_check(record => true) */
	RATE_LIMITS_CHECK_ONLY,		/* rate_limit_check(record => false) */
	RATE_LIMITS_RECORD			/* rate_limit_record() */
} RateLimitMode;

/* The result of a check. */
typedef struct RateLimitOutcome
{
	bool		allowed;
	int32		remaining;
	Interval   *retry_after;
	TimestampTz reset_at;
} RateLimitOutcome;

/* A key's lanes, and what a call counts in each. */
typedef struct RateLimitView
{
	int			nlanes;			/* lanes[0 .. nlanes - 1] were read */
	RegstackRateLane lanes[REGSTACK_RATE_MAX_LANES];
	bool		lane0_leftover; /* lane 0 has no row but events, which
								 * lanes[0].state describes */
	int64		committed[REGSTACK_RATE_MAX_LANES]; /* inside the window:
													 * committed or ours */
	int64		inflight[REGSTACK_RATE_MAX_LANES];	/* ... of running
													 * transactions */
	int64		total_committed;
	int64		total_inflight;
	TimestampTz clock;			/* the system clock */
	TimestampTz now_ts;			/* the key's clock: never goes back */
	TransactionId wait_xid;		/* valid: a lane was caught between two
								 * versions; wait for this, read again */
} RateLimitView;

/* How one attempt under the decision lock ended. */
typedef enum RateLimitStep
{
	RATE_LIMITS_DONE,			/* decided, and written if allowed */
	RATE_LIMITS_WAIT_XID,		/* wait for transaction wait_xid, again */
	RATE_LIMITS_WAIT_KEY,		/* wait for the key's lanes lock, again */
	RATE_LIMITS_WAIT_ROW,		/* lock the lane row at wait_tid, again */
	RATE_LIMITS_AGAIN			/* the lane row changed meanwhile: again */
} RateLimitStep;

/* Whole seconds from now until until, rounded up, as an interval. */
static Interval *
rate_limits_seconds_until(TimestampTz until, TimestampTz now_ts)
{
	Interval   *result = palloc0(sizeof(Interval));
	int64		usecs = until - now_ts;

	if (usecs > 0)
		result->time = ((usecs + USECS_PER_SEC - 1) / USECS_PER_SEC) *
			USECS_PER_SEC;
	return result;
}

/* Whether lanes[i] holds events the view counts (a row, or lane 0's leftovers). */
static inline bool
rate_limits_lane_counts(const RateLimitView *view, int i)
{
	return view->lanes[i].exists || (i == 0 && view->lane0_leftover);
}

/*
 * Read k's lanes into *view with a new statement snapshot and the clock,
 * and, with count, each lane's events inside a window of window_us ending
 * at the key's clock, split into committed (or ours) and in flight.  With
 * view->wait_xid set, the read is incomplete: wait for it, read again.
 */
static void
rate_limits_read(RegstackRateStore *store, const RegstackRateKey *k,
				 RateLimitView *view, bool count, int64 window_us)
{
	TimestampTz key_clock = 0;

	regstack_rate_store_refresh(store);
	view->nlanes = regstack_rate_lanes_read(store, k, view->lanes,
											&view->wait_xid);
	if (TransactionIdIsValid(view->wait_xid))
		return;
	if (IsolationUsesXactSnapshot())
	{
		TM_Result	changed = regstack_rate_lanes_changed(store, k);

		for (int i = 0; i < view->nlanes; i++)
			if (view->lanes[i].unseen)
				changed = TM_Updated;
		if (changed != TM_Ok)
			(void) regstack_check_conflict(changed);
	}
	view->clock = GetCurrentTimestamp();

	/* Lane 0 without a row: events left over from a purged one count. */
	view->lane0_leftover = false;
	if (!view->lanes[0].exists &&
		regstack_rate_window_new_lane(store, k, 0, view->clock,
									  &view->lanes[0].state))
	{
		view->lane0_leftover = true;
		view->lanes[0].has_committed = true;
		view->lanes[0].committed_next = view->lanes[0].state.next_seq;
		view->nlanes = Max(view->nlanes, 1);
	}

	for (int i = 0; i < view->nlanes; i++)
		if (rate_limits_lane_counts(view, i))
			key_clock = Max(key_clock, view->lanes[i].state.clock_at);
	view->now_ts = Max(view->clock, key_clock);

	view->total_committed = 0;
	view->total_inflight = 0;
	for (int i = 0; i < view->nlanes; i++)
	{
		RegstackRateLane *lane = &view->lanes[i];
		RegstackRateState *state = &lane->state;
		int64		total;
		int64		committed;

		view->committed[i] = 0;
		view->inflight[i] = 0;
		if (!count || !rate_limits_lane_counts(view, i))
			continue;
		(void) regstack_rate_window_advance(store, k, state, window_us,
											view->now_ts);
		total = state->next_seq - state->start_seq;
		if (lane->mine || !TransactionIdIsValid(lane->busy_xid))
			committed = total;
		else if (lane->has_committed)
			committed = Max(Min(total, lane->committed_next - state->start_seq), 0);
		else
			committed = 0;
		view->committed[i] = committed;
		view->inflight[i] = total - committed;
		view->total_committed += committed;
		view->total_inflight += total - committed;
	}
}

/*
 * The lane an allowed call writes to: one this transaction holds, else a
 * free one, else (*create) a new one while fewer than
 * regstack.rate_limit_lanes exist; -1 when every lane is held.
 */
static int
rate_limits_target(const RateLimitView *view, bool *create)
{
	int			free_lane = -1;
	int			missing = -1;

	*create = false;
	for (int i = 0; i < view->nlanes; i++)
	{
		const RegstackRateLane *lane = &view->lanes[i];

		if (!lane->exists)
		{
			if (missing < 0)
				missing = i;
		}
		else if (lane->mine)
			return i;
		else if (free_lane < 0 && !TransactionIdIsValid(lane->busy_xid))
			free_lane = i;
	}
	if (free_lane >= 0)
		return free_lane;
	if (missing < 0)
		missing = view->nlanes;
	if (missing >= rate_limits_max_lanes)
		return -1;
	*create = true;
	return missing;
}

/* When a call on the counted events is allowed again, and the window empties. */
static void
rate_limits_deny(RegstackRateStore *store, const RegstackRateKey *k,
				 const RateLimitView *view, int32 max_events,
				 int64 window_us, RateLimitOutcome *out)
{
	int64		rank = view->total_committed - max_events;
	int64		lo[REGSTACK_RATE_MAX_LANES];
	int64		hi[REGSTACK_RATE_MAX_LANES];
	TimestampTz oldest = 0;
	TimestampTz newest = 0;
	bool		first = true;

	/*
	 * It is allowed again once the count drops below max_events, i.e. when
	 * the rank-th oldest committed event leaves the window.
	 */
	for (int i = 0; i < view->nlanes; i++)
	{
		const RegstackRateState *state = &view->lanes[i].state;

		lo[i] = state->start_seq;
		hi[i] = state->start_seq + view->committed[i];
		if (view->committed[i] > 0 && (first || state->start_at < oldest))
		{
			oldest = state->start_at;
			first = false;
		}
		if (view->committed[i] + view->inflight[i] > 0)
			newest = Max(newest, state->last_at);
	}
	if (rank > 0)
		oldest = regstack_rate_window_select(store, k, view->nlanes, lo, hi,
											 rank);
	out->allowed = false;
	out->remaining = 0;
	/* From the system clock, so that waiting it out always succeeds. */
	out->retry_after = rate_limits_seconds_until(oldest + window_us,
												 view->clock);
	out->reset_at = newest + window_us;
}

/*
 * One attempt at a recording call, under k's decision lock: read, decide,
 * and write when allowed (see the file header).  Returns DONE with *out
 * filled in, or what to wait for before the next attempt.
 */
static RateLimitStep
rate_limits_attempt(RegstackRateStore *store, const RegstackRateKey *k,
					const char *key, const char *type, RateLimitMode mode,
					int32 max_events, int64 window_us, RateLimitView *view,
					RateLimitOutcome *out, TransactionId *wait_xid,
					ItemPointer wait_tid)
{
	bool		create;
	int			target;
	RegstackRateState *state;
	int64		seq;

	rate_limits_read(store, k, view, mode != RATE_LIMITS_RECORD, window_us);
	if (TransactionIdIsValid(view->wait_xid))
	{
		*wait_xid = view->wait_xid;
		return RATE_LIMITS_WAIT_XID;
	}
	if (mode == RATE_LIMITS_CHECK_RECORD)
	{
		/* Denied from committed data: write nothing, hold nothing. */
		if (view->total_committed >= max_events)
		{
			rate_limits_deny(store, k, view, max_events, window_us, out);
			return RATE_LIMITS_DONE;
		}
		/* Depends on whether running transactions commit: wait for one. */
		if (view->total_committed + view->total_inflight >= max_events)
		{
			for (int i = 0; i < view->nlanes; i++)
				if (view->inflight[i] > 0)
				{
					*wait_xid = view->lanes[i].busy_xid;
					break;
				}
			return RATE_LIMITS_WAIT_XID;
		}
	}

	target = rate_limits_target(view, &create);
	if (target < 0)
	{
		/*
		 * Every lane is held, and no more may be added: wait for the holder
		 * of one, picked by process id so that waiters spread over them.
		 */
		for (int i = 0; i < view->nlanes; i++)
		{
			RegstackRateLane *lane =
				&view->lanes[(MyProcPid + i) % view->nlanes];

			if (lane->exists && TransactionIdIsValid(lane->busy_xid))
			{
				*wait_xid = lane->busy_xid;
				break;
			}
		}
		return RATE_LIMITS_WAIT_XID;
	}
	state = &view->lanes[target].state;
	if (create)
	{
		if (!regstack_lock_key(REGSTACK_LOCK_CLASS_RATE_KEY, key, type,
							   ShareLock, false, false))
			return RATE_LIMITS_WAIT_KEY;
		if (!(target == 0 && view->lane0_leftover))
			(void) regstack_rate_window_new_lane(store, k, target,
												 view->now_ts, state);
	}

	seq = regstack_rate_window_append(state, view->now_ts);
	if (create)
		regstack_rate_state_insert(store, k, state);
	else
	{
		TM_Result	result = TM_Ok;

		/*
		 * A free lane is first locked without waiting (heap_update cannot
		 * be asked not to wait): nothing may wait under the decision lock.
		 * If a reset, a purge or a check took it meanwhile, lock it,
		 * waiting, outside the decision lock, and decide again.
		 */
		if (!view->lanes[target].mine)
			result = regstack_rate_state_lock(store, &state->tid, false);
		if (result == TM_WouldBlock)
		{
			*wait_tid = state->tid;
			return RATE_LIMITS_WAIT_ROW;
		}
		if (result == TM_Ok)
			result = regstack_rate_state_update(store, k, state);
		if (result != TM_Ok)
			return RATE_LIMITS_AGAIN;
	}
	regstack_rate_event_insert(store, k, target, seq, view->now_ts);

	out->allowed = true;
	out->remaining = mode == RATE_LIMITS_RECORD ? 0 :
		(int32) (max_events -
				 (view->total_committed + view->total_inflight + 1));
	out->retry_after = rate_limits_seconds_until(0, 0);
	/* Our event is the key's newest. */
	out->reset_at = view->now_ts + window_us;
	return RATE_LIMITS_DONE;
}

/*
 * rate_limits_attempt() under k's decision lock, which is released however
 * the attempt ends.
 */
static RateLimitStep
rate_limits_attempt_locked(RegstackRateStore *store, const RegstackRateKey *k,
						   const char *key, const char *type,
						   RateLimitMode mode, int32 max_events,
						   int64 window_us, RateLimitView *view,
						   RateLimitOutcome *out, TransactionId *wait_xid,
						   ItemPointer wait_tid)
{
	RateLimitStep step;

	regstack_rate_decide_lock(key, type);
	PG_TRY();
	{
		step = rate_limits_attempt(store, k, key, type, mode, max_events,
								   window_us, view, out, wait_xid, wait_tid);
	}
	PG_CATCH();
	{
		regstack_rate_decide_unlock(key, type, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	regstack_rate_decide_unlock(key, type, false);
	return step;
}

/*
 * A recording call (rate_limit_check with record => true, or
 * rate_limit_record) on k: attempts under the key's decision lock, with
 * the waits they ask for in between.
 */
static void
rate_limits_decide(const RegstackRateKey *k, RateLimitMode mode,
				   int32 max_events, int64 window_us, RateLimitOutcome *out)
{
	RegstackRateStore store;
	RateLimitView *view = palloc(sizeof(RateLimitView));
	char	   *key = text_to_cstring(k->key);
	char	   *type = text_to_cstring(k->event_type);
	RateLimitStep step;

	regstack_rate_store_open(&store, mode == RATE_LIMITS_RECORD ?
							 "rate_limit_record()" : "rate_limit_check()");
	regstack_rate_store_prepare_writes(&store);
	do
	{
		TransactionId wait_xid = InvalidTransactionId;
		ItemPointerData wait_tid;

		step = rate_limits_attempt_locked(&store, k, key, type, mode,
										  max_events, window_us, view, out,
										  &wait_xid, &wait_tid);
		regstack_rate_store_finish_writes(&store);
		if (step == RATE_LIMITS_WAIT_XID && TransactionIdIsValid(wait_xid))
			XactLockTableWait(wait_xid, NULL, NULL, XLTW_None);
		else if (step == RATE_LIMITS_WAIT_KEY)
			(void) regstack_lock_key(REGSTACK_LOCK_CLASS_RATE_KEY, key, type,
									 ShareLock, false, true);
		else if (step == RATE_LIMITS_WAIT_ROW)
			(void) regstack_rate_state_lock(&store, &wait_tid, true);
		CHECK_FOR_INTERRUPTS();
	} while (step != RATE_LIMITS_DONE);
	regstack_rate_store_close(&store);
	pfree(view);
}

/*
 * A check with record => false on k: hold the key (its lanes lock in
 * exclusive mode, then every lane row) to the end of the transaction, and
 * count what is then all committed or ours.
 */
static void
rate_limits_check_only(const RegstackRateKey *k, int32 max_events,
					   int64 window_us, RateLimitOutcome *out)
{
	RegstackRateStore store;
	RateLimitView *view = palloc(sizeof(RateLimitView));
	ItemPointerData locked[REGSTACK_RATE_MAX_LANES];	/* versions we locked */

	for (int i = 0; i < REGSTACK_RATE_MAX_LANES; i++)
		ItemPointerSetInvalid(&locked[i]);
	regstack_rate_store_open(&store, "rate_limit_check()");
	regstack_xact_lock(REGSTACK_LOCK_CLASS_RATE_KEY, text_to_cstring(k->key),
					   text_to_cstring(k->event_type));
	for (;;)
	{
		int			held = -1;

		rate_limits_read(&store, k, view, true, window_us);
		if (TransactionIdIsValid(view->wait_xid))
		{
			XactLockTableWait(view->wait_xid, NULL, NULL, XLTW_None);
			continue;
		}
		for (int i = 0; i < view->nlanes && held < 0; i++)
			if (view->lanes[i].exists && !view->lanes[i].mine &&
				!ItemPointerEquals(&view->lanes[i].state.tid, &locked[i]))
				held = i;
		if (held < 0)
			break;
		/* Lock the committed version, waiting for whoever changes it. */
		if (view->lanes[held].has_committed &&
			regstack_rate_state_lock(&store, &view->lanes[held].committed_tid,
									 true) == TM_Ok)
			locked[held] = view->lanes[held].committed_tid;
		else if (TransactionIdIsValid(view->lanes[held].busy_xid))
			XactLockTableWait(view->lanes[held].busy_xid, NULL, NULL,
							  XLTW_None);
		CHECK_FOR_INTERRUPTS();
	}

	if (view->total_committed >= max_events)
		rate_limits_deny(&store, k, view, max_events, window_us, out);
	else
	{
		TimestampTz newest = 0;

		for (int i = 0; i < view->nlanes; i++)
			if (view->committed[i] > 0)
				newest = Max(newest, view->lanes[i].state.last_at);
		out->allowed = true;
		out->remaining = (int32) (max_events - view->total_committed);
		out->retry_after = rate_limits_seconds_until(0, 0);
		out->reset_at = view->total_committed > 0 ? newest + window_us :
			view->now_ts;
	}
	regstack_rate_store_close(&store);
	pfree(view);
}

/* ---- SQL functions ---- */

/* The key and event_type arguments, checked (22004, 22023, 22001). */
static void
rate_limits_key_args(FunctionCallInfo fcinfo, RegstackRateKey *k,
					 char **event_type)
{
	k->key = regstack_text_arg(fcinfo, 0, "key", REGSTACK_MAX_RATE_KEY_BYTES,
							   true);
	k->event_type = regstack_text_arg(fcinfo, 1, "event_type",
									  NAMEDATALEN - 1, true);
	if (event_type)
		*event_type = text_to_cstring(k->event_type);
}

/*
 * rate_limit_check(key, event_type, max_events, within, record): whether a
 * call is allowed now; an allowed call records its event unless record is
 * false.  Returns allowed, remaining, retry_after, reset_at.
 */
Datum
regstack_rate_limit_check(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RegstackRateKey k;
	char	   *event_type;
	bool		have_max = !PG_ARGISNULL(2);
	int32		max_events = have_max ? PG_GETARG_INT32(2) : 0;
	Interval   *within;
	bool		record;
	int64		window_us = 0;
	RateLimitOutcome outcome;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	rate_limits_key_args(fcinfo, &k, &event_type);
	if (have_max && max_events <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be positive"),
				 errdetail("The value given was %d.", max_events)));
	within = regstack_interval_arg(fcinfo, 3, "within");
	if (within)
		window_us = regstack_rate_limit_window_us(within, "within");
	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("record must not be null")));
	record = PG_GETARG_BOOL(4);

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	/* Missing numbers come from the event type's policy. */
	if (!have_max || within == NULL)
	{
		const RegstackRateLimitPolicy *policy =
			regstack_rate_limit_policy(event_type);

		if (policy == NULL && (have_max || within != NULL))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s is required: event type \"%s\" has no rate-limit policy",
							have_max ? "within" : "max_events", event_type),
					 errhint("Pass both max_events and within, or add a row to regstack.rate_limit_policies.")));
		if (policy == NULL)
		{
			char	   *known = regstack_rate_limit_policy_names();

			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("no rate-limit policy for event type \"%s\"",
							event_type),
					 *known ?
					 errhint("Pass max_events and within, or add a row to regstack.rate_limit_policies.  Event types with a policy: %s.",
							 known) :
					 errhint("Pass max_events and within, or add a row to regstack.rate_limit_policies.")));
		}
		if (!have_max)
			max_events = policy->max_events;
		if (within == NULL)
			window_us = policy->within_us;
	}

	if (record)
		rate_limits_decide(&k, RATE_LIMITS_CHECK_RECORD, max_events,
						   window_us, &outcome);
	else
		rate_limits_check_only(&k, max_events, window_us, &outcome);

	values[0] = BoolGetDatum(outcome.allowed);
	values[1] = Int32GetDatum(outcome.remaining);
	values[2] = IntervalPGetDatum(outcome.retry_after);
	values[3] = TimestampTzGetDatum(outcome.reset_at);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/* rate_limit_record(key, event_type): record one event unconditionally. */
Datum
regstack_rate_limit_record(PG_FUNCTION_ARGS)
{
	RegstackRateKey k;
	RateLimitOutcome outcome;

	rate_limits_key_args(fcinfo, &k, NULL);
	rate_limits_decide(&k, RATE_LIMITS_RECORD, 0, 0, &outcome);
	PG_RETURN_VOID();
}

/*
 * rate_limit_reset(key, event_type): forget the events of a key, of one
 * event type or of all; returns how many events were deleted.
 */
Datum
regstack_rate_limit_reset(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr state_plan[2] = {NULL, NULL};
	static SPIPlanPtr events_plan[2] = {NULL, NULL};
	static const Oid reset_argtypes[2] = {TEXTOID, TEXTOID};
	text	   *key = regstack_text_arg(fcinfo, 0, "key",
										REGSTACK_MAX_RATE_KEY_BYTES, true);
	text	   *type = regstack_text_arg(fcinfo, 1, "event_type",
										 NAMEDATALEN - 1, false);
	int			one = (type != NULL) ? 1 : 0;
	RegstackCall call;
	Datum		values[2];
	uint64		deleted;

	values[0] = PointerGetDatum(key);
	values[1] = PointerGetDatum(type);

	PreventCommandIfReadOnly("rate_limit_reset()");
	regstack_begin_call(&call);

	/*
	 * Delete the state rows first: that waits for calls holding them, and
	 * the next statement's fresh snapshot then sees their events.
	 */
	regstack_plan(&state_plan[one],
				  one ?
				  "DELETE FROM regstack.auth_rate_limit_state"
				  " WHERE" RATE_LIMITS_KEY_QUAL :
				  "DELETE FROM regstack.auth_rate_limit_state"
				  " WHERE key OPERATOR(pg_catalog.=) $1",
				  one + 1, reset_argtypes);
	if (SPI_execute_plan(state_plan[one], values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not reset rate-limit state");
	regstack_plan(&events_plan[one],
				  one ?
				  "DELETE FROM regstack.auth_rate_limit_events"
				  " WHERE" RATE_LIMITS_KEY_QUAL :
				  "DELETE FROM regstack.auth_rate_limit_events"
				  " WHERE key OPERATOR(pg_catalog.=) $1",
				  one + 1, reset_argtypes);
	if (SPI_execute_plan(events_plan[one], values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not reset rate-limit events");
	deleted = SPI_processed;

	regstack_end_call(&call);
	PG_RETURN_INT64((int64) deleted);
}

/* ---- purge ---- */

/*
 * The purge statements: delete up to $1 rows past their cutoff ($2, $3: the
 * event types with a policy and their cutoffs; $4: the cutoff of all other
 * types) with ctid after $5, skipping rows others have locked; return how
 * many and the last ctid deleted.  A lane row goes once its newest event
 * is past the cutoff.
 */
#define RATE_LIMITS_PURGE_SQL(table, alias, stamp) \
	"WITH deleted AS (" \
	" DELETE FROM regstack." table \
	" WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(" \
	"   SELECT " alias ".ctid FROM regstack." table " " alias \
	"   LEFT JOIN ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3))" \
	"     AS p(event_type, cutoff)" \
	"     ON p.event_type OPERATOR(pg_catalog.=) " alias ".event_type" \
	"   WHERE " alias ".ctid OPERATOR(pg_catalog.>) $5" \
	"     AND " stamp " OPERATOR(pg_catalog.<=) COALESCE(p.cutoff, $4)" \
	"   LIMIT $1 FOR UPDATE OF " alias " SKIP LOCKED))" \
	" RETURNING ctid)" \
	" SELECT pg_catalog.count(*), pg_catalog.max(ctid) FROM deleted"

/* A purge of rate-limit rows that starts at the beginning of both tables. */
void
regstack_purge_cursor_init(RegstackPurgeCursor *cursor)
{
	ItemPointerSet(&cursor->events_after, 0, 0);
	ItemPointerSet(&cursor->state_after, 0, 0);
	cursor->events_done = false;
}

/* Delete up to limit stale rate-limit rows from the cursor on; see regstack.h. */
int64
regstack_purge_events(int64 limit, RegstackPurgeCursor *cursor)
{
	static SPIPlanPtr events_plan = NULL;
	static SPIPlanPtr state_plan = NULL;
	static const Oid purge_argtypes[5] = {INT8OID, TEXTARRAYOID,
	TIMESTAMPTZARRAYOID, TIMESTAMPTZOID, TIDOID};
	const RegstackRateLimitPolicy *policies;
	int			npolicies;
	Datum	   *types;
	Datum	   *cutoffs;
	TimestampTz now_ts = GetCurrentTimestamp() - RATE_LIMITS_PURGE_MARGIN;
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int64		deleted = 0;

	/* The cutoff of each event type with a policy, and of all others. */
	policies = regstack_rate_limit_policies(&npolicies);
	types = palloc(sizeof(Datum) * Max(npolicies, 1));
	cutoffs = palloc(sizeof(Datum) * Max(npolicies, 1));
	for (int i = 0; i < npolicies; i++)
	{
		types[i] = CStringGetTextDatum(policies[i].event_type);
		cutoffs[i] = TimestampTzGetDatum(now_ts - policies[i].within_us);
	}
	values[1] = PointerGetDatum(construct_array(types, npolicies, TEXTOID,
												-1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(cutoffs, npolicies,
												TIMESTAMPTZOID, 8,
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[3] = TimestampTzGetDatum(now_ts -
									(int64) rate_limits_event_retention * USECS_PER_SEC);
	values[0] = Int64GetDatum(limit);
	if (limit <= 0)
		nulls[0] = 'n';

	if (!cursor->events_done)
	{
		regstack_plan(&events_plan,
					  RATE_LIMITS_PURGE_SQL("auth_rate_limit_events", "e",
											"e.occurred_at"),
					  5, purge_argtypes);
		values[4] = PointerGetDatum(&cursor->events_after);
		deleted = regstack_purge_execute(events_plan, values, nulls,
										 &cursor->events_after,
										 "stale rate-limit events");
		if (limit > 0 && deleted >= limit)
			return deleted;
		cursor->events_done = true;
		if (limit > 0)
			values[0] = Int64GetDatum(limit - deleted);
	}

	/* State rows whose newest event is past the same cutoff. */
	regstack_plan(&state_plan,
				  RATE_LIMITS_PURGE_SQL("auth_rate_limit_state", "s",
										"COALESCE(s.last_at, s.clock_at)"),
				  5, purge_argtypes);
	values[4] = PointerGetDatum(&cursor->state_after);
	deleted += regstack_purge_execute(state_plan, values, nulls,
									  &cursor->state_after,
									  "stale rate-limit state");
	return deleted;
}
