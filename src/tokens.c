/*-------------------------------------------------------------------------
 *
 * tokens.c
 *	  The single-use token store: issue_token, consume_token, peek_token,
 *	  attach_result and revoke_tokens.
 *
 * A token is never stored: regstack.auth_ephemeral_tokens keeps only its
 * SHA-256 digest (the primary key), so a dump or a read replica yields no
 * usable token.  A challenge (e.g. an HttpOnly cookie value) is stored the
 * same way.
 *
 * Single use: consume_token is one DELETE ... RETURNING on the primary key.
 * Of any number of concurrent callers the first to delete the row gets it;
 * in READ COMMITTED the others find the row gone and return zero rows (in
 * REPEATABLE READ or SERIALIZABLE they get a serialization failure, as any
 * DELETE would).  Type, expiry and challenge are conditions of that same
 * DELETE, so a wrong type or a wrong challenge leaves the token in place.
 *
 * Expiry is judged against clock_timestamp(), not the transaction start, so
 * a long transaction never sees a token as live after it expired.
 *
 * Every SQL function here runs its table work inside regstack_begin_call().
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "access/detoast.h"
#include "access/heaptoast.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(regstack_issue_token);
PG_FUNCTION_INFO_V1(regstack_consume_token);
PG_FUNCTION_INFO_V1(regstack_peek_token);
PG_FUNCTION_INFO_V1(regstack_attach_result);
PG_FUNCTION_INFO_V1(regstack_revoke_tokens);

/* The columns consume_token and peek_token return, in their order. */
#define TOKENS_ROW_COLUMNS \
	"token_type, subject, provider, nonce, code_verifier, redirect_to," \
	" mode, linking_user_id, result, payload, created_at, expires_at"

/* A live token of type $2 whose digest is $1. */
#define TOKENS_LIVE_QUAL \
	" token_hash OPERATOR(pg_catalog.=) $1" \
	" AND token_type OPERATOR(pg_catalog.=) $2" \
	" AND expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()"

/* ... whose challenge, if it was issued with one, has digest $3. */
#define TOKENS_CHALLENGE_QUAL \
	" AND (challenge_hash IS NULL" \
	"      OR challenge_hash OPERATOR(pg_catalog.=) $3)"

/* Limit on the result field: a session JWT can be large. */
#define TOKENS_MAX_RESULT_BYTES REGSTACK_MAX_PAYLOAD_BYTES

/* Reject a payload larger than the documented limit (54000). */
static void
tokens_check_payload(Datum payload)
{
	Size		len = toast_raw_datum_size(payload) - VARHDRSZ;

	if (len > REGSTACK_MAX_PAYLOAD_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("payload is too large"),
				 errdetail("The limit is %d bytes; the value has %zu.",
						   REGSTACK_MAX_PAYLOAD_BYTES, len)));
}

/* Check mode and its companion linking_user_id (22023, 22004). */
static void
tokens_check_mode(const RegstackTokenFields *fields)
{
	text	   *mode = fields->value[RS_FIELD_MODE];
	bool		is_link = false;

	if (mode != NULL)
	{
		is_link = (VARSIZE_ANY_EXHDR(mode) == 4 &&
				   memcmp(VARDATA_ANY(mode), "link", 4) == 0);
		if (!is_link && !(VARSIZE_ANY_EXHDR(mode) == 6 &&
						  memcmp(VARDATA_ANY(mode), "signin", 6) == 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("mode must be 'signin' or 'link'")));
	}
	if (is_link && fields->value[RS_FIELD_LINKING_USER_ID] == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("mode 'link' requires linking_user_id")));
	if (!is_link && fields->value[RS_FIELD_LINKING_USER_ID] != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("linking_user_id is only allowed with mode 'link'")));
}

/*
 * Keep at most cap - 1 live tokens of (type, subject), so that the one
 * about to be issued makes cap: the oldest go first.  Expired rows of the
 * pair go too.  The advisory lock makes concurrent issues count exactly.
 */
static void
tokens_enforce_cap(const RegstackTokenType *type, text *subject)
{
	static SPIPlanPtr trim_plan = NULL;
	static const Oid trim_argtypes[3] = {TEXTOID, TEXTOID, INT4OID};
	Datum		values[3];
	char	   *subject_cstr = text_to_cstring(subject);

	regstack_xact_lock(REGSTACK_LOCK_CLASS_TOKEN_CAP, type->name, subject_cstr);
	regstack_plan(&trim_plan,
				  "DELETE FROM regstack.auth_ephemeral_tokens"
				  " WHERE subject OPERATOR(pg_catalog.=) $1"
				  " AND token_type OPERATOR(pg_catalog.=) $2"
				  " AND token_hash OPERATOR(pg_catalog.<>) ALL (ARRAY("
				  "   SELECT token_hash FROM regstack.auth_ephemeral_tokens"
				  "   WHERE subject OPERATOR(pg_catalog.=) $1"
				  "   AND token_type OPERATOR(pg_catalog.=) $2"
				  "   AND expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()"
				  "   ORDER BY created_at DESC, token_hash DESC LIMIT $3))",
				  3, trim_argtypes);
	values[0] = PointerGetDatum(subject);
	values[1] = CStringGetTextDatum(type->name);
	values[2] = Int32GetDatum(type->max_live_per_subject - 1);
	if (SPI_execute_plan(trim_plan, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not trim tokens to the type's cap");
}

/*
 * Store a new token and return it as text allocated in the caller's
 * (pre-SPI) memory context.  Validates the type, its required fields, the
 * mode and the TTL.
 */
char *
regstack_issue(const char *type_name, const RegstackTokenFields *fields,
			   const Interval *ttl)
{
	static SPIPlanPtr insert_plan = NULL;
	static const Oid insert_argtypes[14] = {
		BYTEAOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, BYTEAOID,
		TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TIMESTAMPTZOID,
		TIMESTAMPTZOID
	};
	/* Which field fills each text parameter $3..$11 of the INSERT. */
	static const RegstackTokenField insert_fields[] = {
		RS_FIELD_SUBJECT, RS_FIELD_PROVIDER, RS_FIELD_NONCE,
		RS_FIELD_CODE_VERIFIER, RS_FIELD_CHALLENGE, RS_FIELD_REDIRECT_TO,
		RS_FIELD_MODE, RS_FIELD_LINKING_USER_ID, RS_FIELD_RESULT,
		RS_FIELD_PAYLOAD
	};
	RegstackTokenType type = *regstack_token_type(type_name);
	Datum		values[14];
	char		nulls[14];
	char	   *token;
	text	   *token_text;
	TimestampTz now;

	for (int f = 0; f < RS_NUM_FIELDS; f++)
		if ((type.required_mask & (UINT32_C(1) << f)) &&
			fields->value[f] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("token type \"%s\" requires %s",
							type.name, regstack_field_names[f])));
	tokens_check_mode(fields);

	if (ttl == NULL)
		ttl = &type.default_ttl;
	else if (regstack_interval_lt(&type.max_ttl, ttl))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl exceeds the maximum for token type \"%s\"",
						type.name),
				 errdetail("The maximum is %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(&type.max_ttl))))));

	if (type.max_live_per_subject > 0 && fields->value[RS_FIELD_SUBJECT])
		tokens_enforce_cap(&type, fields->value[RS_FIELD_SUBJECT]);

	token = regstack_new_secret();
	token_text = cstring_to_text_with_len(token, REGSTACK_TOKEN_CHARS);
	now = GetCurrentTimestamp();

	memset(nulls, ' ', sizeof(nulls));
	values[0] = PointerGetDatum(regstack_sha256_bytea(token_text));
	values[1] = CStringGetTextDatum(type.name);
	for (int i = 0; i < lengthof(insert_fields); i++)
	{
		RegstackTokenField f = insert_fields[i];
		text	   *value = fields->value[f];

		if (value == NULL)
		{
			values[2 + i] = (Datum) 0;
			nulls[2 + i] = 'n';
		}
		else if (f == RS_FIELD_CHALLENGE)
			values[2 + i] = PointerGetDatum(regstack_sha256_bytea(value));
		else
			values[2 + i] = PointerGetDatum(value);
	}
	values[12] = TimestampTzGetDatum(now);
	values[13] = DirectFunctionCall2(timestamptz_pl_interval,
									 TimestampTzGetDatum(now),
									 IntervalPGetDatum(ttl));

	regstack_plan(&insert_plan,
				  "INSERT INTO regstack.auth_ephemeral_tokens"
				  " (token_hash, token_type, subject, provider, nonce,"
				  "  code_verifier, challenge_hash, redirect_to, mode,"
				  "  linking_user_id, result, payload, created_at, expires_at)"
				  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
				  "         $13, $14)",
				  14, insert_argtypes);
	if (SPI_execute_plan(insert_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert token");

	{
		char	   *result = SPI_palloc(REGSTACK_TOKEN_CHARS + 1);

		memcpy(result, token, REGSTACK_TOKEN_CHARS + 1);
		explicit_bzero(token, REGSTACK_TOKEN_CHARS);
		return result;
	}
}

/*
 * issue_token(token_type, subject, ttl, provider, nonce, code_verifier,
 * challenge, redirect_to, mode, linking_user_id, result, payload): store a
 * new single-use token and return it.
 */
Datum
regstack_issue_token(PG_FUNCTION_ARGS)
{
	/* SQL argument number of each field. */
	static const int field_argno[RS_NUM_FIELDS] = {
		[RS_FIELD_SUBJECT] = 1,
		[RS_FIELD_PROVIDER] = 3,
		[RS_FIELD_NONCE] = 4,
		[RS_FIELD_CODE_VERIFIER] = 5,
		[RS_FIELD_CHALLENGE] = 6,
		[RS_FIELD_REDIRECT_TO] = 7,
		[RS_FIELD_MODE] = 8,
		[RS_FIELD_LINKING_USER_ID] = 9,
		[RS_FIELD_RESULT] = 10,
		[RS_FIELD_PAYLOAD] = 11,
	};
	text	   *type_name = regstack_text_arg(fcinfo, 0, "token_type",
											  NAMEDATALEN - 1, true);
	Interval   *ttl = regstack_interval_arg(fcinfo, 2, "ttl");
	RegstackTokenFields fields;
	RegstackCall call;
	char	   *token;

	for (int f = 0; f < RS_NUM_FIELDS; f++)
	{
		int			argno = field_argno[f];

		if (f == RS_FIELD_PAYLOAD)
		{
			fields.value[f] = NULL;
			if (!PG_ARGISNULL(argno))
			{
				tokens_check_payload(PG_GETARG_DATUM(argno));
				fields.value[f] = (text *) PG_GETARG_JSONB_P(argno);
			}
		}
		else
			fields.value[f] =
				regstack_text_arg(fcinfo, argno, regstack_field_names[f],
								  f == RS_FIELD_RESULT ?
								  TOKENS_MAX_RESULT_BYTES :
								  REGSTACK_MAX_TEXT_BYTES,
								  false);
	}

	regstack_begin_call(&call);
	token = regstack_issue(text_to_cstring(type_name), &fields, ttl);
	regstack_end_call(&call);

	PG_RETURN_TEXT_P(cstring_to_text_with_len(token, REGSTACK_TOKEN_CHARS));
}

/*
 * Shared body of consume_token and peek_token: put the token's row, if it
 * is live, of that type, and the challenge matches, into the result set.
 */
static Datum
tokens_find(FunctionCallInfo fcinfo, bool consume)
{
	static SPIPlanPtr consume_plan = NULL;
	static SPIPlanPtr peek_plan = NULL;
	static const Oid find_argtypes[3] = {BYTEAOID, TEXTOID, BYTEAOID};
	text	   *token = regstack_text_arg(fcinfo, 0, "token",
										  REGSTACK_MAX_TOKEN_BYTES, true);
	text	   *type_name = regstack_text_arg(fcinfo, 1, "token_type",
											  REGSTACK_MAX_TEXT_BYTES, true);
	text	   *challenge = regstack_text_arg(fcinfo, 2, "challenge",
											  REGSTACK_MAX_TEXT_BYTES, false);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RegstackCall call;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	SPIPlanPtr	plan;
	int			expected;

	InitMaterializedSRF(fcinfo, 0);

	/* A string of another shape was never issued: no row, no query. */
	if (!regstack_token_wellformed(token))
		return (Datum) 0;

	values[0] = PointerGetDatum(regstack_sha256_bytea(token));
	values[1] = PointerGetDatum(type_name);
	if (challenge != NULL)
		values[2] = PointerGetDatum(regstack_sha256_bytea(challenge));
	else
	{
		values[2] = (Datum) 0;
		nulls[2] = 'n';
	}

	regstack_begin_call(&call);
	if (consume)
	{
		plan = regstack_plan(&consume_plan,
							 "DELETE FROM regstack.auth_ephemeral_tokens WHERE"
							 TOKENS_LIVE_QUAL TOKENS_CHALLENGE_QUAL
							 " RETURNING " TOKENS_ROW_COLUMNS,
							 3, find_argtypes);
		expected = SPI_OK_DELETE_RETURNING;
	}
	else
	{
		plan = regstack_plan(&peek_plan,
							 "SELECT " TOKENS_ROW_COLUMNS
							 " FROM regstack.auth_ephemeral_tokens WHERE"
							 TOKENS_LIVE_QUAL TOKENS_CHALLENGE_QUAL,
							 3, find_argtypes);
		expected = SPI_OK_SELECT;
	}
	if (SPI_execute_plan(plan, values, nulls, !consume, 1) != expected)
		elog(ERROR, "could not look up token");

	if (SPI_processed == 1)
	{
		HeapTuple	row = SPI_tuptable->vals[0];

		/*
		 * Copy out-of-line values now: the TOAST rows of a deleted token go
		 * with it and must not be read after this command.
		 */
		if (HeapTupleHasExternal(row))
			row = toast_flatten_tuple(row, SPI_tuptable->tupdesc);
		tuplestore_puttuple(rsinfo->setResult, row);
	}
	regstack_end_call(&call);
	return (Datum) 0;
}

/* consume_token(token, token_type, challenge): the token's row, once. */
Datum
regstack_consume_token(PG_FUNCTION_ARGS)
{
	return tokens_find(fcinfo, true);
}

/* peek_token(token, token_type, challenge): the row, leaving it in place. */
Datum
regstack_peek_token(PG_FUNCTION_ARGS)
{
	return tokens_find(fcinfo, false);
}

/* attach_result(token, token_type, result): store result on a live token. */
Datum
regstack_attach_result(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr attach_plan = NULL;
	static const Oid attach_argtypes[3] = {BYTEAOID, TEXTOID, TEXTOID};
	text	   *token = regstack_text_arg(fcinfo, 0, "token",
										  REGSTACK_MAX_TOKEN_BYTES, true);
	text	   *type_name = regstack_text_arg(fcinfo, 1, "token_type",
											  REGSTACK_MAX_TEXT_BYTES, true);
	text	   *result = regstack_text_arg(fcinfo, 2, "result",
										   TOKENS_MAX_RESULT_BYTES, true);
	RegstackCall call;
	Datum		values[3];
	bool		attached;

	if (!regstack_token_wellformed(token))
		PG_RETURN_BOOL(false);

	values[0] = PointerGetDatum(regstack_sha256_bytea(token));
	values[1] = PointerGetDatum(type_name);
	values[2] = PointerGetDatum(result);

	regstack_begin_call(&call);
	regstack_plan(&attach_plan,
				  "UPDATE regstack.auth_ephemeral_tokens SET result = $3 WHERE"
				  TOKENS_LIVE_QUAL,
				  3, attach_argtypes);
	if (SPI_execute_plan(attach_plan, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not attach result to token");
	attached = (SPI_processed == 1);
	regstack_end_call(&call);

	PG_RETURN_BOOL(attached);
}

/* revoke_tokens(subject, token_type): delete a subject's live tokens. */
Datum
regstack_revoke_tokens(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr revoke_plan = NULL;
	static const Oid revoke_argtypes[2] = {TEXTOID, TEXTOID};
	text	   *subject = regstack_text_arg(fcinfo, 0, "subject",
											REGSTACK_MAX_TEXT_BYTES, true);
	text	   *type_name = regstack_text_arg(fcinfo, 1, "token_type",
											  REGSTACK_MAX_TEXT_BYTES, false);
	RegstackCall call;
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	uint64		revoked;

	values[0] = PointerGetDatum(subject);
	values[1] = PointerGetDatum(type_name);
	if (type_name == NULL)
		nulls[1] = 'n';

	regstack_begin_call(&call);
	/* A typo in the type must not look like "nothing to revoke". */
	if (type_name != NULL)
		(void) regstack_token_type(text_to_cstring(type_name));
	regstack_plan(&revoke_plan,
				  "DELETE FROM regstack.auth_ephemeral_tokens"
				  " WHERE subject OPERATOR(pg_catalog.=) $1"
				  " AND ($2 IS NULL OR token_type OPERATOR(pg_catalog.=) $2)"
				  " AND expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()",
				  2, revoke_argtypes);
	if (SPI_execute_plan(revoke_plan, values, nulls, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not revoke tokens");
	revoked = SPI_processed;
	regstack_end_call(&call);

	PG_RETURN_INT64((int64) revoked);
}
