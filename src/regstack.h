/*-------------------------------------------------------------------------
 *
 * regstack.h
 *	  What every file of regstack may use: limits and constants, and the
 *	  small services of encoding.c, call.c, key_locks.c, args.c,
 *	  registry.c and digests.c; and what module.c calls at load.
 *
 * The other boundaries have their own headers, each including this one:
 *	- heap_access.h: regstack's tables as the direct heap paths see them
 *	  (tables.c, the guard; heap_access.c);
 *	- tokens.h: the token store (tokens.c, token_store.c, token_types.c,
 *	  subject_tags.c, oidc.c);
 *	- purge.h: deleting expired rows (purge.c and the rate-limit purge in
 *	  rate_limits.c), which purge_expired() and the reaper share;
 *	- rate_limits.h: private to the rate-limit files;
 *	- reaper.h: private to the reaper's files;
 *	- stats.h: the statistics counters;
 *	- pg_compat.h: the PostgreSQL versions' API differences.
 * Each block below belongs to one file; a function declared here is the
 * boundary that file offers to the others.  Everything else is static.
 *
 * Rules for callers:
 *	- SQL-callable functions run their table work between
 *	  regstack_begin_call() and regstack_end_call(): connected to SPI and
 *	  switched to the owner of regstack's tables, so an application role
 *	  needs EXECUTE only, never table privileges.
 *	- Every SQL string given to SPI qualifies every name (tables, functions,
 *	  operators) so that no search_path can change what it means.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REGSTACK_H
#define REGSTACK_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/timestamp.h"

/*
 * A secret (PKCE verifier, nonce) is 256 random bits, printed as unpadded
 * base64url.  A token is its subject tag (4 bytes, big-endian) followed by
 * 256 random bits, printed the same way.
 */
#define REGSTACK_SECRET_BYTES		32
#define REGSTACK_SECRET_CHARS		43
#define REGSTACK_TAG_BYTES			4
#define REGSTACK_TOKEN_BYTES		(REGSTACK_TAG_BYTES + REGSTACK_SECRET_BYTES)
#define REGSTACK_TOKEN_CHARS		48
#define REGSTACK_DIGEST_BYTES		32	/* SHA-256 */

/* Input limits, documented in the README. */
#define REGSTACK_MAX_TOKEN_BYTES	512
#define REGSTACK_MAX_TEXT_BYTES		4096
#define REGSTACK_MAX_PAYLOAD_BYTES	16384

/* Advisory-lock classes of regstack's own transaction-scoped locks. */
#define REGSTACK_LOCK_CLASS_TOKEN_CAP	0x5253	/* (token type, subject) */
#define REGSTACK_LOCK_CLASS_RATE_KEY	0x5254	/* a rate-limit key without a
												 * state row (rate_limits.c) */

/*
 * The version of the extension's SQL objects this library works with
 * (tables.c refuses any other, with a hint to ALTER EXTENSION ... UPDATE).
 */
#define REGSTACK_SQL_VERSION		"1.1"

/* ---- encoding.c: randomness and base64url ---- */

/* Append the unpadded base64url form of data to out (out needs room). */
extern void regstack_base64url_encode(const uint8 *data, size_t len, char *out);

/* Length of the unpadded base64url form of len bytes. */
#define REGSTACK_BASE64URL_LEN(len)	(((len) * 4 + 2) / 3)

/* A fresh 43-character secret from pg_strong_random, palloc'd. */
extern char *regstack_new_secret(void);

/* A random subject tag, for a token without a subject. */
extern int32 regstack_random_subject_tag(void);

/* A fresh 48-character token carrying subject_tag, palloc'd. */
extern char *regstack_new_token(int32 subject_tag);

/* The subject tag a well-formed token carries in its first 4 bytes. */
extern int32 regstack_token_tag(const text *token);

/* True when s has the exact shape of a token regstack issued. */
extern bool regstack_token_wellformed(const text *token);

/* ---- call.c: where SQL functions run their table work ---- */

/* State saved by regstack_begin_call() and restored by regstack_end_call(). */
typedef struct RegstackCall
{
	Oid			saved_userid;
	int			saved_sec_context;
} RegstackCall;

/* Connect to SPI and switch to the tables' owner until regstack_end_call(). */
extern void regstack_begin_call(RegstackCall *call);
extern void regstack_end_call(RegstackCall *call);

/* Prepare-once, keep-forever SPI plan stored in *slot (call inside SPI). */
extern SPIPlanPtr regstack_plan(SPIPlanPtr *slot, const char *sql,
								int nargs, const Oid *argtypes);

/* The owner of regstack's tables (55000 if not installed or out of date). */
extern Oid	regstack_tables_owner(void);

/*
 * Run a delete statement (plan) that returns one row (count, max(ctid)) of
 * what it deleted; move *after to that ctid when there is one; return the
 * count.  what names the rows for the error message.
 */
extern int64 regstack_execute_counted_delete(SPIPlanPtr plan, Datum *values,
											 const char *nulls,
											 ItemPointer after,
											 const char *what);

/* ---- key_locks.c: advisory locks on regstack's own keys ---- */

/* Take a transaction-scoped exclusive advisory lock on (class, key1, key2). */
extern void regstack_xact_lock(uint16 lock_class, const char *key1,
							   const char *key2);

/* ---- args.c: checking SQL arguments ---- */

/*
 * The text argument argno, or NULL when it is SQL NULL and not required.
 * Errors: NULL when required (22004), empty (22023), longer than max_bytes
 * (22001).  name is the argument's SQL name, used in messages.
 */
extern text *regstack_text_arg(FunctionCallInfo fcinfo, int argno,
							   const char *name, int max_bytes,
							   bool required);

/* A TTL argument: positive, finite; NULL stays NULL. */
extern Interval *regstack_interval_arg(FunctionCallInfo fcinfo, int argno,
									   const char *name);

/* interval a < interval b, with PostgreSQL's interval ordering. */
extern bool regstack_interval_lt(const Interval *a, const Interval *b);

/*
 * A window as a fixed number of microseconds (a day is 24 hours, a month 30
 * days, as in interval comparison).  Errors (22023) unless it is positive
 * and at most 100 years; name is the argument's SQL name.
 */
extern int64 regstack_interval_window_us(const Interval *within,
										 const char *name);

/* ---- registry.c: per-backend caches of the registry tables ---- */

/*
 * A registry table cached per backend.  Callers define one statically with
 * the first four members set; load_sql selects the key (text, column 1)
 * first and orders by it COLLATE "C", from the relation %s (the table, or
 * on Citus its shard on this node); each entry starts with the key as
 * char[NAMEDATALEN], and decode fills the rest of the entry from a row.
 */
typedef struct RegstackRegistryCache
{
	const char *relname;		/* table in schema regstack */
	const char *load_sql;
	Size		entry_size;
	void		(*decode) (HeapTuple row, TupleDesc desc, void *entry);
	/* state, managed by registry.c */
	MemoryContext context;
	void	   *entries;
	int			count;
	bool		valid;
	uint64		invalidations;
	Oid			relid;
	Oid			read_relid;		/* the relation load_plan reads */
	SPIPlanPtr	load_plan;
} RegstackRegistryCache;

#define REGSTACK_REGISTRY_CACHE(relname, load_sql, entry_type, decode) \
	{ (relname), (load_sql), sizeof(entry_type), (decode), \
	  NULL, NULL, 0, false, 0, InvalidOid, InvalidOid, NULL }

/*
 * citus.c: the local shard of relid when Citus keeps it in one shard (a
 * reference table) and places it on this node, else InvalidOid.
 */
extern Oid	regstack_citus_single_shard(Oid relid);

/* Lock the cache's table as its load does; its oid, or InvalidOid. */
extern Oid	regstack_registry_lock(const RegstackRegistryCache *cache);

/* Reload the cache if stale (runs as the table owner, any context). */
extern void regstack_registry_refresh(RegstackRegistryCache *cache);
/* Mark the caches of relid (InvalidOid: all) stale; from the relcache callback. */
extern void regstack_registry_invalidate(Oid relid);

/*
 * Register regstack's one relcache callback (tables.c), which invalidates
 * the table checks, the registry caches and Citus's shard maps; idempotent.
 */
extern void regstack_relcache_callback_register(void);
/* The entry with that key, or NULL; valid until the next lookup. */
extern const void *regstack_registry_find(RegstackRegistryCache *cache,
										  const char *key);
/* All keys, comma-separated, palloc'd: for error hints. */
extern char *regstack_registry_keys(RegstackRegistryCache *cache);

/* ---- digests.c: SHA-256 and HMAC-SHA-256 ---- */

#define REGSTACK_HMAC_BLOCK_BYTES	64	/* SHA-256's block */

/* An HMAC-SHA-256 key of at most one block, with its pads applied. */
typedef struct RegstackHmacKey
{
	uint8		inner_block[REGSTACK_HMAC_BLOCK_BYTES];	/* key XOR 0x36 */
	uint8		outer_block[REGSTACK_HMAC_BLOCK_BYTES];	/* key XOR 0x5C */
} RegstackHmacKey;

/* SHA-256 of first || second into digest[REGSTACK_DIGEST_BYTES]. */
extern void regstack_sha256_concat(const void *first, size_t first_len,
								   const void *second, size_t second_len,
								   uint8 *digest);

/* SHA-256 of data into digest[REGSTACK_DIGEST_BYTES]. */
extern void regstack_sha256(const char *data, size_t len, uint8 *digest);

/* SHA-256 of a text value, as a palloc'd bytea. */
extern bytea *regstack_sha256_bytea(const text *value);

/* Prepare key (at most REGSTACK_HMAC_BLOCK_BYTES) for regstack_hmac_sha256. */
extern void regstack_hmac_prepare(const uint8 *key, size_t key_len,
								  RegstackHmacKey *prepared);

/* HMAC-SHA-256 of data under a prepared key into digest[REGSTACK_DIGEST_BYTES]. */
extern void regstack_hmac_sha256(const RegstackHmacKey *key, const void *data,
								 size_t len, uint8 *digest);

/* ---- rate_limits.c: exact sliding-window rate limits (rate_limits.h) ---- */

/* Define regstack.event_retention; called from _PG_init. */
extern void regstack_rate_limits_define_settings(void);

/* ---- reaper_*.c: the background reaper (reaper.h has the rest) ---- */

/* Define the reaper's reloadable settings; any process loading regstack. */
extern void regstack_reaper_define_settings(void);

/*
 * Define the restart-only settings, reserve shared memory and register the
 * launcher.  Only while shared_preload_libraries is being processed.
 */
extern void regstack_reaper_preload(void);

/* ---- citus_drop.c: DROP EXTENSION regstack on a Citus coordinator ---- */

/* Install the ProcessUtility hook that drops regstack's shards first. */
extern void regstack_citus_drop_hook_install(void);

#endif							/* REGSTACK_H */
