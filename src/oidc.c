/*-------------------------------------------------------------------------
 *
 * oidc.c
 *	  OpenID Connect helpers: pkce_challenge and begin_oidc_flow.
 *
 * begin_oidc_flow makes the PKCE code_verifier and the nonce in the server
 * and stores them on an oidc_state token, whose value is the OAuth state
 * parameter.  The verifier never leaves the database until the callback
 * consumes the state.  The challenge follows RFC 7636, method S256.
 *
 *-------------------------------------------------------------------------
 */
#include "tokens.h"

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(regstack_pkce_challenge);
PG_FUNCTION_INFO_V1(regstack_begin_oidc_flow);

/* RFC 7636 section 4.1: a verifier has 43 to 128 unreserved characters. */
#define OIDC_VERIFIER_MIN_CHARS 43
#define OIDC_VERIFIER_MAX_CHARS 128

/* The S256 challenge of an RFC 7636 code verifier, as palloc'd text. */
static text *
oidc_s256(const text *verifier)
{
	uint8		digest[REGSTACK_DIGEST_BYTES];
	char		encoded[REGSTACK_BASE64URL_LEN(REGSTACK_DIGEST_BYTES) + 1];

	regstack_sha256(VARDATA_ANY(verifier), VARSIZE_ANY_EXHDR(verifier), digest);
	regstack_base64url_encode(digest, sizeof(digest), encoded);
	return cstring_to_text(encoded);
}

/* pkce_challenge(code_verifier): the RFC 7636 S256 code challenge. */
Datum
regstack_pkce_challenge(PG_FUNCTION_ARGS)
{
	text	   *verifier = regstack_text_arg(fcinfo, 0, "code_verifier",
											 REGSTACK_MAX_TEXT_BYTES, true);
	const char *chars = VARDATA_ANY(verifier);
	int			len = VARSIZE_ANY_EXHDR(verifier);

	if (len < OIDC_VERIFIER_MIN_CHARS || len > OIDC_VERIFIER_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("code_verifier must have 43 to 128 characters"),
				 errdetail("It has %d.", len)));
	for (int i = 0; i < len; i++)
	{
		char		c = chars[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
			  c == '~'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("code_verifier may contain only A-Z, a-z, 0-9, \"-\", \".\", \"_\" and \"~\"")));
	}
	PG_RETURN_TEXT_P(oidc_s256(verifier));
}

/*
 * begin_oidc_flow(provider, redirect_to, mode, linking_user_id, ttl):
 * store an oidc_state token with a fresh verifier and nonce; return the
 * state, the nonce and the S256 challenge for the authorize URL.
 */
Datum
regstack_begin_oidc_flow(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RegstackTokenFields fields = {0};
	Interval   *ttl;
	text	   *verifier;
	text	   *nonce;
	char	   *state;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	fields.value[RS_FIELD_PROVIDER] =
		regstack_text_arg(fcinfo, 0, "provider", REGSTACK_MAX_TEXT_BYTES, false);
	fields.value[RS_FIELD_REDIRECT_TO] =
		regstack_text_arg(fcinfo, 1, "redirect_to", REGSTACK_MAX_TEXT_BYTES, false);
	fields.value[RS_FIELD_MODE] =
		regstack_text_arg(fcinfo, 2, "mode", REGSTACK_MAX_TEXT_BYTES, false);
	fields.value[RS_FIELD_LINKING_USER_ID] =
		regstack_text_arg(fcinfo, 3, "linking_user_id", REGSTACK_MAX_TEXT_BYTES, false);
	ttl = regstack_interval_arg(fcinfo, 4, "ttl");

	verifier = cstring_to_text(regstack_new_secret());
	nonce = cstring_to_text(regstack_new_secret());
	fields.value[RS_FIELD_CODE_VERIFIER] = verifier;
	fields.value[RS_FIELD_NONCE] = nonce;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	state = regstack_issue("oidc_state", &fields, ttl);

	values[0] = CStringGetTextDatum(state);
	values[1] = PointerGetDatum(nonce);
	values[2] = PointerGetDatum(oidc_s256(verifier));
	values[3] = CStringGetTextDatum("S256");
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
