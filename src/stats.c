/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Counters in shared memory per (database, token type or event type):
 *	  regstack.stats(), regstack.stats_reset(); and the reaper's lag per
 *	  database: regstack.reaper_lag().
 *
 * The counters.  A shared hash table of at most regstack.stats_max_entries
 * entries (a restart-only setting, so the size is fixed when the
 * postmaster starts), keyed by (database OID, kind, name), each entry an
 * array of pg_atomic_uint64 counters.  Past that many names, counts go to
 * one overflow row per kind (database and name NULL), which always exists.
 *
 * Locking: one LWLock (tranche "regstack_stats") guards the table's
 * structure, not the counters:
 *	- counting takes it shared, finds the entry and adds with
 *	  pg_atomic_fetch_add_u64, so concurrent counters never wait for each
 *	  other, and no increment is lost;
 *	- the first count of a new name takes it exclusive to insert the entry
 *	  (once per name per reset), unless the table is already full, which
 *	  the shared holder sees (entries are only added under the exclusive
 *	  lock): then the overflow row counts, still under the shared lock;
 *	- stats_reset() takes it exclusive and removes every entry, so that no
 *	  backend holds an entry pointer across it (none keeps one beyond its
 *	  shared hold);
 *	- reading copies every entry under the shared lock.
 * Nothing that can raise an error runs under the lock, except the
 * reader's palloc of its copy (an error releases LWLocks).
 *
 * Per backend, a counted call costs one hash of a 72-byte key, one shared
 * LWLock acquire and release and one atomic add: no per-backend cache of
 * entry pointers, since stats_reset() frees entries and a cached pointer
 * could then count into another name's entry.
 *
 * Restarts: as pg_stat_statements does, the postmaster writes the table
 * to pg_stat/regstack_stats.stat when it shuts down (smart, fast or
 * immediate: an on_shmem_exit callback with code 0, run after every other
 * process has exited) and reads it back, then deletes it, when it creates
 * shared memory; after a crash (the callback gets code 1 before shared
 * memory is made anew) the counters start from zero.  An immediate
 * shutdown kills processes wherever they are: one killed while inserting
 * or removing an entry would leave the table half-changed, so those
 * changes raise a flag ("changing") first and lower it after, and the
 * postmaster saves nothing while it is raised.  Names beyond a smaller
 * regstack.stats_max_entries at the next start go to the overflow rows.
 *
 * The reaper's lag: a small table of regstack.reaper_max_databases slots,
 * one per database a reaper pass has run in, guarded by a second LWLock of
 * the tranche; a worker writes its database's slot once at the end of a
 * pass.  When every slot is taken, the slot written longest ago is reused
 * (a dropped database's slot ages out this way).  Not saved at shutdown,
 * not reset.
 *
 * Without preloading there is no shared memory: counting does nothing and
 * the SQL functions raise 55000.
 *
 *-------------------------------------------------------------------------
 */
#include "stats.h"
#include "reaper.h"

#include <unistd.h>

#include "catalog/pg_authid_d.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(regstack_stats);
PG_FUNCTION_INFO_V1(regstack_stats_reset);
PG_FUNCTION_INFO_V1(regstack_reaper_lag);

#define STATS_TRANCHE		"regstack_stats"
#define STATS_FILE			PGSTAT_STAT_PERMANENT_DIRECTORY "/regstack_stats.stat"
#define STATS_FILE_TMP		STATS_FILE ".tmp"
#define STATS_FILE_MAGIC	0x52535331	/* "RSS1" */

/* Passes the lag table keeps per database for reaped_per_second. */
#define STATS_LAG_PASSES	8

/* The key of a counter entry; name zero-padded, so the bytes are the key. */
typedef struct StatsKey
{
	Oid			datid;
	int32		kind;			/* RegstackStatsKind */
	char		name[NAMEDATALEN];
} StatsKey;

typedef struct StatsEntry
{
	StatsKey	key;
	pg_atomic_uint64 counters[RS_STATS_NUM_COUNTERS];
} StatsEntry;

/* The reaper's lag in one database; datid InvalidOid: free. */
typedef struct StatsLagSlot
{
	Oid			datid;
	TimestampTz last_pass_end;
	TimestampTz sweep_start;	/* start of the last pass that read the
								 * whole tokens table; 0: none yet */
	int64		skipped;		/* expired tokens that pass left (locked) */
	TimestampTz oldest_skipped; /* their oldest expires_at; 0: none */
	int			npasses;		/* passes in the ring that deleted rows */
	int			next;
	int64		pass_rows[STATS_LAG_PASSES];
	int64		pass_usecs[STATS_LAG_PASSES];
} StatsLagSlot;

typedef struct StatsShared
{
	LWLock	   *lock;			/* the counter table */
	LWLock	   *lag_lock;		/* the lag slots */
	int			max_entries;
	int			lag_slots;
	TimestampTz reset_at;		/* last reset (or first start); under lock */
	pg_atomic_uint32 changing;	/* 1 while an entry is added or removed */
	pg_atomic_uint64 overflow[RS_STATS_NUM_KINDS][RS_STATS_NUM_COUNTERS];
	StatsLagSlot lag[FLEXIBLE_ARRAY_MEMBER];
} StatsShared;

/* What a reaper pass has seen so far (the worker's own memory). */
typedef struct StatsPass
{
	bool		active;
	bool		swept;
	TimestampTz start;
	int64		skipped;
	TimestampTz oldest_skipped;
} StatsPass;

/* The header of the file written at shutdown; entries follow. */
typedef struct StatsFileHeader
{
	uint32		magic;
	uint32		nkinds;
	uint32		ncounters;
	uint32		keysize;
	int64		nentries;
	TimestampTz reset_at;
	uint64		overflow[RS_STATS_NUM_KINDS][RS_STATS_NUM_COUNTERS];
} StatsFileHeader;

typedef struct StatsFileEntry
{
	StatsKey	key;
	uint64		counters[RS_STATS_NUM_COUNTERS];
} StatsFileEntry;

/* One counter to add, for stats_add(). */
typedef struct StatsDelta
{
	RegstackStatsCounter counter;
	uint64		n;
} StatsDelta;

static int	stats_max_entries = 1000;
static StatsShared *stats_shared = NULL;
static HTAB *stats_hash = NULL;
static StatsPass stats_pass;
static shmem_request_hook_type stats_prev_request_hook = NULL;
static shmem_startup_hook_type stats_prev_startup_hook = NULL;

static const char *const stats_kind_names[RS_STATS_NUM_KINDS] = {
	[RS_STATS_TOKEN_TYPE] = "token_type",
	[RS_STATS_EVENT_TYPE] = "event_type",
};

/* ---- shared memory ---- */

/* Bytes of the fixed part: header, overflow rows, lag slots. */
static Size
stats_fixed_size(void)
{
	return add_size(offsetof(StatsShared, lag),
					mul_size(regstack_reaper_max_databases,
							 sizeof(StatsLagSlot)));
}

/* shmem_request_hook: reserve the table, the lag slots and two locks. */
static void
stats_shmem_request(void)
{
	if (stats_prev_request_hook)
		stats_prev_request_hook();
	RequestAddinShmemSpace(add_size(MAXALIGN(stats_fixed_size()),
									hash_estimate_size(stats_max_entries,
													   sizeof(StatsEntry))));
	RequestNamedLWLockTranche(STATS_TRANCHE, 2);
}

/* Raise (true) or lower the "changing" flag around a change of the table. */
static void
stats_changing(bool changing)
{
	pg_write_barrier();
	pg_atomic_write_u32(&stats_shared->changing, changing ? 1 : 0);
	pg_write_barrier();
}

/* A new, zeroed entry for key (exclusive lock held, table not full). */
static StatsEntry *
stats_enter(const StatsKey *key, uint32 hash)
{
	StatsEntry *entry;
	bool		found;

	stats_changing(true);
	entry = hash_search_with_hash_value(stats_hash, key, hash,
										HASH_ENTER_NULL, &found);
	if (entry != NULL && !found)
	{
		for (int c = 0; c < RS_STATS_NUM_COUNTERS; c++)
			pg_atomic_init_u64(&entry->counters[c], 0);
	}
	stats_changing(false);
	return entry;
}

/*
 * Read the file the last clean shutdown wrote, if any, into the new table
 * (postmaster, at startup; nothing else runs), then delete it.
 */
static void
stats_load_file(void)
{
	FILE	   *file;
	StatsFileHeader header;
	StatsFileEntry entry;

	file = AllocateFile(STATS_FILE, PG_BINARY_R);
	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", STATS_FILE)));
		return;
	}
	if (fread(&header, sizeof(header), 1, file) != 1 ||
		header.magic != STATS_FILE_MAGIC ||
		header.nkinds != RS_STATS_NUM_KINDS ||
		header.ncounters != RS_STATS_NUM_COUNTERS ||
		header.keysize != sizeof(StatsKey) || header.nentries < 0)
		goto bad;

	stats_shared->reset_at = header.reset_at;
	for (int k = 0; k < RS_STATS_NUM_KINDS; k++)
		for (int c = 0; c < RS_STATS_NUM_COUNTERS; c++)
			pg_atomic_write_u64(&stats_shared->overflow[k][c],
								header.overflow[k][c]);
	for (int64 i = 0; i < header.nentries; i++)
	{
		StatsEntry *target = NULL;
		pg_atomic_uint64 *counters;

		if (fread(&entry, sizeof(entry), 1, file) != 1 ||
			entry.key.kind < 0 || entry.key.kind >= RS_STATS_NUM_KINDS)
			goto bad;
		entry.key.name[NAMEDATALEN - 1] = '\0';
		if (hash_get_num_entries(stats_hash) < stats_shared->max_entries)
			target = stats_enter(&entry.key,
								 get_hash_value(stats_hash, &entry.key));
		counters = target ? target->counters :
			stats_shared->overflow[entry.key.kind];
		for (int c = 0; c < RS_STATS_NUM_COUNTERS; c++)
			pg_atomic_fetch_add_u64(&counters[c], entry.counters[c]);
	}
	FreeFile(file);
	unlink(STATS_FILE);
	return;

bad:
	ereport(LOG,
			(errmsg("ignoring regstack statistics file \"%s\": it is damaged or from another version",
					STATS_FILE)));
	FreeFile(file);
	unlink(STATS_FILE);
}

/* Write one block to file; false on error. */
static bool
stats_write(FILE *file, const void *data, size_t size)
{
	return fwrite(data, size, 1, file) == 1;
}

/*
 * on_shmem_exit in the postmaster: at a clean shutdown (code 0), after
 * every other process has exited, save the table for the next start.
 */
static void
stats_shmem_shutdown(int code, Datum arg)
{
	FILE	   *file;
	StatsFileHeader header;
	HASH_SEQ_STATUS scan;
	StatsEntry *entry;

	if (code != 0 || stats_shared == NULL || stats_hash == NULL)
		return;
	if (pg_atomic_read_u32(&stats_shared->changing) != 0)
	{
		ereport(LOG,
				(errmsg("regstack statistics not saved: a process was stopped while changing them")));
		return;
	}

	file = AllocateFile(STATS_FILE_TMP, PG_BINARY_W);
	if (file == NULL)
		goto error;
	memset(&header, 0, sizeof(header));
	header.magic = STATS_FILE_MAGIC;
	header.nkinds = RS_STATS_NUM_KINDS;
	header.ncounters = RS_STATS_NUM_COUNTERS;
	header.keysize = sizeof(StatsKey);
	header.nentries = hash_get_num_entries(stats_hash);
	header.reset_at = stats_shared->reset_at;
	for (int k = 0; k < RS_STATS_NUM_KINDS; k++)
		for (int c = 0; c < RS_STATS_NUM_COUNTERS; c++)
			header.overflow[k][c] =
				pg_atomic_read_u64(&stats_shared->overflow[k][c]);
	if (!stats_write(file, &header, sizeof(header)))
		goto error;

	hash_seq_init(&scan, stats_hash);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		StatsFileEntry out;

		out.key = entry->key;
		for (int c = 0; c < RS_STATS_NUM_COUNTERS; c++)
			out.counters[c] = pg_atomic_read_u64(&entry->counters[c]);
		if (!stats_write(file, &out, sizeof(out)))
		{
			hash_seq_term(&scan);
			goto error;
		}
	}
	if (FreeFile(file) != 0)
	{
		file = NULL;
		goto error;
	}
	(void) durable_rename(STATS_FILE_TMP, STATS_FILE, LOG);
	return;

error:
	ereport(LOG,
			(errcode_for_file_access(),
			 errmsg("could not write file \"%s\": %m", STATS_FILE_TMP)));
	if (file)
		FreeFile(file);
	unlink(STATS_FILE_TMP);
}

/* shmem_startup_hook: create (or attach to) the table and the lag slots. */
static void
stats_shmem_startup(void)
{
	HASHCTL		info;
	bool		found;

	if (stats_prev_startup_hook)
		stats_prev_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	stats_shared = ShmemInitStruct("regstack stats", stats_fixed_size(),
								   &found);
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche(STATS_TRANCHE);

		memset(stats_shared, 0, stats_fixed_size());
		stats_shared->lock = &locks[0].lock;
		stats_shared->lag_lock = &locks[1].lock;
		stats_shared->max_entries = stats_max_entries;
		stats_shared->lag_slots = regstack_reaper_max_databases;
		stats_shared->reset_at = GetCurrentTimestamp();
		pg_atomic_init_u32(&stats_shared->changing, 0);
		for (int k = 0; k < RS_STATS_NUM_KINDS; k++)
			for (int c = 0; c < RS_STATS_NUM_COUNTERS; c++)
				pg_atomic_init_u64(&stats_shared->overflow[k][c], 0);
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(StatsKey);
	info.entrysize = sizeof(StatsEntry);
	stats_hash = ShmemInitHash("regstack stats hash",
							   stats_max_entries, stats_max_entries,
							   &info, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);

	/* The postmaster (or a single-user backend) saves and restores. */
	if (!IsUnderPostmaster)
		on_shmem_exit(stats_shmem_shutdown, (Datum) 0);
	if (!found)
		stats_load_file();
}

/* Define the restart-only setting and install the shared-memory hooks. */
void
regstack_stats_preload(void)
{
	DefineCustomIntVariable("regstack.stats_max_entries",
							"Names (token types, event types) regstack.stats has room for, over all databases.",
							"Sizes shared memory; counts for names beyond it go to one overflow row per kind.",
							&stats_max_entries,
							1000,
							1,
							1000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	stats_prev_request_hook = shmem_request_hook;
	shmem_request_hook = stats_shmem_request;
	stats_prev_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stats_shmem_startup;
}

/* ---- counting ---- */

/* True when counters exist (regstack is preloaded). */
bool
regstack_stats_enabled(void)
{
	return stats_shared != NULL;
}

/* The key of (this database, kind, name), name cut to fit at a character. */
static void
stats_make_key(StatsKey *key, RegstackStatsKind kind, const char *name,
			   int len)
{
	memset(key, 0, sizeof(*key));
	key->datid = MyDatabaseId;
	key->kind = kind;
	if (len >= NAMEDATALEN)
		len = pg_mbcliplen(name, len, NAMEDATALEN - 1);
	memcpy(key->name, name, len);
}

/* Add the deltas to the entry of (this database, kind, name). */
static void
stats_add(RegstackStatsKind kind, const char *name, int len,
		  const StatsDelta *deltas, int ndeltas)
{
	StatsKey	key;
	uint32		hash;
	StatsEntry *entry;
	pg_atomic_uint64 *counters;

	if (stats_shared == NULL)
		return;
	stats_make_key(&key, kind, name, len);
	hash = get_hash_value(stats_hash, &key);

	LWLockAcquire(stats_shared->lock, LW_SHARED);
	entry = hash_search_with_hash_value(stats_hash, &key, hash, HASH_FIND,
										NULL);
	if (entry == NULL &&
		hash_get_num_entries(stats_hash) < stats_shared->max_entries)
	{
		/* A new name: insert it (someone may have meanwhile). */
		LWLockRelease(stats_shared->lock);
		LWLockAcquire(stats_shared->lock, LW_EXCLUSIVE);
		entry = hash_search_with_hash_value(stats_hash, &key, hash,
											HASH_FIND, NULL);
		if (entry == NULL &&
			hash_get_num_entries(stats_hash) < stats_shared->max_entries)
			entry = stats_enter(&key, hash);
	}
	counters = entry ? entry->counters : stats_shared->overflow[kind];
	for (int i = 0; i < ndeltas; i++)
		pg_atomic_fetch_add_u64(&counters[deltas[i].counter], deltas[i].n);
	LWLockRelease(stats_shared->lock);
}

/* Add n to one counter of (this database, kind, name). */
void
regstack_stats_count(RegstackStatsKind kind, const char *name, int len,
					 RegstackStatsCounter counter, uint64 n)
{
	StatsDelta	delta = {counter, n};

	if (n > 0)
		stats_add(kind, name, len, &delta, 1);
}

/* Count a consume_token, peek_token or attach_result by its outcome. */
void
regstack_stats_token_call(const text *token_type, RegstackTokenAction action,
						  RegstackTokenOutcome outcome)
{
	RegstackStatsCounter counter;

	if (stats_shared == NULL)
		return;
	switch (action)
	{
		case RS_TOKEN_DELETE:
			switch (outcome)
			{
				case RS_TOKEN_HIT:
					counter = RS_STAT_CONSUMED;
					break;
				case RS_TOKEN_WRONG_TYPE:
					counter = RS_STAT_CONSUME_WRONG_TYPE;
					break;
				case RS_TOKEN_EXPIRED:
					counter = RS_STAT_CONSUME_EXPIRED;
					break;
				case RS_TOKEN_WRONG_CHALLENGE:
					counter = RS_STAT_CONSUME_WRONG_CHALLENGE;
					break;
				default:
					counter = RS_STAT_CONSUME_NOT_FOUND;
					break;
			}
			break;
		case RS_TOKEN_FETCH:
			counter = outcome == RS_TOKEN_HIT ? RS_STAT_PEEKED :
				RS_STAT_PEEK_MISSES;
			break;
		default:
			counter = outcome == RS_TOKEN_HIT ? RS_STAT_RESULTS_ATTACHED :
				RS_STAT_ATTACH_MISSES;
			break;
	}
	regstack_stats_count(RS_STATS_TOKEN_TYPE, VARDATA_ANY(token_type),
						 VARSIZE_ANY_EXHDR(token_type), counter, 1);
}

/* Count a rate-limit call: allowed or denied if checked, and recorded. */
void
regstack_stats_rate_limit_call(const text *event_type, bool checked,
							   bool allowed, bool recorded)
{
	StatsDelta	deltas[2];
	int			n = 0;

	if (stats_shared == NULL)
		return;
	if (checked)
	{
		deltas[n].counter = allowed ? RS_STAT_ALLOWED : RS_STAT_DENIED;
		deltas[n++].n = 1;
	}
	if (recorded)
	{
		deltas[n].counter = RS_STAT_RECORDED;
		deltas[n++].n = 1;
	}
	if (n > 0)
		stats_add(RS_STATS_EVENT_TYPE, VARDATA_ANY(event_type),
				  VARSIZE_ANY_EXHDR(event_type), deltas, n);
}

/* Start a tally of counter per name of kind. */
void
regstack_stats_tally_init(RegstackStatsTally *tally, RegstackStatsKind kind,
						  RegstackStatsCounter counter)
{
	tally->kind = kind;
	tally->counter = counter;
	tally->nnames = 0;
}

/* Count one for name, in local memory. */
void
regstack_stats_tally_add(RegstackStatsTally *tally, const text *name)
{
	const char *data = VARDATA_ANY(name);
	int			len = VARSIZE_ANY_EXHDR(name);
	int			i;

	if (stats_shared == NULL)
		return;
	for (i = 0; i < tally->nnames; i++)
	{
		if (tally->names[i].len == len &&
			memcmp(tally->names[i].name, data, len) == 0)
		{
			tally->names[i].n++;
			return;
		}
	}
	if (len >= NAMEDATALEN || tally->nnames == RS_STATS_TALLY_NAMES)
	{
		/* a long name (never a registered type), or no room: count now */
		regstack_stats_count(tally->kind, data, len, tally->counter, 1);
		return;
	}
	memcpy(tally->names[i].name, data, len);
	tally->names[i].len = len;
	tally->names[i].n = 1;
	tally->nnames++;
}

/* Add what the tally holds to the shared counters, and empty it. */
void
regstack_stats_tally_flush(RegstackStatsTally *tally)
{
	for (int i = 0; i < tally->nnames; i++)
		regstack_stats_count(tally->kind, tally->names[i].name,
							 tally->names[i].len, tally->counter,
							 tally->names[i].n);
	tally->nnames = 0;
}

/* Count one per row of an SPI result, for the name in column. */
void
regstack_stats_count_rows(RegstackStatsKind kind, RegstackStatsCounter counter,
						  SPITupleTable *tuptable, int column)
{
	RegstackStatsTally tally;

	if (stats_shared == NULL || tuptable == NULL)
		return;
	regstack_stats_tally_init(&tally, kind, counter);
	for (uint64 i = 0; i < tuptable->numvals; i++)
	{
		bool		isnull;
		Datum		value = SPI_getbinval(tuptable->vals[i], tuptable->tupdesc,
										  column, &isnull);

		if (!isnull)
			regstack_stats_tally_add(&tally, DatumGetTextPP(value));
	}
	regstack_stats_tally_flush(&tally);
}

/* ---- the reaper's lag ---- */

/* A reaper pass starts in this database. */
void
regstack_stats_reaper_pass_begin(void)
{
	memset(&stats_pass, 0, sizeof(stats_pass));
	stats_pass.active = true;
	stats_pass.start = GetCurrentTimestamp();
}

/* The pass left an expired token that another transaction holds. */
void
regstack_stats_reaper_skipped(TimestampTz expires_at)
{
	if (!stats_pass.active)
		return;
	stats_pass.skipped++;
	if (stats_pass.oldest_skipped == 0 || expires_at < stats_pass.oldest_skipped)
		stats_pass.oldest_skipped = expires_at;
}

/* The pass has read the whole tokens table. */
void
regstack_stats_reaper_tokens_swept(void)
{
	if (stats_pass.active)
		stats_pass.swept = true;
}

/*
 * The slot of this database, or a free one, or the one written longest
 * ago (lag lock held exclusive).
 */
static StatsLagSlot *
stats_lag_slot(void)
{
	StatsLagSlot *free_slot = NULL;
	StatsLagSlot *oldest = NULL;
	StatsLagSlot *victim;

	for (int i = 0; i < stats_shared->lag_slots; i++)
	{
		StatsLagSlot *slot = &stats_shared->lag[i];

		if (slot->datid == MyDatabaseId)
			return slot;
		if (slot->datid == InvalidOid)
		{
			if (free_slot == NULL)
				free_slot = slot;
		}
		else if (oldest == NULL || slot->last_pass_end < oldest->last_pass_end)
			oldest = slot;
	}
	victim = free_slot ? free_slot : oldest;
	if (victim != NULL)
	{
		memset(victim, 0, sizeof(*victim));
		victim->datid = MyDatabaseId;
	}
	return victim;
}

/* The pass ends, having deleted that many rows (tokens and events). */
void
regstack_stats_reaper_pass_end(int64 deleted)
{
	TimestampTz now_ts = GetCurrentTimestamp();
	StatsLagSlot *slot;

	if (!stats_pass.active)
		return;
	stats_pass.active = false;
	if (stats_shared == NULL)
		return;

	LWLockAcquire(stats_shared->lag_lock, LW_EXCLUSIVE);
	slot = stats_lag_slot();
	if (slot != NULL)
	{
		slot->last_pass_end = now_ts;
		if (stats_pass.swept)
		{
			slot->sweep_start = stats_pass.start;
			slot->skipped = stats_pass.skipped;
			slot->oldest_skipped = stats_pass.oldest_skipped;
		}
		if (deleted > 0)
		{
			slot->pass_rows[slot->next] = deleted;
			slot->pass_usecs[slot->next] = Max(now_ts - stats_pass.start, 1);
			slot->next = (slot->next + 1) % STATS_LAG_PASSES;
			if (slot->npasses < STATS_LAG_PASSES)
				slot->npasses++;
		}
	}
	LWLockRelease(stats_shared->lag_lock);
}

/* ---- SQL functions ---- */

/* 55000 for a function that needs shared memory when there is none. */
static void
stats_require_preload(const char *what)
{
	if (stats_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs shared_preload_libraries = 'regstack'", what),
				 errhint("Add regstack to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Only members of pg_monitor and the extension's owner may read the
 * statistics, whatever EXECUTE grants say: the README's grant to an
 * application role covers every function in the schema (42501).
 */
static void
stats_check_reader(const char *what)
{
	Oid			owner = regstack_tables_owner();

	if (!has_privs_of_role(GetUserId(), ROLE_PG_MONITOR) &&
		!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read %s", what),
				 errdetail("Only members of pg_monitor and the owner of extension regstack (role \"%s\") may.",
						   GetUserNameFromId(owner, false))));
}

/* A timestamp column: NULL for 0 ("never"). */
static void
stats_timestamp(TimestampTz value, Datum *datum, bool *isnull)
{
	*isnull = (value == 0);
	*datum = TimestampTzGetDatum(value);
}

#define STATS_COLUMNS	(3 + RS_STATS_NUM_COUNTERS + 1)

/* One row of regstack.stats(); datid InvalidOid: an overflow row. */
static void
stats_put_row(ReturnSetInfo *rsinfo, Oid datid, int kind, const char *name,
			  const uint64 *counters, TimestampTz reset_at)
{
	Datum		values[STATS_COLUMNS];
	bool		nulls[STATS_COLUMNS];
	int			first = kind == RS_STATS_TOKEN_TYPE ? 0 : RS_STATS_FIRST_EVENT_COUNTER;
	int			last = kind == RS_STATS_TOKEN_TYPE ? RS_STATS_FIRST_EVENT_COUNTER :
		RS_STATS_NUM_COUNTERS;

	memset(nulls, 0, sizeof(nulls));
	values[0] = ObjectIdGetDatum(datid);
	nulls[0] = (datid == InvalidOid);
	values[1] = CStringGetTextDatum(stats_kind_names[kind]);
	values[2] = name ? CStringGetTextDatum(name) : (Datum) 0;
	nulls[2] = (name == NULL);
	for (int c = 0; c < RS_STATS_NUM_COUNTERS; c++)
	{
		/* a counter of the other kind does not apply: NULL */
		values[3 + c] = Int64GetDatum((int64) counters[c]);
		nulls[3 + c] = (c < first || c >= last);
	}
	values[STATS_COLUMNS - 1] = TimestampTzGetDatum(reset_at);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * regstack.stats(): one row per (database, kind, name) counted since the
 * last reset, and an overflow row per kind that has counted anything.
 */
Datum
regstack_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StatsFileEntry *rows;
	uint64		overflow[RS_STATS_NUM_KINDS][RS_STATS_NUM_COUNTERS];
	HASH_SEQ_STATUS scan;
	StatsEntry *entry;
	TimestampTz reset_at;
	long		nrows = 0;

	stats_require_preload("regstack.stats");
	stats_check_reader("regstack.stats");
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	/*
	 * Copy under the lock (no entry comes or goes meanwhile), emit after.
	 * An error in palloc releases the lock.
	 */
	LWLockAcquire(stats_shared->lock, LW_SHARED);
	rows = palloc(sizeof(StatsFileEntry) *
				  Max(hash_get_num_entries(stats_hash), 1));
	reset_at = stats_shared->reset_at;
	for (int k = 0; k < RS_STATS_NUM_KINDS; k++)
		for (int c = 0; c < RS_STATS_NUM_COUNTERS; c++)
			overflow[k][c] = pg_atomic_read_u64(&stats_shared->overflow[k][c]);
	hash_seq_init(&scan, stats_hash);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		rows[nrows].key = entry->key;
		for (int c = 0; c < RS_STATS_NUM_COUNTERS; c++)
			rows[nrows].counters[c] = pg_atomic_read_u64(&entry->counters[c]);
		nrows++;
	}
	LWLockRelease(stats_shared->lock);

	for (long i = 0; i < nrows; i++)
		stats_put_row(rsinfo, rows[i].key.datid, rows[i].key.kind,
					  rows[i].key.name, rows[i].counters, reset_at);
	for (int k = 0; k < RS_STATS_NUM_KINDS; k++)
	{
		bool		any = false;

		for (int c = 0; c < RS_STATS_NUM_COUNTERS; c++)
			any |= overflow[k][c] != 0;
		if (any)
			stats_put_row(rsinfo, InvalidOid, k, NULL, overflow[k], reset_at);
	}
	PG_RETURN_VOID();
}

/*
 * regstack.stats_reset(): forget every counter, of every database, and
 * note the time.  Only the extension's owner (or a member of its role)
 * may, whatever EXECUTE grants say: the README's grant to an application
 * role covers every function in the schema.
 */
Datum
regstack_stats_reset(PG_FUNCTION_ARGS)
{
	Oid			owner = regstack_tables_owner();
	HASH_SEQ_STATUS scan;
	StatsEntry *entry;

	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to reset regstack statistics"),
				 errdetail("Only the owner of extension regstack (role \"%s\") may reset them.",
						   GetUserNameFromId(owner, false))));
	stats_require_preload("regstack.stats_reset()");

	LWLockAcquire(stats_shared->lock, LW_EXCLUSIVE);
	stats_changing(true);
	hash_seq_init(&scan, stats_hash);
	while ((entry = hash_seq_search(&scan)) != NULL)
		(void) hash_search(stats_hash, &entry->key, HASH_REMOVE, NULL);
	stats_changing(false);
	for (int k = 0; k < RS_STATS_NUM_KINDS; k++)
		for (int c = 0; c < RS_STATS_NUM_COUNTERS; c++)
			pg_atomic_write_u64(&stats_shared->overflow[k][c], 0);
	stats_shared->reset_at = GetCurrentTimestamp();
	LWLockRelease(stats_shared->lock);
	PG_RETURN_VOID();
}

#define LAG_COLUMNS		7

/* regstack.reaper_lag(): one row per database a reaper pass has run in. */
Datum
regstack_reaper_lag(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StatsLagSlot *copy;
	int			nslots;

	stats_require_preload("regstack.reaper_lag");
	stats_check_reader("regstack.reaper_lag");
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	nslots = stats_shared->lag_slots;
	copy = palloc(sizeof(StatsLagSlot) * Max(nslots, 1));
	LWLockAcquire(stats_shared->lag_lock, LW_SHARED);
	memcpy(copy, stats_shared->lag, sizeof(StatsLagSlot) * nslots);
	LWLockRelease(stats_shared->lag_lock);

	for (int i = 0; i < nslots; i++)
	{
		StatsLagSlot *slot = &copy[i];
		Datum		values[LAG_COLUMNS];
		bool		nulls[LAG_COLUMNS];
		int64		rows = 0;
		int64		usecs = 0;

		if (slot->datid == InvalidOid)
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[0] = ObjectIdGetDatum(slot->datid);
		stats_timestamp(slot->last_pass_end, &values[1], &nulls[1]);
		stats_timestamp(slot->sweep_start, &values[2], &nulls[2]);
		values[3] = Int64GetDatum(slot->skipped);
		nulls[3] = (slot->sweep_start == 0);
		stats_timestamp(slot->oldest_skipped, &values[4], &nulls[4]);
		for (int p = 0; p < slot->npasses; p++)
		{
			rows += slot->pass_rows[p];
			usecs += slot->pass_usecs[p];
		}
		values[5] = Int32GetDatum(slot->npasses);
		values[6] = Float8GetDatum(usecs > 0 ?
								   (double) rows * USECS_PER_SEC / usecs : 0.0);
		nulls[6] = (slot->npasses == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
