/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  The counters behind regstack.stats and the reaper's lag behind
 *	  regstack.reaper_lag (stats.c), for the files that count.
 *
 * Every function here is cheap and does nothing unless regstack is
 * preloaded (shared_preload_libraries = 'regstack'): without preloading
 * there is no shared memory to count into.  Counting never raises an
 * error, takes no heavyweight lock and is not transactional: a call counts
 * when it returns, whether its transaction then commits or not.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REGSTACK_STATS_H
#define REGSTACK_STATS_H

#include "tokens.h"

/* What a row of regstack.stats is about; the kind column. */
typedef enum RegstackStatsKind
{
	RS_STATS_TOKEN_TYPE,		/* name: a token type */
	RS_STATS_EVENT_TYPE,		/* name: a rate-limit event type */
	RS_STATS_NUM_KINDS
} RegstackStatsKind;

/*
 * The counters, in the order of regstack.stats()'s columns.  A token
 * type's row uses the first block, an event type's row the second.
 */
typedef enum RegstackStatsCounter
{
	RS_STAT_ISSUED,				/* issue_token, begin_oidc_flow */
	RS_STAT_CONSUMED,
	RS_STAT_CONSUME_NOT_FOUND,	/* no such token, or consumed meanwhile */
	RS_STAT_CONSUME_WRONG_TYPE,
	RS_STAT_CONSUME_WRONG_CHALLENGE,
	RS_STAT_CONSUME_EXPIRED,
	RS_STAT_PEEKED,
	RS_STAT_PEEK_MISSES,
	RS_STAT_RESULTS_ATTACHED,
	RS_STAT_ATTACH_MISSES,
	RS_STAT_REVOKED,			/* rows revoke_tokens deleted */
	RS_STAT_TRIMMED,			/* rows issue_token deleted to keep a cap */
	RS_STAT_PURGED,				/* rows purge_expired() deleted */
	RS_STAT_REAPED,				/* rows the reaper deleted */
	RS_STAT_ALLOWED,			/* rate_limit_check allowed */
	RS_STAT_DENIED,				/* rate_limit_check denied */
	RS_STAT_RECORDED,			/* events recorded (check or record) */
	RS_STAT_RESETS,				/* keys rate_limit_reset forgot */
	RS_STATS_NUM_COUNTERS
} RegstackStatsCounter;

#define RS_STATS_FIRST_EVENT_COUNTER	RS_STAT_ALLOWED

/* True when counters exist (regstack is preloaded). */
extern bool regstack_stats_enabled(void);

/* Add n to one counter of (this database, kind, name of len bytes). */
extern void regstack_stats_count(RegstackStatsKind kind, const char *name,
								 int len, RegstackStatsCounter counter,
								 uint64 n);

/* The outcome of a consume_token, peek_token or attach_result call. */
extern void regstack_stats_token_call(const text *token_type,
									  RegstackTokenAction action,
									  RegstackTokenOutcome outcome);

/*
 * A rate-limit call: checked (rate_limit_check) and allowed or denied;
 * recorded when it recorded an event.
 */
extern void regstack_stats_rate_limit_call(const text *event_type,
										   bool checked, bool allowed,
										   bool recorded);

/*
 * Counts per name gathered in local memory and added in one lookup per
 * name (for loops over many rows: purge and reaper batches).
 */
#define RS_STATS_TALLY_NAMES	8
typedef struct RegstackStatsTally
{
	RegstackStatsKind kind;
	RegstackStatsCounter counter;
	int			nnames;
	struct
	{
		int			len;
		uint64		n;
		char		name[NAMEDATALEN];
	}			names[RS_STATS_TALLY_NAMES];
} RegstackStatsTally;

extern void regstack_stats_tally_init(RegstackStatsTally *tally,
									  RegstackStatsKind kind,
									  RegstackStatsCounter counter);
extern void regstack_stats_tally_add(RegstackStatsTally *tally,
									 const text *name);
extern void regstack_stats_tally_flush(RegstackStatsTally *tally);

/* Count one for the text in column (from 1) of each row of an SPI result. */
extern void regstack_stats_count_rows(RegstackStatsKind kind,
									  RegstackStatsCounter counter,
									  SPITupleTable *tuptable, int column);

/*
 * The reaper's lag: a worker calls pass_begin and pass_end around a pass,
 * tokens_swept when the pass has read the whole tokens table; the purge
 * reports each expired token it had to leave (locked by another
 * transaction) with skipped.  All do nothing outside a reaper pass.
 */
extern void regstack_stats_reaper_pass_begin(void);
extern void regstack_stats_reaper_skipped(TimestampTz expires_at);
extern void regstack_stats_reaper_tokens_swept(void);
extern void regstack_stats_reaper_pass_end(int64 deleted);

/*
 * Define regstack.stats_max_entries and reserve shared memory; only while
 * shared_preload_libraries is processed, after regstack_reaper_preload().
 */
extern void regstack_stats_preload(void);

#endif							/* REGSTACK_STATS_H */
