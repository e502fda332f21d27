/*-------------------------------------------------------------------------
 *
 * call.c
 *	  Where regstack's SQL functions run their table work: as the owner of
 *	  the extension's tables, inside SPI, with plans prepared once per
 *	  backend.
 *
 * The functions are not SECURITY DEFINER.  Instead each call switches to
 * the owner of regstack's tables with SetUserIdAndSecContext() (the
 * owner-switch pg_cron uses), in a security-restricted operation, and
 * switches back at the end.  An error in between needs no cleanup here:
 * transaction (and subtransaction) abort restores the user id and closes
 * SPI.  The direct heap paths (token_store.c, rate_limit_store.c) check no
 * privileges, so they need no owner switch.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "miscadmin.h"

/* Connect to SPI and run as the tables' owner until regstack_end_call(). */
void
regstack_begin_call(RegstackCall *call)
{
	Oid			owner = regstack_tables_owner();

	GetUserIdAndSecContext(&call->saved_userid, &call->saved_sec_context);
	SetUserIdAndSecContext(owner,
						   call->saved_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/* Leave SPI and return to the caller's user id. */
void
regstack_end_call(RegstackCall *call)
{
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	SetUserIdAndSecContext(call->saved_userid, call->saved_sec_context);
}

/*
 * The saved plan in *slot, preparing it on first use.  Saved plans are
 * revalidated by the plan cache, so they survive DROP/CREATE EXTENSION.
 */
SPIPlanPtr
regstack_plan(SPIPlanPtr *slot, const char *sql, int nargs,
			  const Oid *argtypes)
{
	SPIPlanPtr	plan;

	if (*slot != NULL)
		return *slot;
	plan = SPI_prepare(sql, nargs, (Oid *) argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	*slot = plan;
	return plan;
}

/* Run a (count, max(ctid)) delete statement; see regstack.h. */
int64
regstack_execute_counted_delete(SPIPlanPtr plan, Datum *values, const char *nulls,
					   ItemPointer after, const char *what)
{
	HeapTuple	row;
	bool		isnull;
	int64		deleted;
	Datum		last;

	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not delete %s", what);
	row = SPI_tuptable->vals[0];
	deleted = DatumGetInt64(SPI_getbinval(row, SPI_tuptable->tupdesc, 1, &isnull));
	last = SPI_getbinval(row, SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
		ItemPointerCopy((ItemPointer) DatumGetPointer(last), after);
	SPI_freetuptable(SPI_tuptable);
	return deleted;
}
