/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  regstack's registry tables (token_types, rate_limit_policies,
 *	  secret_keys): the per-backend cache of their rows, and the trigger
 *	  that keeps it and pg_dump right.
 *
 * Cache.  Callers need a registry row on every call, so each backend loads
 * a registry table once (as the table owner, through SPI) into an array
 * sorted bytewise by key, and finds rows by binary search.  regstack's
 * relcache callback (tables.c) marks the cache stale when the table is
 * invalidated; the next
 * lookup reloads it: in the same transaction for the backend that changed
 * the table, at its next transaction for every other one.  A reload reads
 * the latest committed rows (a fresh snapshot, not the caller's): a cache
 * loaded through an old REPEATABLE READ snapshot would be marked valid and
 * keep the old rows after that transaction ends.  Entries stay valid until
 * the next lookup in the same cache.
 *
 * Registry tables carry a boolean column "builtin", true on the rows the
 * extension script ships.  pg_dump keeps only rows WHERE NOT builtin (see
 * pg_extension_config_dump in the install script), so:
 *	- a row inserted or updated outside CREATE/ALTER EXTENSION gets
 *	  builtin = false, and so is dumped;
 *	- inserting a row whose key equals a shipped row's key replaces the
 *	  shipped row: this is how a restore puts back a changed shipped type
 *	  over the one CREATE EXTENSION has just made.
 * After any statement that changes the table, a relcache invalidation tells
 * every backend to reload its cached copy (token_types.c).  When Citus keeps
 * the table as a reference table (regstack.distribute()), the rows and the
 * triggers that fire are those of the shard on each node; the statement
 * trigger then invalidates the table as well as the shard.
 *
 * The row trigger takes the name of the table's key column and, optionally,
 * 'replace': then inserting a row replaces any row with the same key, shipped
 * or not (secret_keys, whose rows pg_dump keeps whatever "builtin" says, so
 * that restoring into a database that was itself restored still works).
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "access/htup_details.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "catalog/namespace.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "storage/lmgr.h"

PG_FUNCTION_INFO_V1(regstack_registry_trigger);

/* The caches loaded so far (one per registry table), for invalidation. */
static RegstackRegistryCache *registry_caches[8];
static int	registry_ncaches = 0;

/*
 * Mark a cache stale when its table (or every relation) was invalidated:
 * called by regstack's relcache callback (tables.c) for every
 * invalidation.
 */
void
regstack_registry_invalidate(Oid relid)
{
	for (int i = 0; i < registry_ncaches; i++)
	{
		RegstackRegistryCache *cache = registry_caches[i];

		if (relid == InvalidOid || relid == cache->relid)
		{
			cache->valid = false;
			cache->invalidations++;
		}
	}
}

/*
 * Prepare the cache's load statement for the relation to read: the table,
 * or when Citus keeps it as a reference table, its shard on this node (a
 * read of the table is a distributed query, which Citus refuses inside a
 * call it routed here; the shard holds the same rows).  Made again when
 * that relation changes (the table distributed, or created anew).
 */
static void
registry_prepare(RegstackRegistryCache *cache)
{
	Oid			read_relid;

	if (!OidIsValid(cache->relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table regstack.%s does not exist", cache->relname)));
	read_relid = regstack_citus_single_shard(cache->relid);
	if (!OidIsValid(read_relid))
		read_relid = cache->relid;
	if (cache->load_plan != NULL && cache->read_relid == read_relid)
		return;
	if (cache->load_plan != NULL)
	{
		SPI_freeplan(cache->load_plan);
		cache->load_plan = NULL;
	}
	regstack_plan(&cache->load_plan,
				  psprintf(cache->load_sql,
						   quote_qualified_identifier(get_namespace_name(get_rel_namespace(read_relid)),
													  get_rel_name(read_relid))),
				  0, NULL);
	cache->read_relid = read_relid;
}

/*
 * Lock the cache's table (AccessShareLock), as its load does first, and
 * return its oid, or InvalidOid when it does not exist.  The table before
 * its shard (on Citus the load reads the shard): the order every call
 * takes, and DROP EXTENSION's lock (citus_drop.c) waits for; and the table
 * stays while its names are looked up.  A caller that opens other tables
 * and may load the cache after them takes this lock first (the reaper).
 */
Oid
regstack_registry_lock(const RegstackRegistryCache *cache)
{
	Oid			relid = get_relname_relid(cache->relname,
										  get_namespace_oid("regstack", true));

	if (!OidIsValid(relid))
		return InvalidOid;
	LockRelationOid(relid, AccessShareLock);
	return SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)) ? relid : InvalidOid;
}

/* Read every row of the cache's table, as the table owner. */
static void
registry_load(RegstackRegistryCache *cache)
{
	RegstackCall call;
	MemoryContext old_context;
	uint64		invalidations_before;

	if (cache->context == NULL)
	{
		if (registry_ncaches >= lengthof(registry_caches))
			elog(ERROR, "too many regstack registry caches");
		regstack_relcache_callback_register();
		registry_caches[registry_ncaches++] = cache;
		cache->context = AllocSetContextCreate(TopMemoryContext,
											   "regstack registry cache",
											   ALLOCSET_SMALL_SIZES);
	}
	MemoryContextReset(cache->context);
	cache->entries = NULL;
	cache->count = 0;

	regstack_begin_call(&call);
	/* An invalidation that arrives while we read leaves the cache stale. */
	invalidations_before = cache->invalidations;
	cache->relid = regstack_registry_lock(cache);
	registry_prepare(cache);
	if (SPI_execute_snapshot(cache->load_plan, NULL, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, true, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read regstack.%s", cache->relname);

	old_context = MemoryContextSwitchTo(cache->context);
	cache->entries = palloc0(cache->entry_size * Max(SPI_processed, 1));
	MemoryContextSwitchTo(old_context);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *entry = (char *) cache->entries + i * cache->entry_size;
		bool		isnull;

		/* Column 1 is the key; the table's CHECK keeps it under 64 bytes. */
		text_to_cstring_buffer(DatumGetTextPP(SPI_getbinval(SPI_tuptable->vals[i],
															SPI_tuptable->tupdesc,
															1, &isnull)),
							   entry, NAMEDATALEN);
		cache->decode(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, entry);
	}
	cache->count = (int) SPI_processed;
	regstack_end_call(&call);
	cache->valid = (cache->invalidations == invalidations_before);
}

/* Reload the cache if a change made it stale. */
void
regstack_registry_refresh(RegstackRegistryCache *cache)
{
	if (!cache->valid)
		registry_load(cache);
}

/* Compare a key with the key that starts a cached entry, for bsearch. */
static int
registry_compare(const void *key, const void *entry)
{
	return strcmp((const char *) key, (const char *) entry);
}

/* The cached entry whose key is key, or NULL. */
const void *
regstack_registry_find(RegstackRegistryCache *cache, const char *key)
{
	regstack_registry_refresh(cache);
	if (cache->count == 0)
		return NULL;
	return bsearch(key, cache->entries, cache->count, cache->entry_size,
				   registry_compare);
}

/* The keys of all cached entries, comma-separated, for error hints. */
char *
regstack_registry_keys(RegstackRegistryCache *cache)
{
	StringInfoData keys;

	regstack_registry_refresh(cache);
	initStringInfo(&keys);
	for (int i = 0; i < cache->count; i++)
		appendStringInfo(&keys, "%s%s", i > 0 ? ", " : "",
						 (const char *) cache->entries + i * cache->entry_size);
	return keys.data;
}

/*
 * Delete the row whose key equals the key of new_row, if any: only a
 * shipped row, unless any_row.
 */
static void
registry_replace(Relation rel, const char *key_column, bool any_row,
				 HeapTuple new_row)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			key_attnum = SPI_fnumber(desc, key_column);
	StringInfoData sql;
	Oid			key_type;
	Datum		key;
	bool		isnull;

	if (key_attnum <= 0)
		elog(ERROR, "registry key column \"%s\" not found", key_column);
	key = heap_getattr(new_row, key_attnum, desc, &isnull);
	if (isnull)
		return;					/* the NOT NULL constraint will report it */
	key_type = TupleDescAttr(desc, key_attnum - 1)->atttypid;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "DELETE FROM %s WHERE %s OPERATOR(pg_catalog.=) $1%s",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)),
					 quote_identifier(key_column),
					 any_row ? "" : " AND builtin");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql.data, 1, &key_type, &key, NULL, false, 0)
		!= SPI_OK_DELETE)
		elog(ERROR, "could not replace shipped registry row");
	SPI_finish();
}

/*
 * When rel is a Citus shard of a registry table (a reference table keeps
 * one on every node, named like the table with "_<shard id>" appended, in
 * its schema), invalidate the table too: the caches watch the table, and
 * on Citus the rows, and so the triggers, are the shard's.
 */
static void
registry_invalidate_shell(Relation rel)
{
	const char *name = RelationGetRelationName(rel);
	const char *suffix = strrchr(name, '_');
	char	   *shell_name;
	Oid			shell;

	if (suffix == NULL || suffix == name || suffix[1] == '\0' ||
		strspn(suffix + 1, "0123456789") != strlen(suffix + 1))
		return;
	shell_name = pnstrdup(name, suffix - name);
	shell = get_relname_relid(shell_name, RelationGetNamespace(rel));
	if (OidIsValid(shell) && shell != RelationGetRelid(rel))
		CacheInvalidateRelcacheByRelid(shell);
	pfree(shell_name);
}

/* Trigger: builtin bookkeeping per row, cache invalidation per statement. */
Datum
regstack_registry_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	HeapTuple	row;
	int			builtin_attnum;
	Datum		builtin_value;
	bool		builtin_null = false;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("regstack_registry_trigger must be called as a trigger")));
	rel = trigdata->tg_relation;

	if (TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
	{
		CacheInvalidateRelcache(rel);
		registry_invalidate_shell(rel);
		return PointerGetDatum(NULL);
	}

	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs < 1 || trigdata->tg_trigger->tgnargs > 2 ||
		(trigdata->tg_trigger->tgnargs == 2 &&
		 strcmp(trigdata->tg_trigger->tgargs[1], "replace") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("regstack_registry_trigger must fire BEFORE each row with a key column and optionally 'replace'")));

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		row = trigdata->tg_trigtuple;
		if (!creating_extension)
			registry_replace(rel, trigdata->tg_trigger->tgargs[0],
							 trigdata->tg_trigger->tgnargs == 2, row);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		row = trigdata->tg_newtuple;
	else
		return PointerGetDatum(trigdata->tg_trigtuple);

	/* Only the extension's own scripts make shipped rows. */
	builtin_attnum = SPI_fnumber(RelationGetDescr(rel), "builtin");
	if (builtin_attnum <= 0)
		elog(ERROR, "registry table has no column \"builtin\"");
	builtin_value = BoolGetDatum(creating_extension);
	row = heap_modify_tuple_by_cols(row, RelationGetDescr(rel), 1,
									&builtin_attnum, &builtin_value,
									&builtin_null);
	return PointerGetDatum(row);
}
