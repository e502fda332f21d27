/*-------------------------------------------------------------------------
 *
 * rate_limit_locks.c
 *	  The decision lock of a rate-limit key.
 *
 * A recording call decides under its key's decision lock, held for the
 * call only, never across a commit or while waiting for another
 * transaction (rate_limits.c).  When regstack is preloaded the lock is one
 * of REGSTACK_RATE_LOCKS lightweight locks in shared memory, picked by a
 * hash of the key: cheap to take, and two keys that share one only take
 * turns for a few microseconds.  Without preloading there is no shared
 * memory of our own, and the lock is a session-level advisory lock (class
 * REGSTACK_LOCK_CLASS_RATE_DECIDE in pg_locks) that the caller releases,
 * on error too.
 *
 * Nothing that waits for another transaction runs under the lock, so a
 * lightweight lock, which the deadlock detector cannot see, closes no
 * cycle.  An error releases a lightweight lock with the transaction's (or
 * subtransaction's) others; the session-level lock is released by
 * regstack_rate_decide_unlock() on the error path too.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

/* Lightweight decision locks, one per hash partition of the keys. */
#define REGSTACK_RATE_LOCKS		128
#define RATE_LOCKS_TRANCHE		"regstack_rate_limits"

/* Whether this process's postmaster reserved the locks (preloaded). */
static bool rate_locks_reserved = false;
static LWLockPadded *rate_locks = NULL;
static shmem_request_hook_type rate_locks_prev_request_hook = NULL;

/* shmem_request_hook: reserve the lightweight decision locks. */
static void
rate_locks_shmem_request(void)
{
	if (rate_locks_prev_request_hook)
		rate_locks_prev_request_hook();
	RequestNamedLWLockTranche(RATE_LOCKS_TRANCHE, REGSTACK_RATE_LOCKS);
}

/* Reserve the lightweight decision locks (preload only). */
void
regstack_rate_locks_request(void)
{
	rate_locks_prev_request_hook = shmem_request_hook;
	shmem_request_hook = rate_locks_shmem_request;
	rate_locks_reserved = true;
}

/* The lightweight lock of k's partition. */
static LWLock *
rate_locks_partition(const char *key, const char *type)
{
	uint64		hash;

	if (rate_locks == NULL)
		rate_locks = GetNamedLWLockTranche(RATE_LOCKS_TRANCHE);
	hash = hash_bytes_extended((const unsigned char *) key, strlen(key), 0);
	hash = hash_bytes_extended((const unsigned char *) type, strlen(type), hash);
	return &rate_locks[hash % REGSTACK_RATE_LOCKS].lock;
}

/* Take the decision lock of (key, type); see the file header. */
void
regstack_rate_decide_lock(const char *key, const char *type)
{
	if (rate_locks_reserved)
		LWLockAcquire(rate_locks_partition(key, type), LW_EXCLUSIVE);
	else
		(void) regstack_lock_key(REGSTACK_LOCK_CLASS_RATE_DECIDE, key, type,
								 ExclusiveLock, true, true);
}

/*
 * Release the decision lock of (key, type).  On an error path (on_error),
 * before re-throwing: a lightweight lock is left to the abort, which
 * releases every one (the error has already reset the interrupt holdoff
 * that releasing it here would undo); a session-level lock must go here.
 */
void
regstack_rate_decide_unlock(const char *key, const char *type, bool on_error)
{
	if (rate_locks_reserved)
	{
		if (!on_error)
			LWLockRelease(rate_locks_partition(key, type));
	}
	else
		regstack_unlock_key(REGSTACK_LOCK_CLASS_RATE_DECIDE, key, type,
							ExclusiveLock, true);
}
