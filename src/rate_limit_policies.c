/*-------------------------------------------------------------------------
 *
 * rate_limit_policies.c
 *	  The registry of rate-limit policies (regstack.rate_limit_policies),
 *	  cached per backend.
 *
 * rate_limit_check needs the policy of its event type on every call that
 * omits max_events or within, and purge needs every policy's window.  The
 * rows are cached per backend by registry.c and reloaded when the registry
 * trigger reports a change.  Returned entries stay valid until the next
 * call of a function here.
 *
 *-------------------------------------------------------------------------
 */
#include "rate_limits.h"

#include <stddef.h>

/* Fill a cache entry (after its event type) from a row of the load query. */
static void
policies_decode(HeapTuple row, TupleDesc desc, void *entry_ptr)
{
	RegstackRateLimitPolicy *entry = (RegstackRateLimitPolicy *) entry_ptr;
	bool		isnull;

	entry->max_events = DatumGetInt32(SPI_getbinval(row, desc, 2, &isnull));
	/* The table's CHECK constraint keeps within in range. */
	entry->within_us =
		regstack_interval_window_us(DatumGetIntervalP(SPI_getbinval(row, desc, 3, &isnull)),
									  "within");
}

StaticAssertDecl(offsetof(RegstackRateLimitPolicy, event_type) == 0,
				 "registry.c finds entries by a key at offset 0");

static RegstackRegistryCache policies_cache =
REGSTACK_REGISTRY_CACHE("rate_limit_policies",
						"SELECT event_type, max_events, within"
						" FROM %s"
						" ORDER BY event_type COLLATE pg_catalog.\"C\"",
						RegstackRateLimitPolicy, policies_decode);

/* The policy of event_type, or NULL when it has none. */
const RegstackRateLimitPolicy *
regstack_rate_limit_policy(const char *event_type)
{
	return regstack_registry_find(&policies_cache, event_type);
}

/* Every policy, sorted by event type; *count gets how many. */
const RegstackRateLimitPolicy *
regstack_rate_limit_policies(int *count)
{
	regstack_registry_refresh(&policies_cache);
	*count = policies_cache.count;
	return policies_cache.entries;
}

/*
 * Lock the policies table as a load of the cache does (AccessShareLock),
 * for a caller that opens the rate-limit state and events next and may
 * load the cache after them: policies first is the calls' order, in which
 * DROP EXTENSION on Citus locks the tables (citus_drop.c).
 */
void
regstack_rate_limit_policies_lock(void)
{
	(void) regstack_registry_lock(&policies_cache);
}

/* Comma-separated event types that have a policy, for error hints. */
char *
regstack_rate_limit_policy_names(void)
{
	return regstack_registry_keys(&policies_cache);
}
