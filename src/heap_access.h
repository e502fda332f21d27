/*-------------------------------------------------------------------------
 *
 * heap_access.h
 *	  regstack's own tables as the direct heap and index paths see them:
 *	  tables.c (finding them, the guard that each is as shipped, where their
 *	  columns are) and heap_access.c (snapshots, inserts, updates and
 *	  deletes with their index entries, slots by shipped column).
 *
 * Included by the files that read or write those tables directly
 * (token_store.c, rate_limit_store.c, purge.c) or check them (the reaper),
 * and by tables.c and heap_access.c themselves.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REGSTACK_HEAP_ACCESS_H
#define REGSTACK_HEAP_ACCESS_H

#include "regstack.h"

#include "access/tableam.h"
#include "storage/lockdefs.h"
#include "utils/rel.h"
#include "utils/snapshot.h"

#include "pg_compat.h"

/* ---- tables.c: regstack's tables, checked to be as shipped ---- */

/* The tables the direct heap paths write. */
typedef enum RegstackTable
{
	RS_TABLE_TOKENS,			/* regstack.auth_ephemeral_tokens */
	RS_TABLE_RATE_STATE,		/* regstack.auth_rate_limit_state */
	RS_TABLE_RATE_EVENTS,		/* regstack.auth_rate_limit_events */
	RS_NUM_TABLES
} RegstackTable;

/*
 * The columns each table ships, numbered from 1 in the install script's
 * order.  tables.c knows their names and types, and maps them to
 * attribute numbers (RegstackTableInfo).
 */
typedef enum RegstackTokenColumn
{
	RS_COL_SUBJECT_TAG = 1,
	RS_COL_TOKEN_HASH,
	RS_COL_TOKEN_TYPE,
	RS_COL_SUBJECT,
	RS_COL_PROVIDER,
	RS_COL_NONCE,
	RS_COL_CODE_VERIFIER,
	RS_COL_CHALLENGE_HASH,
	RS_COL_REDIRECT_TO,
	RS_COL_MODE,
	RS_COL_LINKING_USER_ID,
	RS_COL_RESULT,
	RS_COL_PAYLOAD,
	RS_COL_CREATED_AT,
	RS_COL_EXPIRES_AT
} RegstackTokenColumn;
#define RS_NUM_COLS RS_COL_EXPIRES_AT

typedef enum RegstackRateStateColumn
{
	RS_STATE_KEY = 1,
	RS_STATE_EVENT_TYPE,
	RS_STATE_NEXT_SEQ,
	RS_STATE_START_SEQ,
	RS_STATE_START_AT,
	RS_STATE_WINDOW_US,
	RS_STATE_LAST_AT,
	RS_STATE_CLOCK_AT
} RegstackRateStateColumn;
#define RS_STATE_NUM_COLS RS_STATE_CLOCK_AT

typedef enum RegstackRateEventColumn
{
	RS_EVENT_KEY = 1,
	RS_EVENT_EVENT_TYPE,
	RS_EVENT_SEQ,
	RS_EVENT_OCCURRED_AT
} RegstackRateEventColumn;
#define RS_EVENT_NUM_COLS RS_EVENT_OCCURRED_AT

/* Most columns a table ships (the tokens table's 15). */
#define REGSTACK_MAX_COLUMNS	15

/*
 * Where a table's shipped columns are.  Columns are numbered by the
 * order the install script gives them (RS_COL_*, RS_STATE_*, RS_EVENT_*,
 * from 1); attnum[i - 1] is the attribute number of column i, which
 * differs from i in a table that has dropped a column (1.0's "lane").
 */
typedef struct RegstackTableInfo
{
	Oid			relid;
	bool		distributed;	/* Citus distributes it: use its shards */
	int			ncolumns;		/* shipped columns */
	AttrNumber	attnum[REGSTACK_MAX_COLUMNS];
} RegstackTableInfo;

/*
 * Open table with lockmode after checking (once per change of the table,
 * cached) that it is exactly as the extension ships it; 55000 naming the
 * difference otherwise.  *info gets where its columns are.
 */
extern Relation regstack_table_open(RegstackTable table, LOCKMODE lockmode,
									const RegstackTableInfo **info);

/* The same check for a call that reaches the table through SQL; keeps lockmode. */
extern void regstack_table_check(RegstackTable table, LOCKMODE lockmode);

/* regstack_table_check(), and whether Citus distributes the table. */
extern bool regstack_table_distributed(RegstackTable table, LOCKMODE lockmode);

/* Why a table cannot be used: what regstack_table_check() would raise. */
typedef struct RegstackTableProblem
{
	char	   *message;
	char	   *detail;			/* or NULL */
	char	   *hint;			/* or NULL */
} RegstackTableProblem;

/*
 * The check without the error: true when the table is as shipped (it
 * stays locked in lockmode), else false with *problem filled in (for the
 * reaper, which warns and skips the table).
 */
extern bool regstack_table_usable(RegstackTable table, LOCKMODE lockmode,
								  RegstackTableProblem *problem);

/* The OID of table, unchecked (55000 when the extension is unusable). */
extern Oid	regstack_table_relid(RegstackTable table);

/*
 * Open a local shard of a distributed table (info->distributed) after the
 * same check, cached per shard; *info gets where the shard's columns are.
 */
extern Relation regstack_table_open_shard(RegstackTable table, Oid shard_relid,
										  LOCKMODE lockmode,
										  RegstackTableInfo *info);

/* ---- citus.c: the shards of a table Citus distributes ---- */

/* A shard of a distributed table, its metadata lock held (citus.c). */
typedef struct RegstackShard
{
	bool		distributed;	/* false: the table is this node's own */
	int64		shard_id;
	bool		is_local;		/* its active placement is on this node */
	int32		colocation_id;	/* the table's colocation group */
	Oid			relid;			/* the shard table, when local */
} RegstackShard;

/*
 * The shard of table that holds the row whose distribution column (the
 * tokens' subject_tag, the rate-limit tables' key) has value, with
 * Citus's shard metadata lock taken in ShareLock to the end of the
 * transaction, as Citus's executor takes it before a write: no shard move
 * or split switches the shard's placement until then.  Not distributed:
 * shard->distributed is false, and the "shard" is the local table itself.
 */
extern void regstack_citus_row_shard(RegstackTable table, Datum value,
									 RegstackShard *shard);

/*
 * The shards of table placed on this node, each locked the same way: a
 * List of RegstackShard, NIL when Citus does not distribute the table.
 */
extern List *regstack_citus_local_shards(RegstackTable table);

/* Mark the shard maps that depend on relid (InvalidOid: all) stale. */
extern void regstack_citus_invalidate(Oid relid);

/* ---- citus_route.c: a whole call sent to the node of its shard ---- */

/*
 * Run call (a function call in FROM: $1 the distribution value of table,
 * $2... its other arguments) on the node holding that shard, inside this
 * transaction; plans[2] caches the statements.  Inside
 * regstack_begin_call(); the rows are left in SPI_tuptable.
 */
extern void regstack_citus_route(RegstackTable table, SPIPlanPtr *plans,
								 const char *call, int nargs,
								 const Oid *argtypes, Datum *values,
								 const char *nulls);


/* ---- heap_access.c: shared by the direct heap and index paths ---- */

/* CommandCounterIncrement, then a fresh registered snapshot in *snapshot. */
extern void regstack_statement_snapshot(Snapshot *snapshot);

/*
 * Index maintenance for tuples written directly into one relation: every
 * index gets its entry, with its unique or exclusion check.  An all-zero
 * writer is unopened; the first write opens the indexes, close() closes
 * them.
 */
typedef struct RegstackIndexWriter
{
	struct EState *estate;		/* NULL until first use */
	struct ResultRelInfo *result_rel;
} RegstackIndexWriter;

/* Insert the tuple in slot into rel, with its index entries. */
extern void regstack_heap_insert(RegstackIndexWriter *writer, Relation rel,
								 TupleTableSlot *slot);

/*
 * Replace the row version at *tid (visible to snapshot) by the tuple in
 * slot, waiting for a concurrent writer, with the index entries the new
 * version needs.  Returns as table_tuple_update does, after
 * regstack_check_conflict().
 */
extern TM_Result regstack_heap_update(RegstackIndexWriter *writer,
									  Relation rel, ItemPointer tid,
									  TupleTableSlot *slot, Snapshot snapshot);

/*
 * Delete the row version at *tid, waiting for a concurrent writer unless
 * !wait (then TM_BeingModified at once); table_tuple_delete's result.
 */
extern TM_Result regstack_heap_delete(Relation rel, ItemPointer tid,
									  Snapshot snapshot, bool wait);

/* Close what the writer opened, if anything. */
extern void regstack_index_writer_close(RegstackIndexWriter *writer);

/* Fill a virtual slot of a table from its shipped columns' values. */
extern void regstack_slot_store_columns(TupleTableSlot *slot,
										const RegstackTableInfo *info,
										const Datum *values, const bool *nulls);

/* Read a table's shipped columns' values out of slot. */
extern void regstack_slot_fetch_columns(TupleTableSlot *slot,
										const RegstackTableInfo *info,
										Datum *values, bool *nulls);

/*
 * What a delete, update or lock that did not succeed means: 40001 where
 * UPDATE/DELETE would raise it (REPEATABLE READ, SERIALIZABLE); else the
 * result for the caller to act on.
 */
extern TM_Result regstack_check_conflict(TM_Result result);

#endif							/* REGSTACK_HEAP_ACCESS_H */
