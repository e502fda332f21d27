/*-------------------------------------------------------------------------
 *
 * encoding.c
 *	  Randomness, SHA-256 and base64url for regstack's tokens.
 *
 * Uses PostgreSQL's own primitives (pg_strong_random and the SHA-256 of
 * common/cryptohash.h), the same ones pgcrypto wraps, so no SQL round trip
 * and no dependency on pgcrypto.  All functions may be called in any memory
 * context; results are palloc'd in the current one.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "port.h"

StaticAssertDecl(PG_SHA256_DIGEST_LENGTH == REGSTACK_DIGEST_BYTES,
				 "regstack digests are SHA-256");
StaticAssertDecl(REGSTACK_BASE64URL_LEN(REGSTACK_SECRET_BYTES) ==
				 REGSTACK_SECRET_CHARS,
				 "a 256-bit secret prints as 43 characters");
StaticAssertDecl(REGSTACK_BASE64URL_LEN(REGSTACK_TOKEN_BYTES) ==
				 REGSTACK_TOKEN_CHARS && REGSTACK_TOKEN_BYTES % 3 == 0,
				 "a token prints as 48 characters, 4 for every 3 bytes");

static const char encoding_alphabet[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Write the unpadded base64url form of data to out, NUL-terminated. */
void
regstack_base64url_encode(const uint8 *data, size_t len, char *out)
{
	size_t		i = 0;

	for (; i + 3 <= len; i += 3)
	{
		uint32		group = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];

		*out++ = encoding_alphabet[(group >> 18) & 0x3F];
		*out++ = encoding_alphabet[(group >> 12) & 0x3F];
		*out++ = encoding_alphabet[(group >> 6) & 0x3F];
		*out++ = encoding_alphabet[group & 0x3F];
	}
	if (len - i == 1)
	{
		uint32		group = data[i] << 16;

		*out++ = encoding_alphabet[(group >> 18) & 0x3F];
		*out++ = encoding_alphabet[(group >> 12) & 0x3F];
	}
	else if (len - i == 2)
	{
		uint32		group = (data[i] << 16) | (data[i + 1] << 8);

		*out++ = encoding_alphabet[(group >> 18) & 0x3F];
		*out++ = encoding_alphabet[(group >> 12) & 0x3F];
		*out++ = encoding_alphabet[(group >> 6) & 0x3F];
	}
	*out = '\0';
}

/* Fill raw with len bytes from pg_strong_random, or fail. */
static void
encoding_random_bytes(uint8 *raw, size_t len)
{
	/* Not reachable from any input: the OS random source itself failed. */
	if (!pg_strong_random(raw, len))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for a token")));
}

/* A fresh 43-character secret: 256 bits from pg_strong_random, base64url. */
char *
regstack_new_secret(void)
{
	uint8		raw[REGSTACK_SECRET_BYTES];
	char	   *secret = palloc(REGSTACK_SECRET_CHARS + 1);

	encoding_random_bytes(raw, sizeof(raw));
	regstack_base64url_encode(raw, sizeof(raw), secret);
	explicit_bzero(raw, sizeof(raw));
	return secret;
}

/*
 * A fresh 48-character token: subject_tag (big-endian) and 256 bits from
 * pg_strong_random, base64url.  The tag is not secret; the 256 bits are.
 */
char *
regstack_new_token(int32 subject_tag)
{
	uint8		raw[REGSTACK_TOKEN_BYTES];
	char	   *token = palloc(REGSTACK_TOKEN_CHARS + 1);
	uint32		tag = (uint32) subject_tag;

	raw[0] = (uint8) (tag >> 24);
	raw[1] = (uint8) (tag >> 16);
	raw[2] = (uint8) (tag >> 8);
	raw[3] = (uint8) tag;
	encoding_random_bytes(raw + REGSTACK_TAG_BYTES, REGSTACK_SECRET_BYTES);
	regstack_base64url_encode(raw, sizeof(raw), token);
	explicit_bzero(raw, sizeof(raw));
	return token;
}

/* Value (0-63) of a base64url character; the caller checked the alphabet. */
static uint32
encoding_char_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return (c == '-') ? 62 : 63;
}

/*
 * The subject tag of a well-formed token: its first 4 bytes, which are the
 * first 32 of the 36 bits its first 6 characters encode.
 */
int32
regstack_token_tag(const text *token)
{
	const char *chars = VARDATA_ANY(token);
	uint64		bits = 0;

	Assert(regstack_token_wellformed(token));
	for (int i = 0; i < 6; i++)
		bits = (bits << 6) | encoding_char_value(chars[i]);
	return (int32) (uint32) (bits >> 4);
}

/* SHA-256 of data into digest, which has room for REGSTACK_DIGEST_BYTES. */
void
regstack_sha256(const char *data, size_t len, uint8 *digest)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, REGSTACK_DIGEST_BYTES) < 0)
	{
		/* Only an out-of-memory or a broken crypto library gets here. */
		const char *reason = pg_cryptohash_error(ctx);

		pg_cryptohash_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute SHA-256: %s", reason)));
	}
	pg_cryptohash_free(ctx);
}

/* SHA-256 of a text value's bytes, returned as a palloc'd bytea. */
bytea *
regstack_sha256_bytea(const text *value)
{
	bytea	   *digest = palloc(VARHDRSZ + REGSTACK_DIGEST_BYTES);

	SET_VARSIZE(digest, VARHDRSZ + REGSTACK_DIGEST_BYTES);
	regstack_sha256(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value),
					(uint8 *) VARDATA(digest));
	return digest;
}

/*
 * True when token has the exact shape regstack issues: 48 characters of
 * the base64url alphabet.  Anything else cannot match a stored digest, so
 * callers answer "no such token" without touching the table.
 */
bool
regstack_token_wellformed(const text *token)
{
	const char *chars = VARDATA_ANY(token);

	if (VARSIZE_ANY_EXHDR(token) != REGSTACK_TOKEN_CHARS)
		return false;
	for (int i = 0; i < REGSTACK_TOKEN_CHARS; i++)
	{
		char		c = chars[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return true;
}
