/*-------------------------------------------------------------------------
 *
 * encoding.c
 *	  Randomness and base64url for regstack's tokens (their SHA-256 is in
 *	  digests.c).
 *
 * Randomness is PostgreSQL's own pg_strong_random, the same source
 * pgcrypto's gen_random_bytes uses, so no SQL round trip and no dependency
 * on pgcrypto.  All functions may be called in any memory context; results
 * are palloc'd in the current one.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "miscadmin.h"
#include "port.h"

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

/*
 * Random bytes are drawn from pg_strong_random a block at a time and handed
 * out in order, each byte wiped from the block as it is handed out.  With
 * OpenSSL, pg_strong_random costs about 1 us a call however few bytes it
 * returns (a status check, a fork check and the generator's locking); 32
 * tokens share one call this way.  The block belongs to the process that
 * filled it (a child forked from a process holding one refills its own), so
 * no two processes ever hand out the same bytes.
 */
#define ENCODING_RANDOM_BLOCK_BYTES	1024

static uint8 encoding_random_block[ENCODING_RANDOM_BLOCK_BYTES];
static size_t encoding_random_used = ENCODING_RANDOM_BLOCK_BYTES;
static int	encoding_random_owner = 0;	/* pid that filled the block */

/* Fill raw with len bytes from pg_strong_random, or fail. */
static void
encoding_random_bytes(uint8 *raw, size_t len)
{
	while (len > 0)
	{
		size_t		chunk;

		if (encoding_random_used == ENCODING_RANDOM_BLOCK_BYTES ||
			encoding_random_owner != MyProcPid)
		{
			/* Not reachable from any input: the random source failed. */
			if (!pg_strong_random(encoding_random_block,
								  ENCODING_RANDOM_BLOCK_BYTES))
				ereport(ERROR,
						(errcode(ERRCODE_SYSTEM_ERROR),
						 errmsg("could not generate random bytes for a token")));
			encoding_random_used = 0;
			encoding_random_owner = MyProcPid;
		}
		chunk = Min(len, ENCODING_RANDOM_BLOCK_BYTES - encoding_random_used);
		memcpy(raw, encoding_random_block + encoding_random_used, chunk);
		explicit_bzero(encoding_random_block + encoding_random_used, chunk);
		encoding_random_used += chunk;
		raw += chunk;
		len -= chunk;
	}
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
 * A random subject tag, for a token without a subject: such tokens spread
 * over the primary key's tag range (and over the shards of a distributed
 * table) instead of all sharing tag 0.  Any value may come out, 0 and the
 * tag of some subject included: revoke_tokens and the caps compare the
 * subject itself, which these tokens do not have.
 */
int32
regstack_random_subject_tag(void)
{
	uint8		raw[REGSTACK_TAG_BYTES];

	encoding_random_bytes(raw, sizeof(raw));
	return (int32) (((uint32) raw[0] << 24) | ((uint32) raw[1] << 16) |
					((uint32) raw[2] << 8) | (uint32) raw[3]);
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
