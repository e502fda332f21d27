/*-------------------------------------------------------------------------
 *
 * rate_limit_policies.c
 *	  The registry of rate-limit policies (regstack.rate_limit_policies),
 *	  cached per backend.
 *
 * rate_limit_check needs the policy of its event type on every call that
 * omits max_events or within, and purge needs every policy's window.  The
 * rows are loaded once into backend memory, sorted by event type (bytewise),
 * and looked up by binary search.  The registry trigger (registry.c) sends a
 * relcache invalidation for the table whenever a statement changes it; our
 * callback marks the cache stale and the next lookup reloads it, in the same
 * transaction for the backend that made the change and at its next
 * transaction for every other backend.
 *
 * Callers must be inside regstack_begin_call() (SPI connected, table owner).
 * Returned entries stay valid until the next call of a function here.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "catalog/namespace.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

/* The cached rows, sorted by event type, and whether they are current. */
static MemoryContext policies_context = NULL;
static RegstackRateLimitPolicy *policies_entries = NULL;
static int	policies_count = 0;
static bool policies_valid = false;
static uint64 policies_invalidations = 0;
static Oid	policies_relid = InvalidOid;
static bool policies_callback_registered = false;

/* Mark the cache stale when the policies table (or everything) changed. */
static void
policies_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == policies_relid)
	{
		policies_valid = false;
		policies_invalidations++;
	}
}

/* Read every row of regstack.rate_limit_policies into the cache. */
static void
policies_load(void)
{
	static SPIPlanPtr load_plan = NULL;
	SPITupleTable *rows;
	MemoryContext old_context;
	uint64		invalidations_before;

	if (!policies_callback_registered)
	{
		CacheRegisterRelcacheCallback(policies_relcache_callback, (Datum) 0);
		policies_callback_registered = true;
	}
	if (policies_context == NULL)
		policies_context = AllocSetContextCreate(TopMemoryContext,
												 "regstack rate-limit policies",
												 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(policies_context);
	policies_entries = NULL;
	policies_count = 0;

	/* An invalidation that arrives while we read leaves the cache stale. */
	invalidations_before = policies_invalidations;
	policies_relid = get_relname_relid("rate_limit_policies",
									   get_namespace_oid("regstack", false));

	regstack_plan(&load_plan,
				  "SELECT event_type, max_events, within"
				  " FROM regstack.rate_limit_policies"
				  " ORDER BY event_type COLLATE pg_catalog.\"C\"",
				  0, NULL);
	if (SPI_execute_plan(load_plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read regstack.rate_limit_policies");
	rows = SPI_tuptable;

	old_context = MemoryContextSwitchTo(policies_context);
	policies_entries = palloc0(sizeof(RegstackRateLimitPolicy) *
							   Max(SPI_processed, 1));
	MemoryContextSwitchTo(old_context);

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = rows->vals[i];
		TupleDesc	desc = rows->tupdesc;
		RegstackRateLimitPolicy *entry = &policies_entries[i];
		bool		isnull;

		text_to_cstring_buffer(DatumGetTextPP(SPI_getbinval(row, desc, 1, &isnull)),
							   entry->event_type, NAMEDATALEN);
		entry->max_events = DatumGetInt32(SPI_getbinval(row, desc, 2, &isnull));
		/* The table's CHECK constraint keeps within in range. */
		entry->within_us =
			regstack_rate_limit_window_us(DatumGetIntervalP(SPI_getbinval(row, desc, 3, &isnull)),
										  "within");
	}
	policies_count = (int) SPI_processed;
	SPI_freetuptable(rows);
	policies_valid = (policies_invalidations == invalidations_before);
}

/* Compare an event type with a cached entry, for bsearch. */
static int
policies_compare(const void *key, const void *entry)
{
	return strcmp((const char *) key,
				  ((const RegstackRateLimitPolicy *) entry)->event_type);
}

/* The policy of event_type, or NULL when it has none. */
const RegstackRateLimitPolicy *
regstack_rate_limit_policy(const char *event_type)
{
	if (!policies_valid)
		policies_load();
	if (policies_count == 0)
		return NULL;
	return bsearch(event_type, policies_entries, policies_count,
				   sizeof(RegstackRateLimitPolicy), policies_compare);
}

/* Every policy, sorted by event type; *count gets how many. */
const RegstackRateLimitPolicy *
regstack_rate_limit_policies(int *count)
{
	if (!policies_valid)
		policies_load();
	*count = policies_count;
	return policies_entries;
}

/* Comma-separated event types that have a policy, for error hints. */
char *
regstack_rate_limit_policy_names(void)
{
	StringInfoData names;

	if (!policies_valid)
		policies_load();
	initStringInfo(&names);
	for (int i = 0; i < policies_count; i++)
		appendStringInfo(&names, "%s%s", i > 0 ? ", " : "",
						 policies_entries[i].event_type);
	return names.data;
}
