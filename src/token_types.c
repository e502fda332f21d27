/*-------------------------------------------------------------------------
 *
 * token_types.c
 *	  The registry of token types (regstack.token_types), cached per backend.
 *
 * issue_token needs a type's TTLs, required fields and cap on every call.
 * Reading the table each time would cost a query per token, so the rows are
 * loaded once into backend memory.  The registry trigger (registry.c) sends
 * a relcache invalidation for the table whenever a statement changes it; our
 * callback then marks the cache stale and the next lookup reloads it, in the
 * same transaction for the backend that made the change and at its next
 * transaction for every other backend.
 *
 * Loading runs as the table owner inside SPI (regstack_begin_call()); a
 * cache hit costs a few string comparisons.  A returned entry stays valid
 * until the next regstack_token_type() call.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

const char *const regstack_field_names[RS_NUM_FIELDS] = {
	[RS_FIELD_SUBJECT] = "subject",
	[RS_FIELD_PROVIDER] = "provider",
	[RS_FIELD_NONCE] = "nonce",
	[RS_FIELD_CODE_VERIFIER] = "code_verifier",
	[RS_FIELD_CHALLENGE] = "challenge",
	[RS_FIELD_REDIRECT_TO] = "redirect_to",
	[RS_FIELD_MODE] = "mode",
	[RS_FIELD_LINKING_USER_ID] = "linking_user_id",
	[RS_FIELD_RESULT] = "result",
	[RS_FIELD_PAYLOAD] = "payload",
};

/* The cached rows, sorted by name, and whether they are still current. */
static MemoryContext token_types_context = NULL;
static RegstackTokenType *token_types_entries = NULL;
static int	token_types_count = 0;
static bool token_types_valid = false;
static uint64 token_types_invalidations = 0;
static Oid	token_types_relid = InvalidOid;
static bool token_types_callback_registered = false;

/* Mark the cache stale when regstack.token_types (or everything) changed. */
static void
token_types_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == token_types_relid)
	{
		token_types_valid = false;
		token_types_invalidations++;
	}
}

/* Bit mask of the fields named in a text[] of required fields. */
static uint32
token_types_required_mask(Datum array_datum)
{
	ArrayType  *array = DatumGetArrayTypeP(array_datum);
	Datum	   *elements;
	bool	   *nulls;
	int			count;
	uint32		mask = 0;

	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT,
					  &elements, &nulls, &count);
	for (int i = 0; i < count; i++)
	{
		char	   *field = nulls[i] ? "" : TextDatumGetCString(elements[i]);
		int			f;

		for (f = 0; f < RS_NUM_FIELDS; f++)
			if (strcmp(field, regstack_field_names[f]) == 0)
				break;
		/* The table's CHECK constraint admits only known field names. */
		if (f == RS_NUM_FIELDS)
			elog(ERROR, "unknown required field \"%s\" in regstack.token_types",
				 field);
		mask |= UINT32_C(1) << f;
	}
	return mask;
}

/* Read every row of regstack.token_types into the cache. */
static void
token_types_load(void)
{
	static SPIPlanPtr load_plan = NULL;
	SPITupleTable *rows;
	MemoryContext old_context;
	uint64		invalidations_before;

	if (!token_types_callback_registered)
	{
		CacheRegisterRelcacheCallback(token_types_relcache_callback, (Datum) 0);
		token_types_callback_registered = true;
	}
	if (token_types_context == NULL)
		token_types_context = AllocSetContextCreate(TopMemoryContext,
													"regstack token types",
													ALLOCSET_SMALL_SIZES);
	MemoryContextReset(token_types_context);
	token_types_entries = NULL;
	token_types_count = 0;

	/* An invalidation that arrives while we read leaves the cache stale. */
	invalidations_before = token_types_invalidations;
	token_types_relid = get_relname_relid("token_types",
										  get_namespace_oid("regstack", false));

	regstack_plan(&load_plan,
				  "SELECT name, default_ttl, max_ttl, required_fields,"
				  " COALESCE(max_live_per_subject, 0)"
				  " FROM regstack.token_types ORDER BY name",
				  0, NULL);
	if (SPI_execute_plan(load_plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read regstack.token_types");
	rows = SPI_tuptable;

	old_context = MemoryContextSwitchTo(token_types_context);
	token_types_entries = palloc0(sizeof(RegstackTokenType) *
								  Max(SPI_processed, 1));
	MemoryContextSwitchTo(old_context);

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = rows->vals[i];
		TupleDesc	desc = rows->tupdesc;
		RegstackTokenType *entry = &token_types_entries[i];
		bool		isnull;

		text_to_cstring_buffer(DatumGetTextPP(SPI_getbinval(row, desc, 1, &isnull)),
							   entry->name, NAMEDATALEN);
		entry->default_ttl = *DatumGetIntervalP(SPI_getbinval(row, desc, 2, &isnull));
		entry->max_ttl = *DatumGetIntervalP(SPI_getbinval(row, desc, 3, &isnull));
		entry->required_mask =
			token_types_required_mask(SPI_getbinval(row, desc, 4, &isnull));
		entry->max_live_per_subject =
			DatumGetInt32(SPI_getbinval(row, desc, 5, &isnull));
	}
	token_types_count = (int) SPI_processed;
	SPI_freetuptable(rows);
	token_types_valid = (token_types_invalidations == invalidations_before);
}

/* Comma-separated names of all known types, for error hints. */
static char *
token_types_known_names(void)
{
	StringInfoData names;

	initStringInfo(&names);
	for (int i = 0; i < token_types_count; i++)
		appendStringInfo(&names, "%s%s", i > 0 ? ", " : "",
						 token_types_entries[i].name);
	return names.data;
}

/* The registry entry for name; an error with the known types otherwise. */
const RegstackTokenType *
regstack_token_type(const char *name)
{
	if (!token_types_valid)
	{
		RegstackCall call;

		regstack_begin_call(&call);
		token_types_load();
		regstack_end_call(&call);
	}

	for (int i = 0; i < token_types_count; i++)
		if (strcmp(token_types_entries[i].name, name) == 0)
			return &token_types_entries[i];

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown token type \"%s\"", name),
			 token_types_count > 0 ?
			 errhint("Known token types: %s.", token_types_known_names()) :
			 errhint("regstack.token_types has no rows.")));
	pg_unreachable();
}
