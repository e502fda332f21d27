/*-------------------------------------------------------------------------
 *
 * key_locks.c
 *	  Transaction-scoped advisory locks on regstack's own keys: a token
 *	  type and subject (per-subject caps), a rate-limit key that has no
 *	  state row yet.
 *
 * The lock is PostgreSQL's heavyweight advisory lock, so a wait for it can
 * be cancelled and is seen by the deadlock detector, and it is released
 * when the (sub)transaction that took it ends: nothing outlives a call's
 * transaction, which is what PgBouncer's transaction mode needs.  In
 * pg_locks it shows as locktype 'advisory' with objsubid the lock class
 * (regstack.h) and the key hashed into classid/objid.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lock.h"

/*
 * The advisory lock tag of (lock_class, key1, key2), hashed to 64 bits.  A
 * hash collision only serializes two unrelated keys.
 */
static void
key_locks_tag(LOCKTAG *tag, uint16 lock_class, const char *key1,
			  const char *key2)
{
	uint64		hash;

	hash = hash_bytes_extended((const unsigned char *) key1,
							   strlen(key1), 0);
	hash = hash_bytes_extended((const unsigned char *) key2,
							   strlen(key2), hash);
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (hash >> 32),
						 (uint32) hash, lock_class);
}

/* Exclusive transaction-scoped advisory lock on (lock_class, key1, key2). */
void
regstack_xact_lock(uint16 lock_class, const char *key1, const char *key2)
{
	LOCKTAG		tag;

	key_locks_tag(&tag, lock_class, key1, key2);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}
