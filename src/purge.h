/*-------------------------------------------------------------------------
 *
 * purge.h
 *	  Deleting expired rows, shared by purge_expired() and the reaper:
 *	  expired tokens (purge.c) and stale rate-limit rows (rate_limits.c).
 *
 * Callers run these inside regstack_begin_call().
 *
 *-------------------------------------------------------------------------
 */
#ifndef REGSTACK_PURGE_H
#define REGSTACK_PURGE_H

#include "regstack.h"

#include "storage/block.h"
#include "storage/itemptr.h"

/* ---- purge.c: expired tokens ---- */

/* Delete every expired token (skipping rows others hold); how many. */
extern int64 regstack_purge_tokens(void);


/*
 * The reaper's batch: delete up to limit expired tokens whose ctid lies
 * after *after and before block stop_block, skipping rows others hold;
 * move *after to the last one deleted; *nblocks gets the table's size.
 * Returns how many.
 */
extern int64 regstack_purge_tokens_range(int64 limit, ItemPointer after,
										 BlockNumber stop_block,
										 BlockNumber *nblocks);

/* ---- rate_limits.c: stale rate-limit rows ---- */

/*
 * Where a purge of rate-limit rows has got to: the last event and the last
 * state row deleted, and whether the events are done.  Start from
 * regstack_purge_cursor_init(); the reaper carries one through a pass.
 */
typedef struct RegstackPurgeCursor
{
	ItemPointerData events_after;
	ItemPointerData state_after;
	bool		events_done;
} RegstackPurgeCursor;

extern void regstack_purge_cursor_init(RegstackPurgeCursor *cursor);

/*
 * Delete up to limit stale rate-limit rows (limit <= 0: all): events older
 * than their policy's window, or than regstack.event_retention for event
 * types without a policy, then state rows whose newest event is that old.
 * Each table is read in ctid order from the cursor, which moves past what
 * was deleted, so batches of one pass do not reread what earlier ones
 * covered.  Skips locked rows, so it never waits for a foreground call.
 * Returns how many rows were deleted.  Call inside regstack_begin_call().
 */
extern int64 regstack_purge_events(int64 limit, RegstackPurgeCursor *cursor);

#endif							/* REGSTACK_PURGE_H */
