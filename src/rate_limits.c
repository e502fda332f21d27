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
 * Data.  A key's events are rows of regstack.auth_rate_limit_events,
 * numbered by seq without gaps; its row in regstack.auth_rate_limit_state
 * holds the next seq and a pointer to the first event inside the window,
 * so that a count is a subtraction (rate_limit_window.c).  Every event is
 * written together with an update of the state row, so the state row
 * serializes the recording calls on a key, as a plain SQL counter row
 * would: a call that records holds the row until its transaction ends.
 *
 * The protocol of a call, its invariants, its waits and why none can hang
 * or leak, and how each isolation level behaves, are in
 * docs/rate-limits.md; in short:
 *	- read the state row and the events with the statement's snapshot, and
 *	  decide from them;
 *	- a denial from that read writes nothing and locks nothing;
 *	- an allowed recording call updates the row it read; if another
 *	  transaction changed it since the snapshot, the update waits for that
 *	  transaction, and then (READ COMMITTED) the call reads again, holding
 *	  nothing, and decides anew on what is then committed (REPEATABLE
 *	  READ: 40001, as UPDATE raises it);
 *	- a check with record => false that is allowed locks the row too
 *	  (FOR NO KEY UPDATE), so check, verify and record in one transaction
 *	  are atomic;
 *	- a key without a state row is created under a transaction-scoped
 *	  advisory lock on the key (key_locks.c), so that two first calls
 *	  cannot both create it.
 * Every wait is PostgreSQL's own (a row lock, a transaction, a
 * heavyweight lock): cancellable, seen by the deadlock detector, and
 * released at the end of the (sub)transaction.
 *
 * Time.  A call reads the system clock (GetCurrentTimestamp, not
 * transaction time) and judges the window at now = max(clock, the row's
 * clock_at): the key's clock never goes back, so occurred_at never
 * decreases along seq even if the system clock steps back.  The guarantee
 * is stated on the stamps: in the event log, no window of length within
 * ever holds more than max_events events of a key recorded by
 * rate_limit_check.  retry_after counts from the system clock.
 *
 * Purge deletes events older than their policy's window (or than
 * regstack.event_retention without a policy) plus a margin, and state rows
 * whose newest event is that old.  A key whose row was purged starts again
 * after any leftover events (next_seq = max(seq) + 1), with its pointer
 * unknown, and counts them.
 *
 * Citus.  When Citus distributes the state and events tables (by key,
 * colocated), a call on the node holding the key's shards works on them
 * directly (rate_limit_store.c); elsewhere rate_limit_check and
 * rate_limit_record are sent whole to that node (citus_route.c), so that
 * every decision about a key is taken on one node under its locks.
 * rate_limit_reset's statements are routed by Citus, and the purge runs on
 * each shard on this node (docs/citus.md).
 *
 * rate_limit_reset and the purge run their SQL inside regstack_begin_call().
 *
 *-------------------------------------------------------------------------
 */
#include "rate_limits.h"
#include "purge.h"
#include "stats.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(regstack_rate_limit_check);
PG_FUNCTION_INFO_V1(regstack_rate_limit_record);
PG_FUNCTION_INFO_V1(regstack_rate_limit_reset);

/*
 * Purge keeps events this much longer than their window, so that a call in
 * flight, whose clock was read a moment before purge read its own, never
 * finds an event it counts already gone.
 */
#define RATE_LIMITS_PURGE_MARGIN		(60 * USECS_PER_SEC)

/* Longest key a context line quotes, in bytes. */
#define RATE_LIMITS_CONTEXT_KEY_BYTES	128

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

/* One call on one key: what it read and what its transaction holds. */
typedef struct RateLimitCall
{
	RegstackRateStore store;
	const RegstackRateKey *k;
	RateLimitMode mode;
	int32		max_events;		/* not for RATE_LIMITS_RECORD */
	int64		window_us;		/* not for RATE_LIMITS_RECORD */
	bool		key_locked;		/* holds the key's advisory lock */
	ItemPointerData locked_tid; /* the state row version this call locked
								 * (check with record => false), or invalid */
	bool		exists;			/* the key has a state row ... */
	RegstackRateState state;	/* ... read as this (else from leftovers),
								 * its pointer moved to the window */
	int64		count;			/* events inside the window */
	TimestampTz clock;			/* the system clock */
	TimestampTz now_ts;			/* the key's clock: never goes back */
} RateLimitCall;

/* Error context: which key a call was deciding (e.g. for a 40P01). */
static void
rate_limits_error_context(void *arg)
{
	const RegstackRateKey *k = (const RegstackRateKey *) arg;
	char	   *key = text_to_cstring(k->key);
	int			len = pg_mbcliplen(key, strlen(key), RATE_LIMITS_CONTEXT_KEY_BYTES);

	errcontext("rate limit of key \"%.*s\"%s, event type \"%s\"",
			   len, key, key[len] ? "..." : "",
			   text_to_cstring(k->event_type));
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
 * Read the key with a new statement snapshot: its state row (or, without
 * one, the events left over from a purged row), the clock, and for the
 * checks the events inside the window.  (invariant R1 of the design)
 */
static void
rate_limits_read(RateLimitCall *call)
{
	RegstackRateStore *store = &call->store;

	regstack_rate_store_refresh(store);
	call->clock = GetCurrentTimestamp();
	call->exists = regstack_rate_store_read(store, call->k, &call->state);
	if (!call->exists)
		regstack_rate_window_new_key(store, call->k, call->clock, &call->state);
	call->now_ts = Max(call->clock, call->state.clock_at);
	call->count = 0;
	if (call->mode != RATE_LIMITS_RECORD)
	{
		regstack_rate_window_advance(store, call->k, &call->state,
									 call->window_us, call->now_ts);
		call->count = call->state.next_seq - call->state.start_seq;
	}
}

/*
 * A key without a state row: take the key's advisory lock, which every
 * call that creates the row holds to the end of its transaction, so the
 * next read sees any row another call made.  In REPEATABLE READ and
 * SERIALIZABLE the snapshot cannot show a row committed since it was
 * taken: 40001, as INSERT ... ON CONFLICT raises it.
 */
static void
rate_limits_lock_key(RateLimitCall *call)
{
	regstack_xact_lock(REGSTACK_LOCK_CLASS_RATE_KEY,
					   text_to_cstring(call->k->key),
					   text_to_cstring(call->k->event_type));
	call->key_locked = true;
	if (IsolationUsesXactSnapshot() &&
		regstack_rate_store_unseen(&call->store, call->k))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update")));
}

/* Whether this call holds the state row version it read (it locked it). */
static inline bool
rate_limits_holds_row(RateLimitCall *call)
{
	return call->exists && ItemPointerIsValid(&call->locked_tid) &&
		ItemPointerEquals(&call->locked_tid, &call->state.tid);
}

/*
 * Lock the state row read, waiting for its holder; true when the version
 * read is the one locked (the decision stands), false when the row moved
 * or went and the key must be read again.  The version locked is
 * remembered: only a read that finds that very version counts as held
 * (the newest version READ COMMITTED follows to could be another key's,
 * had SQL changed the key column).
 */
static bool
rate_limits_lock_row(RateLimitCall *call)
{
	ItemPointerData tid = call->state.tid;
	bool		moved;

	if (regstack_rate_store_lock(&call->store, &tid, &moved) != TM_Ok)
		return false;			/* deleted: a reset or a purge */
	call->locked_tid = tid;
	return !moved;
}

/* The outcome of a denied call, from the events counted. */
static void
rate_limits_deny(RateLimitCall *call, RateLimitOutcome *out)
{
	const RegstackRateState *state = &call->state;
	int64		rank = call->count - call->max_events;
	TimestampTz oldest;

	TimestampTz allowed_at;

	/*
	 * It is allowed again once the count drops below max_events, i.e. when
	 * event start_seq + rank leaves the window.  Should that event be gone
	 * (deleted behind regstack's back: the count is then wrong anyway), in
	 * a second.
	 */
	Assert(rank >= 0 && state->start_seq + rank < state->next_seq);
	oldest = rank == 0 ? state->start_at :
		regstack_rate_window_event_at(&call->store, call->k,
									  state->start_seq + rank);
	if (oldest == DT_NOBEGIN ||
		pg_add_s64_overflow(oldest, call->window_us, &allowed_at))
		allowed_at = call->clock + USECS_PER_SEC;
	out->allowed = false;
	out->remaining = 0;
	/* From the system clock, so that waiting it out always succeeds. */
	out->retry_after = rate_limits_seconds_until(allowed_at, call->clock);
	out->reset_at = state->last_at + call->window_us;
}

/* The outcome of an allowed check that recorded nothing. */
static void
rate_limits_allow_unrecorded(RateLimitCall *call, RateLimitOutcome *out)
{
	out->allowed = true;
	out->remaining = (int32) (call->max_events - call->count);
	out->retry_after = rate_limits_seconds_until(0, 0);
	out->reset_at = call->count > 0 ?
		call->state.last_at + call->window_us : call->now_ts;
}

/*
 * Record one event on the key as read: update (or create) the state row
 * and insert the event.  False when another transaction changed or
 * deleted the row since the snapshot (READ COMMITTED; the update waited
 * for it, so the next read sees what it did): the caller reads again and
 * decides anew, holding nothing, so that a call denied then holds nothing
 * either.
 */
static bool
rate_limits_write(RateLimitCall *call)
{
	RegstackRateState *state = &call->state;
	int64		seq = regstack_rate_window_append(state, call->now_ts);

	if (!call->exists)
	{
		Assert(call->key_locked);
		regstack_rate_store_insert(&call->store, call->k, state);
	}
	else
	{
		TM_Result	result = regstack_rate_store_update(&call->store, call->k,
														state);

		if (result != TM_Ok)
		{
			/* invariant L2: a row this call holds cannot change under it */
			if (rate_limits_holds_row(call) || result == TM_SelfModified)
				elog(ERROR, "rate-limit state row changed while locked");
			return false;
		}
	}
	regstack_rate_event_insert(&call->store, call->k, seq, call->now_ts);
	return true;
}

/*
 * A call on k (see the file header and docs/rate-limits.md): read, decide,
 * and write or lock as the decision needs, reading again whenever the key
 * changed under the read.  False, with nothing done, when Citus holds the
 * key's rows in a shard on another node: the caller routes the call there.
 */
static bool
rate_limits_call(const RegstackRateKey *k, RateLimitMode mode,
				 int32 max_events, int64 window_us, RateLimitOutcome *out)
{
	RateLimitCall *call = palloc0(sizeof(RateLimitCall));
	ErrorContextCallback context;

	if (!regstack_rate_store_open(&call->store,
								  mode == RATE_LIMITS_RECORD ? "rate_limit_record()" :
								  "rate_limit_check()", k))
	{
		pfree(call);
		return false;
	}

	call->k = k;
	ItemPointerSetInvalid(&call->locked_tid);
	call->mode = mode;
	call->max_events = max_events;
	call->window_us = window_us;
	context.callback = rate_limits_error_context;
	context.arg = (void *) k;
	context.previous = error_context_stack;
	error_context_stack = &context;

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		rate_limits_read(call);

		/* No state row: read again holding the key's lock (invariant C1). */
		if (!call->exists && !call->key_locked)
		{
			rate_limits_lock_key(call);
			continue;
		}

		/*
		 * Denied by what the snapshot shows: nothing written, nothing
		 * locked (but what a check with record => false locked before a
		 * re-read).
		 */
		if (mode != RATE_LIMITS_RECORD && call->count >= max_events)
		{
			rate_limits_deny(call, out);
			break;
		}

		if (mode == RATE_LIMITS_CHECK_ONLY)
		{
			/* Allowed: hold the key to the end of the transaction. */
			if (call->exists && !rate_limits_holds_row(call) &&
				!rate_limits_lock_row(call))
				continue;
			rate_limits_allow_unrecorded(call, out);
			break;
		}

		if (rate_limits_write(call))
		{
			out->allowed = true;
			out->remaining = (int32) (max_events - (call->count + 1));
			out->retry_after = rate_limits_seconds_until(0, 0);
			/* Our event is the key's newest. */
			out->reset_at = call->now_ts + window_us;
			break;
		}
	}
	regstack_rate_store_close(&call->store);
	regstack_stats_rate_limit_call(k->event_type, mode != RATE_LIMITS_RECORD,
								   out->allowed,
								   mode != RATE_LIMITS_CHECK_ONLY && out->allowed);
	error_context_stack = context.previous;
	pfree(call);
	return true;
}

/* ---- calls whose key is in a shard on another node (Citus) ---- */

/*
 * rate_limit_check(k, max_events, window_us, record) run on the node that
 * holds k's shard (citus_route.c), with the numbers this node resolved;
 * its row goes into rsinfo's result set.  That node counts the call in its
 * regstack.stats.
 */
static void
rate_limits_check_routed(const RegstackRateKey *k, int32 max_events,
						 int64 window_us, bool record, ReturnSetInfo *rsinfo)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	static const Oid argtypes[5] = {TEXTOID, TEXTOID, INT4OID, INTERVALOID,
	BOOLOID};
	Interval   *within = palloc0(sizeof(Interval));
	RegstackCall call;
	Datum		args[5];
	Datum		values[4];
	bool		nulls[4];

	within->time = window_us;
	args[0] = PointerGetDatum(k->key);
	args[1] = PointerGetDatum(k->event_type);
	args[2] = Int32GetDatum(max_events);
	args[3] = IntervalPGetDatum(within);
	args[4] = BoolGetDatum(record);
	regstack_begin_call(&call);
	regstack_citus_route(RS_TABLE_RATE_STATE, plans,
						 "regstack.rate_limit_check($1, $2, $3, $4, $5)",
						 5, argtypes, args, NULL);
	if (SPI_processed != 1)
		elog(ERROR, "a routed rate_limit_check returned " UINT64_FORMAT " rows",
			 SPI_processed);
	for (int i = 0; i < 4; i++)
		values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  i + 1, &nulls[i]);
	/* the tuplestore copies the values before SPI frees them */
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	regstack_end_call(&call);
}

/* rate_limit_record(k) run on the node that holds k's shard. */
static void
rate_limits_record_routed(const RegstackRateKey *k)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	static const Oid argtypes[2] = {TEXTOID, TEXTOID};
	RegstackCall call;
	Datum		args[2];

	args[0] = PointerGetDatum(k->key);
	args[1] = PointerGetDatum(k->event_type);
	regstack_begin_call(&call);
	regstack_citus_route(RS_TABLE_RATE_STATE, plans,
						 "regstack.rate_limit_record($1, $2)",
						 2, argtypes, args, NULL);
	regstack_end_call(&call);
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
		window_us = regstack_interval_window_us(within, "within");
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

	if (!rate_limits_call(&k, record ? RATE_LIMITS_CHECK_RECORD : RATE_LIMITS_CHECK_ONLY,
						  max_events, window_us, &outcome))
	{
		rate_limits_check_routed(&k, max_events, window_us, record, rsinfo);
		return (Datum) 0;
	}

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
	if (!rate_limits_call(&k, RATE_LIMITS_RECORD, 0, 0, &outcome))
		rate_limits_record_routed(&k);
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
	regstack_table_check(RS_TABLE_RATE_STATE, RowExclusiveLock);
	regstack_table_check(RS_TABLE_RATE_EVENTS, RowExclusiveLock);
	regstack_begin_call(&call);

	/*
	 * Delete the state rows first: that waits for calls holding them, and
	 * the next statement's fresh snapshot then sees their events.  (A call
	 * creating a key's first row meanwhile is not waited for: its event
	 * counts as recorded after the reset.)
	 */
	regstack_plan(&state_plan[one],
				  one ?
				  "DELETE FROM regstack.auth_rate_limit_state"
				  " WHERE" RATE_LIMITS_KEY_QUAL " RETURNING event_type" :
				  "DELETE FROM regstack.auth_rate_limit_state"
				  " WHERE key OPERATOR(pg_catalog.=) $1 RETURNING event_type",
				  one + 1, reset_argtypes);
	if (SPI_execute_plan(state_plan[one], values, NULL, false, 0) != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not reset rate-limit state");
	/* keys reset, per event type */
	regstack_stats_count_rows(RS_STATS_EVENT_TYPE, RS_STAT_RESETS,
							  SPI_tuptable, 1);
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
 * many and the last ctid deleted.  A state row goes once its newest event
 * is past the cutoff.
 */
#define RATE_LIMITS_PURGE_SQL(alias, stamp) \
	"WITH deleted AS (" \
	" DELETE FROM %1$s" \
	" WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(" \
	"   SELECT " alias ".ctid FROM %1$s " alias \
	"   LEFT JOIN ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3))" \
	"     AS p(event_type, cutoff)" \
	"     ON p.event_type OPERATOR(pg_catalog.=) " alias ".event_type" \
	"   WHERE " alias ".ctid OPERATOR(pg_catalog.>) $5" \
	"     AND " stamp " OPERATOR(pg_catalog.<=) COALESCE(p.cutoff, $4)" \
	"   LIMIT $1 FOR UPDATE OF " alias " SKIP LOCKED))" \
	" RETURNING ctid)" \
	" SELECT pg_catalog.count(*), pg_catalog.max(ctid) FROM deleted"

/* The purge statement of the events (%1$s: the table or a shard of it). */
#define RATE_LIMITS_PURGE_EVENTS_SQL \
	RATE_LIMITS_PURGE_SQL("e", "e.occurred_at")

/* The purge statement of the state rows (%1$s: the table or a shard of it). */
#define RATE_LIMITS_PURGE_STATE_SQL \
	RATE_LIMITS_PURGE_SQL("s", "COALESCE(s.last_at, s.clock_at)")

static const Oid rate_limits_purge_argtypes[5] = {INT8OID, TEXTARRAYOID,
TIMESTAMPTZARRAYOID, TIMESTAMPTZOID, TIDOID};

/*
 * When Citus distributes the rate-limit tables: run the purge statement
 * sql (values: its arguments but the ctid) on each shard of table on this
 * node, from its start, each under its metadata lock (citus.c), until
 * limit rows are deleted (limit <= 0: all); how many were.
 */
static int64
rate_limits_purge_shards(RegstackTable table, const char *sql, int64 limit,
						 Datum *values, char *nulls, const char *what)
{
	List	   *shards = regstack_citus_local_shards(table);
	ListCell   *cell;
	int64		deleted = 0;

	foreach(cell, shards)
	{
		RegstackShard *shard = (RegstackShard *) lfirst(cell);
		RegstackTableInfo info;
		ItemPointerData after;
		SPIPlanPtr	plan;

		if (limit > 0 && deleted >= limit)
			break;
		/* the same check as the table's, and its lock */
		table_close(regstack_table_open_shard(table, shard->relid,
											  RowExclusiveLock, &info),
					NoLock);
		plan = SPI_prepare(psprintf(sql,
									quote_qualified_identifier(get_namespace_name(get_rel_namespace(shard->relid)),
															   get_rel_name(shard->relid))),
						   5, (Oid *) rate_limits_purge_argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (limit > 0)
			values[0] = Int64GetDatum(limit - deleted);
		ItemPointerSet(&after, 0, 0);
		values[4] = PointerGetDatum(&after);
		deleted += regstack_execute_counted_delete(plan, values, nulls, &after,
												   what);
		SPI_freeplan(plan);
	}
	list_free_deep(shards);
	return deleted;
}

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
	const RegstackRateLimitPolicy *policies;
	int			npolicies;
	Datum	   *types;
	Datum	   *cutoffs;
	TimestampTz now_ts = GetCurrentTimestamp() - RATE_LIMITS_PURGE_MARGIN;
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int64		deleted = 0;
	bool		distributed;

	PreventCommandIfReadOnly("purge_expired()");

	/*
	 * The policies, the state and then the events: the order in which the
	 * calls open them (and DROP EXTENSION on Citus locks them, citus_drop.c).
	 */
	policies = regstack_rate_limit_policies(&npolicies);
	distributed = regstack_table_distributed(RS_TABLE_RATE_STATE, RowExclusiveLock);
	if (regstack_table_distributed(RS_TABLE_RATE_EVENTS, RowExclusiveLock) != distributed)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tables regstack.auth_rate_limit_state and regstack.auth_rate_limit_events are not distributed together"),
				 errhint("Distribute the events with colocate_with => 'regstack.auth_rate_limit_state'.")));

	/* The cutoff of each event type with a policy, and of all others. */
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

	/*
	 * Distributed: each local shard from its start (the cursor is for one
	 * table); a batch that deletes fewer than limit ends the reaper's pass.
	 */
	if (distributed)
	{
		deleted = rate_limits_purge_shards(RS_TABLE_RATE_EVENTS,
										   RATE_LIMITS_PURGE_EVENTS_SQL, limit,
										   values, nulls, "stale rate-limit events");
		if (limit > 0 && deleted >= limit)
			return deleted;
		cursor->events_done = true;
		return deleted +
			rate_limits_purge_shards(RS_TABLE_RATE_STATE,
									 RATE_LIMITS_PURGE_STATE_SQL,
									 limit > 0 ? limit - deleted : 0,
									 values, nulls, "stale rate-limit state");
	}

	if (!cursor->events_done)
	{
		if (events_plan == NULL)
			regstack_plan(&events_plan,
						  psprintf(RATE_LIMITS_PURGE_EVENTS_SQL,
								   "regstack.auth_rate_limit_events"),
						  5, rate_limits_purge_argtypes);
		values[4] = PointerGetDatum(&cursor->events_after);
		deleted = regstack_execute_counted_delete(events_plan, values, nulls,
												  &cursor->events_after,
												  "stale rate-limit events");
		if (limit > 0 && deleted >= limit)
			return deleted;
		cursor->events_done = true;
		if (limit > 0)
			values[0] = Int64GetDatum(limit - deleted);
	}

	/* State rows whose newest event is past the same cutoff. */
	if (state_plan == NULL)
		regstack_plan(&state_plan,
					  psprintf(RATE_LIMITS_PURGE_STATE_SQL,
							   "regstack.auth_rate_limit_state"),
					  5, rate_limits_purge_argtypes);
	values[4] = PointerGetDatum(&cursor->state_after);
	deleted += regstack_execute_counted_delete(state_plan, values, nulls,
											   &cursor->state_after,
											   "stale rate-limit state");
	return deleted;
}
