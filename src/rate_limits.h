/*-------------------------------------------------------------------------
 *
 * rate_limits.h
 *	  Declarations shared by the rate-limit files only:
 *	- rate_limits.c: the SQL functions and the protocol of a call
 *	  (docs/rate-limits.md);
 *	- rate_limit_store.c: direct heap and index access to the state and
 *	  event tables;
 *	- rate_limit_window.c: the window pointer over a key's event log;
 *	- rate_limit_policies.c: the cached registry of policies.
 *
 * Other files see only the block in regstack.h (settings and purge).
 *
 *-------------------------------------------------------------------------
 */
#ifndef REGSTACK_RATE_LIMITS_H
#define REGSTACK_RATE_LIMITS_H

#include "heap_access.h"

/* Longest key rate_limit_* accept, in bytes (22001 beyond). */
#define REGSTACK_MAX_RATE_KEY_BYTES	1024

/* A (key, event_type) pair. */
typedef struct RegstackRateKey
{
	text	   *key;
	text	   *event_type;
} RegstackRateKey;

/*
 * A key's state row, as read or about to be written (see the install
 * script for the columns).
 */
typedef struct RegstackRateState
{
	int64		next_seq;		/* seq the next event gets */
	int64		start_seq;		/* first event inside the window ... */
	TimestampTz start_at;		/* ... and its time (start_seq < next_seq) */
	bool		window_known;	/* the pointer is for window_us */
	int64		window_us;
	bool		has_last;		/* there is a newest event ... */
	TimestampTz last_at;		/* ... at this time */
	TimestampTz clock_at;		/* latest time a call on the key used */
	ItemPointerData tid;		/* the row version read (invalid: no row) */
} RegstackRateState;

/* ---- rate_limit_store.c ---- */

/* The open rate-limit tables, and the snapshot a call reads them with. */
typedef struct RegstackRateStore
{
	RegstackTableInfo state_shard_info; /* when distributed: the shards' */
	RegstackTableInfo events_shard_info;
	Relation	state_rel;
	const RegstackTableInfo *state_info;
	Relation	state_index;
	Relation	events_rel;
	const RegstackTableInfo *events_info;
	Relation	events_index;
	Snapshot	snapshot;		/* the current statement's MVCC snapshot */
	TupleTableSlot *state_slot; /* for reading and locking */
	TupleTableSlot *event_slot;
	TupleTableSlot *state_write_slot;	/* virtual, for writing */
	TupleTableSlot *event_write_slot;
	RegstackIndexWriter state_indexes;
	RegstackIndexWriter event_indexes;
} RegstackRateStore;

/*
 * Open the tables for a call on k (writer: the function writing, 25006
 * when read-only).  When Citus distributes them: their shards of k on this
 * node, under the shards' metadata lock; false, with nothing open, when
 * those shards are on another node.
 */
extern bool regstack_rate_store_open(RegstackRateStore *store,
									 const char *writer,
									 const RegstackRateKey *k);
extern void regstack_rate_store_close(RegstackRateStore *store);

/* A new statement: see committed work and this transaction's own. */
extern void regstack_rate_store_refresh(RegstackRateStore *store);

/* The state row of k visible to the statement's snapshot, if any. */
extern bool regstack_rate_store_read(RegstackRateStore *store,
									 const RegstackRateKey *k,
									 RegstackRateState *state);

/* Whether a committed state row of k exists that the snapshot cannot see. */
extern bool regstack_rate_store_unseen(RegstackRateStore *store,
									   const RegstackRateKey *k);

/*
 * Lock the state row version at *tid FOR NO KEY UPDATE, waiting for its
 * holder.  In READ COMMITTED a newer version is followed and locked
 * (*tid moves there and *moved is set); in REPEATABLE READ and
 * SERIALIZABLE a concurrent update or delete is 40001.  Returns TM_Ok, or
 * TM_Deleted (READ COMMITTED) when the row is gone.
 */
extern TM_Result regstack_rate_store_lock(RegstackRateStore *store,
										  ItemPointer tid, bool *moved);

/* Replace the row version at state->tid by *state; as regstack_heap_update(). */
extern TM_Result regstack_rate_store_update(RegstackRateStore *store,
											const RegstackRateKey *k,
											const RegstackRateState *state);

/* Insert the state row of a key that has none. */
extern void regstack_rate_store_insert(RegstackRateStore *store,
									   const RegstackRateKey *k,
									   const RegstackRateState *state);

/*
 * The first event of k with seq >= from (backward: the last event of k),
 * under the statement's snapshot.
 */
extern bool regstack_rate_event_probe(RegstackRateStore *store,
									  const RegstackRateKey *k, int64 from,
									  bool backward, int64 *seq,
									  TimestampTz *at);

/* Record event seq of k at time at. */
extern void regstack_rate_event_insert(RegstackRateStore *store,
									   const RegstackRateKey *k, int64 seq,
									   TimestampTz at);

/* ---- rate_limit_window.c ---- */

/*
 * Move the pointer of *state (in memory) to the first event inside a
 * window of window_us ending at now_ts.
 */
extern void regstack_rate_window_advance(RegstackRateStore *store,
										 const RegstackRateKey *k,
										 RegstackRateState *state,
										 int64 window_us, TimestampTz now_ts);

/* Append one event to *state at time now_ts (in memory); returns its seq. */
extern int64 regstack_rate_window_append(RegstackRateState *state,
										 TimestampTz now_ts);

/*
 * A state for k, which has no row: after any events left over from a
 * purged or unrestored row, with its pointer unknown, or empty.
 */
extern void regstack_rate_window_new_key(RegstackRateStore *store,
										 const RegstackRateKey *k,
										 TimestampTz clock,
										 RegstackRateState *state);

/* The time of event seq of k, counted by the caller. */
extern TimestampTz regstack_rate_window_event_at(RegstackRateStore *store,
												 const RegstackRateKey *k,
												 int64 seq);

/* ---- rate_limit_policies.c ---- */

typedef struct RegstackRateLimitPolicy
{
	char		event_type[NAMEDATALEN];
	int32		max_events;
	int64		within_us;		/* see regstack_interval_window_us() */
} RegstackRateLimitPolicy;

/*
 * The policy of event_type, or NULL when it has none.  The result stays
 * valid until the next call of a rate_limit_policies.c function.  Call
 * inside regstack_begin_call().
 */
extern const RegstackRateLimitPolicy *regstack_rate_limit_policy(const char *event_type);

/* Every policy, sorted by event type; *count gets how many. */
extern const RegstackRateLimitPolicy *regstack_rate_limit_policies(int *count);
extern void regstack_rate_limit_policies_lock(void);

/* Comma-separated event types that have a policy, palloc'd. */
extern char *regstack_rate_limit_policy_names(void);

#endif							/* REGSTACK_RATE_LIMITS_H */
