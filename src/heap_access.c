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

/* Insert index entries for the tuple just written from slot into rel. */
void
regstack_insert_index_entries(Relation rel, TupleTableSlot *slot, bool update)
{
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *result_rel = makeNode(ResultRelInfo);

	/* Range-table index 0: no query, so no updated-column set to consult. */
	InitResultRelInfo(result_rel, rel, 0, NULL, 0);
	ExecOpenIndices(result_rel, false);
	(void) ExecInsertIndexTuples(result_rel, slot, estate, update, false,
								 NULL, NIL);
	ExecCloseIndices(result_rel);
	FreeExecutorState(estate);
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
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent update")));
			return result;
		case TM_Deleted:
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent delete")));
			return result;
		default:
			elog(ERROR, "unexpected result %d from a row update, delete or lock",
				 (int) result);
	}
	pg_unreachable();
}
