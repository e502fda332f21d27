/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  The trigger behind regstack's registry tables (token_types, and the
 *	  rate-limit policies): cache invalidation and shipped-row bookkeeping.
 *
 * Registry tables carry a boolean column "builtin", true on the rows the
 * extension script ships.  pg_dump keeps only rows WHERE NOT builtin (see
 * pg_extension_config_dump in the install script), so:
 *	- a row inserted or updated outside CREATE/ALTER EXTENSION gets
 *	  builtin = false, and so is dumped;
 *	- inserting a row whose key equals a shipped row's key replaces the
 *	  shipped row: this is how a restore puts back a changed shipped type
 *	  over the one CREATE EXTENSION has just made.
 * After any statement that changes the table, a relcache invalidation tells
 * every backend to reload its cached copy (token_types.c).
 *
 * The trigger takes one argument: the name of the table's key column.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "access/htup_details.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(regstack_registry_trigger);

/* Delete the shipped row whose key equals the key of new_row, if any. */
static void
registry_replace_shipped(Relation rel, const char *key_column,
						 HeapTuple new_row)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			key_attnum = SPI_fnumber(desc, key_column);
	StringInfoData sql;
	Oid			key_type;
	Datum		key;
	bool		isnull;

	if (key_attnum <= 0)
		elog(ERROR, "registry key column \"%s\" not found", key_column);
	key = heap_getattr(new_row, key_attnum, desc, &isnull);
	if (isnull)
		return;					/* the NOT NULL constraint will report it */
	key_type = TupleDescAttr(desc, key_attnum - 1)->atttypid;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "DELETE FROM %s WHERE %s OPERATOR(pg_catalog.=) $1 AND builtin",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)),
					 quote_identifier(key_column));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql.data, 1, &key_type, &key, NULL, false, 0)
		!= SPI_OK_DELETE)
		elog(ERROR, "could not replace shipped registry row");
	SPI_finish();
}

/* Trigger: builtin bookkeeping per row, cache invalidation per statement. */
Datum
regstack_registry_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	HeapTuple	row;
	int			builtin_attnum;
	Datum		builtin_value;
	bool		builtin_null = false;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("regstack_registry_trigger must be called as a trigger")));
	rel = trigdata->tg_relation;

	if (TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
	{
		CacheInvalidateRelcache(rel);
		return PointerGetDatum(NULL);
	}

	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("regstack_registry_trigger must fire BEFORE each row with one argument")));

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		row = trigdata->tg_trigtuple;
		if (!creating_extension)
			registry_replace_shipped(rel, trigdata->tg_trigger->tgargs[0], row);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		row = trigdata->tg_newtuple;
	else
		return PointerGetDatum(trigdata->tg_trigtuple);

	/* Only the extension's own scripts make shipped rows. */
	builtin_attnum = SPI_fnumber(RelationGetDescr(rel), "builtin");
	if (builtin_attnum <= 0)
		elog(ERROR, "registry table has no column \"builtin\"");
	builtin_value = BoolGetDatum(creating_extension);
	row = heap_modify_tuple_by_cols(row, RelationGetDescr(rel), 1,
									&builtin_attnum, &builtin_value,
									&builtin_null);
	return PointerGetDatum(row);
}
