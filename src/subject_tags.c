/*-------------------------------------------------------------------------
 *
 * subject_tags.c
 *	  Subject tags: the 32-bit keyed hash of a token's subject that leads
 *	  the tokens table's primary key.
 *
 * A token carries its subject's tag in its first 4 bytes, so one index,
 * the primary key (subject_tag, token_hash), finds a token by the token
 * alone and a subject's tokens (revoke_tokens, per-subject caps) by the
 * tag; issuing a token inserts one index entry, not two.  The tag is the
 * first 32 bits of HMAC-SHA-256 keyed with regstack.secret_keys'
 * 'subject_tag' row (32 random bytes made by CREATE EXTENSION, kept by
 * pg_dump), so a token's holder cannot test guesses of its subject
 * against the tag.  Tokens without a subject carry tag 0.
 *
 * The key is cached per backend through the registry cache (registry.c),
 * which reloads it after any change to the table.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "common/hmac.h"
#include "common/sha2.h"

/* A cached row of regstack.secret_keys. */
typedef struct SubjectTagKey
{
	char		name[NAMEDATALEN];	/* key of the registry entry */
	int			length;
	uint8		secret[64];		/* the table's CHECK bounds it to 16..64 */
} SubjectTagKey;

StaticAssertDecl(offsetof(SubjectTagKey, name) == 0,
				 "registry.c finds entries by a key at offset 0");

/* Fill a cache entry (after its name) from a row of the load query. */
static void
subject_tags_decode(HeapTuple row, TupleDesc desc, void *entry_ptr)
{
	SubjectTagKey *entry = (SubjectTagKey *) entry_ptr;
	bool		isnull;
	bytea	   *secret = DatumGetByteaPP(SPI_getbinval(row, desc, 2, &isnull));

	entry->length = Min(VARSIZE_ANY_EXHDR(secret), sizeof(entry->secret));
	memcpy(entry->secret, VARDATA_ANY(secret), entry->length);
}

static RegstackRegistryCache secret_keys_cache =
REGSTACK_REGISTRY_CACHE("secret_keys",
						"SELECT name, secret FROM regstack.secret_keys"
						" ORDER BY name COLLATE pg_catalog.\"C\"",
						SubjectTagKey, subject_tags_decode);

/* The tag of subject; see the file header. */
int32
regstack_subject_tag(const text *subject)
{
	const SubjectTagKey *key;
	pg_hmac_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];

	if (subject == NULL)
		return 0;
	key = regstack_registry_find(&secret_keys_cache, "subject_tag");
	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("regstack.secret_keys has no \"subject_tag\" row"),
				 errhint("Restore the row from a dump of this database; a new key would make revoke_tokens and per-subject caps miss the live tokens.")));

	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL ||
		pg_hmac_init(ctx, key->secret, key->length) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) VARDATA_ANY(subject),
					   VARSIZE_ANY_EXHDR(subject)) < 0 ||
		pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
	{
		/* Only an out-of-memory or a broken crypto library gets here. */
		const char *reason = ctx ? pg_hmac_error(ctx) : "out of memory";

		pg_hmac_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute HMAC-SHA-256: %s", reason)));
	}
	pg_hmac_free(ctx);
	return (int32) (((uint32) digest[0] << 24) | ((uint32) digest[1] << 16) |
					((uint32) digest[2] << 8) | (uint32) digest[3]);
}
