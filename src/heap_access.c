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

#include "access/genam.h"
#include "access/xact.h"
#include "catalog/index.h"
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
void
regstack_index_writer_open(RegstackIndexWriter *writer, Relation rel)
{
	if (writer->estate != NULL)
		return;
	writer->estate = CreateExecutorState();
	writer->result_rel = makeNode(ResultRelInfo);
	/* Range-table index 0: no query, so no updated-column set. */
	InitResultRelInfo(writer->result_rel, rel, 0, NULL, 0);
	ExecOpenIndices(writer->result_rel, false);
	writer->deferred = NIL;
}

/*
 * Give the tuple just written from slot into rel its entries in every index
 * of rel, opening the indexes on the writer's first use (an all-zero writer
 * is unopened), so that a call writing several tuples opens them once.
 *
 * With defer, a unique check never waits for another transaction: where
 * it would, the index AM lets the entry in and the tuple is remembered for
 * regstack_index_writer_recheck(), which the caller runs once it may wait
 * (as a deferred unique constraint is checked at commit).  Exclusion
 * constraints may still wait: a caller that must not wait uses this only
 * on tables without them.
 */
void
regstack_index_writer_insert(RegstackIndexWriter *writer, Relation rel,
							 TupleTableSlot *slot, bool update, bool defer)
{
	List	   *unsure;

	regstack_index_writer_open(writer, rel);
	Assert(writer->result_rel->ri_RelationDesc == rel);
	unsure = ExecInsertIndexTuples(writer->result_rel, slot, writer->estate,
								   update, defer, NULL, NIL);
	if (unsure != NIL)
	{
		MemoryContext old = MemoryContextSwitchTo(writer->estate->es_query_cxt);
		TupleTableSlot *copy = MakeSingleTupleTableSlot(RelationGetDescr(rel),
														&TTSOpsHeapTuple);

		ExecCopySlot(copy, slot);
		copy->tts_tid = slot->tts_tid;
		writer->deferred = lappend(writer->deferred, copy);
		MemoryContextSwitchTo(old);
	}
	ResetPerTupleExprContext(writer->estate);
}

/*
 * Check again, waiting now for the transactions that wrote conflicting
 * entries, the unique indexes of the tuples whose check was deferred: a
 * duplicate that lives raises 23505, as a deferred constraint does.
 */
void
regstack_index_writer_recheck(RegstackIndexWriter *writer)
{
	ResultRelInfo *result_rel = writer->result_rel;
	ListCell   *cell;

	if (writer->estate == NULL || writer->deferred == NIL)
		return;
	foreach(cell, writer->deferred)
	{
		TupleTableSlot *slot = (TupleTableSlot *) lfirst(cell);
		ExprContext *econtext = GetPerTupleExprContext(writer->estate);

		econtext->ecxt_scantuple = slot;
		for (int i = 0; i < result_rel->ri_NumIndices; i++)
		{
			Relation	index = result_rel->ri_IndexRelationDescs[i];
			IndexInfo  *info = result_rel->ri_IndexRelationInfo[i];
			Datum		values[INDEX_MAX_KEYS];
			bool		isnull[INDEX_MAX_KEYS];

			if (!index->rd_index->indisunique)
				continue;
			FormIndexDatum(info, slot, writer->estate, values, isnull);
			(void) index_insert(index, values, isnull, &slot->tts_tid,
								result_rel->ri_RelationDesc,
								UNIQUE_CHECK_EXISTING, false, info);
		}
		ResetPerTupleExprContext(writer->estate);
		ExecDropSingleTupleTableSlot(slot);
	}
	list_free(writer->deferred);
	writer->deferred = NIL;
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

	regstack_index_writer_insert(&writer, rel, slot, update, false);
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
