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
