/*-------------------------------------------------------------------------
 *
 * heap_access.c
 *	  Pieces shared by the direct heap and index paths (token_store.c,
 *	  rate_limit_store.c): statement snapshots, index maintenance after a
 *	  heap write, and what a failed update or delete means.
 *
 * Those paths replace SQL statements, so they follow what the executor
 * does for one: before each "statement" the command counter is advanced
 * and a fresh snapshot taken (as SPI does), every index of the table gets
 * its entry through ExecInsertIndexTuples (including any index a DBA adds,
 * with the usual unique checks), and a write that lost a race behaves as
 * UPDATE/DELETE does in the transaction's isolation level.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

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

/*
 * Give the tuple just written from slot into rel its entries in every index
 * of rel, opening the indexes on the writer's first use (an all-zero writer
 * is unopened), so that a call writing several tuples opens them once.
 */
void
regstack_index_writer_insert(RegstackIndexWriter *writer, Relation rel,
							 TupleTableSlot *slot, bool update)
{
	if (writer->estate == NULL)
	{
		writer->estate = CreateExecutorState();
		writer->result_rel = makeNode(ResultRelInfo);
		/* Range-table index 0: no query, so no updated-column set. */
		InitResultRelInfo(writer->result_rel, rel, 0, NULL, 0);
		ExecOpenIndices(writer->result_rel, false);
	}
	Assert(writer->result_rel->ri_RelationDesc == rel);
	(void) ExecInsertIndexTuples(writer->result_rel, slot, writer->estate,
								 update, false, NULL, NIL);
	ResetPerTupleExprContext(writer->estate);
}

/* Close what regstack_index_writer_insert() opened, if anything. */
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

/* Index entries for one tuple just written from slot into rel. */
void
regstack_insert_index_entries(Relation rel, TupleTableSlot *slot, bool update)
{
	RegstackIndexWriter writer = {0};

	regstack_index_writer_insert(&writer, rel, slot, update);
	regstack_index_writer_close(&writer);
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
