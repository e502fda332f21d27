/*-------------------------------------------------------------------------
 *
 * token_types.c
 *	  The registry of token types (regstack.token_types), cached per backend.
 *
 * issue_token needs a type's TTLs, required fields and cap on every call;
 * the rows are cached per backend by registry.c and reloaded when the
 * registry trigger reports a change.  A returned entry stays valid until
 * the next regstack_token_type() call.
 *
 *-------------------------------------------------------------------------
 */
#include "tokens.h"

#include <stddef.h>

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"

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

/* Fill a cache entry (after its name) from a row of the load query. */
static void
token_types_decode(HeapTuple row, TupleDesc desc, void *entry_ptr)
{
	RegstackTokenType *entry = (RegstackTokenType *) entry_ptr;
	bool		isnull;

	entry->default_ttl = *DatumGetIntervalP(SPI_getbinval(row, desc, 2, &isnull));
	entry->max_ttl = *DatumGetIntervalP(SPI_getbinval(row, desc, 3, &isnull));
	entry->required_mask =
		token_types_required_mask(SPI_getbinval(row, desc, 4, &isnull));
	entry->max_live_per_subject = DatumGetInt32(SPI_getbinval(row, desc, 5, &isnull));
}

StaticAssertDecl(offsetof(RegstackTokenType, name) == 0,
				 "registry.c finds entries by a key at offset 0");

static RegstackRegistryCache token_types_cache =
REGSTACK_REGISTRY_CACHE("token_types",
						"SELECT name, default_ttl, max_ttl, required_fields,"
						" COALESCE(max_live_per_subject, 0)"
						" FROM %s"
						" ORDER BY name COLLATE pg_catalog.\"C\"",
						RegstackTokenType, token_types_decode);

/* The registry entry for name; an error with the known types otherwise. */
const RegstackTokenType *
regstack_token_type(const char *name)
{
	const RegstackTokenType *entry = regstack_registry_find(&token_types_cache, name);
	char	   *known;

	if (entry != NULL)
		return entry;
	known = regstack_registry_keys(&token_types_cache);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown token type \"%s\"", name),
			 known[0] != '\0' ?
			 errhint("Known token types: %s.", known) :
			 errhint("regstack.token_types has no rows.")));
	pg_unreachable();
}
