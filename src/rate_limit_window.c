/*-------------------------------------------------------------------------
 *
 * rate_limit_window.c
 *	  The sliding window over a rate-limit key's event log.
 *
 * A key's events (rate_limits.c) are numbered seq = 0, 1, 2, ... in
 * recording order, with occurred_at never decreasing along seq, and its
 * state row holds next_seq and a pointer start_seq to the first event
 * inside a window of window_us ending at clock_at.  The events inside the
 * window are exactly seq start_seq .. next_seq - 1, so counting them reads
 * no rows; moving the pointer skips the events that left the window since,
 * by galloping then binary search over seq (one index probe each): O(log k)
 * probes for k events that left, nothing while none did.  A call with
 * another window searches from the old pointer in whichever direction the
 * new window needs.
 *
 * Everything here works on a state in memory, read through the caller's
 * snapshot (rate_limit_store.c); writing it back is the caller's.
 *
 *-------------------------------------------------------------------------
 */
#include "rate_limits.h"

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
window_find(RegstackRateStore *store, const RegstackRateKey *k,
			int64 next_seq, int64 hint, bool hint_out, TimestampTz cutoff,
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
#define WINDOW_P(x) \
	((found = regstack_rate_event_probe(store, k, (x), false, &seq, &at)), \
	 (!found || seq >= next_seq || at > cutoff) ? \
	 (t = (x), t_seq = (found && seq < next_seq) ? seq : next_seq, \
	  t_at = at, true) : false)

	hint = Max(hint, 0);
	if (hint >= next_seq)
		forward = false;		/* P(next_seq) holds: look below it */
	else if (hint_out)
	{
		f = hint;
		forward = true;
	}
	else if (WINDOW_P(hint))
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
			if (WINDOW_P(f + step))
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

			if (!WINDOW_P(x))
				f = seq;
		}
	}

	/* Bisect (f, t]. */
	while (t - f > 1)
	{
		int64		m = f + (t - f) / 2;

		if (!WINDOW_P(m))
			f = seq;
	}
#undef WINDOW_P

	*first = t_seq;
	*first_at = t_at;
}

/* Move the pointer of *state to the window ending at now_ts; see rate_limits.h. */
void
regstack_rate_window_advance(RegstackRateStore *store, const RegstackRateKey *k,
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
		return;
	window_find(store, k, state->next_seq, state->start_seq, same_window,
				cutoff, &first, &first_at);
	state->start_seq = first;
	state->start_at = first_at;
	state->window_known = true;
	state->window_us = window_us;
}

/* Append one event to *state at time now_ts (in memory); returns its seq. */
int64
regstack_rate_window_append(RegstackRateState *state, TimestampTz now_ts)
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

/* A state for a key without a row, after its leftover events; see rate_limits.h. */
void
regstack_rate_window_new_key(RegstackRateStore *store, const RegstackRateKey *k,
							 TimestampTz clock, RegstackRateState *state)
{
	int64		last_seq;
	TimestampTz last_at;

	memset(state, 0, sizeof(*state));
	state->clock_at = clock;
	ItemPointerSetInvalid(&state->tid);
	if (!regstack_rate_event_probe(store, k, 0, true, &last_seq, &last_at) ||
		!regstack_rate_event_probe(store, k, 0, false, &state->start_seq,
								   &state->start_at))
		return;
	state->next_seq = last_seq + 1;
	state->has_last = true;
	state->last_at = last_at;
	state->clock_at = Max(last_at, clock);
}

/*
 * The time of event seq of k, which the caller counted; should a purge
 * have removed it meanwhile (only an event past its policy's window goes),
 * the next event's, or "long ago" when none is left.
 */
TimestampTz
regstack_rate_window_event_at(RegstackRateStore *store, const RegstackRateKey *k,
							  int64 seq)
{
	int64		found_seq;
	TimestampTz at;

	if (!regstack_rate_event_probe(store, k, seq, false, &found_seq, &at))
		return DT_NOBEGIN;
	return at;
}
