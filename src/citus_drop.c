/*-------------------------------------------------------------------------
 *
 * citus_drop.c
 *	  DROP EXTENSION regstack (or DROP SCHEMA regstack CASCADE) on a Citus
 *	  coordinator: lock regstack's distributed and reference tables on
 *	  every node, and drop their shards, first.
 *
 * DROP EXTENSION drops the extension's tables on the coordinator and, by
 * Citus's propagation, on the workers, with Citus's DDL propagation
 * switched off there; Citus's drop trigger then removes the tables' Citus
 * metadata but, for tables dropped this way, not their shards, which stay
 * behind on every node (orphans, and triggers of the registry tables'
 * shards that depend on the extension's trigger function, so that a DROP
 * without CASCADE fails).  So, in regstack's ProcessUtility hook, before a
 * DROP EXTENSION that names regstack runs, citus_drop_all_shards() (what
 * Citus's own DROP TABLE runs) drops the shards of every regstack table
 * Citus manages, inside the same transaction: a DROP that fails or is
 * rolled back keeps them.
 *
 * DROP SCHEMA regstack CASCADE drops the extension too, and Citus
 * propagates it to every node, where the shards go with the schema; but
 * in DROP's order (shards, then tables), which Citus's deadlock detector
 * cancelled while the reapers ran: so it gets the same treatment.
 *
 * Only on the coordinator (the one node where Citus lets DROP EXTENSION of
 * a distributed extension run), only when the citus extension exists, and
 * only in a backend that has loaded regstack: on Citus every node preloads
 * it (shared_preload_libraries = 'citus,regstack'), as the reaper needs.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/builtins.h"

static ProcessUtility_hook_type prev_process_utility = NULL;

/*
 * The regstack tables Citus manages (joined to the extension by its oid,
 * $1), on the coordinator only: FROM and WHERE of the two statements below.
 */
#define CITUS_REGSTACK_TABLES \
	" FROM pg_catalog.pg_dist_partition p" \
	" JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.logicalrelid" \
	" JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace" \
	" JOIN pg_catalog.pg_depend d" \
	"   ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass" \
	"  AND d.objid OPERATOR(pg_catalog.=) c.oid" \
	"  AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass" \
	"  AND d.refobjid OPERATOR(pg_catalog.=) $1" \
	"  AND d.deptype OPERATOR(pg_catalog.=) 'e'" \
	" WHERE pg_catalog.citus_is_coordinator()"

/*
 * A LOCK of those tables in ACCESS EXCLUSIVE mode (NULL: none), which
 * Citus takes on every node, in the order in which the calls and the
 * reaper open them: the token types and keys (the registry caches), the
 * tokens, then the rate-limit policies, state and events.
 */
#define CITUS_LOCK_TABLES_SQL \
	"SELECT 'LOCK TABLE ' OPERATOR(pg_catalog.||) pg_catalog.string_agg(" \
	"  pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'" \
	"  OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname), ', '" \
	"  ORDER BY pg_catalog.array_position(ARRAY['token_types', 'secret_keys'," \
	"    'auth_ephemeral_tokens', 'rate_limit_policies', 'auth_rate_limit_state'," \
	"    'auth_rate_limit_events']::pg_catalog.name[]," \
	"    c.relname), c.relname)" \
	"  OPERATOR(pg_catalog.||) ' IN ACCESS EXCLUSIVE MODE'" \
	CITUS_REGSTACK_TABLES

/* The shards of those tables, dropped by Citus's own function. */
#define CITUS_DROP_SHARDS_SQL \
	"SELECT pg_catalog.citus_drop_all_shards(p.logicalrelid, n.nspname, c.relname)" \
	CITUS_REGSTACK_TABLES

/*
 * Whether stmt drops regstack: a DROP EXTENSION naming it, or a DROP
 * SCHEMA ... CASCADE naming its schema (regstack.control fixes it:
 * "regstack"), which drops the extension with the schema.
 */
static bool
drop_names_regstack(Node *stmt)
{
	DropStmt   *drop;
	ListCell   *cell;

	if (stmt == NULL || !IsA(stmt, DropStmt))
		return false;
	drop = (DropStmt *) stmt;
	if (drop->removeType != OBJECT_EXTENSION &&
		!(drop->removeType == OBJECT_SCHEMA && drop->behavior == DROP_CASCADE))
		return false;
	foreach(cell, drop->objects)
		if (strcmp(strVal(lfirst(cell)), "regstack") == 0)
			return true;
	return false;
}

/* Drop the shards of the regstack tables Citus manages (see above). */
static void
citus_drop_regstack_shards(Oid regstack_oid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(regstack_oid)};
	bool		isnull;
	Datum		lock_sql;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * One connection per node for the rest of the transaction, as Citus
	 * itself sets for DROP EXTENSION (EnsureSequentialMode), so that the
	 * DROP EXTENSION Citus then sends to a node runs where that node's
	 * shards were dropped.
	 */
	if (SPI_execute("SELECT pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true)",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not switch Citus to sequential mode");

	/*
	 * Every table on every node first, before any shard: the DROP then
	 * never holds a shard that a reaper or a call, having opened the
	 * table, waits for while it waits for that table.  Dropping the shards
	 * first and then the tables (DROP EXTENSION's order) is the reverse of
	 * theirs, and Citus's deadlock detector cancelled such a DROP.
	 */
	if (SPI_execute_with_args(CITUS_LOCK_TABLES_SQL, 1, argtypes, values, NULL,
							  true, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not list regstack's Citus tables");
	lock_sql = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull &&
		SPI_execute(TextDatumGetCString(lock_sql), false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not lock regstack's Citus tables");

	if (SPI_execute_with_args(CITUS_DROP_SHARDS_SQL, 1, argtypes, values, NULL,
							  false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not drop the shards of regstack's tables");
	SPI_finish();
}

/* ProcessUtility hook: regstack's shards go before a DROP of regstack. */
static void
regstack_process_utility(PlannedStmt *pstmt, const char *query_string,
						 bool read_only_tree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *query_env,
						 DestReceiver *dest, QueryCompletion *completion)
{
	if (drop_names_regstack(pstmt->utilityStmt) &&
		OidIsValid(get_extension_oid("citus", true)))
	{
		Oid			regstack_oid = get_extension_oid("regstack", true);

		if (OidIsValid(regstack_oid))
			citus_drop_regstack_shards(regstack_oid);
	}
	if (prev_process_utility)
		prev_process_utility(pstmt, query_string, read_only_tree, context,
							 params, query_env, dest, completion);
	else
		standard_ProcessUtility(pstmt, query_string, read_only_tree, context,
								params, query_env, dest, completion);
}

/* Install the hook (from _PG_init, in every process that loads regstack). */
void
regstack_citus_drop_hook_install(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = regstack_process_utility;
}
