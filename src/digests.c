/*-------------------------------------------------------------------------
 *
 * digests.c
 *	  SHA-256 and HMAC-SHA-256 of short inputs, for regstack's hot paths.
 *
 * Every issue_token and consume_token hashes its token, and issue_token
 * tags its subject with HMAC-SHA-256 (subject_tags.c).  PostgreSQL's
 * common/cryptohash.h and common/hmac.h create a library context, register
 * it with the resource owner and free it on every call, and OpenSSL 3 looks
 * the algorithm up again each time (an implicit fetch): in a profile of the
 * token pair at 8 clients that was about a tenth of the backend's CPU.
 *
 * So, when PostgreSQL is built with OpenSSL, this file fetches SHA-256 once
 * per backend and reuses one digest context; the digests are the same.
 * Without OpenSSL it uses cryptohash.h.  HMAC is computed here from
 * SHA-256 as RFC 2104 defines it, with the key's two padded blocks
 * prepared once per key (regstack's keys fit in one 64-byte block).
 *
 * No function here raises an error between starting and finishing a
 * digest, so the reused context is never left half-used.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"
#include "pg_compat.h"

#include "common/sha2.h"

#ifdef USE_OPENSSL
#include <openssl/err.h>
#include <openssl/evp.h>
#else
#include "common/cryptohash.h"
#endif

StaticAssertDecl(PG_SHA256_DIGEST_LENGTH == REGSTACK_DIGEST_BYTES,
				 "regstack digests are SHA-256");
StaticAssertDecl(PG_SHA256_BLOCK_LENGTH == REGSTACK_HMAC_BLOCK_BYTES,
				 "an HMAC key block is one SHA-256 block");

pg_noreturn static void digests_fail(const char *what, const char *reason);

/* Report that the crypto library failed; reason says how. */
static void
digests_fail(const char *what, const char *reason)
{
	/* Not reachable from any input: out of memory or a broken library. */
	ereport(ERROR,
			(errcode(ERRCODE_SYSTEM_ERROR),
			 errmsg("could not compute %s: %s", what,
					reason ? reason : "unknown error")));
}

#ifdef USE_OPENSSL

/* SHA-256 and a digest context, made on first use, kept for the backend. */
static const EVP_MD *digests_sha256_md = NULL;
static EVP_MD_CTX *digests_sha256_ctx = NULL;

/* The reason of OpenSSL's latest error, or NULL. */
static const char *
digests_openssl_reason(void)
{
	unsigned long code = ERR_get_error();

	ERR_clear_error();
	return code ? ERR_reason_error_string(code) : NULL;
}

/* Make the backend's SHA-256 algorithm and context, once. */
static void
digests_openssl_setup(void)
{
	if (digests_sha256_md == NULL)
	{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
		/* An explicit fetch, so no call looks the algorithm up again. */
		digests_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
#else
		digests_sha256_md = EVP_sha256();
#endif
		if (digests_sha256_md == NULL)
			digests_fail("SHA-256", digests_openssl_reason());
	}
	if (digests_sha256_ctx == NULL)
	{
		/* EVP_MD_CTX_create: so named in every OpenSSL PostgreSQL 15 builds with */
		digests_sha256_ctx = EVP_MD_CTX_create();
		if (digests_sha256_ctx == NULL)
		{
			ERR_clear_error();
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		}
	}
}

/* SHA-256 of the bytes of first followed by those of second. */
void
regstack_sha256_concat(const void *first, size_t first_len,
					   const void *second, size_t second_len,
					   uint8 *digest)
{
	unsigned int digest_len;

	digests_openssl_setup();
	if (!EVP_DigestInit_ex(digests_sha256_ctx, digests_sha256_md, NULL) ||
		!EVP_DigestUpdate(digests_sha256_ctx, first, first_len) ||
		(second_len > 0 &&
		 !EVP_DigestUpdate(digests_sha256_ctx, second, second_len)) ||
		!EVP_DigestFinal_ex(digests_sha256_ctx, digest, &digest_len))
		digests_fail("SHA-256", digests_openssl_reason());
	Assert(digest_len == REGSTACK_DIGEST_BYTES);
}

#else							/* !USE_OPENSSL */

/* SHA-256 of the bytes of first followed by those of second. */
void
regstack_sha256_concat(const void *first, size_t first_len,
					   const void *second, size_t second_len,
					   uint8 *digest)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, first, first_len) < 0 ||
		pg_cryptohash_update(ctx, second, second_len) < 0 ||
		pg_cryptohash_final(ctx, digest, REGSTACK_DIGEST_BYTES) < 0)
	{
		const char *reason = pg_cryptohash_error(ctx);

		pg_cryptohash_free(ctx);
		digests_fail("SHA-256", reason);
	}
	pg_cryptohash_free(ctx);
}

#endif							/* USE_OPENSSL */

/* SHA-256 of data into digest, which has room for REGSTACK_DIGEST_BYTES. */
void
regstack_sha256(const char *data, size_t len, uint8 *digest)
{
	regstack_sha256_concat(data, len, NULL, 0, digest);
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
 * Prepare an HMAC-SHA-256 key of at most one block: the key, zero-padded
 * to a block, XORed with RFC 2104's inner and outer pads.
 */
void
regstack_hmac_prepare(const uint8 *key, size_t key_len, RegstackHmacKey *prepared)
{
	Assert(key_len <= REGSTACK_HMAC_BLOCK_BYTES);
	for (size_t i = 0; i < REGSTACK_HMAC_BLOCK_BYTES; i++)
	{
		uint8		key_byte = i < key_len ? key[i] : 0;

		prepared->inner_block[i] = key_byte ^ 0x36;
		prepared->outer_block[i] = key_byte ^ 0x5C;
	}
}

/* HMAC-SHA-256 of data under a prepared key, into digest. */
void
regstack_hmac_sha256(const RegstackHmacKey *key, const void *data, size_t len,
					 uint8 *digest)
{
	uint8		inner[REGSTACK_DIGEST_BYTES];

	regstack_sha256_concat(key->inner_block, REGSTACK_HMAC_BLOCK_BYTES,
						   data, len, inner);
	regstack_sha256_concat(key->outer_block, REGSTACK_HMAC_BLOCK_BYTES,
						   inner, sizeof(inner), digest);
}
