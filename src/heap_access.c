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
 * with the usual unique checks; a deferrable constraint, which a trigger
 * would check at commit, is checked at once), and a write that lost a race
 * behaves as UPDATE/DELETE does in the transaction's isolation level.
 * Writes under a lock that must not wait (rate limits' decision lock) use
 * split writers: the primary-key entry under the lock, its deferred check
 * and the other indexes after it.
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
static void
index_writer_open(RegstackIndexWriter *writer, Relation rel)
{
	if (writer->estate != NULL)
		return;
	writer->estate = CreateExecutorState();
	writer->result_rel = makeNode(ResultRelInfo);
	/* Range-table index 0: no query, so no updated-column set. */
	InitResultRelInfo(writer->result_rel, rel, 0, NULL, 0);
	ExecOpenIndices(writer->result_rel, false);
	writer->primary = NULL;
	writer->others = NULL;
	writer->pending = NIL;
}

/*
 * Check now, waiting where needed, the constraints of result_rel's indexes
 * named in unsure (index OIDs ExecInsertIndexTuples returned, or the one
 * whose check was deferred) for the tuple in slot, as PostgreSQL's
 * unique_key_recheck does at commit for a deferred constraint: a unique
 * index by UNIQUE_CHECK_EXISTING, an exclusion constraint by
 * check_exclusion_constraint (23505, 23P01 on a violation).  The direct
 * paths fire no triggers, so a deferrable constraint is checked here, at
 * the call, instead of at commit.
 */
static void
index_writer_recheck(ResultRelInfo *result_rel, EState *estate,
					 TupleTableSlot *slot, List *unsure)
{
	ExprContext *econtext = GetPerTupleExprContext(estate);

	econtext->ecxt_scantuple = slot;
	for (int i = 0; i < result_rel->ri_NumIndices; i++)
	{
		Relation	index = result_rel->ri_IndexRelationDescs[i];
		IndexInfo  *info = result_rel->ri_IndexRelationInfo[i];
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];

		if (!list_member_oid(unsure, RelationGetRelid(index)))
			continue;
		FormIndexDatum(info, slot, estate, values, isnull);
		if (info->ii_ExclusionOps != NULL)
			check_exclusion_constraint(result_rel->ri_RelationDesc, index,
									   info, &slot->tts_tid, values, isnull,
									   estate, false);
		else
			(void) index_insert(index, values, isnull, &slot->tts_tid,
								result_rel->ri_RelationDesc,
								UNIQUE_CHECK_EXISTING, false, info);
	}
	ResetPerTupleExprContext(estate);
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
	List	   *unsure;

	index_writer_open(writer, rel);
	Assert(writer->result_rel->ri_RelationDesc == rel);
	unsure = ExecInsertIndexTuples(writer->result_rel, slot, writer->estate,
								   update, false, NULL, NIL);
	ResetPerTupleExprContext(writer->estate);
	/* Deferrable constraints a DBA added: checked now (no triggers here). */
	if (unsure != NIL)
		index_writer_recheck(writer->result_rel, writer->estate, slot, unsure);
}

/* A ResultRelInfo like all over the primary key alone, or every other index. */
static ResultRelInfo *
index_writer_subset(ResultRelInfo *all, Oid primary, bool want_primary)
{
	ResultRelInfo *subset = makeNode(ResultRelInfo);
	int			n = 0;

	*subset = *all;
	subset->ri_IndexRelationDescs = palloc(sizeof(Relation) * Max(all->ri_NumIndices, 1));
	subset->ri_IndexRelationInfo = palloc(sizeof(IndexInfo *) * Max(all->ri_NumIndices, 1));
	for (int i = 0; i < all->ri_NumIndices; i++)
	{
		if ((RelationGetRelid(all->ri_IndexRelationDescs[i]) == primary) != want_primary)
			continue;
		subset->ri_IndexRelationDescs[n] = all->ri_IndexRelationDescs[i];
		subset->ri_IndexRelationInfo[n] = all->ri_IndexRelationInfo[i];
		n++;
	}
	subset->ri_NumIndices = n;
	return subset;
}

/*
 * Open the indexes of rel for writes made under a lock that must not wait
 * for another transaction: the primary key (index primary) apart from the
 * others.  Call it before taking that lock (opening takes locks).
 */
void
regstack_index_writer_open_split(RegstackIndexWriter *writer, Relation rel,
								 Oid primary)
{
	MemoryContext old;

	index_writer_open(writer, rel);
	if (writer->primary != NULL)
		return;
	old = MemoryContextSwitchTo(writer->estate->es_query_cxt);
	writer->primary = index_writer_subset(writer->result_rel, primary, true);
	writer->others = index_writer_subset(writer->result_rel, primary, false);
	MemoryContextSwitchTo(old);
	if (writer->primary->ri_NumIndices != 1)
		elog(ERROR, "primary key %u of \"%s\" is not among its indexes",
			 primary, RelationGetRelationName(rel));
}

/*
 * Give the tuple just written from slot its primary-key entry, without
 * waiting for another transaction: a unique check that would wait lets
 * the entry in (UNIQUE_CHECK_PARTIAL, as for a deferred constraint) and is
 * run again by regstack_index_writer_finish(), which also gives the tuple
 * its entries in the other indexes (whose checks, exclusion constraints
 * included, may wait).
 */
void
regstack_index_writer_insert_primary(RegstackIndexWriter *writer,
									 TupleTableSlot *slot, bool update)
{
	List	   *unsure;
	RegstackPendingEntry *entry;
	MemoryContext old;

	Assert(writer->primary != NULL);
	unsure = ExecInsertIndexTuples(writer->primary, slot, writer->estate,
								   update, true, NULL, NIL);
	ResetPerTupleExprContext(writer->estate);
	if (unsure == NIL && writer->others->ri_NumIndices == 0)
		return;

	/* A copy of the tuple, with its place, for after the lock. */
	old = MemoryContextSwitchTo(writer->estate->es_query_cxt);
	entry = palloc(sizeof(RegstackPendingEntry));
	entry->slot = MakeSingleTupleTableSlot(RelationGetDescr(writer->result_rel->ri_RelationDesc),
										   &TTSOpsHeapTuple);
	ExecCopySlot(entry->slot, slot);
	entry->slot->tts_tid = slot->tts_tid;
	entry->slot->tts_tableOid = slot->tts_tableOid;
	entry->update = update;
	entry->recheck = unsure != NIL;
	writer->pending = lappend(writer->pending, entry);
	MemoryContextSwitchTo(old);
}

/*
 * After the lock: the entries regstack_index_writer_insert_primary() left
 * for later, waiting now where they must (23505 on a live duplicate of the
 * primary key, as a deferred constraint raises it).
 */
void
regstack_index_writer_finish(RegstackIndexWriter *writer)
{
	ListCell   *cell;

	if (writer->estate == NULL || writer->pending == NIL)
		return;
	foreach(cell, writer->pending)
	{
		RegstackPendingEntry *entry = (RegstackPendingEntry *) lfirst(cell);

		if (entry->recheck)
			index_writer_recheck(writer->primary, writer->estate, entry->slot,
								 list_make1_oid(RelationGetRelid(writer->primary->ri_IndexRelationDescs[0])));
		if (writer->others->ri_NumIndices > 0)
		{
			List	   *unsure;

			unsure = ExecInsertIndexTuples(writer->others, entry->slot,
										   writer->estate, entry->update,
										   false, NULL, NIL);
			ResetPerTupleExprContext(writer->estate);
			if (unsure != NIL)
				index_writer_recheck(writer->others, writer->estate,
									 entry->slot, unsure);
		}
		ExecDropSingleTupleTableSlot(entry->slot);
	}
	list_free_deep(writer->pending);
	writer->pending = NIL;
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
