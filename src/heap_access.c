/*-------------------------------------------------------------------------
 *
 * heap_access.c
 *	  Pieces shared by the direct heap and index paths (token_store.c,
 *	  rate_limit_store.c): statement snapshots, inserts and updates with
 *	  their index entries, slots addressed by shipped column, and what a
 *	  failed update or delete means.
 *
 * Those paths replace SQL statements, so they follow what the executor
 * does for one: before each "statement" the command counter is advanced
 * and a fresh snapshot taken (as SPI does); every index of the table gets
 * its entry through ExecInsertIndexTuples, including any index a DBA adds,
 * with the usual unique and exclusion checks (which may wait for another
 * transaction, as they do for an INSERT); and a write that lost a race
 * behaves as UPDATE/DELETE does in the transaction's isolation level.
 * Updates and deletes check the replica identity a publication needs, as
 * the executor does (CheckCmdReplicaIdentity).  Everything else the
 * executor would do for the table (defaults, constraints, triggers,
 * rules, ...) is absent because tables.c refuses a table that has any,
 * including deferrable constraints, whose checks the executor queues for
 * commit: so ExecInsertIndexTuples never hands back a check to run later.
 *
 *-------------------------------------------------------------------------
 */
#include "heap_access.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "utils/snapmgr.h"

/*
 * Start a new "statement": make this transaction's earlier work visible
 * and replace *snapshot (registered, or NULL) by a fresh registered one
 * (the transaction snapshot in REPEATABLE READ and SERIALIZABLE).
 */
void
regstack_statement_snapshot(Snapshot *snapshot)
{
	CommandCounterIncrement();
	if (*snapshot != NULL)
		UnregisterSnapshot(*snapshot);
	*snapshot = RegisterSnapshot(GetTransactionSnapshot());
}

/* Open the indexes of rel for writer, unless it is open already. */
static void
index_writer_open(RegstackIndexWriter *writer, Relation rel)
{
	if (writer->estate != NULL)
	{
		Assert(writer->result_rel->ri_RelationDesc == rel);
		return;
	}
	writer->estate = CreateExecutorState();
	writer->result_rel = makeNode(ResultRelInfo);
	/* Range-table index 0: no query, so no updated-column set. */
	InitResultRelInfo(writer->result_rel, rel, 0, NULL, 0);
	ExecOpenIndices(writer->result_rel, false);
}

/*
 * Give the tuple just written from slot its entry in every index of rel;
 * after a HOT update that changed only columns of summarizing indexes
 * (TU_Summarizing, 16 on: docs/versions.md), in those alone.
 */
static void
index_writer_insert(RegstackIndexWriter *writer, Relation rel,
					TupleTableSlot *slot, bool update, bool only_summarizing)
{
	List	   *recheck;

	index_writer_open(writer, rel);
	recheck = ExecInsertIndexTuples(writer->result_rel, slot, writer->estate,
									update, false, NULL, NIL, only_summarizing);
	ResetPerTupleExprContext(writer->estate);
	/* Only a deferrable constraint hands a check back, and tables.c refuses those. */
	if (recheck != NIL)
		elog(ERROR, "unexpected deferred constraint check on \"%s\"",
			 RelationGetRelationName(rel));
}

/* Insert the tuple in slot into rel, with its index entries. */
void
regstack_heap_insert(RegstackIndexWriter *writer, Relation rel,
					 TupleTableSlot *slot)
{
	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
	index_writer_insert(writer, rel, slot, false, false);
}

/*
 * Replace the row version at *tid by the tuple in slot, waiting for a
 * concurrent writer, and give the new version the index entries it needs
 * (none after a HOT update).  TM_Ok, or what regstack_check_conflict()
 * leaves of a lost race.  As for an UPDATE, a table published for updates
 * must have a replica identity that covers its publications' row filters
 * (CheckCmdReplicaIdentity raises the executor's error otherwise).
 */
TM_Result
regstack_heap_update(RegstackIndexWriter *writer, Relation rel,
					 ItemPointer tid, TupleTableSlot *slot, Snapshot snapshot)
{
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	TU_UpdateIndexes update_indexes;
	TM_Result	result;

	CheckCmdReplicaIdentity(rel, CMD_UPDATE);
	result = table_tuple_update(rel, tid, slot, GetCurrentCommandId(true),
								snapshot, InvalidSnapshot, true, &tmfd,
								&lockmode, &update_indexes);
	if (result != TM_Ok)
		return regstack_check_conflict(result);
	if (update_indexes != TU_None)
		index_writer_insert(writer, rel, slot, true,
							update_indexes == TU_Summarizing);
	return TM_Ok;
}

/*
 * Delete the row version at *tid (visible to snapshot), waiting for a
 * concurrent writer or, without wait, returning TM_BeingModified at once;
 * as for a DELETE, the replica identity is checked first.  The result is
 * table_tuple_delete's, for the caller to act on.
 */
TM_Result
regstack_heap_delete(Relation rel, ItemPointer tid, Snapshot snapshot,
					 bool wait)
{
	TM_FailureData tmfd;

	CheckCmdReplicaIdentity(rel, CMD_DELETE);
	return table_tuple_delete(rel, tid, GetCurrentCommandId(true), snapshot,
							  InvalidSnapshot, wait, &tmfd, false);
}

/* Close what the writer opened, if anything. */
void
regstack_index_writer_close(RegstackIndexWriter *writer)
{
	if (writer->estate == NULL)
		return;
	ExecCloseIndices(writer->result_rel);
	FreeExecutorState(writer->estate);
	writer->estate = NULL;
	writer->result_rel = NULL;
}

/*
 * Fill the virtual slot of a table with its shipped columns' values
 * (values[i - 1] for column i); any other attribute, i.e. a dropped one,
 * is null.
 */
void
regstack_slot_store_columns(TupleTableSlot *slot, const RegstackTableInfo *info,
							const Datum *values, const bool *nulls)
{
	int			natts = slot->tts_tupleDescriptor->natts;

	ExecClearTuple(slot);
	for (int i = 0; i < natts; i++)
		slot->tts_isnull[i] = true;
	for (int col = 0; col < info->ncolumns; col++)
	{
		AttrNumber	attnum = info->attnum[col];

		slot->tts_values[attnum - 1] = values[col];
		slot->tts_isnull[attnum - 1] = nulls[col];
	}
	ExecStoreVirtualTuple(slot);
}

/* Read a table's shipped columns' values (values[i - 1] for column i) out of slot. */
void
regstack_slot_fetch_columns(TupleTableSlot *slot, const RegstackTableInfo *info,
							Datum *values, bool *nulls)
{
	slot_getallattrs(slot);
	for (int col = 0; col < info->ncolumns; col++)
	{
		AttrNumber	attnum = info->attnum[col];

		values[col] = slot->tts_values[attnum - 1];
		nulls[col] = slot->tts_isnull[attnum - 1];
	}
}

/*
 * What a delete, update or lock that did not succeed means: raise a
 * serialization failure (40001) where UPDATE/DELETE would, i.e. when the
 * row was concurrently updated or deleted in REPEATABLE READ or
 * SERIALIZABLE; otherwise return the result for the caller to act on
 * (TM_SelfModified, or TM_Updated/TM_Deleted in READ COMMITTED).
 */
TM_Result
regstack_check_conflict(TM_Result result)
{
	switch (result)
	{
		case TM_SelfModified:
			return result;
		case TM_Updated:
		case TM_Deleted:
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 result == TM_Updated ?
						 errmsg("could not serialize access due to concurrent update") :
						 errmsg("could not serialize access due to concurrent delete")));
			return result;
		default:
			elog(ERROR, "unexpected result %d from a row update, delete or lock",
				 (int) result);
	}
	pg_unreachable();
}
