/*-------------------------------------------------------------------------
 *
 * citus.c
 *	  Where a token's or a rate-limit key's row lives when Citus distributes
 *	  regstack's tables: its shard and the node holding that shard, read
 *	  from Citus's metadata through the catalog.
 *
 * regstack neither links against Citus nor includes its headers.  When the
 * citus extension exists in the database, its metadata tables
 * (pg_catalog.pg_dist_partition, pg_dist_shard, pg_dist_placement,
 * pg_dist_local_group, pg_dist_node; present on every node with metadata)
 * are read with system scans, their columns found by name, and the shard
 * of a distribution value is found the way Citus finds it (its
 * FindShardInterval): the value hashed with its type's default hash
 * function under the distribution column's collation, then the shard
 * whose [shardminvalue, shardmaxvalue] holds the hash, then that shard's
 * active placement and its node.  docs/citus-notes.md has the facts and
 * where in Citus's sources each one is.
 *
 * Lookups use a per-backend shard map of each table (CitusShardMap),
 * read with system scans, which take a fresh MVCC snapshot for these
 * tables that are not system catalogs, and made stale by the relcache
 * invalidations Citus's own triggers send for every change of a table's
 * distribution, shards or placements.  So a lookup sees every placement
 * change (shard moves, rebalances, splits) whose invalidation the backend
 * has accepted: every one committed before its transaction started, or
 * before its last lock acquisition.
 *
 * The SQL functions here are regstack.token_node(),
 * regstack.subject_node() and regstack.rate_limit_node(), for clients that
 * send a call straight to the node that owns its row.  They take no lock, so the answer is where the
 * row lives as of the call; a client routing by it meets at worst a node
 * that no longer owns the shard after a move, where the call still gives
 * the right answer.
 *
 * The direct paths use regstack_citus_row_shard() and
 * regstack_citus_local_shards(), which also take Citus's shard metadata
 * lock before they trust a placement; docs/citus.md states that protocol.
 *
 *-------------------------------------------------------------------------
 */
#include "rate_limits.h"
#include "tokens.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "nodes/primnodes.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

/*
 * The field-4 classes of Citus's shard metadata locks (advisory lock tags;
 * ADV_LOCKTAG_CLASS_CITUS_* in Citus's distributed/resource_lock.h).
 */
#define CITUS_LOCK_CLASS_SHARD_METADATA				4
#define CITUS_LOCK_CLASS_COLOCATED_SHARDS_METADATA	8

PG_FUNCTION_INFO_V1(regstack_token_node);
PG_FUNCTION_INFO_V1(regstack_subject_node);
PG_FUNCTION_INFO_V1(regstack_rate_limit_node);

/* Where one distribution value's row lives. */
typedef struct CitusLocation
{
	bool		distributed;	/* false: the table is this node's own */
	int64		shard_id;		/* the shard holding the value */
	int			shard_index;	/* its position among the table's shards */
	int32		colocation_id;	/* the table's colocation group (0: none) */
	int32		group_id;		/* the node group of its active placement */
	bool		is_local;		/* that group is this node's */
	char	   *node_name;		/* the group's primary node (citus_node()) */
	int32		node_port;
} CitusLocation;

/* One shard's hash range, from pg_dist_shard. */
typedef struct CitusShardRange
{
	int64		shard_id;
	int32		min_hash;
	int32		max_hash;
	int32		group_id;		/* of its active placement (the shard map's) */
} CitusShardRange;

/* Whether the citus extension exists in this database. */
static bool
citus_installed(void)
{
	return OidIsValid(get_extension_oid("citus", true));
}

/* Open Citus's metadata table pg_catalog.name (55000 if it is missing). */
static Relation
citus_open_metadata(const char *name)
{
	Oid			relid = get_relname_relid(name, PG_CATALOG_NAMESPACE);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the citus extension exists but its metadata table pg_catalog.%s does not",
						name)));
	return table_open(relid, AccessShareLock);
}

/* The number of column name of Citus's metadata table rel (55000 if none). */
static AttrNumber
citus_column(Relation rel, const char *name)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), name);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("Citus's metadata table %s has no column \"%s\"",
						RelationGetRelationName(rel), name),
				 errdetail("regstack reads the metadata of Citus 11 to 14.")));
	return attnum;
}

/* Column attnum of tuple, which must not be NULL (55000 if it is). */
static Datum
citus_value(Relation rel, HeapTuple tuple, AttrNumber attnum)
{
	bool		isnull;
	Datum		value = heap_getattr(tuple, attnum, RelationGetDescr(rel), &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("Citus's metadata table %s has a NULL in column \"%s\"",
						RelationGetRelationName(rel),
						get_attname(RelationGetRelid(rel), attnum, false))));
	return value;
}

/*
 * Citus's distribution of relid, from pg_dist_partition: false when Citus
 * does not manage it; else true with *method (partmethod), *column (the
 * distribution column's Var, NULL for tables without one) and
 * *colocation_id (0: in no colocation group).
 */
static bool
citus_partition(Oid relid, char *method, Var **column, int32 *colocation_id)
{
	Relation	rel = citus_open_metadata("pg_dist_partition");
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	ScanKeyInit(&key, citus_column(rel, "logicalrelid"), BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		partkey;

		found = true;
		*method = DatumGetChar(citus_value(rel, tuple, citus_column(rel, "partmethod")));
		*colocation_id = DatumGetInt32(citus_value(rel, tuple,
												   citus_column(rel, "colocationid")));
		partkey = heap_getattr(tuple, citus_column(rel, "partkey"),
							   RelationGetDescr(rel), &isnull);
		*column = NULL;
		if (!isnull)
		{
			Node	   *node = stringToNode(TextDatumGetCString(partkey));

			if (!IsA(node, Var))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("Citus's distribution key of table %s is not a column",
								get_rel_name(relid))));
			*column = (Var *) node;
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* Order shard ranges by their lowest hash. */
static int
citus_range_cmp(const void *a, const void *b)
{
	const CitusShardRange *ra = a;
	const CitusShardRange *rb = b;

	return (ra->min_hash > rb->min_hash) - (ra->min_hash < rb->min_hash);
}

/*
 * The shards of hash-distributed relid, sorted by their lowest hash as
 * Citus sorts them (a shard's position in this order is its shard index);
 * *nranges gets how many.
 */
static CitusShardRange *
citus_shard_ranges(Oid relid, int *nranges)
{
	Relation	rel = citus_open_metadata("pg_dist_shard");
	AttrNumber	shardid_col = citus_column(rel, "shardid");
	AttrNumber	min_col = citus_column(rel, "shardminvalue");
	AttrNumber	max_col = citus_column(rel, "shardmaxvalue");
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	CitusShardRange *ranges = NULL;
	int			allocated = 0;

	*nranges = 0;
	ScanKeyInit(&key, citus_column(rel, "logicalrelid"), BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		CitusShardRange *range;

		if (*nranges == allocated)
		{
			allocated = Max(32, allocated * 2);
			ranges = ranges ? repalloc(ranges, allocated * sizeof(CitusShardRange)) :
				palloc(allocated * sizeof(CitusShardRange));
		}
		range = &ranges[(*nranges)++];
		range->shard_id = DatumGetInt64(citus_value(rel, tuple, shardid_col));
		range->min_hash =
			pg_strtoint32(TextDatumGetCString(citus_value(rel, tuple, min_col)));
		range->max_hash =
			pg_strtoint32(TextDatumGetCString(citus_value(rel, tuple, max_col)));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (*nranges > 0)
		qsort(ranges, *nranges, sizeof(CitusShardRange), citus_range_cmp);
	return ranges;
}

/* The node group of shard_id's active placement (55000 if none). */
static int32
citus_placement_group(int64 shard_id)
{
	Relation	rel = citus_open_metadata("pg_dist_placement");
	AttrNumber	state_col = citus_column(rel, "shardstate");
	AttrNumber	group_col = citus_column(rel, "groupid");
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	int32		group_id = -1;

	ScanKeyInit(&key, citus_column(rel, "shardid"), BTEqualStrategyNumber,
				F_INT8EQ, Int64GetDatum(shard_id));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		/* shardstate 1 is Citus's SHARD_STATE_ACTIVE */
		if (DatumGetInt32(citus_value(rel, tuple, state_col)) == 1)
		{
			group_id = DatumGetInt32(citus_value(rel, tuple, group_col));
			break;
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (group_id < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shard %lld has no active placement in Citus's metadata",
						(long long) shard_id)));
	return group_id;
}

/* This node's group, from pg_dist_local_group; -1 when it has none. */
static int32
citus_local_group(void)
{
	Relation	rel = citus_open_metadata("pg_dist_local_group");
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tuple = systable_getnext(scan);
	int32		group_id = -1;

	if (HeapTupleIsValid(tuple))
		group_id = DatumGetInt32(citus_value(rel, tuple,
											 citus_column(rel, "groupid")));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return group_id;
}

/* The primary node of group_id from pg_dist_node: *name and *port (55000 if none). */
static void
citus_group_node(int32 group_id, char **name, int32 *port)
{
	Relation	rel = citus_open_metadata("pg_dist_node");
	AttrNumber	role_col = citus_column(rel, "noderole");
	AttrNumber	name_col = citus_column(rel, "nodename");
	AttrNumber	port_col = citus_column(rel, "nodeport");
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	ScanKeyInit(&key, citus_column(rel, "groupid"), BTEqualStrategyNumber,
				F_INT4EQ, Int32GetDatum(group_id));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	while (!found && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		/* noderole is Citus's enum type noderole: 'primary' or 'secondary' */
		char	   *role = DatumGetCString(DirectFunctionCall1(enum_out,
															   citus_value(rel, tuple, role_col)));

		if (strcmp(role, "primary") != 0)
			continue;
		*name = TextDatumGetCString(citus_value(rel, tuple, name_col));
		*port = DatumGetInt32(citus_value(rel, tuple, port_col));
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("node group %d has no primary node in Citus's metadata",
						group_id)));
}

/*
 * The distribution column of each table the direct paths write: the
 * column Citus must distribute it by for regstack to find a row's shard.
 */
static const char *const citus_distribution_columns[RS_NUM_TABLES] = {
	[RS_TABLE_TOKENS] = "subject_tag",
	[RS_TABLE_RATE_STATE] = "key",
	[RS_TABLE_RATE_EVENTS] = "key",
};

/*
 * How Citus distributes regstack table table (relid): false when it does
 * not, or keeps a copy on every node (a reference table), so the table is
 * this node's own; true for a table distributed by hash of its
 * distribution column, with *column and *colocation_id.  Distributed in
 * any other way: 55000.
 */
static bool
citus_table_distribution(RegstackTable table, Oid relid, Var **column,
						 int32 *colocation_id)
{
	const char *column_name = citus_distribution_columns[table];
	char		method;

	if (!citus_installed() ||
		!citus_partition(relid, &method, column, colocation_id) ||
		method == 'n')
		return false;
	if (method != 'h' || *column == NULL ||
		(*column)->varattno != get_attnum(relid, column_name))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s is not distributed by hash of column \"%s\"",
						get_rel_name(relid), column_name),
				 errdetail("regstack finds a row's shard only when the table is distributed by that column.")));
	return true;
}

/*
 * The shard map of each table the direct paths write: Citus's distribution
 * of the table as last read, kept per backend so that a call reads no
 * metadata table.  A relcache invalidation of the table (Citus's triggers
 * on pg_dist_partition, pg_dist_shard and pg_dist_placement send one for
 * every change of its distribution, shards or placements), of
 * pg_dist_local_group or pg_dist_node, or of every relation makes it
 * stale; the next use reads it again with fresh snapshots.
 */
typedef struct CitusShardMap
{
	bool		valid;
	Oid			relid;			/* the table it describes */
	bool		distributed;	/* by hash: the rest is set */
	TypeCacheEntry *type;		/* the distribution column's type ... */
	Oid			collation;		/* ... and collation */
	int32		colocation_id;
	int			nshards;
	CitusShardRange *shards;	/* sorted by lowest hash: index = shard index */
	int32		local_group;	/* this node's group (-1: none) */
	MemoryContext context;
} CitusShardMap;

static CitusShardMap citus_maps[RS_NUM_TABLES];
static Oid	citus_local_group_relid = InvalidOid;
static Oid	citus_node_relid = InvalidOid;
static uint64 citus_map_invalidations = 0;

/*
 * Mark the shard maps stale when a relation they depend on changed: called
 * by regstack's relcache callback (tables.c) for every invalidation.
 */
void
regstack_citus_invalidate(Oid relid)
{
	bool		all = (relid == InvalidOid || relid == citus_local_group_relid ||
					   relid == citus_node_relid);

	for (int i = 0; i < RS_NUM_TABLES; i++)
		if (all || relid == citus_maps[i].relid)
		{
			citus_maps[i].valid = false;
			citus_map_invalidations++;
		}
}

/* Read table's shard map afresh into *map. */
static void
citus_map_build(RegstackTable table, CitusShardMap *map)
{
	Var		   *column;
	CitusShardRange *shards;

	map->valid = false;			/* until it is whole */
	if (map->context == NULL)
		map->context = AllocSetContextCreate(CacheMemoryContext,
											 "regstack shard map",
											 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(map->context);
	map->shards = NULL;
	map->nshards = 0;
	map->relid = regstack_table_relid(table);
	map->distributed = citus_table_distribution(table, map->relid, &column,
												&map->colocation_id);
	if (!map->distributed)
		return;
	citus_local_group_relid = get_relname_relid("pg_dist_local_group",
												PG_CATALOG_NAMESPACE);
	citus_node_relid = get_relname_relid("pg_dist_node", PG_CATALOG_NAMESPACE);
	map->type = lookup_type_cache(column->vartype, TYPECACHE_HASH_PROC_FINFO);
	if (!OidIsValid(map->type->hash_proc_finfo.fn_oid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("type %s of table %s's distribution column has no hash function",
						format_type_be(column->vartype), get_rel_name(map->relid))));
	map->collation = column->varcollid;
	shards = citus_shard_ranges(map->relid, &map->nshards);
	for (int i = 0; i < map->nshards; i++)
		shards[i].group_id = citus_placement_group(shards[i].shard_id);
	map->shards = MemoryContextAlloc(map->context,
									 sizeof(CitusShardRange) * Max(map->nshards, 1));
	if (map->nshards > 0)
		memcpy(map->shards, shards, sizeof(CitusShardRange) * map->nshards);
	map->local_group = citus_local_group();
}

/* table's shard map, read again if it is stale. */
static CitusShardMap *
citus_map(RegstackTable table)
{
	CitusShardMap *map = &citus_maps[table];
	uint64		invalidations_before;

	regstack_relcache_callback_register();
	if (map->valid && map->relid == regstack_table_relid(table))
		return map;
	invalidations_before = citus_map_invalidations;
	citus_map_build(table, map);
	/* An invalidation while it was read: use it this once, read it again next time. */
	map->valid = (citus_map_invalidations == invalidations_before);
	return map;
}

/*
 * Where the row of regstack table table whose distribution column holds
 * value lives (value's type is the column's): its shard, and whether that
 * shard's active placement is on this node, as of the last invalidation
 * this backend accepted.  A table Citus does not manage, or one it keeps a
 * copy of on every node (a reference table), is this node's own.
 */
static void
citus_locate(RegstackTable table, Datum value, CitusLocation *where)
{
	CitusShardMap *map = citus_map(table);
	int32		hash;
	int			low = 0;
	int			high = map->nshards - 1;

	memset(where, 0, sizeof(*where));
	where->is_local = true;
	if (!map->distributed)
		return;
	hash = DatumGetInt32(FunctionCall1Coll(&map->type->hash_proc_finfo,
										   map->collation, value));
	/* the shard whose range holds hash: ranges are sorted and disjoint */
	while (low <= high)
	{
		int			mid = low + (high - low) / 2;

		if (hash < map->shards[mid].min_hash)
			high = mid - 1;
		else if (hash > map->shards[mid].max_hash)
			low = mid + 1;
		else
		{
			where->distributed = true;
			where->shard_id = map->shards[mid].shard_id;
			where->shard_index = mid;
			where->colocation_id = map->colocation_id;
			where->group_id = map->shards[mid].group_id;
			where->is_local = (where->group_id == map->local_group);
			return;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("no shard of table %s holds hash value %d",
					get_rel_name(map->relid), hash),
			 errdetail("Citus's pg_dist_shard lists %d shard(s) of it.", map->nshards)));
}

/* Fill in where->node_name and node_port: the primary node of its group. */
static void
citus_node(CitusLocation *where)
{
	if (where->distributed)
		citus_group_node(where->group_id, &where->node_name, &where->node_port);
}

/*
 * Take Citus's shard metadata lock of the shard at where in ShareLock,
 * until the transaction ends: the lock Citus's executor takes before it
 * writes a shard (its LockShardDistributionMetadata), and which a shard
 * move or split takes in ExclusiveLock on every node before it switches
 * the placement.  The tag is Citus's (SetLocktagForShardDistributionMetadata):
 * per shard index and colocation group for a table in one, else per shard.
 */
static void
citus_lock_shard_metadata(const CitusLocation *where)
{
	LOCKTAG		tag;

	if (where->colocation_id != 0)
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) where->shard_index,
							 (uint32) where->colocation_id,
							 CITUS_LOCK_CLASS_COLOCATED_SHARDS_METADATA);
	else
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
							 (uint32) (where->shard_id >> 32),
							 (uint32) where->shard_id,
							 CITUS_LOCK_CLASS_SHARD_METADATA);
	(void) LockAcquire(&tag, ShareLock, false, false);
}

/*
 * The shard table of shard_id on this node: the shell's name with the
 * shard id appended, in the shell's schema (Citus's AppendShardIdToName;
 * regstack's names are short enough never to be cut).  55000 when it is
 * missing though Citus places the shard here.
 */
static Oid
citus_shard_relid(RegstackTable table, int64 shard_id)
{
	Oid			shell = regstack_table_relid(table);
	Oid			namespace = get_rel_namespace(shell);
	char	   *name = psprintf("%s_" INT64_FORMAT, get_rel_name(shell), shard_id);
	Oid			relid = get_relname_relid(name, namespace);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shard table %s.%s is missing on this node",
						get_namespace_name(namespace), name),
				 errdetail("Citus's metadata places shard " INT64_FORMAT " on this node.",
						   shard_id)));
	return relid;
}

/*
 * Where the row of table whose distribution column holds value lives, with
 * the shard's metadata lock taken (see regstack.h).  The lock is taken on
 * the shard found first, then the metadata is read again: a move that
 * committed before the lock was granted has changed it, and one that had
 * not cannot switch the placement before this transaction ends.  A split
 * can give the value another shard (and index); that one is locked too,
 * until two readings agree.
 */
void
regstack_citus_row_shard(RegstackTable table, Datum value, RegstackShard *shard)
{
	CitusLocation where;
	CitusLocation again;

	memset(shard, 0, sizeof(*shard));
	citus_locate(table, value, &where);
	if (!where.distributed)
	{
		shard->is_local = true;
		shard->relid = regstack_table_relid(table);
		return;
	}
	for (;;)
	{
		citus_lock_shard_metadata(&where);
		/* what Citus does after its lock (GetCitusTableCacheEntry) */
		AcceptInvalidationMessages();
		citus_locate(table, value, &again);
		if (!again.distributed)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("table %s stopped being distributed during the call",
							get_rel_name(regstack_table_relid(table))),
					 errhint("Retry the call.")));
		/* the same lock covers it: trust this reading, not the first */
		if (again.shard_id == where.shard_id &&
			again.shard_index == where.shard_index &&
			again.colocation_id == where.colocation_id)
		{
			where = again;
			break;
		}
		where = again;
	}
	shard->distributed = true;
	shard->shard_id = where.shard_id;
	shard->colocation_id = where.colocation_id;
	shard->is_local = where.is_local;
	if (where.is_local)
		shard->relid = citus_shard_relid(table, where.shard_id);
}

/*
 * The shards of table placed on this node, each with its metadata lock
 * taken and its placement read again after the lock (see
 * regstack_citus_row_shard); a shard moved away meanwhile is left out.
 * NIL when Citus does not distribute the table.  A list of RegstackShard.
 */
List *
regstack_citus_local_shards(RegstackTable table)
{
	CitusShardMap *map = citus_map(table);
	List	   *shard_ids = NIL;
	List	   *shards = NIL;
	ListCell   *cell;

	if (!map->distributed)
		return NIL;
	for (int i = 0; i < map->nshards; i++)
	{
		CitusLocation where;

		if (map->shards[i].group_id != map->local_group)
			continue;
		memset(&where, 0, sizeof(where));
		where.shard_id = map->shards[i].shard_id;
		where.shard_index = i;
		where.colocation_id = map->colocation_id;
		citus_lock_shard_metadata(&where);
		shard_ids = lappend(shard_ids, palloc(sizeof(int64)));
		*(int64 *) llast(shard_ids) = where.shard_id;
	}
	/* after the locks: which of them are still placed here */
	AcceptInvalidationMessages();
	map = citus_map(table);
	foreach(cell, shard_ids)
	{
		int64		shard_id = *(int64 *) lfirst(cell);

		for (int i = 0; map->distributed && i < map->nshards; i++)
		{
			RegstackShard *shard;

			if (map->shards[i].shard_id != shard_id ||
				map->shards[i].group_id != map->local_group)
				continue;
			shard = palloc0(sizeof(RegstackShard));
			shard->distributed = true;
			shard->shard_id = shard_id;
			shard->colocation_id = map->colocation_id;
			shard->is_local = true;
			shard->relid = citus_shard_relid(table, shard_id);
			shards = lappend(shards, shard);
		}
	}
	list_free_deep(shard_ids);
	return shards;
}

/*
 * The shard of relid on this node when Citus keeps relid in one shard
 * (a reference table, a copy on every node, or a Citus local table), else
 * InvalidOid: a table Citus does not manage, or one it distributes by
 * hash.  An error (55000) when that one shard has no copy here: a node
 * added after regstack.distribute() before Citus copied the reference
 * tables to it.  The registry caches read that shard (registry.c):
 * reading the table itself is a distributed query, which Citus refuses
 * inside a call it routed to this node.
 */
Oid
regstack_citus_single_shard(Oid relid)
{
	char		method;
	Var		   *column;
	int32		colocation_id;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	int64		shard_id = 0;
	int			nshards = 0;
	int32		local_group;
	bool		placed_here = false;
	char	   *name;
	Oid			shard_relid;

	if (!citus_installed() ||
		!citus_partition(relid, &method, &column, &colocation_id) || method != 'n')
		return InvalidOid;

	rel = citus_open_metadata("pg_dist_shard");
	ScanKeyInit(&key, citus_column(rel, "logicalrelid"), BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		shard_id = DatumGetInt64(citus_value(rel, tuple, citus_column(rel, "shardid")));
		nshards++;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (nshards != 1)
		return InvalidOid;

	local_group = citus_local_group();
	rel = citus_open_metadata("pg_dist_placement");
	ScanKeyInit(&key, citus_column(rel, "shardid"), BTEqualStrategyNumber,
				F_INT8EQ, Int64GetDatum(shard_id));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	while (!placed_here && HeapTupleIsValid(tuple = systable_getnext(scan)))
		placed_here = DatumGetInt32(citus_value(rel, tuple,
												citus_column(rel, "groupid"))) == local_group;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	/*
	 * The table itself, Citus's shell, no longer holds the rows (distribute()
	 * truncates it on the coordinator; a worker's holds what it had before):
	 * never read it in place of the shard.
	 */
	if (!placed_here)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table regstack.%s has no copy on this node", get_rel_name(relid)),
				 errdetail("Citus keeps it in shard " INT64_FORMAT ", which has no placement in this node's group %d.",
						   shard_id, local_group),
				 local_group == 0 ?
				 errhint("Add the coordinator to the Citus metadata (citus_set_coordinator_host), then run SELECT replicate_reference_tables().") :
				 errhint("Run SELECT replicate_reference_tables() on the Citus coordinator (a node added after regstack.distribute() gets its copy then).")));
	name = psprintf("%s_" INT64_FORMAT, get_rel_name(relid), shard_id);
	shard_relid = get_relname_relid(name, get_rel_namespace(relid));
	if (!OidIsValid(shard_relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the shard regstack.%s of table regstack.%s is missing on this node",
						name, get_rel_name(relid)),
				 errdetail("Citus's metadata places shard " INT64_FORMAT " in this node's group %d.",
						   shard_id, local_group)));
	return shard_relid;
}

/* The SQL result row of a location: node_name, node_port, shard_id, is_local. */
static Datum
citus_location_datum(FunctionCallInfo fcinfo, const CitusLocation *where)
{
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {true, true, true, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (where->distributed)
	{
		values[0] = CStringGetTextDatum(where->node_name);
		values[1] = Int32GetDatum(where->node_port);
		values[2] = Int64GetDatum(where->shard_id);
		nulls[0] = nulls[1] = nulls[2] = false;
	}
	values[3] = BoolGetDatum(where->is_local);
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls));
}

/*
 * token_node(token): the node holding token's row.  A string that is not
 * a token regstack issued has no row anywhere; every node answers for it
 * (with a miss), so it is reported as local, with no node.
 */
Datum
regstack_token_node(PG_FUNCTION_ARGS)
{
	text	   *token = regstack_text_arg(fcinfo, 0, "token",
										  REGSTACK_MAX_TEXT_BYTES, true);
	CitusLocation where;

	if (!regstack_token_wellformed(token))
	{
		memset(&where, 0, sizeof(where));
		where.is_local = true;
	}
	else
	{
		AcceptInvalidationMessages();	/* as of now, not of the transaction's start */
		citus_locate(RS_TABLE_TOKENS, Int32GetDatum(regstack_token_tag(token)),
					 &where);
		citus_node(&where);
	}
	PG_RETURN_DATUM(citus_location_datum(fcinfo, &where));
}

/*
 * subject_node(subject): the node holding the tokens of subject, where
 * its issue_token (with a cap) and revoke_tokens run directly.
 */
Datum
regstack_subject_node(PG_FUNCTION_ARGS)
{
	text	   *subject = regstack_text_arg(fcinfo, 0, "subject",
											REGSTACK_MAX_TEXT_BYTES, true);
	CitusLocation where;

	AcceptInvalidationMessages();	/* as of now, the key too */
	citus_locate(RS_TABLE_TOKENS, Int32GetDatum(regstack_subject_tag(subject)), &where);
	citus_node(&where);
	PG_RETURN_DATUM(citus_location_datum(fcinfo, &where));
}

/* rate_limit_node(key): the node holding the rate-limit state of key. */
Datum
regstack_rate_limit_node(PG_FUNCTION_ARGS)
{
	text	   *key = regstack_text_arg(fcinfo, 0, "key",
										REGSTACK_MAX_RATE_KEY_BYTES, true);
	CitusLocation where;

	AcceptInvalidationMessages();	/* as of now, not of the transaction's start */
	citus_locate(RS_TABLE_RATE_STATE, PointerGetDatum(key), &where);
	citus_node(&where);
	PG_RETURN_DATUM(citus_location_datum(fcinfo, &where));
}
