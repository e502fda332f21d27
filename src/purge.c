/*-------------------------------------------------------------------------
 *
 * purge.c
 *	  Deleting expired rows: purge_expired() and the batch step the reaper
 *	  repeats.
 *
 * A batch locks the rows it deletes with FOR UPDATE SKIP LOCKED, so it
 * never waits for a foreground call that holds a token (a consume_token in
 * progress), and a foreground call never waits for more than one batch.
 * Rows are found by a sequential scan: the tokens table has no index on
 * expires_at, which keeps issue_token cheaper.
 *
 * Callers must be inside regstack_begin_call().
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"

PG_FUNCTION_INFO_V1(regstack_purge_expired);

/* Delete up to limit expired tokens (limit <= 0: all); return how many. */
int64
regstack_purge_tokens(int64 limit)
{
	static SPIPlanPtr purge_plan = NULL;
	static const Oid purge_argtypes[1] = {INT8OID};
	Datum		values[1];
	char		nulls[1] = {' '};

	values[0] = Int64GetDatum(limit);
	if (limit <= 0)
		nulls[0] = 'n';
	regstack_plan(&purge_plan,
				  "DELETE FROM regstack.auth_ephemeral_tokens"
				  " WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
				  "   SELECT ctid FROM regstack.auth_ephemeral_tokens"
				  "   WHERE expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()"
				  "   LIMIT $1 FOR UPDATE SKIP LOCKED))",
				  1, purge_argtypes);
	if (SPI_execute_plan(purge_plan, values, nulls, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete expired tokens");
	return (int64) SPI_processed;
}

/* purge_expired(): delete every expired row now; counts per table. */
Datum
regstack_purge_expired(PG_FUNCTION_ARGS)
{
	TupleDesc	result_desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	RegstackCall call;

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "purge_expired must return a composite type");

	regstack_begin_call(&call);
	values[0] = Int64GetDatum(regstack_purge_tokens(0));
	values[1] = Int64GetDatum(regstack_purge_events(0));
	regstack_end_call(&call);

	result_desc = BlessTupleDesc(result_desc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc, values, nulls)));
}
