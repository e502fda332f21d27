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
 * Data.  regstack.auth_rate_limit_events holds one row per event, numbered
 * per (key, event_type) by seq = 0, 1, 2, ... in recording order, with
 * occurred_at never decreasing along seq.  regstack.auth_rate_limit_state
 * holds, per (key, event_type), next_seq and a pointer start_seq: the first
 * event inside a window of window_us ending at clock_at.  The events inside
 * the window are then exactly seq start_seq .. next_seq - 1, so the count is
 * next_seq - start_seq: no rows are counted.  Moving the pointer forward
 * skips the events that left the window since the last call, by galloping
 * then binary search over seq (one index probe each), so a check costs
 * O(log k) probes for k events that left, and nothing while none did.  A
 * call with another window searches from the old pointer in whichever
 * direction the new window needs.
 *
 * Deciding (rate_limits_apply).  A call reads the state row with a fresh
 * snapshot, moves the pointer in memory, decides, and then writes back the
 * row version it read: an update when it records an event or moved the
 * pointer, else a row lock (FOR UPDATE).  The write succeeds only if no
 * one changed the row in between (it waits for a transaction that is
 * changing it), so every decision is made on the newest state; when
 * someone did, READ COMMITTED tries again with a new snapshot, REPEATABLE
 * READ and SERIALIZABLE raise a serialization failure (40001) instead of
 * giving a wrong count.  In the steady state a recording call is one index
 * probe, one heap update (HOT: the key does not change) and one event
 * insert, through rate_limit_store.c without SQL.
 *
 * Locking.  The state row is the lock: a call that records or moves the
 * pointer updates it, and checks with record => false lock it, so that
 * check, verify and record in one transaction are atomic; either holds it
 * to the end of the transaction.  Calls on one (key, event_type) are
 * therefore serialized, and each sees the events of those before it, which
 * committed before its snapshot.  A key's first call inserts the row under
 * a transaction-scoped advisory lock on the key (class
 * REGSTACK_LOCK_CLASS_RATE_KEY in pg_locks), looking for the row again once
 * it holds that lock, so two first calls never both make it; a check with
 * record => false on such a key takes the same lock and makes no row.  A
 * call about to write a state row that another running transaction is
 * changing first takes the key's queue lock (class
 * REGSTACK_LOCK_CLASS_RATE_QUEUE), looks again, and only then waits for
 * the row.  It keeps the queue lock, like the row, until it commits, or
 * releases it when it returns holding nothing (a recording call denied;
 * a denied check with record => false still locks the row, so it keeps
 * the queue lock too).  So the waiters of
 * a hot key line up in the lock manager, and each commit wakes the one at
 * the head, instead of every waiter waking to race for the new row
 * version.  (A caller that finds the row free goes ahead of the queue; the
 * order is arrival order among those that had to wait.)  All locks are
 * transaction-scoped: nothing survives the transaction, so this works
 * behind PgBouncer in transaction mode.
 *
 * Denials take no lock.  If the committed events already fill the window,
 * a recording call is denied without writing anything (no transaction id,
 * no WAL, no waiting).  Denying from committed data is safe: a concurrent
 * call can only add events before it commits, and a concurrent reset that
 * has not committed is ordered after us.
 *
 * Time.  A call reads the system clock (GetCurrentTimestamp, not
 * transaction time) and judges the window at now = max(clock, clock_at):
 * the per-key clock never goes back, so occurred_at is monotonic along seq
 * even if the system clock steps back, and no call judges the window at a
 * time earlier than a pointer was computed for.  The clock is read after
 * the state row and before the write, which may wait for the row, so an
 * event is stamped between the call's start and its decision.  The guarantee is stated on the stamps:
 * in the event log, no window of length within ever holds more than
 * max_events events of a key (each allowed call counted the events stamped
 * within its own stamp's window).  retry_after counts from the system
 * clock.
 *
 * Purge deletes events older than their policy's window (or than
 * regstack.event_retention without a policy) plus a margin, and state rows
 * whose newest event is that old.  A state row recreated later starts after
 * any leftover events (next_seq = max(seq) + 1), with its pointer unknown,
 * so the first call searches for the window.
 *
 * rate_limit_reset and the purge run their SQL inside regstack_begin_call().
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "catalog/pg_type.h"
#include "common/int.h"
#include "funcapi.h"
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

#define RATE_LIMITS_KEY_QUAL \
	" key OPERATOR(pg_catalog.=) $1 AND event_type OPERATOR(pg_catalog.=) $2"

/* Define regstack.event_retention. */
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

/* ---- the event log ---- */

/*
 * The first event inside the window (occurred_at > cutoff) among seq <
 * next_seq: its seq in *first (next_seq when there is none) and time in
 * *first_at.
 *
 * P(x) = "the first event with seq >= x is inside the window, or there is
 * none" is monotonic in x because occurred_at never decreases along seq;
 * we look for the smallest x with P(x), keeping f < x <= t with P(f) false
 * (f = -1: below every seq) and P(t) true.  Starting at hint (the old
 * pointer), we gallop towards the answer, then bisect: O(log k) probes for
 * a pointer that moves by k.  hint_out says P(hint) is known to be false.
 */
static void
rate_limits_find_window(RegstackRateStore *store, const RegstackRateKey *k,
						int64 next_seq, int64 hint,
						bool hint_out, TimestampTz cutoff,
						int64 *first, TimestampTz *first_at)
{
	int64		f = -1;
	int64		t = next_seq;
	int64		t_seq = next_seq;
	TimestampTz t_at = 0;
	int64		seq = 0;
	TimestampTz at = 0;
	bool		found;
	bool		forward;

/* P(x), probing; on true, remember x as the new t. */
#define RATE_LIMITS_P(x) \
	((found = regstack_rate_event_probe(store, k, (x), false, &seq, &at)), \
	 (!found || at > cutoff) ? \
	 (t = (x), t_seq = found ? seq : next_seq, t_at = at, true) : false)

	hint = Max(hint, 0);
	if (hint >= next_seq)
		forward = false;		/* P(next_seq) holds: look below it */
	else if (hint_out)
	{
		f = hint;
		forward = true;
	}
	else if (RATE_LIMITS_P(hint))
		forward = false;
	else
	{
		f = seq;				/* every event up to seq is out */
		forward = true;
	}

	if (forward)
	{
		/* Gallop up from f until P holds. */
		for (int64 step = 1; f + step < t; step *= 2)
		{
			if (RATE_LIMITS_P(f + step))
				break;
			f = seq;
		}
	}
	else
	{
		/* Gallop down from t until P fails (or seq 0 is reached). */
		for (int64 step = 1; t > 0 && f < 0; step *= 2)
		{
			int64		x = Max(t - step, 0);

			if (!RATE_LIMITS_P(x))
				f = seq;
		}
	}

	/* Bisect (f, t]. */
	while (t - f > 1)
	{
		int64		m = f + (t - f) / 2;

		if (!RATE_LIMITS_P(m))
			f = seq;
	}
#undef RATE_LIMITS_P

	*first = t_seq;
	*first_at = t_at;
}

/*
 * Move the pointer of *state to the first event inside a window of
 * window_us ending at now.  Returns true when the pointer changed.
 */
static bool
rate_limits_advance(RegstackRateStore *store, const RegstackRateKey *k,
					RegstackRateState *state, int64 window_us,
					TimestampTz now_ts)
{
	TimestampTz cutoff = now_ts - window_us;
	bool		same_window = state->window_known && state->window_us == window_us;
	int64		first;
	TimestampTz first_at;

	/* A pointer for this window: events before it stay out. */
	if (same_window &&
		(state->start_seq >= state->next_seq || state->start_at > cutoff))
		return false;
	rate_limits_find_window(store, k, state->next_seq, state->start_seq,
							same_window, cutoff, &first, &first_at);
	if (same_window && first == state->start_seq)
		return false;
	state->start_seq = first;
	state->start_at = first_at;
	state->window_known = true;
	state->window_us = window_us;
	state->clock_at = now_ts;
	return true;
}

/* Append one event to *state at time now (in memory); returns its seq. */
static int64
rate_limits_append(RegstackRateState *state, TimestampTz now_ts)
{
	if (state->start_seq >= state->next_seq)
	{
		state->start_seq = state->next_seq;
		state->start_at = now_ts;
	}
	state->has_last = true;
	state->last_at = now_ts;
	state->clock_at = now_ts;
	return state->next_seq++;
}

/*
 * A state for k, which has no state row: after any events left over from a
 * purged or unrestored state row, with its pointer unknown.  Returns false
 * (and a state with no events) when there are none.
 */
static bool
rate_limits_new_state(RegstackRateStore *store, const RegstackRateKey *k,
					  TimestampTz clock, RegstackRateState *state)
{
	int64		last_seq;
	TimestampTz last_at;

	memset(state, 0, sizeof(*state));
	state->clock_at = clock;
	ItemPointerSetInvalid(&state->tid);
	if (!regstack_rate_event_probe(store, k, 0, true, &last_seq, &last_at))
		return false;
	if (!regstack_rate_event_probe(store, k, 0, false, &state->start_seq,
								   &state->start_at))
		elog(ERROR, "rate-limit events vanished during a scan");
	state->next_seq = last_seq + 1;
	state->has_last = true;
	state->last_at = last_at;
	state->clock_at = Max(last_at, clock);
	return true;
}

/* What rate_limits_apply() is asked to do. */
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

/*
 * retry_after of a denied call: it is allowed again once the count drops
 * below max_events, i.e. when event next_seq - max_events leaves the
 * window.  Measured from the system clock (not the per-key clock, which may
 * be ahead of it), so that waiting it out always succeeds.
 */
static Interval *
rate_limits_retry_after(RegstackRateStore *store, const RegstackRateKey *k,
						const RegstackRateState *state, int32 max_events,
						int64 window_us, TimestampTz clock)
{
	int64		target = state->next_seq - max_events;
	int64		seq = state->start_seq;
	TimestampTz at = state->start_at;

	if (target > state->start_seq &&
		!regstack_rate_event_probe(store, k, target, false, &seq, &at))
		at = state->last_at;
	return rate_limits_seconds_until(at + window_us, clock);
}

/* Take the transaction-scoped lock of class lock_class on k. */
static void
rate_limits_lock_key(uint16 lock_class, const RegstackRateKey *k)
{
	regstack_xact_lock(lock_class, text_to_cstring(k->key),
					   text_to_cstring(k->event_type));
}

/* Release the lock of class lock_class on k before the transaction ends. */
static void
rate_limits_unlock_key(uint16 lock_class, const RegstackRateKey *k)
{
	regstack_xact_unlock(lock_class, text_to_cstring(k->key),
						 text_to_cstring(k->event_type));
}

/*
 * Decide a call on k and write what it changes; see the file header.
 *
 * Each attempt reads the state row with a fresh snapshot, decides, and
 * then writes the row version it read (update, or lock when nothing
 * changes): that succeeds only if no one changed the row since, so the
 * decision was made on the newest state.  If someone did (READ COMMITTED),
 * the attempt is repeated; in REPEATABLE READ and SERIALIZABLE that is a
 * serialization failure.  A recording check that the committed state
 * already denies writes nothing and locks nothing.  A key without a state
 * row gets one under a transaction-scoped lock on the key, taken before
 * looking again, so that two first calls cannot both make it.  A call
 * that finds the row busy queues on the key's queue lock before waiting
 * for the row; it leaves the queue when it commits, or at once if it
 * returns holding nothing.
 */
static void
rate_limits_apply(const RegstackRateKey *k, RateLimitMode mode,
				  int32 max_events, int64 window_us, RateLimitOutcome *out)
{
	RegstackRateStore store;
	bool		key_locked = false;
	bool		queued = false;
	bool		holds_row = false;
	RegstackRateState state;
	TimestampTz clock;
	TimestampTz now_ts;
	int64		count;
	bool		allowed;

	regstack_rate_store_open(&store, true);
	for (;;)
	{
		bool		found;
		bool		moved;
		bool		appended = false;
		int64		event_seq = 0;
		TM_Result	result;

		regstack_rate_store_refresh(&store);
		found = regstack_rate_state_find(&store, k, &state);
		clock = GetCurrentTimestamp();
		if (!found)
		{
			/*
			 * No state row: take the key's lock, then look again, so that
			 * no one else can make the row meanwhile (and, for a check that
			 * records nothing, so that check, verify and record in one
			 * transaction stay atomic).
			 */
			if (!key_locked)
			{
				rate_limits_lock_key(REGSTACK_LOCK_CLASS_RATE_KEY, k);
				key_locked = true;
				continue;
			}
			if (IsolationUsesXactSnapshot() &&
				regstack_rate_state_committed(&store, k))
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent update")));

			/*
			 * A check that records nothing on a key without events is
			 * allowed and makes no state row; the key's lock is its hold.
			 */
			if (!rate_limits_new_state(&store, k, clock, &state) &&
				mode == RATE_LIMITS_CHECK_ONLY)
			{
				count = 0;
				allowed = true;
				now_ts = clock;
				break;
			}
		}

		/* The per-key clock never goes back. */
		now_ts = Max(clock, state.clock_at);
		moved = mode != RATE_LIMITS_RECORD &&
			rate_limits_advance(&store, k, &state, window_us, now_ts);
		count = state.next_seq - state.start_seq;
		allowed = mode == RATE_LIMITS_RECORD || count < max_events;

		/* Denied from committed data: write nothing, hold nothing. */
		if (!allowed && mode == RATE_LIMITS_CHECK_RECORD)
			break;
		if (allowed && mode != RATE_LIMITS_CHECK_ONLY)
		{
			event_seq = rate_limits_append(&state, now_ts);
			appended = true;
			count++;
		}

		/*
		 * Another transaction is changing the row: queue behind the other
		 * callers that wait for it, then look again (it may be free by
		 * then) and wait for the row itself.
		 */
		if (found && !queued && regstack_rate_state_busy(&store))
		{
			/* Do not pin the row's page while asleep: it blocks pruning. */
			regstack_rate_state_release(&store);
			rate_limits_lock_key(REGSTACK_LOCK_CLASS_RATE_QUEUE, k);
			queued = true;
			continue;
		}

		if (!found)
		{
			regstack_rate_state_insert(&store, k, &state);
			result = TM_Ok;
		}
		else if (appended || moved)
			result = regstack_rate_state_update(&store, k, &state);
		else
			result = regstack_rate_state_lock(&store, &state);
		if (result == TM_Ok)
		{
			if (appended)
				regstack_rate_event_insert(&store, k, event_seq, now_ts);
			holds_row = true;
			break;
		}
		/* READ COMMITTED, changed or deleted since we read it: again. */
	}

	/*
	 * A caller that now holds the row stays at the head of the queue until
	 * it commits: the next one would only wait for that row anyway, and
	 * waking it then costs one wake-up per commit.  One that holds nothing
	 * (a denied recording call) leaves the queue at once, so that it never
	 * holds up others while it goes on with its transaction.
	 */
	if (queued && !holds_row)
		rate_limits_unlock_key(REGSTACK_LOCK_CLASS_RATE_QUEUE, k);

	out->allowed = allowed;
	out->remaining = allowed ? (int32) (max_events - count) : 0;
	out->retry_after = allowed ? rate_limits_seconds_until(0, 0) :
		rate_limits_retry_after(&store, k, &state, max_events, window_us, clock);
	out->reset_at = count > 0 && state.has_last ?
		state.last_at + window_us : now_ts;
	regstack_rate_store_close(&store);
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

	rate_limits_apply(&k, record ? RATE_LIMITS_CHECK_RECORD : RATE_LIMITS_CHECK_ONLY,
					  max_events, window_us, &outcome);

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
	rate_limits_apply(&k, RATE_LIMITS_RECORD, 0, 0, &outcome);
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
 * many and the last ctid deleted.  The state row of a key goes once its
 * newest event is past the cutoff.
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
