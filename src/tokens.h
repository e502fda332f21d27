/*-------------------------------------------------------------------------
 *
 * tokens.h
 *	  The single-use token store's boundaries: subject tags, the registry
 *	  of token types, the direct access to the tokens table, and issuing
 *	  (shared by tokens.c and oidc.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef REGSTACK_TOKENS_H
#define REGSTACK_TOKENS_H

#include "regstack.h"

/* ---- subject_tags.c: keyed tags of subjects ---- */

/* First 32 bits of HMAC-SHA-256(subject_tag key, subject); subject not NULL. */
extern int32 regstack_subject_tag(const text *subject);

/* ---- token_types.c: the cached registry of token types ---- */

/* Fields of a token that a type can require; bit i of required_mask. */
typedef enum RegstackTokenField
{
	RS_FIELD_SUBJECT,
	RS_FIELD_PROVIDER,
	RS_FIELD_NONCE,
	RS_FIELD_CODE_VERIFIER,
	RS_FIELD_CHALLENGE,
	RS_FIELD_REDIRECT_TO,
	RS_FIELD_MODE,
	RS_FIELD_LINKING_USER_ID,
	RS_FIELD_RESULT,
	RS_FIELD_PAYLOAD,
	RS_NUM_FIELDS
} RegstackTokenField;

extern const char *const regstack_field_names[RS_NUM_FIELDS];

typedef struct RegstackTokenType
{
	char		name[NAMEDATALEN];
	Interval	default_ttl;
	Interval	max_ttl;
	uint32		required_mask;
	int32		max_live_per_subject;	/* 0: no cap */
} RegstackTokenType;

/*
 * The registry entry for name, or an error (22023, hint listing the known
 * types) when there is none.  Valid until the next call.
 */
extern const RegstackTokenType *regstack_token_type(const char *name);

/* ---- token_store.c: direct heap and index access to the tokens table ---- */

/* Which token a find/consume/attach is about. */
typedef struct RegstackTokenKey
{
	int32		subject_tag;	/* the tag the token carries */
	bytea	   *token_hash;		/* SHA-256 of the token */
	text	   *token_type;
	bool		check_challenge;	/* consume/peek: enforce the challenge */
	bytea	   *challenge_hash; /* SHA-256 of the challenge given, or NULL */
} RegstackTokenKey;

typedef enum RegstackTokenAction
{
	RS_TOKEN_FETCH,				/* peek_token */
	RS_TOKEN_DELETE,			/* consume_token */
	RS_TOKEN_SET_RESULT			/* attach_result */
} RegstackTokenAction;

/*
 * What a consume, peek or attach found (counted by regstack.stats),
 * decided in this order: no row, then type, expiry, challenge.
 */
typedef enum RegstackTokenOutcome
{
	RS_TOKEN_HIT,
	RS_TOKEN_NOT_FOUND,
	RS_TOKEN_WRONG_TYPE,
	RS_TOKEN_EXPIRED,
	RS_TOKEN_WRONG_CHALLENGE
} RegstackTokenOutcome;

extern bool regstack_token_apply(const RegstackTokenKey *key,
								 RegstackTokenAction action,
								 text *new_result, Datum *values, bool *nulls);
extern void regstack_token_insert(const Datum *values, const bool *nulls);

/*
 * Whether a row (RS_NUM_COLS values) has key's type, is live and matches
 * its challenge: RS_TOKEN_HIT, else the first condition it fails.
 */
extern RegstackTokenOutcome regstack_token_row_matches(const RegstackTokenKey *key,
													   const Datum *values,
													   const bool *nulls);

/* ---- token_routed.c: the same through SQL Citus routes to another node ---- */

extern bool regstack_token_apply_routed(const RegstackTokenKey *key,
										RegstackTokenAction action,
										text *new_result, Datum *values,
										bool *nulls);
extern void regstack_token_insert_routed(const Datum *values, const bool *nulls);

/* ---- tokens.c: issuing tokens, shared with oidc.c ---- */

/* Everything a caller may store on a token; NULL members are absent. */
typedef struct RegstackTokenFields
{
	text	   *value[RS_NUM_FIELDS];	/* RS_FIELD_PAYLOAD is a Jsonb */
} RegstackTokenFields;

/*
 * Store a new token of type type_name with the given fields and TTL (NULL:
 * the type's default) and return the token, palloc'd.
 */
extern char *regstack_issue(const char *type_name,
							const RegstackTokenFields *fields,
							const Interval *ttl);

#endif							/* REGSTACK_TOKENS_H */
