/*-------------------------------------------------------------------------
 *
 * regstack.h
 *	  Declarations shared between regstack's C files.
 *
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

#include "access/tableam.h"
#include "utils/rel.h"
#include "pg_compat.h"
#include "storage/lockdefs.h"
#include "utils/snapshot.h"

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

/* ---- key_locks.c: advisory locks on regstack's own keys ---- */

/* Take a transaction-scoped exclusive advisory lock on (class, key1, key2). */
extern void regstack_xact_lock(uint16 lock_class, const char *key1,
							   const char *key2);

/* ---- tables.c: regstack's tables, checked to be as shipped ---- */

/* The tables the direct heap paths write. */
typedef enum RegstackTable
{
	RS_TABLE_TOKENS,			/* regstack.auth_ephemeral_tokens */
	RS_TABLE_RATE_STATE,		/* regstack.auth_rate_limit_state */
	RS_TABLE_RATE_EVENTS,		/* regstack.auth_rate_limit_events */
	RS_NUM_TABLES
} RegstackTable;

/*
 * The columns each table ships, numbered from 1 in the install script's
 * order.  tables.c knows their names and types, and maps them to
 * attribute numbers (RegstackTableInfo).
 */
typedef enum RegstackTokenColumn
{
	RS_COL_SUBJECT_TAG = 1,
	RS_COL_TOKEN_HASH,
	RS_COL_TOKEN_TYPE,
	RS_COL_SUBJECT,
	RS_COL_PROVIDER,
	RS_COL_NONCE,
	RS_COL_CODE_VERIFIER,
	RS_COL_CHALLENGE_HASH,
	RS_COL_REDIRECT_TO,
	RS_COL_MODE,
	RS_COL_LINKING_USER_ID,
	RS_COL_RESULT,
	RS_COL_PAYLOAD,
	RS_COL_CREATED_AT,
	RS_COL_EXPIRES_AT
} RegstackTokenColumn;
#define RS_NUM_COLS RS_COL_EXPIRES_AT

typedef enum RegstackRateStateColumn
{
	RS_STATE_KEY = 1,
	RS_STATE_EVENT_TYPE,
	RS_STATE_NEXT_SEQ,
	RS_STATE_START_SEQ,
	RS_STATE_START_AT,
	RS_STATE_WINDOW_US,
	RS_STATE_LAST_AT,
	RS_STATE_CLOCK_AT
} RegstackRateStateColumn;
#define RS_STATE_NUM_COLS RS_STATE_CLOCK_AT

typedef enum RegstackRateEventColumn
{
	RS_EVENT_KEY = 1,
	RS_EVENT_EVENT_TYPE,
	RS_EVENT_SEQ,
	RS_EVENT_OCCURRED_AT
} RegstackRateEventColumn;
#define RS_EVENT_NUM_COLS RS_EVENT_OCCURRED_AT

/* Most columns a table ships (the tokens table's 15). */
#define REGSTACK_MAX_COLUMNS	15

/*
 * Where a table's shipped columns are.  Columns are numbered by the
 * order the install script gives them (RS_COL_*, RS_STATE_*, RS_EVENT_*,
 * from 1); attnum[i - 1] is the attribute number of column i, which
 * differs from i in a table that has dropped a column (1.0's "lane").
 */
typedef struct RegstackTableInfo
{
	Oid			relid;
	int			ncolumns;		/* shipped columns */
	AttrNumber	attnum[REGSTACK_MAX_COLUMNS];
} RegstackTableInfo;

/*
 * Open table with lockmode after checking (once per change of the table,
 * cached) that it is exactly as the extension ships it; 55000 naming the
 * difference otherwise.  *info gets where its columns are.
 */
extern Relation regstack_table_open(RegstackTable table, LOCKMODE lockmode,
									const RegstackTableInfo **info);

/* The same check for a call that reaches the table through SQL; keeps lockmode. */
extern void regstack_table_check(RegstackTable table, LOCKMODE lockmode);

/* Why a table cannot be used: what regstack_table_check() would raise. */
typedef struct RegstackTableProblem
{
	char	   *message;
	char	   *detail;			/* or NULL */
	char	   *hint;			/* or NULL */
} RegstackTableProblem;

/*
 * The check without the error: true when the table is as shipped (it
 * stays locked in lockmode), else false with *problem filled in (for the
 * reaper, which warns and skips the table).
 */
extern bool regstack_table_usable(RegstackTable table, LOCKMODE lockmode,
								  RegstackTableProblem *problem);

/* The owner of regstack's tables (55000 if not installed or out of date). */
extern Oid	regstack_tables_owner(void);

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

/* ---- registry.c: per-backend caches of the registry tables ---- */

/*
 * A registry table cached per backend.  Callers define one statically with
 * the first four members set; load_sql selects the key (text, column 1)
 * first and orders by it COLLATE "C"; each entry starts with the key as
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
	SPIPlanPtr	load_plan;
} RegstackRegistryCache;

#define REGSTACK_REGISTRY_CACHE(relname, load_sql, entry_type, decode) \
	{ (relname), (load_sql), sizeof(entry_type), (decode), \
	  NULL, NULL, 0, false, 0, InvalidOid, NULL }

/* Reload the cache if stale (runs as the table owner, any context). */
extern void regstack_registry_refresh(RegstackRegistryCache *cache);
/* The entry with that key, or NULL; valid until the next lookup. */
extern const void *regstack_registry_find(RegstackRegistryCache *cache,
										  const char *key);
/* All keys, comma-separated, palloc'd: for error hints. */
extern char *regstack_registry_keys(RegstackRegistryCache *cache);

/* ---- heap_access.c: shared by the direct heap and index paths ---- */

/* CommandCounterIncrement, then a fresh registered snapshot in *snapshot. */
extern void regstack_statement_snapshot(Snapshot *snapshot);

/*
 * Index maintenance for tuples written directly into one relation: every
 * index gets its entry, with its unique or exclusion check.  An all-zero
 * writer is unopened; the first write opens the indexes, close() closes
 * them.
 */
typedef struct RegstackIndexWriter
{
	struct EState *estate;		/* NULL until first use */
	struct ResultRelInfo *result_rel;
} RegstackIndexWriter;

/* Insert the tuple in slot into rel, with its index entries. */
extern void regstack_heap_insert(RegstackIndexWriter *writer, Relation rel,
								 TupleTableSlot *slot);

/*
 * Replace the row version at *tid (visible to snapshot) by the tuple in
 * slot, waiting for a concurrent writer, with the index entries the new
 * version needs.  Returns as table_tuple_update does, after
 * regstack_check_conflict().
 */
extern TM_Result regstack_heap_update(RegstackIndexWriter *writer,
									  Relation rel, ItemPointer tid,
									  TupleTableSlot *slot, Snapshot snapshot);

/*
 * Delete the row version at *tid, waiting for a concurrent writer unless
 * !wait (then TM_BeingModified at once); table_tuple_delete's result.
 */
extern TM_Result regstack_heap_delete(Relation rel, ItemPointer tid,
									  Snapshot snapshot, bool wait);

/* Close what the writer opened, if anything. */
extern void regstack_index_writer_close(RegstackIndexWriter *writer);

/* Fill a virtual slot of a table from its shipped columns' values. */
extern void regstack_slot_store_columns(TupleTableSlot *slot,
										const RegstackTableInfo *info,
										const Datum *values, const bool *nulls);

/* Read a table's shipped columns' values out of slot. */
extern void regstack_slot_fetch_columns(TupleTableSlot *slot,
										const RegstackTableInfo *info,
										Datum *values, bool *nulls);

/*
 * What a delete, update or lock that did not succeed means: 40001 where
 * UPDATE/DELETE would raise it (REPEATABLE READ, SERIALIZABLE); else the
 * result for the caller to act on.
 */
extern TM_Result regstack_check_conflict(TM_Result result);

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

/* ---- subject_tags.c: keyed tags of subjects ---- */

/* First 32 bits of HMAC-SHA-256(subject_tag key, subject); 0 for NULL. */
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

extern bool regstack_token_apply(const RegstackTokenKey *key,
								 RegstackTokenAction action,
								 text *new_result, Datum *values, bool *nulls);
extern void regstack_token_insert(const Datum *values, const bool *nulls);

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

/* ---- purge.c: deleting expired rows, shared with the reaper ---- */

/* Delete every expired token (skipping rows others hold); how many. */
extern int64 regstack_purge_tokens(void);

/*
 * Run a purge statement that returns one row (count, max(ctid)) of what
 * it deleted; move *after to that ctid when there is one; return the
 * count.  what names the rows for the error message.
 */
extern int64 regstack_purge_execute(SPIPlanPtr plan, Datum *values,
									const char *nulls, ItemPointer after,
									const char *what);

/*
 * The reaper's batch: delete up to limit expired tokens whose ctid lies
 * after *after and before block stop_block, skipping rows others hold;
 * move *after to the last one deleted; *nblocks gets the table's size.
 * Returns how many.
 */
extern int64 regstack_purge_tokens_range(int64 limit, ItemPointer after,
										 BlockNumber stop_block,
										 BlockNumber *nblocks);

/* ---- rate_limits.c: exact sliding-window rate limits (rate_limits.h) ---- */

/* Define regstack.event_retention; called from _PG_init. */
extern void regstack_rate_limits_define_settings(void);

/*
 * Where a purge of rate-limit rows has got to: the last event and the last
 * state row deleted, and whether the events are done.  Start from
 * regstack_purge_cursor_init(); the reaper carries one through a pass.
 */
typedef struct RegstackPurgeCursor
{
	ItemPointerData events_after;
	ItemPointerData state_after;
	bool		events_done;
} RegstackPurgeCursor;

extern void regstack_purge_cursor_init(RegstackPurgeCursor *cursor);

/*
 * Delete up to limit stale rate-limit rows (limit <= 0: all): events older
 * than their policy's window, or than regstack.event_retention for event
 * types without a policy, then state rows whose newest event is that old.
 * Each table is read in ctid order from the cursor, which moves past what
 * was deleted, so batches of one pass do not reread what earlier ones
 * covered.  Skips locked rows, so it never waits for a foreground call.
 * Returns how many rows were deleted.  Call inside regstack_begin_call().
 */
extern int64 regstack_purge_events(int64 limit, RegstackPurgeCursor *cursor);

/* ---- reaper_*.c: the background reaper (reaper.h has the rest) ---- */

/* Define the reaper's reloadable settings; any process loading regstack. */
extern void regstack_reaper_define_settings(void);

/*
 * Define the restart-only settings, reserve shared memory and register the
 * launcher.  Only while shared_preload_libraries is being processed.
 */
extern void regstack_reaper_preload(void);

#endif							/* REGSTACK_H */
