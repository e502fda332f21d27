/*-------------------------------------------------------------------------
 *
 * citus_route.c
 *	  Sending a whole regstack call to the node that holds its shard, when
 *	  Citus distributes the table and the shard is on another node.
 *
 * Citus delegates a function call only when it is the client's own
 * statement (docs/citus-notes.md), so a C function cannot reach the owner
 * by calling a delegated function.  What Citus does send to one node, and
 * run there as written, is a router query: a SELECT on a distributed table
 * whose WHERE fixes the distribution column.  So a call is routed as
 *
 *	  SELECT r.* FROM (SELECT count(*) FROM regstack.<table>
 *					   WHERE <column> = $1) AS routed,
 *		   LATERAL regstack.<function>(...) AS r
 *
 * which Citus sends, function call and all, to the node holding the shard
 * of $1, inside the caller's coordinated transaction (the remote work
 * commits or rolls back with it); there the function finds the shard
 * local and runs its direct path under the shard's metadata lock.  The
 * aggregate makes the subquery one row whether or not the shard has rows
 * for $1, so the function runs exactly once.
 *
 * Citus takes such a SELECT for a read: it neither takes its shard
 * metadata lock for it nor counts it among the transaction's writes, so a
 * transaction writing on two nodes this way would commit each with a
 * one-phase COMMIT.  Each routed call is therefore preceded by an UPDATE
 * of no row on the same shard (WHERE <column> = $1 AND ctid = '(0,0)',
 * a TID no row has; a constant false would let Citus prune the shard and
 * send nothing), which Citus treats as a write: it takes the shard's metadata lock on this node
 * (no move switches the shard until the transaction ends, so the SELECT
 * goes to the same node) and marks the connection as modified, so that a
 * transaction that writes on more than one node commits with two-phase
 * commit.
 *
 *-------------------------------------------------------------------------
 */
#include "heap_access.h"

#include "executor/spi.h"

/* Per routed table: the distribution column and a column the UPDATE sets to itself. */
static const struct
{
	const char *relname;
	const char *column;
	const char *touched;
}			route_tables[RS_NUM_TABLES] = {
	[RS_TABLE_TOKENS] = {"auth_ephemeral_tokens", "subject_tag", "token_type"},
	[RS_TABLE_RATE_STATE] = {"auth_rate_limit_state", "key", "next_seq"},
	[RS_TABLE_RATE_EVENTS] = {"auth_rate_limit_events", "key", "occurred_at"},
};

/*
 * Run call (the text of a function call in FROM, taking the distribution
 * value as $1 and its other arguments as $2...) on the node holding the
 * shard of table for values[0], as a routed SQL function (see above).
 * plans[2] caches the two statements of the call site.  Must be inside
 * regstack_begin_call(); the result rows are in SPI_tuptable.
 */
void
regstack_citus_route(RegstackTable table, SPIPlanPtr *plans, const char *call,
					 int nargs, const Oid *argtypes, Datum *values,
					 const char *nulls)
{
	const char *relname = route_tables[table].relname;
	const char *column = route_tables[table].column;

	/* the texts are built only when the call site's plans are made */
	if (plans[0] == NULL)
		regstack_plan(&plans[0],
					  psprintf("UPDATE regstack.%s SET %s = %s"
							   " WHERE %s OPERATOR(pg_catalog.=) $1"
							   " AND ctid OPERATOR(pg_catalog.=) '(0,0)'::pg_catalog.tid",
							   relname, route_tables[table].touched,
							   route_tables[table].touched, column),
					  1, argtypes);
	if (plans[1] == NULL)
		regstack_plan(&plans[1],
					  psprintf("SELECT r.* FROM (SELECT pg_catalog.count(*) FROM regstack.%s"
							   " WHERE %s OPERATOR(pg_catalog.=) $1) AS routed,"
							   " LATERAL %s AS r",
							   relname, column, call),
					  nargs, argtypes);
	if (SPI_execute_plan(plans[0], values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not reach the shard of regstack.%s through Citus",
			 relname);
	if (SPI_execute_plan(plans[1], values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not run a call on the node of its shard of regstack.%s",
			 relname);
}
