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
 * Fast path.  In the common case (the pointer is for this window, no event
 * has left it, fewer than max_events are in it) a recording call is one
 * statement: an UPDATE of the state row that checks those conditions, with
 * the event's INSERT in the same statement.  Anything else (no state row,
 * another window, events to skip, a denial, record => false) takes the
 * general path: lock the row, search, decide in C, write.
 *
 * Denials take no lock.  A recording call that the fast path did not admit
 * first reads the state row and events without locking; if the committed
 * events already fill the window it is denied there, writing nothing (no
 * transaction id, no WAL, no waiting).  Denying from committed data is
 * safe: a concurrent call can only add events before it commits, and a
 * concurrent reset that has not committed is ordered after us.  Only calls
 * that may be allowed, and checks with record => false (so that check,
 * verify and record in one transaction are atomic), take the lock.
 *
 * Locking.  The state row is the lock: every call that records or moves the
 * pointer first takes it FOR UPDATE (or inserts it), and holds it to the
 * end of its transaction.  Calls on one (key, event_type) are therefore
 * serialized, and each sees the events of those before it: every statement
 * after the lock runs with a fresh snapshot (SPI, read_only = false), which
 * in READ COMMITTED includes everything the previous holder committed.  In
 * REPEATABLE READ or SERIALIZABLE a concurrent update of the state row
 * raises a serialization failure (40001) instead of giving a wrong count.
 * The locks are row locks, transaction-scoped: nothing survives the
 * transaction, so this works behind PgBouncer in transaction mode.
 *
 * Time.  A call reads the system clock (GetCurrentTimestamp, not
 * transaction time) and judges the window at now = max(clock, clock_at):
 * the per-key clock never goes back, so occurred_at is monotonic along seq
 * even if the system clock steps back, and no call judges the window at a
 * time earlier than a pointer was computed for.  The general path reads
 * the clock once it holds the lock; the fast path reads it before its
 * UPDATE, which may wait for the row, so its event is stamped between the
 * call's start and its decision.  The guarantee is stated on the stamps:
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
 * Every SQL function here runs its table work inside regstack_begin_call().
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

/* A (key, event_type) as SPI parameters $1, $2. */
typedef struct RateLimitKey
{
	Datum		key;
	Datum		event_type;
} RateLimitKey;

/* A state row, locked by this transaction. */
typedef struct RateLimitState
{
	int64		next_seq;
	int64		start_seq;
	TimestampTz start_at;		/* valid when start_seq < next_seq */
	bool		window_known;
	int64		window_us;
	bool		has_last;
	TimestampTz last_at;
	TimestampTz clock_at;
} RateLimitState;

/* Columns of the state row, in RateLimitState order. */
#define RATE_LIMITS_STATE_COLUMNS \
	"next_seq, start_seq, start_at, window_us, last_at, clock_at"

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
 * The first event with seq >= from: true and its seq and time, or false
 * when there is none.  A fresh snapshot, so it sees every committed event.
 */
static bool
rate_limits_probe(const RateLimitKey *k, int64 from, int64 *seq,
				  TimestampTz *at)
{
	static SPIPlanPtr probe_plan = NULL;
	static const Oid probe_argtypes[3] = {TEXTOID, TEXTOID, INT8OID};
	Datum		values[3];
	bool		isnull;

	values[0] = k->key;
	values[1] = k->event_type;
	values[2] = Int64GetDatum(from);
	regstack_plan(&probe_plan,
				  "SELECT seq, occurred_at FROM regstack.auth_rate_limit_events"
				  " WHERE" RATE_LIMITS_KEY_QUAL
				  " AND seq OPERATOR(pg_catalog.>=) $3"
				  " ORDER BY seq LIMIT 1",
				  3, probe_argtypes);
	if (SPI_execute_plan(probe_plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read rate-limit events");
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return false;
	}
	*seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
	*at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 2, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return true;
}

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
rate_limits_find_window(const RateLimitKey *k, int64 next_seq, int64 hint,
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
	((found = rate_limits_probe(k, (x), &seq, &at)), \
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

/* Record the event seq at time at. */
static void
rate_limits_insert_event(const RateLimitKey *k, int64 seq, TimestampTz at)
{
	static SPIPlanPtr insert_plan = NULL;
	static const Oid insert_argtypes[4] = {TEXTOID, TEXTOID, INT8OID,
	TIMESTAMPTZOID};
	Datum		values[4];

	values[0] = k->key;
	values[1] = k->event_type;
	values[2] = Int64GetDatum(seq);
	values[3] = TimestampTzGetDatum(at);
	regstack_plan(&insert_plan,
				  "INSERT INTO regstack.auth_rate_limit_events"
				  " (key, event_type, seq, occurred_at) VALUES ($1, $2, $3, $4)",
				  4, insert_argtypes);
	if (SPI_execute_plan(insert_plan, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record rate-limit event");
}

/* ---- the state row ---- */

/* Fill *state from a row of RATE_LIMITS_STATE_COLUMNS. */
static void
rate_limits_read_state(RateLimitState *state)
{
	HeapTuple	row = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;
	Datum		value;

	state->next_seq = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
	state->start_seq = DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
	value = SPI_getbinval(row, desc, 3, &isnull);
	state->start_at = isnull ? 0 : DatumGetTimestampTz(value);
	value = SPI_getbinval(row, desc, 4, &isnull);
	state->window_known = !isnull;
	state->window_us = isnull ? 0 : DatumGetInt64(value);
	value = SPI_getbinval(row, desc, 5, &isnull);
	state->has_last = !isnull;
	state->last_at = isnull ? 0 : DatumGetTimestampTz(value);
	state->clock_at = DatumGetTimestampTz(SPI_getbinval(row, desc, 6, &isnull));
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Lock the state row of k and read it into *state, making it when there is
 * none (after any events left over from a purged or unrestored state row).
 * With events_only, a missing row is made only when such events exist;
 * otherwise return false.  Returns with *clock set to the system clock,
 * read once the row is held.
 */
static bool
rate_limits_lock(const RateLimitKey *k, bool events_only,
				 RateLimitState *state, TimestampTz *clock)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr create_plan = NULL;
	static const Oid lock_argtypes[2] = {TEXTOID, TEXTOID};
	static const Oid create_argtypes[3] = {TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[3];

	values[0] = k->key;
	values[1] = k->event_type;
	regstack_plan(&lock_plan,
				  "SELECT " RATE_LIMITS_STATE_COLUMNS
				  " FROM regstack.auth_rate_limit_state WHERE" RATE_LIMITS_KEY_QUAL
				  " FOR UPDATE",
				  2, lock_argtypes);
	regstack_plan(&create_plan,
				  "INSERT INTO regstack.auth_rate_limit_state AS s"
				  " (key, event_type, next_seq, start_seq, start_at, window_us,"
				  "  last_at, clock_at)"
				  " SELECT $1, $2,"
				  "  COALESCE(hi.seq OPERATOR(pg_catalog.+) 1, 0),"
				  "  COALESCE((SELECT e.seq FROM regstack.auth_rate_limit_events e"
				  "            WHERE e.key OPERATOR(pg_catalog.=) $1"
				  "            AND e.event_type OPERATOR(pg_catalog.=) $2"
				  "            ORDER BY e.seq LIMIT 1), 0),"
				  "  NULL, NULL, hi.occurred_at, GREATEST(hi.occurred_at, $3)"
				  " FROM (SELECT 1) AS one LEFT JOIN LATERAL"
				  "  (SELECT e.seq, e.occurred_at FROM regstack.auth_rate_limit_events e"
				  "   WHERE e.key OPERATOR(pg_catalog.=) $1"
				  "   AND e.event_type OPERATOR(pg_catalog.=) $2"
				  "   ORDER BY e.seq DESC LIMIT 1) AS hi ON true"
				  " ON CONFLICT (key, event_type) DO NOTHING"
				  " RETURNING " RATE_LIMITS_STATE_COLUMNS,
				  3, create_argtypes);

	/*
	 * Lock the row, or make it.  When a concurrent call makes it first, our
	 * INSERT waits for that call's transaction and does nothing, and the
	 * next SELECT finds and locks the row.
	 */
	for (int attempt = 0;; attempt++)
	{
		if (SPI_execute_plan(lock_plan, values, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not lock rate-limit state");
		if (SPI_processed == 1)
			break;
		SPI_freetuptable(SPI_tuptable);
		if (events_only)
		{
			int64		seq;
			TimestampTz at;

			if (!rate_limits_probe(k, 0, &seq, &at))
			{
				*clock = GetCurrentTimestamp();
				return false;
			}
		}
		values[2] = TimestampTzGetDatum(GetCurrentTimestamp());
		if (SPI_execute_plan(create_plan, values, NULL, false, 1)
			!= SPI_OK_INSERT_RETURNING)
			elog(ERROR, "could not create rate-limit state");
		if (SPI_processed == 1)
			break;
		SPI_freetuptable(SPI_tuptable);
		if (attempt >= 100)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not lock the rate-limit state of key and event type"),
					 errdetail("Concurrent calls kept creating and deleting it.")));
	}
	rate_limits_read_state(state);
	*clock = GetCurrentTimestamp();
	return true;
}

/*
 * Read the state row of k without locking it: false when there is none.
 * Used to deny without taking the lock (see rate_limit_check).
 */
static bool
rate_limits_peek_state(const RateLimitKey *k, RateLimitState *state)
{
	static SPIPlanPtr peek_plan = NULL;
	static const Oid peek_argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = k->key;
	values[1] = k->event_type;
	regstack_plan(&peek_plan,
				  "SELECT " RATE_LIMITS_STATE_COLUMNS
				  " FROM regstack.auth_rate_limit_state WHERE" RATE_LIMITS_KEY_QUAL,
				  2, peek_argtypes);
	if (SPI_execute_plan(peek_plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read rate-limit state");
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return false;
	}
	rate_limits_read_state(state);
	return true;
}

/* Write *state back to the locked state row of k. */
static void
rate_limits_write_state(const RateLimitKey *k, const RateLimitState *state)
{
	static SPIPlanPtr update_plan = NULL;
	static const Oid update_argtypes[8] = {TEXTOID, TEXTOID, INT8OID, INT8OID,
		TIMESTAMPTZOID, INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = k->key;
	values[1] = k->event_type;
	values[2] = Int64GetDatum(state->next_seq);
	values[3] = Int64GetDatum(state->start_seq);
	values[4] = TimestampTzGetDatum(state->start_at);
	if (state->start_seq >= state->next_seq || !state->window_known)
		nulls[4] = 'n';
	values[5] = Int64GetDatum(state->window_us);
	if (!state->window_known)
		nulls[5] = 'n';
	values[6] = TimestampTzGetDatum(state->last_at);
	if (!state->has_last)
		nulls[6] = 'n';
	values[7] = TimestampTzGetDatum(state->clock_at);
	regstack_plan(&update_plan,
				  "UPDATE regstack.auth_rate_limit_state"
				  " SET next_seq = $3, start_seq = $4, start_at = $5,"
				  " window_us = $6, last_at = $7, clock_at = $8"
				  " WHERE" RATE_LIMITS_KEY_QUAL,
				  8, update_argtypes);
	if (SPI_execute_plan(update_plan, values, nulls, false, 0) != SPI_OK_UPDATE ||
		SPI_processed != 1)
		elog(ERROR, "could not update rate-limit state");
}

/*
 * Move the pointer of the locked *state to the first event inside a window
 * of window_us ending at now.  Returns true when the pointer changed.
 */
static bool
rate_limits_advance(const RateLimitKey *k, RateLimitState *state,
					int64 window_us, TimestampTz now_ts)
{
	TimestampTz cutoff = now_ts - window_us;
	int64		first;
	TimestampTz first_at;

	if (state->window_known && state->window_us == window_us)
	{
		/* The pointer is for this window: events before it stay out. */
		if (state->start_seq >= state->next_seq || state->start_at > cutoff)
			return false;
		rate_limits_find_window(k, state->next_seq, state->start_seq, true,
								cutoff, &first, &first_at);
	}
	else
		rate_limits_find_window(k, state->next_seq, state->start_seq, false,
								cutoff, &first, &first_at);

	if (state->window_known && state->window_us == window_us &&
		first == state->start_seq)
		return false;
	state->start_seq = first;
	state->start_at = first_at;
	state->window_known = true;
	state->window_us = window_us;
	state->clock_at = now_ts;
	return true;
}

/* Append one event to the locked *state at time now. */
static void
rate_limits_append(const RateLimitKey *k, RateLimitState *state,
				   TimestampTz now_ts)
{
	rate_limits_insert_event(k, state->next_seq, now_ts);
	if (state->start_seq >= state->next_seq)
	{
		state->start_seq = state->next_seq;
		state->start_at = now_ts;
	}
	state->next_seq++;
	state->has_last = true;
	state->last_at = now_ts;
	state->clock_at = now_ts;
}

/*
 * The common case in one statement: when the state row of k exists, and
 * (with check) its pointer is for this window, no event has left the window
 * and fewer than max_events are in it, append an event and return true
 * with the new next_seq, start_seq and the event's time.  Otherwise change
 * nothing and return false; the caller then takes the general path.
 *
 * The UPDATE waits for the row like SELECT ... FOR UPDATE and re-checks its
 * conditions on the newest version (READ COMMITTED), so the decision is
 * made under the row lock.  clock was read before the wait, so the event's
 * time is max(clock, clock_at), the per-key clock, as on the general path.
 */
static bool
rate_limits_fast_append(const RateLimitKey *k, bool check, int32 max_events,
						int64 window_us, TimestampTz clock,
						int64 *next_seq, int64 *start_seq, TimestampTz *at)
{
	static SPIPlanPtr check_plan = NULL;
	static SPIPlanPtr record_plan = NULL;
	static const Oid fast_argtypes[6] = {TEXTOID, TEXTOID, TIMESTAMPTZOID,
	INT8OID, INT4OID, INTERVALOID};
	Interval	window = {0};
	Datum		values[6];
	bool		isnull;

#define RATE_LIMITS_NOW \
	"GREATEST(s.clock_at, $3)"
#define RATE_LIMITS_FAST(conditions) \
	"WITH s AS (" \
	" UPDATE regstack.auth_rate_limit_state AS s" \
	" SET next_seq = s.next_seq OPERATOR(pg_catalog.+) 1," \
	"  start_at = CASE WHEN s.start_seq OPERATOR(pg_catalog.=) s.next_seq" \
	"             THEN " RATE_LIMITS_NOW " ELSE s.start_at END," \
	"  last_at = " RATE_LIMITS_NOW ", clock_at = " RATE_LIMITS_NOW \
	" WHERE s.key OPERATOR(pg_catalog.=) $1" \
	" AND s.event_type OPERATOR(pg_catalog.=) $2" conditions \
	" RETURNING s.next_seq, s.start_seq, s.clock_at)," \
	" e AS (INSERT INTO regstack.auth_rate_limit_events" \
	"  (key, event_type, seq, occurred_at)" \
	"  SELECT $1, $2, s.next_seq OPERATOR(pg_catalog.-) 1, s.clock_at FROM s)" \
	" SELECT next_seq, start_seq, clock_at FROM s"

	values[0] = k->key;
	values[1] = k->event_type;
	values[2] = TimestampTzGetDatum(clock);
	values[3] = Int64GetDatum(window_us);
	values[4] = Int32GetDatum(max_events);
	window.time = window_us;
	values[5] = IntervalPGetDatum(&window);
	if (check)
		regstack_plan(&check_plan,
					  RATE_LIMITS_FAST(
									   " AND s.window_us OPERATOR(pg_catalog.=) $4"
									   " AND s.next_seq OPERATOR(pg_catalog.-) s.start_seq"
									   "     OPERATOR(pg_catalog.<) $5"
									   " AND (s.start_seq OPERATOR(pg_catalog.=) s.next_seq"
									   "      OR s.start_at OPERATOR(pg_catalog.>)"
									   "         (" RATE_LIMITS_NOW " OPERATOR(pg_catalog.-) $6))"),
					  6, fast_argtypes);
	else
		regstack_plan(&record_plan, RATE_LIMITS_FAST(""), 3, fast_argtypes);
#undef RATE_LIMITS_FAST
#undef RATE_LIMITS_NOW

	if (SPI_execute_plan(check ? check_plan : record_plan, values, NULL,
						 false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not record rate-limit event");
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return false;
	}
	*next_seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull));
	*start_seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 2, &isnull));
	*at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 3, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return true;
}

/* ---- SQL functions ---- */

/* The key and event_type arguments, checked (22004, 22023, 22001). */
static void
rate_limits_key_args(FunctionCallInfo fcinfo, RateLimitKey *k,
					 char **event_type)
{
	text	   *key = regstack_text_arg(fcinfo, 0, "key",
										REGSTACK_MAX_RATE_KEY_BYTES, true);
	text	   *type = regstack_text_arg(fcinfo, 1, "event_type",
										 NAMEDATALEN - 1, true);

	k->key = PointerGetDatum(key);
	k->event_type = PointerGetDatum(type);
	if (event_type)
		*event_type = text_to_cstring(type);
}

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
rate_limits_retry_after(const RateLimitKey *k, const RateLimitState *state,
						int32 max_events, int64 window_us, TimestampTz clock)
{
	int64		target = state->next_seq - max_events;
	int64		seq = state->start_seq;
	TimestampTz at = state->start_at;

	if (target > state->start_seq &&
		!rate_limits_probe(k, target, &seq, &at))
		at = state->last_at;
	return rate_limits_seconds_until(at + window_us, clock);
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
	RateLimitKey k;
	char	   *event_type;
	bool		have_max = !PG_ARGISNULL(2);
	int32		max_events = have_max ? PG_GETARG_INT32(2) : 0;
	Interval   *within;
	bool		record;
	int64		window_us = 0;
	RegstackCall call;
	RateLimitState state;
	TimestampTz clock;
	TimestampTz now_ts;
	int64		count;
	bool		moved;
	bool		allowed;
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

	InitMaterializedSRF(fcinfo, 0);
	regstack_begin_call(&call);

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
	{
		int64		next_seq;
		int64		start_seq;
		TimestampTz at;

		if (rate_limits_fast_append(&k, true, max_events, window_us,
									GetCurrentTimestamp(),
									&next_seq, &start_seq, &at))
		{
			count = next_seq - start_seq;
			values[0] = BoolGetDatum(true);
			values[1] = Int32GetDatum((int32) (max_events - count));
			values[2] = IntervalPGetDatum(rate_limits_seconds_until(0, 0));
			values[3] = TimestampTzGetDatum(at + window_us);
			regstack_end_call(&call);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
								 values, nulls);
			return (Datum) 0;
		}

		/*
		 * Under attack most calls are denied.  A denial records nothing, so
		 * it needs no lock: decide it from the committed state and events
		 * (moving the pointer in memory only), and leave the row to calls
		 * that may be allowed.  Without the lock a denied call writes
		 * nothing, takes no transaction id, and waits for no one.  A call
		 * that might be allowed goes on to the locked path below.
		 */
		if (rate_limits_peek_state(&k, &state))
		{
			clock = GetCurrentTimestamp();
			now_ts = Max(clock, state.clock_at);
			(void) rate_limits_advance(&k, &state, window_us, now_ts);
			if (state.next_seq - state.start_seq >= max_events)
			{
				values[0] = BoolGetDatum(false);
				values[1] = Int32GetDatum(0);
				values[2] = IntervalPGetDatum(rate_limits_retry_after(&k, &state,
																	  max_events,
																	  window_us,
																	  clock));
				values[3] = TimestampTzGetDatum(state.has_last ?
												state.last_at + window_us : now_ts);
				regstack_end_call(&call);
				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
									 values, nulls);
				return (Datum) 0;
			}
		}
	}

	if (!rate_limits_lock(&k, !record, &state, &clock))
	{
		/* A check-only call on a key without events. */
		values[0] = BoolGetDatum(true);
		values[1] = Int32GetDatum(max_events);
		values[2] = IntervalPGetDatum(rate_limits_seconds_until(0, 0));
		values[3] = TimestampTzGetDatum(clock);
		regstack_end_call(&call);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		return (Datum) 0;
	}
	/* The per-key clock never goes back. */
	now_ts = Max(clock, state.clock_at);

	moved = rate_limits_advance(&k, &state, window_us, now_ts);
	count = state.next_seq - state.start_seq;
	allowed = count < max_events;
	if (allowed && record)
	{
		rate_limits_append(&k, &state, now_ts);
		count++;
	}
	if ((allowed && record) || moved)
		rate_limits_write_state(&k, &state);

	values[0] = BoolGetDatum(allowed);
	values[1] = Int32GetDatum(allowed ? (int32) (max_events - count) : 0);
	if (allowed)
		values[2] = IntervalPGetDatum(rate_limits_seconds_until(0, 0));
	else
		values[2] = IntervalPGetDatum(rate_limits_retry_after(&k, &state,
															  max_events,
															  window_us,
															  clock));
	values[3] = TimestampTzGetDatum(count > 0 && state.has_last ?
									state.last_at + window_us : now_ts);

	regstack_end_call(&call);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/* rate_limit_record(key, event_type): record one event unconditionally. */
Datum
regstack_rate_limit_record(PG_FUNCTION_ARGS)
{
	RateLimitKey k;
	RegstackCall call;
	RateLimitState state;
	TimestampTz now_ts;
	int64		next_seq;
	int64		start_seq;

	rate_limits_key_args(fcinfo, &k, NULL);

	regstack_begin_call(&call);
	if (!rate_limits_fast_append(&k, false, 0, 0, GetCurrentTimestamp(),
								 &next_seq, &start_seq, &now_ts))
	{
		(void) rate_limits_lock(&k, false, &state, &now_ts);
		now_ts = Max(now_ts, state.clock_at);
		rate_limits_append(&k, &state, now_ts);
		rate_limits_write_state(&k, &state);
	}
	regstack_end_call(&call);

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

/* Delete up to limit stale rate-limit rows (limit <= 0: all). */
int64
regstack_purge_events(int64 limit)
{
	static SPIPlanPtr events_plan = NULL;
	static SPIPlanPtr state_plan = NULL;
	static const Oid purge_argtypes[4] = {INT8OID, TEXTARRAYOID,
	TIMESTAMPTZARRAYOID, TIMESTAMPTZOID};
	const RegstackRateLimitPolicy *policies;
	int			npolicies;
	Datum	   *types;
	Datum	   *cutoffs;
	TimestampTz now_ts = GetCurrentTimestamp() - RATE_LIMITS_PURGE_MARGIN;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int64		deleted;

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

	regstack_plan(&events_plan,
				  "DELETE FROM regstack.auth_rate_limit_events"
				  " WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
				  "   SELECT e.ctid FROM regstack.auth_rate_limit_events e"
				  "   LEFT JOIN ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3))"
				  "     AS p(event_type, cutoff)"
				  "     ON p.event_type OPERATOR(pg_catalog.=) e.event_type"
				  "   WHERE e.occurred_at OPERATOR(pg_catalog.<=) COALESCE(p.cutoff, $4)"
				  "   LIMIT $1 FOR UPDATE OF e SKIP LOCKED))",
				  4, purge_argtypes);
	if (SPI_execute_plan(events_plan, values, nulls, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete stale rate-limit events");
	deleted = (int64) SPI_processed;

	if (limit > 0 && deleted >= limit)
		return deleted;
	if (limit > 0)
		values[0] = Int64GetDatum(limit - deleted);

	/* State rows whose newest event is past the same cutoff. */
	regstack_plan(&state_plan,
				  "DELETE FROM regstack.auth_rate_limit_state"
				  " WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
				  "   SELECT s.ctid FROM regstack.auth_rate_limit_state s"
				  "   LEFT JOIN ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3))"
				  "     AS p(event_type, cutoff)"
				  "     ON p.event_type OPERATOR(pg_catalog.=) s.event_type"
				  "   WHERE COALESCE(s.last_at, s.clock_at)"
				  "         OPERATOR(pg_catalog.<=) COALESCE(p.cutoff, $4)"
				  "   LIMIT $1 FOR UPDATE OF s SKIP LOCKED))",
				  4, purge_argtypes);
	if (SPI_execute_plan(state_plan, values, nulls, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete stale rate-limit state");
	deleted += (int64) SPI_processed;
	return deleted;
}
