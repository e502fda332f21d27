/*-------------------------------------------------------------------------
 *
 * pg_compat.h
 *	  The PostgreSQL API differences between the versions regstack builds
 *	  on (15, 17, 18; 16 is expected to build, untested).
 *
 * The code is written against the newest API; each shim below gives an
 * older version that API, and names the version that changed it.  What
 * changed underneath, beyond the signatures, is in docs/versions.md.
 * Included by regstack.h, so by every file.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REGSTACK_PG_COMPAT_H
#define REGSTACK_PG_COMPAT_H

#include "postgres.h"

#include "access/genam.h"
#include "access/tableam.h"
#include "executor/executor.h"
#include "utils/relcache.h"

/*
 * 18: pg_attribute_noreturn(), written after a declaration, became
 * pg_noreturn, written before it (C11 _Noreturn).
 */
#ifndef pg_noreturn
#define pg_noreturn pg_attribute_noreturn()
#endif

/*
 * 16: table_tuple_update() reports which indexes need entries for the new
 * version as a TU_UpdateIndexes (none: a HOT update; all; or only the
 * summarizing ones, e.g. BRIN: a HOT update that changed a column only
 * such an index covers), not as a bool.  Before 16 a change to any indexed
 * column, BRIN's included, made the update non-HOT: true is TU_All.
 */
#if PG_VERSION_NUM < 160000
typedef enum TU_UpdateIndexes
{
	TU_None,
	TU_All,
	TU_Summarizing
} TU_UpdateIndexes;

static inline TM_Result
regstack_compat_tuple_update(Relation rel, ItemPointer otid,
							 TupleTableSlot *slot, CommandId cid,
							 Snapshot snapshot, Snapshot crosscheck,
							 bool wait, TM_FailureData *tmfd,
							 LockTupleMode *lockmode,
							 TU_UpdateIndexes *update_indexes)
{
	bool		update_all = false;
	TM_Result	result;

	result = table_tuple_update(rel, otid, slot, cid, snapshot, crosscheck,
								wait, tmfd, lockmode, &update_all);
	*update_indexes = update_all ? TU_All : TU_None;
	return result;
}
#define table_tuple_update regstack_compat_tuple_update
#endif

/*
 * 16: ExecInsertIndexTuples() takes onlySummarizing, true after an update
 * that returned TU_Summarizing (only summarizing indexes get entries).
 * Before 16 that never happens: the argument is dropped.
 */
#if PG_VERSION_NUM < 160000
#define ExecInsertIndexTuples(resultRelInfo, slot, estate, update, noDupErr, \
							  specConflict, arbiterIndexes, onlySummarizing) \
	ExecInsertIndexTuples(resultRelInfo, slot, estate, update, noDupErr, \
						  specConflict, arbiterIndexes)
#endif

/*
 * 18: index_beginscan() takes an IndexScanInstrumentation (EXPLAIN's
 * index search counts; NULL for none) after the snapshot.
 */
#if PG_VERSION_NUM < 180000
#define index_beginscan(heapRelation, indexRelation, snapshot, instrument, \
						nkeys, norderbys) \
	index_beginscan(heapRelation, indexRelation, snapshot, nkeys, norderbys)
#endif

/*
 * 18: RelationGetPrimaryKeyIndex() takes deferrable_ok.  Before 18 a
 * DEFERRABLE primary key was never returned (InvalidOid), which is
 * deferrable_ok = false, the only value the shim accepts.
 */
#if PG_VERSION_NUM < 180000
#define RelationGetPrimaryKeyIndex(relation, deferrable_ok) \
	(AssertMacro(!(deferrable_ok)), RelationGetPrimaryKeyIndex(relation))
#endif

#endif							/* REGSTACK_PG_COMPAT_H */
