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
#define REGSTACK_LOCK_CLASS_RATE_KEY	0x5254	/* a rate-limit key's lanes: share to
												 * add one, exclusive to hold all */
#define REGSTACK_LOCK_CLASS_RATE_DECIDE	0x5255	/* deciding a call on a rate-limit
												 * key; held for the call only */

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

/* ---- context.c: the extension's tables, its owner, SPI plans ---- */

/* State saved by regstack_begin_call() and restored by regstack_end_call(). */
typedef struct RegstackCall
{
	Oid			saved_userid;
	int			saved_sec_context;
} RegstackCall;

extern void regstack_begin_call(RegstackCall *call);
extern void regstack_end_call(RegstackCall *call);

/* The tables the direct heap paths use. */
typedef enum RegstackTable
{
	RS_TABLE_TOKENS,			/* regstack.auth_ephemeral_tokens */
	RS_TABLE_RATE_STATE,		/* regstack.auth_rate_limit_state */
	RS_TABLE_RATE_EVENTS,		/* regstack.auth_rate_limit_events */
	RS_NUM_TABLES
} RegstackTable;

/* OID of one of regstack's tables, its column layout checked; cached. */
extern Oid	regstack_table_relid(RegstackTable table);

/* Prepare-once, keep-forever SPI plan stored in *slot (call inside SPI). */
extern SPIPlanPtr regstack_plan(SPIPlanPtr *slot, const char *sql,
								int nargs, const Oid *argtypes);

/* Take a transaction-scoped exclusive advisory lock on (class, key). */
extern void regstack_xact_lock(uint16 lock_class, const char *key1,
							   const char *key2);
/* Lock (class, key) in mode, transaction- or session-scoped, maybe not waiting. */
extern bool regstack_lock_key(uint16 lock_class, const char *key1,
							  const char *key2, LOCKMODE mode, bool session,
							  bool wait);
/* Release a lock regstack_lock_key() took. */
extern void regstack_unlock_key(uint16 lock_class, const char *key1,
								const char *key2, LOCKMODE mode,
								bool session);

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

/* Index maintenance for tuples written directly into one relation. */
/* A tuple whose index entries wait for regstack_index_writer_finish(). */
typedef struct RegstackPendingEntry
{
	TupleTableSlot *slot;		/* a copy of the tuple, with its tid */
	bool		update;			/* written by an update */
	bool		recheck;		/* its primary-key check was deferred */
} RegstackPendingEntry;

typedef struct RegstackIndexWriter
{
	struct EState *estate;		/* NULL until first use */
	struct ResultRelInfo *result_rel;	/* every index */
	struct ResultRelInfo *primary;	/* split writes: the primary key ... */
	struct ResultRelInfo *others;	/* ... and the other indexes */
	List	   *pending;		/* RegstackPendingEntry for finish() */
} RegstackIndexWriter;

/* Give the tuple just written from slot its entries in every index of rel. */
extern void regstack_index_writer_insert(RegstackIndexWriter *writer,
										 Relation rel, TupleTableSlot *slot,
										 bool update);
/*
 * Split writes, for writes under a lock that must not wait: open (before
 * the lock), the primary-key entry without waiting (under it), and the
 * rest once it is released (finish).
 */
extern void regstack_index_writer_open_split(RegstackIndexWriter *writer,
											 Relation rel, Oid primary);
extern void regstack_index_writer_insert_primary(RegstackIndexWriter *writer,
												 TupleTableSlot *slot,
												 bool update);
extern void regstack_index_writer_finish(RegstackIndexWriter *writer);
extern void regstack_index_writer_close(RegstackIndexWriter *writer);
/* The same for a single tuple: open, insert, close. */
extern void regstack_insert_index_entries(Relation rel, TupleTableSlot *slot,
										  bool update);

/* 40001 where UPDATE/DELETE would raise it; else returns result. */
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

/* Column numbers of regstack.auth_ephemeral_tokens (checked in context.c). */
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

/* ---- rate_limit_store.c: direct access to the rate-limit tables ---- */

/* Column numbers of regstack.auth_rate_limit_state (checked in context.c). */
typedef enum RegstackRateStateColumn
{
	RS_STATE_KEY = 1,
	RS_STATE_EVENT_TYPE,
	RS_STATE_LANE,
	RS_STATE_NEXT_SEQ,
	RS_STATE_START_SEQ,
	RS_STATE_START_AT,
	RS_STATE_WINDOW_US,
	RS_STATE_LAST_AT,
	RS_STATE_CLOCK_AT
} RegstackRateStateColumn;
#define RS_STATE_NUM_COLS RS_STATE_CLOCK_AT

/* Column numbers of regstack.auth_rate_limit_events (checked in context.c). */
typedef enum RegstackRateEventColumn
{
	RS_EVENT_KEY = 1,
	RS_EVENT_EVENT_TYPE,
	RS_EVENT_LANE,
	RS_EVENT_SEQ,
	RS_EVENT_OCCURRED_AT
} RegstackRateEventColumn;
#define RS_EVENT_NUM_COLS RS_EVENT_OCCURRED_AT

/* A (key, event_type) pair. */
typedef struct RegstackRateKey
{
	text	   *key;
	text	   *event_type;
} RegstackRateKey;

/* Most lanes one key may have (the state table's CHECK allows 0..63). */
#define REGSTACK_RATE_MAX_LANES		64

/* A state row: one lane of a key (see rate_limits.c for the fields). */
typedef struct RegstackRateState
{
	int16		lane;
	int64		next_seq;
	int64		start_seq;
	TimestampTz start_at;		/* valid when start_seq < next_seq */
	bool		window_known;
	int64		window_us;
	bool		has_last;
	TimestampTz last_at;
	TimestampTz clock_at;
	ItemPointerData tid;		/* where the row version read is */
} RegstackRateState;

/*
 * A lane as regstack_rate_lanes_read() found it: its newest row version,
 * which another running transaction may have written, and what that
 * transaction is doing to it.
 */
typedef struct RegstackRateLane
{
	bool		exists;			/* a row version was found */
	RegstackRateState state;	/* the newest version */
	bool		mine;			/* this transaction wrote or locked it */
	TransactionId busy_xid;		/* another running transaction that wrote,
								 * locked or is deleting it; or Invalid */
	bool		has_committed;	/* a committed version was found ... */
	int64		committed_next; /* ... with this next_seq ... */
	ItemPointerData committed_tid;	/* ... here */
	bool		unseen;			/* newest committed version is invisible to
								 * the transaction snapshot */
	TransactionId superseded_by;	/* updater of the committed version */
} RegstackRateLane;

/* The open rate-limit tables and the snapshots they are read with. */
typedef struct RegstackRateStore
{
	Relation	state_rel;
	Relation	state_index;
	Relation	events_rel;
	Relation	events_index;
	Snapshot	snapshot;		/* the statement's MVCC snapshot */
	SnapshotData dirty;			/* sees rows of running transactions too */
	LockTupleMode lane_lock;	/* the lock a lane update takes: FOR NO KEY
								 * UPDATE, or FOR UPDATE when a unique index
								 * covers a column updates change */
	TupleTableSlot *state_slot;
	TupleTableSlot *event_slot;
	RegstackIndexWriter state_indexes;
	RegstackIndexWriter event_indexes;
} RegstackRateStore;

/* Open the tables (writer: the function writing, 25006 when read-only). */
extern void regstack_rate_store_open(RegstackRateStore *store,
									 const char *writer);
extern void regstack_rate_store_close(RegstackRateStore *store);
/* A new statement: see committed work and this transaction's own. */
extern void regstack_rate_store_refresh(RegstackRateStore *store);

/*
 * The lanes of k, read under the dirty snapshot, into lanes[] indexed by
 * lane number; returns one more than the highest lane found (0: none).
 * A lane caught between two versions sets *wait_xid to the transaction to
 * wait for before reading again (else it is Invalid).
 */
extern int	regstack_rate_lanes_read(RegstackRateStore *store,
									 const RegstackRateKey *k,
									 RegstackRateLane *lanes,
									 TransactionId *wait_xid);
/* Open the index writers for writes under the decision lock. */
extern void regstack_rate_store_prepare_writes(RegstackRateStore *store);
/* After the decision lock: the index work left for then. */
extern void regstack_rate_store_finish_writes(RegstackRateStore *store);
/*
 * Whether a lane row of k that the transaction snapshot sees was since
 * updated (TM_Updated) or deleted (TM_Deleted) by a committed transaction,
 * or neither (TM_Ok): REPEATABLE READ checks.
 */
extern TM_Result regstack_rate_lanes_changed(RegstackRateStore *store,
										const RegstackRateKey *k);
/* Replace the row version at state->tid, which we hold, by *state. */
extern TM_Result regstack_rate_state_update(RegstackRateStore *store,
											const RegstackRateKey *k,
											const RegstackRateState *state);
/* Lock the row version at tid FOR NO KEY UPDATE (without wait: TM_WouldBlock). */
extern TM_Result regstack_rate_state_lock(RegstackRateStore *store,
										  ItemPointer tid, bool wait);
/* Insert a new state row (a new lane) for k. */
extern void regstack_rate_state_insert(RegstackRateStore *store,
									   const RegstackRateKey *k,
									   const RegstackRateState *state);

/*
 * The first event of lane of k with seq >= from (backward: the last event
 * of the lane), under the dirty snapshot.
 */
extern bool regstack_rate_event_probe(RegstackRateStore *store,
									  const RegstackRateKey *k, int16 lane,
									  int64 from, bool backward,
									  int64 *seq, TimestampTz *at);
/* Record event seq of lane of k at time at. */
extern void regstack_rate_event_insert(RegstackRateStore *store,
									   const RegstackRateKey *k, int16 lane,
									   int64 seq, TimestampTz at);

/* ---- rate_limit_window.c: windows over a key's lanes ---- */

/*
 * Move the pointer of *state (in memory) to the first event of its lane
 * inside a window of window_us ending at now; true when it moved.
 */
extern bool regstack_rate_window_advance(RegstackRateStore *store,
										 const RegstackRateKey *k,
										 RegstackRateState *state,
										 int64 window_us, TimestampTz now_ts);
/* Append one event to *state at time now (in memory); returns its seq. */
extern int64 regstack_rate_window_append(RegstackRateState *state,
										 TimestampTz now_ts);
/*
 * A state for lane of k, which has no row: after any events left over from
 * a purged or unrestored row, with its pointer unknown.  Returns false (and
 * a state with no events) when there are none.
 */
extern bool regstack_rate_window_new_lane(RegstackRateStore *store,
										  const RegstackRateKey *k,
										  int16 lane, TimestampTz clock,
										  RegstackRateState *state);
/*
 * The time of the rank-th (from 0) oldest event among seq lo[i] .. hi[i] - 1
 * of lanes i < nlanes, ordered by (occurred_at, lane, seq).  lo and hi are
 * used up.
 */
extern TimestampTz regstack_rate_window_select(RegstackRateStore *store,
											   const RegstackRateKey *k,
											   int nlanes, int64 *lo,
											   int64 *hi, int64 rank);

/* ---- rate_limit_locks.c: the decision lock of a rate-limit key ---- */

/* Reserve the lightweight decision locks; from _PG_init when preloading. */
extern void regstack_rate_locks_request(void);
/* Take the decision lock of (key, event type) for the call. */
extern void regstack_rate_decide_lock(const char *key, const char *type);
/* Release it (on_error: from an error path, where it may be gone). */
extern void regstack_rate_decide_unlock(const char *key, const char *type,
										bool on_error);

/* ---- rate_limits.c: exact sliding-window rate limits ---- */

/* Longest key rate_limit_* accept, in bytes (22001 beyond). */
#define REGSTACK_MAX_RATE_KEY_BYTES	1024

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

/*
 * A window as a fixed number of microseconds (a day is 24 hours, a month 30
 * days, as in interval comparison).  Errors (22023) unless it is positive
 * and at most 100 years; name is the argument's SQL name.
 */
extern int64 regstack_rate_limit_window_us(const Interval *within,
										   const char *name);

/* ---- rate_limit_policies.c: the cached registry of rate-limit policies ---- */

typedef struct RegstackRateLimitPolicy
{
	char		event_type[NAMEDATALEN];
	int32		max_events;
	int64		within_us;		/* see regstack_rate_limit_window_us() */
} RegstackRateLimitPolicy;

/*
 * The policy of event_type, or NULL when it has none.  The result stays
 * valid until the next call of a rate_limit_policies.c function.  Call
 * inside regstack_begin_call().
 */
extern const RegstackRateLimitPolicy *regstack_rate_limit_policy(const char *event_type);

/* Every policy, sorted by event type; *count gets how many. */
extern const RegstackRateLimitPolicy *regstack_rate_limit_policies(int *count);

/* Comma-separated event types that have a policy, palloc'd. */
extern char *regstack_rate_limit_policy_names(void);


/* ---- reaper_*.c: the background reaper (reaper.h has the rest) ---- */

/* Define the reaper's reloadable settings; any process loading regstack. */
extern void regstack_reaper_define_settings(void);

/*
 * Define the restart-only settings, reserve shared memory and register the
 * launcher.  Only while shared_preload_libraries is being processed.
 */
extern void regstack_reaper_preload(void);

#endif							/* REGSTACK_H */
