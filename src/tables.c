/*-------------------------------------------------------------------------
 *
 * tables.c
 *	  regstack's own tables: finding them, their owner, and the guard that
 *	  each is exactly as the extension ships it.
 *
 * issue_token, consume_token, peek_token, attach_result and the rate-limit
 * calls read and write heap tuples directly (token_store.c,
 * rate_limit_store.c).  That skips what the executor does for any other
 * INSERT, UPDATE or DELETE on the same table: column defaults, NOT NULL and
 * CHECK constraints, triggers (foreign keys among them), rules, forced row
 * security, partition and inheritance routing, Citus's distributed tables.
 * So that no call ever does silently less than the SQL it replaces, every
 * call first makes sure that each table it touches has none of those
 * beyond what regstack ships, and otherwise fails with 55000 naming the
 * difference and how to undo it.  The tables may be distributed by Citus
 * (the tokens by subject_tag, the rate-limit tables by key): then the
 * shards on this node are what the direct paths write, and each is
 * checked the same way when opened (docs/citus.md).  The SQL paths (revoke_tokens, the caps,
 * rate_limit_reset, purges) are checked the same way, so that a table has
 * one behaviour whichever function touches it.  Allowed: indexes a DBA adds
 * (the direct paths give every index its entry, with its unique or
 * exclusion check; heap_access.c) unless deferrable (a deferred check is
 * queued as a trigger at commit, which direct writes cannot do), storage
 * parameters, UNLOGGED, row security enabled but not forced (it does not
 * apply to the owner, whom regstack acts as), comments, statistics.
 *
 * The check reads the relcache and pg_constraint, once: its result is kept
 * per backend and forgotten by a relcache callback when one of the tables
 * changes (every DDL that could make a difference invalidates the table's
 * relcache entry), so a call on an unchanged table pays a flag test, and a
 * change that is undone is noticed by every session at its next call.
 * Callers check after opening the table, and keep the lock to the end of
 * the transaction; every such DDL takes a lock that conflicts with a
 * writer's RowExclusiveLock (CREATE TRIGGER its ShareRowExclusiveLock,
 * most others AccessExclusiveLock), so the table cannot change between
 * the check and the write.
 *
 * The check also says where each shipped column is: a table upgraded from
 * 1.0 keeps the attribute number of the column it dropped (the rate-limit
 * tables' "lane"), so the direct paths address columns through
 * RegstackTableInfo, never by position.
 *
 * And the extension's SQL objects must be the version this library works
 * with (REGSTACK_SQL_VERSION): after installing a newer library, every call
 * fails with 55000 until ALTER EXTENSION regstack UPDATE has run.
 *
 *-------------------------------------------------------------------------
 */
#include "heap_access.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_rewrite.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

/* A shipped column: its name, type, collation, and whether it is NOT NULL. */
typedef struct TablesColumn
{
	const char *name;
	Oid			type;
	Oid			collation;
	bool		not_null;
} TablesColumn;

/* A shipped table: its columns in order and its primary key's columns. */
typedef struct TablesShape
{
	const char *relname;
	int			ncolumns;
	const TablesColumn *columns;
	int			npkey;
	int			pkey[3];		/* column numbers (from 1) */
} TablesShape;

#define TABLES_TEXT		TEXTOID, DEFAULT_COLLATION_OID
#define TABLES_KEY_TEXT	TEXTOID, C_COLLATION_OID

static const TablesColumn tables_token_columns[RS_NUM_COLS] = {
	{"subject_tag", INT4OID, InvalidOid, true},
	{"token_hash", BYTEAOID, InvalidOid, true},
	{"token_type", TABLES_TEXT, true},
	{"subject", TABLES_TEXT, false},
	{"provider", TABLES_TEXT, false},
	{"nonce", TABLES_TEXT, false},
	{"code_verifier", TABLES_TEXT, false},
	{"challenge_hash", BYTEAOID, InvalidOid, false},
	{"redirect_to", TABLES_TEXT, false},
	{"mode", TABLES_TEXT, false},
	{"linking_user_id", TABLES_TEXT, false},
	{"result", TABLES_TEXT, false},
	{"payload", JSONBOID, InvalidOid, false},
	{"created_at", TIMESTAMPTZOID, InvalidOid, true},
	{"expires_at", TIMESTAMPTZOID, InvalidOid, true},
};

static const TablesColumn tables_state_columns[RS_STATE_NUM_COLS] = {
	{"key", TABLES_KEY_TEXT, true},
	{"event_type", TABLES_KEY_TEXT, true},
	{"next_seq", INT8OID, InvalidOid, true},
	{"start_seq", INT8OID, InvalidOid, true},
	{"start_at", TIMESTAMPTZOID, InvalidOid, false},
	{"window_us", INT8OID, InvalidOid, false},
	{"last_at", TIMESTAMPTZOID, InvalidOid, false},
	{"clock_at", TIMESTAMPTZOID, InvalidOid, true},
};

static const TablesColumn tables_event_columns[RS_EVENT_NUM_COLS] = {
	{"key", TABLES_KEY_TEXT, true},
	{"event_type", TABLES_KEY_TEXT, true},
	{"seq", INT8OID, InvalidOid, true},
	{"occurred_at", TIMESTAMPTZOID, InvalidOid, true},
};

static const TablesShape tables_shapes[RS_NUM_TABLES] = {
	[RS_TABLE_TOKENS] = {"auth_ephemeral_tokens", RS_NUM_COLS, tables_token_columns,
	2, {RS_COL_SUBJECT_TAG, RS_COL_TOKEN_HASH}},
	[RS_TABLE_RATE_STATE] = {"auth_rate_limit_state", RS_STATE_NUM_COLS, tables_state_columns,
	2, {RS_STATE_KEY, RS_STATE_EVENT_TYPE}},
	[RS_TABLE_RATE_EVENTS] = {"auth_rate_limit_events", RS_EVENT_NUM_COLS, tables_event_columns,
	3, {RS_EVENT_KEY, RS_EVENT_EVENT_TYPE, RS_EVENT_SEQ}},
};

StaticAssertDecl(RS_NUM_COLS <= REGSTACK_MAX_COLUMNS &&
				 RS_STATE_NUM_COLS <= REGSTACK_MAX_COLUMNS &&
				 RS_EVENT_NUM_COLS <= REGSTACK_MAX_COLUMNS,
				 "REGSTACK_MAX_COLUMNS is too small");

/*
 * What is cached: the tables' OIDs and owner (Invalid: look them up), and
 * for each table whether it passed the check, with its column map.
 */
static Oid	tables_relids[RS_NUM_TABLES];
static Oid	tables_owner = InvalidOid;
static bool tables_verified[RS_NUM_TABLES];
static RegstackTableInfo tables_info[RS_NUM_TABLES];
static bool tables_callback_registered = false;

/*
 * Shards of a distributed table on this node that passed the check, by
 * their OID (TablesShardEntry); an entry is dropped when its relation is
 * invalidated.  NULL until the first shard is opened.
 */
typedef struct TablesShardEntry
{
	Oid			relid;			/* hash key */
	RegstackTableInfo info;
} TablesShardEntry;

static HTAB *tables_shards = NULL;

/* Relcache invalidations of any relation seen (see tables_invalidations). */
static uint64 tables_shard_invalidations = 0;

/*
 * Invalidations seen: a check that an invalidation interrupted (its catalog
 * reads process them) does not mark the table verified, since it may have
 * read the table as it was before the change.
 */
static uint64 tables_invalidations = 0;

static void tables_relcache_callback(Datum arg, Oid relid);

/*
 * Register regstack's one relcache callback, once per backend: PostgreSQL
 * has a few slots for them (10 in 15), shared with every other extension
 * (Citus takes five), so the registry caches and Citus's shard maps are
 * invalidated from it too.
 */
void
regstack_relcache_callback_register(void)
{
	if (!tables_callback_registered)
	{
		CacheRegisterRelcacheCallback(tables_relcache_callback, (Datum) 0);
		tables_callback_registered = true;
	}
}

/*
 * Forget everything when one of the tables (or every relation) changed;
 * pass every invalidation on to the registry caches and the shard maps.
 */
static void
tables_relcache_callback(Datum arg, Oid relid)
{
	regstack_registry_invalidate(relid);
	regstack_citus_invalidate(relid);
	tables_shard_invalidations++;
	if (tables_shards != NULL)
	{
		if (relid == InvalidOid)
		{
			HASH_SEQ_STATUS status;
			TablesShardEntry *entry;

			hash_seq_init(&status, tables_shards);
			while ((entry = hash_seq_search(&status)) != NULL)
				(void) hash_search(tables_shards, &entry->relid, HASH_REMOVE, NULL);
		}
		else
			(void) hash_search(tables_shards, &relid, HASH_REMOVE, NULL);
	}
	for (int i = 0; i < RS_NUM_TABLES; i++)
	{
		if (relid == InvalidOid || relid == tables_relids[i])
		{
			memset(tables_relids, 0, sizeof(tables_relids));
			memset(tables_verified, 0, sizeof(tables_verified));
			tables_owner = InvalidOid;
			tables_invalidations++;
			return;
		}
	}
}

/* Fill *problem with a message, detail and hint (each printf-formatted by the caller). */
static bool
tables_refuse(RegstackTableProblem *problem, char *message, char *detail,
			  char *hint)
{
	problem->message = message;
	problem->detail = detail;
	problem->hint = hint;
	return false;
}

/* Raise the 55000 error a problem describes. */
static void
tables_raise(const RegstackTableProblem *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg_internal("%s", problem->message),
			 problem->detail ? errdetail_internal("%s", problem->detail) : 0,
			 problem->hint ? errhint("%s", problem->hint) : 0));
}

/* The version of extension extoid's SQL objects, palloc'd. */
static char *
tables_extension_version(Oid extoid)
{
	Relation	extrel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *version = NULL;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(extrel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		value = heap_getattr(tuple, Anum_pg_extension_extversion,
										 RelationGetDescr(extrel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(value);
	}
	systable_endscan(scan);
	table_close(extrel, AccessShareLock);
	return version;
}

/*
 * Find the extension (at the version this library works with), its tables
 * and their owner; cache them.  False with *problem when it cannot.
 */
static bool
tables_lookup(RegstackTableProblem *problem)
{
	Oid			extoid;
	Oid			namespace_oid;
	Oid			relids[RS_NUM_TABLES];
	char	   *version;
	HeapTuple	class_tuple;

	regstack_relcache_callback_register();

	extoid = get_extension_oid("regstack", true);
	namespace_oid = get_namespace_oid("regstack", true);
	if (!OidIsValid(extoid) || !OidIsValid(namespace_oid))
		return tables_refuse(problem,
							 pstrdup("extension \"regstack\" is not installed in this database"),
							 NULL, pstrdup("Run CREATE EXTENSION regstack."));
	version = tables_extension_version(extoid);
	if (version == NULL || strcmp(version, REGSTACK_SQL_VERSION) != 0)
		return tables_refuse(problem,
							 psprintf("extension \"regstack\" in this database is version %s, but its library needs version %s",
									  version ? version : "(none)", REGSTACK_SQL_VERSION),
							 pstrdup("A newer library was installed; the database still has the older version's SQL objects."),
							 pstrdup("Run ALTER EXTENSION regstack UPDATE."));

	for (int i = 0; i < RS_NUM_TABLES; i++)
	{
		relids[i] = get_relname_relid(tables_shapes[i].relname, namespace_oid);
		if (!OidIsValid(relids[i]))
			return tables_refuse(problem,
								 psprintf("table regstack.%s does not exist", tables_shapes[i].relname),
								 NULL,
								 pstrdup("Reinstall the extension: DROP EXTENSION regstack; CREATE EXTENSION regstack;"));
	}

	class_tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relids[RS_TABLE_TOKENS]));
	if (!HeapTupleIsValid(class_tuple))
		return tables_refuse(problem,
							 psprintf("table regstack.%s does not exist", tables_shapes[RS_TABLE_TOKENS].relname),
							 NULL, NULL);
	tables_owner = ((Form_pg_class) GETSTRUCT(class_tuple))->relowner;
	ReleaseSysCache(class_tuple);
	memcpy(tables_relids, relids, sizeof(tables_relids));
	return true;
}

/* The owner of regstack's tables; 55000 when the extension is unusable. */
Oid
regstack_tables_owner(void)
{
	RegstackTableProblem problem;

	if (!OidIsValid(tables_owner) && !tables_lookup(&problem))
		tables_raise(&problem);
	return tables_owner;
}

/* The OID of table, unchecked; see heap_access.h. */
Oid
regstack_table_relid(RegstackTable table)
{
	(void) regstack_tables_owner();
	return tables_relids[table];
}

/* The schema-qualified name of relation relid, quoted, for messages. */
static char *
tables_relation_name(Oid relid)
{
	char	   *relname = get_rel_name(relid);

	if (relname == NULL)
		return psprintf("with OID %u", relid);
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  relname);
}

/* "regstack.<table>", for messages. */
static char *
tables_name(const TablesShape *shape)
{
	return psprintf("regstack.%s", shape->relname);
}

/*
 * Check the columns of rel against shape: the shipped ones, with their
 * types, collations and NOT NULL, no default, no others (dropped ones
 * aside); fill info->attnum.
 */
static bool
tables_verify_columns(Relation rel, const TablesShape *shape,
					  RegstackTableInfo *info, RegstackTableProblem *problem)
{
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *name = tables_name(shape);

	memset(info->attnum, 0, sizeof(info->attnum));
	info->ncolumns = shape->ncolumns;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(desc, i);
		const char *attname = NameStr(attr->attname);
		const TablesColumn *column = NULL;
		int			col;

		if (attr->attisdropped)
			continue;
		for (col = 0; col < shape->ncolumns; col++)
			if (strcmp(shape->columns[col].name, attname) == 0)
			{
				column = &shape->columns[col];
				break;
			}
		if (column == NULL)
			return tables_refuse(problem,
								 psprintf("table %s has a column \"%s\" that regstack does not ship", name, attname),
								 pstrdup("regstack's functions write this table directly and would leave the column empty."),
								 psprintf("Drop the column: ALTER TABLE %s DROP COLUMN %s;", name, quote_identifier(attname)));
		if (attr->atttypid != column->type || attr->atttypmod != -1 ||
			attr->attcollation != column->collation)
			return tables_refuse(problem,
								 psprintf("column \"%s\" of table %s has type %s, but regstack ships it as %s",
										  attname, name,
										  format_type_with_typemod(attr->atttypid, attr->atttypmod),
										  format_type_be(column->type)),
								 attr->attcollation != column->collation ?
								 pstrdup("Its type or collation differs.") : NULL,
								 pstrdup("Reinstall the extension, or change the column back."));
		if (attr->attgenerated != '\0' || attr->attidentity != '\0')
			return tables_refuse(problem,
								 psprintf("column \"%s\" of table %s is %s column, which regstack does not ship",
										  attname, name,
										  attr->attgenerated != '\0' ? "a generated" : "an identity"),
								 pstrdup("regstack's functions write every column themselves."),
								 attr->attidentity != '\0' ?
								 psprintf("ALTER TABLE %s ALTER COLUMN %s DROP IDENTITY;",
										  name, quote_identifier(attname)) :
								 pstrdup("Reinstall the extension: DROP EXTENSION regstack; CREATE EXTENSION regstack;"));
		if (attr->atthasdef)
			return tables_refuse(problem,
								 psprintf("column \"%s\" of table %s has a default that regstack does not ship", attname, name),
								 pstrdup("regstack's functions write every column themselves and would not use it."),
								 psprintf("Drop the default: ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT;",
										  name, quote_identifier(attname)));
		if (attr->attnotnull != column->not_null)
			return tables_refuse(problem,
								 column->not_null ?
								 psprintf("column \"%s\" of table %s is nullable, but regstack ships it NOT NULL", attname, name) :
								 psprintf("column \"%s\" of table %s is NOT NULL, but regstack ships it nullable", attname, name),
								 column->not_null ? NULL :
								 pstrdup("regstack's functions write this table directly and do not check the constraint."),
								 psprintf("ALTER TABLE %s ALTER COLUMN %s %s NOT NULL;", name,
										  quote_identifier(attname), column->not_null ? "SET" : "DROP"));
		if (info->attnum[col] != 0)
			elog(ERROR, "column \"%s\" appears twice in %s", attname, name);
		info->attnum[col] = attr->attnum;
	}
	for (int col = 0; col < shape->ncolumns; col++)
		if (info->attnum[col] == 0)
			return tables_refuse(problem,
								 psprintf("table %s has no column \"%s\"", name, shape->columns[col].name),
								 NULL,
								 pstrdup("Reinstall the extension: DROP EXTENSION regstack; CREATE EXTENSION regstack;"));
	return true;
}

/* Whether a pg_constraint row's conkey is exactly the shape's primary key. */
static bool
tables_is_shipped_pkey(HeapTuple tuple, Relation conrel, const TablesShape *shape,
					   const RegstackTableInfo *info)
{
	bool		isnull;
	Datum		conkey = heap_getattr(tuple, Anum_pg_constraint_conkey,
									  RelationGetDescr(conrel), &isnull);
	ArrayType  *array;
	int16	   *attnums;

	if (isnull)
		return false;
	array = DatumGetArrayTypeP(conkey);
	if (ARR_NDIM(array) != 1 || ARR_DIMS(array)[0] != shape->npkey ||
		ARR_HASNULL(array) || ARR_ELEMTYPE(array) != INT2OID)
		return false;
	attnums = (int16 *) ARR_DATA_PTR(array);
	for (int i = 0; i < shape->npkey; i++)
		if (attnums[i] != info->attnum[shape->pkey[i] - 1])
			return false;
	return true;
}

/*
 * Check the constraints of rel: the shipped primary key, and besides it
 * only unique and exclusion constraints (a DBA's indexes) that are not
 * deferrable.
 */
static bool
tables_verify_constraints(Relation rel, const TablesShape *shape,
						  const RegstackTableInfo *info,
						  RegstackTableProblem *problem)
{
	Relation	conrel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *name = tables_name(shape);
	bool		has_pkey = false;
	bool		ok = true;

	ScanKeyInit(&key, Anum_pg_constraint_conrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(RelationGetRelid(rel)));
	scan = systable_beginscan(conrel, ConstraintRelidTypidNameIndexId, true,
							  NULL, 1, &key);
	while (ok && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tuple);
		const char *conname = NameStr(con->conname);

		switch (con->contype)
		{
			case CONSTRAINT_PRIMARY:
				if (tables_is_shipped_pkey(tuple, conrel, shape, info) &&
					!con->condeferrable)
				{
					has_pkey = true;
					break;
				}
				ok = tables_refuse(problem,
								   psprintf("table %s has a primary key \"%s\" that regstack does not ship", name, conname),
								   NULL,
								   pstrdup("Reinstall the extension: DROP EXTENSION regstack; CREATE EXTENSION regstack;"));
				break;
			case CONSTRAINT_UNIQUE:
			case CONSTRAINT_EXCLUSION:
				if (!con->condeferrable)
					break;		/* an index: maintained and checked */
				ok = tables_refuse(problem,
								   psprintf("table %s has a deferrable constraint \"%s\"", name, conname),
								   pstrdup("regstack's functions write this table directly and cannot defer a check to commit."),
								   psprintf("Make it NOT DEFERRABLE (drop it and add it again), or drop it: ALTER TABLE %s DROP CONSTRAINT %s;",
											name, quote_identifier(conname)));
				break;
			case CONSTRAINT_CHECK:
			case CONSTRAINT_FOREIGN:
				ok = tables_refuse(problem,
								   psprintf("table %s has a %s constraint \"%s\" that regstack does not ship",
											name, con->contype == CONSTRAINT_CHECK ? "check" : "foreign-key",
											conname),
								   pstrdup("regstack's functions write this table directly and do not check it."),
								   psprintf("Drop it: ALTER TABLE %s DROP CONSTRAINT %s;",
											name, quote_identifier(conname)));
				break;
			case CONSTRAINT_TRIGGER:
				break;			/* its trigger is reported below */
			default:

				/*
				 * PostgreSQL 18 records NOT NULL as constraints (contype
				 * 'n'); the columns' attnotnull was checked above.
				 */
				break;
		}
	}
	systable_endscan(scan);
	table_close(conrel, AccessShareLock);
	if (ok && !has_pkey)
		ok = tables_refuse(problem,
						   psprintf("table %s has lost its primary key", name),
						   NULL,
						   pstrdup("Reinstall the extension: DROP EXTENSION regstack; CREATE EXTENSION regstack;"));
	return ok;
}

/* The name of the first rule on relid (there is one). */
static char *
tables_rule_name(Oid relid)
{
	Relation	rewrite = table_open(RewriteRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *rulename = pstrdup("?");

	ScanKeyInit(&key, Anum_pg_rewrite_ev_class, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rewrite, RewriteRelRulenameIndexId, true, NULL,
							  1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		rulename = pstrdup(NameStr(((Form_pg_rewrite) GETSTRUCT(tuple))->rulename));
	systable_endscan(scan);
	table_close(rewrite, AccessShareLock);
	return rulename;
}

/* A trigger on rel: which one, or which foreign key it belongs to. */
static bool
tables_refuse_trigger(const Trigger *trigger, const char *name,
					  RegstackTableProblem *problem)
{
	HeapTuple	contuple = NULL;

	if (trigger->tgisinternal && OidIsValid(trigger->tgconstraint))
		contuple = SearchSysCache1(CONSTROID,
								   ObjectIdGetDatum(trigger->tgconstraint));
	if (HeapTupleIsValid(contuple))
	{
		Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(contuple);
		char	   *other = tables_relation_name(con->conrelid);
		char	   *conname = pstrdup(NameStr(con->conname));

		ReleaseSysCache(contuple);
		return tables_refuse(problem,
							 psprintf("table %s is referenced by foreign key \"%s\" of table %s",
									  name, conname, other),
							 pstrdup("regstack's functions write this table directly and do not run the foreign key's checks."),
							 psprintf("Drop it: ALTER TABLE %s DROP CONSTRAINT %s;",
									  other, quote_identifier(conname)));
	}
	return tables_refuse(problem,
						 psprintf("table %s has a trigger \"%s\" that regstack does not ship",
								  name, trigger->tgname),
						 pstrdup("regstack's functions write this table directly and do not fire triggers."),
						 psprintf("Drop it: DROP TRIGGER %s ON %s;",
								  quote_identifier(trigger->tgname), name));
}

/*
 * Whether Citus manages relid (distributed, reference or Citus local
 * table): pg_dist_partition has a row for it.  Read only when the citus
 * extension exists; regstack neither links against Citus nor includes its
 * headers.  *method gets the row's partmethod.
 */
static bool
tables_citus_managed(Oid relid, char *method)
{
	Oid			dist_partition;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	if (!OidIsValid(get_extension_oid("citus", true)))
		return false;
	dist_partition = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
	if (!OidIsValid(dist_partition))
		return false;
	rel = table_open(dist_partition, AccessShareLock);
	/* column 1 is logicalrelid (regclass), column 2 partmethod ("char") */
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		value = heap_getattr(tuple, 2, RelationGetDescr(rel), &isnull);

		found = true;
		*method = isnull ? '?' : DatumGetChar(value);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The whole check of table, open as rel: true and *info filled in when it
 * is exactly as shipped, else false with *problem.
 */
static bool
tables_verify(RegstackTable table, Relation rel, RegstackTableInfo *info,
			  RegstackTableProblem *problem)
{
	const TablesShape *shape = &tables_shapes[table];
	Form_pg_class form = rel->rd_rel;
	char	   *name = tables_name(shape);
	char		citus_method;
	List	   *children;

	info->relid = RelationGetRelid(rel);
	if (form->relkind != RELKIND_RELATION)
		return tables_refuse(problem,
							 psprintf("table %s is not an ordinary table", name),
							 NULL,
							 pstrdup("Reinstall the extension: DROP EXTENSION regstack; CREATE EXTENSION regstack;"));
	if (form->relam != HEAP_TABLE_AM_OID)
		return tables_refuse(problem,
							 psprintf("table %s uses access method \"%s\", not heap",
									  name, get_am_name(form->relam)),
							 pstrdup("regstack's functions read and write heap tuples directly."),
							 psprintf("ALTER TABLE %s SET ACCESS METHOD heap;", name));
	/*
	 * A table distributed by Citus (hash): calls write its shards, each
	 * checked when opened (regstack_table_open_shard()), or reach them
	 * through SQL that Citus routes; the shell table itself is never
	 * written, so only its columns matter here (its trigger on the
	 * coordinator is Citus's own).  citus.c checks the distribution column
	 * and rate_limit_store.c the colocation of the rate-limit tables.
	 * Reference and Citus local tables are refused.  Citus's
	 * undistribute_table() refuses an extension's table, so the way back
	 * is to make the extension again (its rows are lost).
	 */
	info->distributed = false;
	if (tables_citus_managed(info->relid, &citus_method))
	{
		if (citus_method == 'h')
		{
			info->distributed = true;
			return tables_verify_columns(rel, shape, info, problem);
		}
		return tables_refuse(problem,
							 citus_method == 'n' ?
							 psprintf("table %s is a Citus reference or local table", name) :
							 psprintf("table %s is distributed by Citus, but not by hash", name),
							 pstrdup("regstack's tables may be distributed by hash (the tokens by subject_tag, the rate-limit tables by key), not copied to every node or kept on the coordinator."),
							 pstrdup("Recreate the extension with its tables local: DROP EXTENSION regstack CASCADE, drop the shard tables it leaves in schema regstack, then CREATE EXTENSION regstack."));
	}
	if (form->relispartition)
	{
		Oid			parent = get_partition_parent(info->relid, true);

		return tables_refuse(problem,
							 psprintf("table %s is a partition of table %s", name,
									  tables_relation_name(parent)),
							 NULL,
							 psprintf("ALTER TABLE %s DETACH PARTITION %s;",
									  tables_relation_name(parent), name));
	}
	if (form->relhassubclass &&
		(children = find_inheritance_children(info->relid, NoLock)) != NIL)
	{
		char	   *child = tables_relation_name(linitial_oid(children));

		return tables_refuse(problem,
							 psprintf("table %s has a child table %s", name, child),
							 pstrdup("regstack's functions read and write this table alone, not its children."),
							 psprintf("ALTER TABLE %s NO INHERIT %s;", child, name));
	}
	if (!tables_verify_columns(rel, shape, info, problem) ||
		!tables_verify_constraints(rel, shape, info, problem))
		return false;
	if (rel->trigdesc != NULL && rel->trigdesc->numtriggers > 0)
		return tables_refuse_trigger(&rel->trigdesc->triggers[0], name, problem);
	if (rel->rd_rules != NULL && rel->rd_rules->numLocks > 0)
	{
		char	   *rulename = tables_rule_name(info->relid);

		return tables_refuse(problem,
							 psprintf("table %s has a rule \"%s\" that regstack does not ship", name, rulename),
							 pstrdup("regstack's functions write this table directly and do not apply rules."),
							 psprintf("Drop it: DROP RULE %s ON %s;", quote_identifier(rulename), name));
	}
	if (form->relforcerowsecurity)
		return tables_refuse(problem,
							 psprintf("row-level security is forced on table %s", name),
							 pstrdup("regstack acts as the table's owner, whom forced row security would restrict; its direct reads and writes do not apply policies."),
							 psprintf("ALTER TABLE %s NO FORCE ROW LEVEL SECURITY;", name));
	return true;
}

/*
 * Open table in lockmode and check it, unless it passed since it last
 * changed; *rel gets it (NULL if it could not be opened).
 */
static bool
tables_open_checked(RegstackTable table, LOCKMODE lockmode, Relation *rel,
					RegstackTableProblem *problem)
{
	uint64		invalidations_before;

	*rel = NULL;
	for (int attempt = 0; attempt < 2; attempt++)
	{
		Oid			relid;

		if (!OidIsValid(tables_relids[table]) && !tables_lookup(problem))
			return false;
		relid = tables_relids[table];
		/* try_: the table may have gone since we looked it up */
		*rel = try_table_open(relid, lockmode);
		/* opening processed invalidations: still the table we looked up? */
		if (*rel != NULL && tables_relids[table] == relid)
			break;
		if (*rel != NULL)
			table_close(*rel, lockmode);
		*rel = NULL;
		memset(tables_relids, 0, sizeof(tables_relids));
	}
	if (*rel == NULL)
		return tables_lookup(problem) &&
			tables_refuse(problem,
						  psprintf("table regstack.%s changed while it was being opened",
								   tables_shapes[table].relname),
						  NULL, pstrdup("Retry the call."));
	if (tables_verified[table])
		return true;
	invalidations_before = tables_invalidations;
	if (!tables_verify(table, *rel, &tables_info[table], problem))
		return false;
	/* Verified as the table is now, unless it changed meanwhile. */
	tables_verified[table] = (tables_invalidations == invalidations_before);
	return true;
}

/* Open a checked table; see regstack.h. */
Relation
regstack_table_open(RegstackTable table, LOCKMODE lockmode,
					const RegstackTableInfo **info)
{
	RegstackTableProblem problem;
	Relation	rel;

	if (!tables_open_checked(table, lockmode, &rel, &problem))
	{
		if (rel != NULL)
			table_close(rel, NoLock);
		tables_raise(&problem);
	}
	*info = &tables_info[table];
	return rel;
}

/*
 * Open shard shard_relid of distributed table table in lockmode, after
 * the same check as the table's (once per change of the shard, cached);
 * 55000 naming the difference otherwise.  *info gets where its columns
 * are: Citus makes a shard from the table's definition, without the
 * table's dropped columns.
 */
Relation
regstack_table_open_shard(RegstackTable table, Oid shard_relid,
						  LOCKMODE lockmode, RegstackTableInfo *info)
{
	RegstackTableProblem problem;
	TablesShardEntry *entry;
	Relation	rel;
	uint64		invalidations_before;

	rel = table_open(shard_relid, lockmode);
	if (tables_shards == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(TablesShardEntry);
		tables_shards = hash_create("regstack checked shards", 64, &ctl,
									HASH_ELEM | HASH_BLOBS);
	}
	entry = hash_search(tables_shards, &shard_relid, HASH_FIND, NULL);
	if (entry != NULL)
	{
		*info = entry->info;
		return rel;
	}
	invalidations_before = tables_shard_invalidations;
	if (!tables_verify(table, rel, info, &problem))
	{
		table_close(rel, NoLock);
		tables_raise(&problem);
	}
	/* Remembered only when no invalidation arrived while it was checked. */
	if (tables_shard_invalidations == invalidations_before)
	{
		entry = hash_search(tables_shards, &shard_relid, HASH_ENTER, NULL);
		entry->info = *info;
	}
	return rel;
}

/* Check a table (the lock stays); whether Citus distributes it. */
bool
regstack_table_distributed(RegstackTable table, LOCKMODE lockmode)
{
	const RegstackTableInfo *info;

	table_close(regstack_table_open(table, lockmode, &info), NoLock);
	return info->distributed;
}

/* Check a table that a call reaches through SQL; the lock stays. */
void
regstack_table_check(RegstackTable table, LOCKMODE lockmode)
{
	const RegstackTableInfo *info;

	table_close(regstack_table_open(table, lockmode, &info), NoLock);
}

/* The check without the error; see regstack.h. */
bool
regstack_table_usable(RegstackTable table, LOCKMODE lockmode,
					  RegstackTableProblem *problem)
{
	Relation	rel;
	bool		usable = tables_open_checked(table, lockmode, &rel, problem);

	if (rel != NULL)
		table_close(rel, NoLock);
	return usable;
}
