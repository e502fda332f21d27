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
 * against the tag.  Tokens without a subject carry a random tag
 * (regstack_random_subject_tag, encoding.c).
 *
 * The key is cached per backend through the registry cache (registry.c),
 * which reloads it after any change to the table.
 *
 *-------------------------------------------------------------------------
 */
#include "tokens.h"

/* The secret_keys table's CHECK: 16 to 64 bytes (one HMAC block). */
#define SUBJECT_TAG_MIN_KEY_BYTES	16

/* A cached row of regstack.secret_keys, prepared as an HMAC key. */
typedef struct SubjectTagKey
{
	char		name[NAMEDATALEN];	/* key of the registry entry */
	int			secret_length;	/* bytes of the secret as stored */
	RegstackHmacKey hmac_key;	/* the secret, if 16..64 bytes */
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

	entry->secret_length = VARSIZE_ANY_EXHDR(secret);
	if (entry->secret_length >= SUBJECT_TAG_MIN_KEY_BYTES &&
		entry->secret_length <= REGSTACK_HMAC_BLOCK_BYTES)
		regstack_hmac_prepare((const uint8 *) VARDATA_ANY(secret),
							  entry->secret_length, &entry->hmac_key);
}

static RegstackRegistryCache secret_keys_cache =
REGSTACK_REGISTRY_CACHE("secret_keys",
						"SELECT name, secret FROM %s"
						" ORDER BY name COLLATE pg_catalog.\"C\"",
						SubjectTagKey, subject_tags_decode);

/* The tag of subject; see the file header. */
int32
regstack_subject_tag(const text *subject)
{
	const SubjectTagKey *key;
	uint8		digest[REGSTACK_DIGEST_BYTES];

	Assert(subject != NULL);
	key = regstack_registry_find(&secret_keys_cache, "subject_tag");
	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("regstack.secret_keys has no \"subject_tag\" row"),
				 errhint("Restore the row from a dump of this database; a new key would make revoke_tokens and per-subject caps miss the live tokens.")));
	/* Only if someone dropped the table's CHECK. */
	if (key->secret_length < SUBJECT_TAG_MIN_KEY_BYTES ||
		key->secret_length > REGSTACK_HMAC_BLOCK_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("regstack.secret_keys' \"subject_tag\" key must be 16 to 64 bytes long"),
				 errdetail_plural("It is %d byte long.", "It is %d bytes long.",
								  key->secret_length, key->secret_length)));

	regstack_hmac_sha256(&key->hmac_key, VARDATA_ANY(subject),
						 VARSIZE_ANY_EXHDR(subject), digest);
	return (int32) (((uint32) digest[0] << 24) | ((uint32) digest[1] << 16) |
					((uint32) digest[2] << 8) | (uint32) digest[3]);
}
