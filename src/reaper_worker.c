/*-------------------------------------------------------------------------
 *
 * reaper_worker.c
 *	  The per-database reaper worker: connect, run one pass, exit.
 *
 * The launcher starts this worker in one database (bgw_main_arg is its
 * OID, bgw_extra its name) and waits for it.  The worker never stays
 * connected between passes, so DROP DATABASE has nothing to wait for
 * between passes; during a pass it gets out of the way as described below.
 *
 * A pass:
 *	1. deletes expired tokens in batches of up to regstack.reaper_batch_size rows
 *	   (fewer at first and while others write: see below), each
 *	   batch its own committed transaction, sweeping the table once in ctid
 *	   order (regstack_purge_tokens_range); within a stretch of
 *	   WORKER_CHUNK_BLOCKS blocks it goes on while batches come back full;
 *	2. then deletes stale rate-limit events, then state rows, the same way
 *	   while batches come back full, each table read once in ctid order
 *	   (regstack_purge_events, carrying a cursor from batch to batch).
 * Rows locked by foreground calls are skipped (purge.c), so the reaper
 * never waits for a foreground transaction, and a consume_token never
 * waits for the reaper: it only ever needs live rows, which the reaper
 * does not touch.  When other transactions wrote during the last pause or
 * the batch just done, the worker deletes a tenth of regstack.reaper_batch_size
 * per batch and pauses for three times as long as that batch took before
 * the next one (worker_yield_end), so that a large backlog does not fill
 * the WAL that foreground commits must flush, nor take a core from them;
 * with no other writers it deletes full batches without pausing, once ten
 * looks in a row have seen none (a pass starts with small batches).  The
 * pause counts because while a batch's WAL is being flushed, foreground
 * commits wait for it and start no new transactions: judged by the batch
 * alone, a busy server looks quiet.
 *
 * Before every batch the worker checks, in the batch's transaction:
 *	- that nobody wants the database to itself: DROP DATABASE, ALTER
 *	  DATABASE RENAME / SET TABLESPACE and CREATE DATABASE ... TEMPLATE lock
 *	  the database object before waiting (PostgreSQL 15 waits 5 seconds,
 *	  and does not signal background workers) for other sessions to leave.
 *	  The worker tries a RowExclusiveLock on the database object without
 *	  waiting; if that fails it ends the pass and disconnects, well within
 *	  those 5 seconds since a batch is short and lock waits are bounded by
 *	  lock_timeout (WORKER_LOCK_TIMEOUT);
 *	- that the extension is still installed: after DROP EXTENSION the pass
 *	  ends quietly and the database's status slot is freed.
 *
 * A table that regstack must not write directly (tables.c: a DBA added a
 * trigger, a CHECK constraint, ...; or the extension needs ALTER EXTENSION
 * UPDATE) is skipped for the pass, with its reason logged once as a
 * WARNING and recorded in the status slot; the other table is still
 * reaped.
 *
 * Errors (a lock timeout, a permission problem, the extension dropped
 * between the check and the batch) end the pass: the error is logged as a
 * WARNING with its context, recorded in the status slot, and the worker
 * exits normally; the launcher tries again next naptime.  A worker is never
 * restarted by the postmaster (BGW_NEVER_RESTART), so there is no crash
 * loop to fear.
 *
 * Signals: SIGTERM (shutdown, pg_terminate_backend, DROP DATABASE ... WITH
 * (FORCE)) lets the current batch finish, then the worker exits; SIGHUP
 * reloads the configuration between batches.
 *
 * Logging: nothing when a pass deletes nothing; one LOG line per pass that
 * deleted rows.
 *
 *-------------------------------------------------------------------------
 */
#include "reaper.h"
#include "heap_access.h"
#include "purge.h"
#include "rate_limits.h"
#include "stats.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/transam.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/*
 * Blocks one tokens batch may read at most (64 MB with 8 kB blocks): keeps
 * a statement short when few rows are expired in a large table.
 */
#define WORKER_CHUNK_BLOCKS		8192

/*
 * lock_timeout of the worker's statements: a batch never queues for long
 * behind an ACCESS EXCLUSIVE lock, so DROP DATABASE (which waits 5 s for
 * other sessions) is never kept waiting by a worker stuck on a lock.
 */
#define WORKER_LOCK_TIMEOUT		"1s"

/*
 * When other transactions wrote during the last pause or the batch
 * (foreground work is going on), the worker waits this multiple of the
 * batch's own duration before the next batch, and its batches delete at
 * most regstack.reaper_batch_size / WORKER_YIELD_BATCH_DIVISOR rows until
 * WORKER_YIELD_QUIET_LOOKS looks in a row see no other writer, so that
 * their commits do not queue behind its WAL or wait for a core.  On
 * the development machine (2 cores, token pairs at 1,500/s with
 * synchronous_commit on, 1M expired rows), against full batches each
 * followed by a pause as long: the pairs' p99 while reaping 7.0-16.0 ms
 * against 13.1-24.3 ms in three interleaved rounds (and 12.2 against
 * 19.8 ms, medians of six, with the same pause and batch set by hand);
 * reaping took 3.6 s instead of 1.8 s.
 */
#define WORKER_YIELD_FACTOR		3.0
#define WORKER_YIELD_BATCH_DIVISOR	10
#define WORKER_YIELD_QUIET_LOOKS	10
/*
 * Longest such pause: the worker stays connected while it pauses, and DROP
 * DATABASE waits only 5 seconds for other sessions to leave (the check at
 * the start of the next batch lets it go).
 */
#define WORKER_YIELD_MAX_MS		500

/* What a pass is deleting: tokens, then rate-limit rows. */
typedef enum WorkerPhase
{
	WORKER_TOKENS,
	WORKER_EVENTS
} WorkerPhase;

/* The outcome of one batch. */
typedef enum WorkerBatchResult
{
	WORKER_BATCH_DONE,			/* the batch ran and committed */
	WORKER_BATCH_STOP			/* the pass must end: nothing was done */
} WorkerBatchResult;

/* The state of a pass, shared with the error context callback. */
typedef struct WorkerPass
{
	Oid			datid;
	const char *datname;
	WorkerPhase phase;
	bool		claimed;		/* status slot claimed (or none available) */
	ItemPointerData after;		/* tokens: last ctid deleted or skipped to */
	BlockNumber stop_block;		/* tokens: end of the current stretch */
	RegstackPurgeCursor events_cursor;	/* rate-limit rows: where we are */
	int64		tokens;
	int64		events;
	int64		batches;
} WorkerPass;

/* Error context: which pass, in which database, doing what. */
static void
worker_error_context(void *arg)
{
	WorkerPass *pass = (WorkerPass *) arg;

	errcontext("regstack reaper deleting %s in database \"%s\"",
			   pass->phase == WORKER_TOKENS ? "expired tokens" :
			   "stale rate-limit events",
			   pass->datname);
}

/*
 * True when nobody is waiting to have this database to itself (DROP
 * DATABASE and the like); then the current transaction holds a
 * RowExclusiveLock on the database object until it ends.
 */
static bool
worker_database_available(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	return LockAcquire(&tag, RowExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * Whether the tables of the pass's phase are as regstack ships them
 * (tables.c); if not, log why as a WARNING (once per pass: the phase is
 * then skipped) and record it in the status slot.
 */
static bool
worker_tables_usable(WorkerPass *pass)
{
	RegstackTableProblem problem;
	bool		usable;

	if (pass->phase == WORKER_TOKENS)
		usable = regstack_table_usable(RS_TABLE_TOKENS, RowExclusiveLock,
									   &problem);
	else
	{
		/*
		 * The calls' order, which DROP EXTENSION on Citus locks in
		 * (citus_drop.c): the policies (read by the purge), the state, then
		 * the events.  Events before state made that DROP and a reaper
		 * deadlock.
		 */
		regstack_rate_limit_policies_lock();
		usable = regstack_table_usable(RS_TABLE_RATE_STATE, RowExclusiveLock,
									   &problem) &&
			regstack_table_usable(RS_TABLE_RATE_EVENTS, RowExclusiveLock,
								  &problem);
	}
	if (usable)
		return true;
	regstack_reaper_slot_error(problem.message);
	ereport(WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg_internal("%s", problem.message),
			 problem.detail ? errdetail_internal("%s", problem.detail) : 0,
			 problem.hint ? errhint("%s", problem.hint) : 0));
	return false;
}

/*
 * One batch in its own transaction: check the database and the extension,
 * then delete up to limit rows of the current phase; *deleted gets how
 * many.
 */
static WorkerBatchResult
worker_batch(WorkerPass *pass, int64 limit, int64 *deleted)
{
	RegstackCall call;
	BlockNumber nblocks = 0;
	bool		no_slot;

	*deleted = 0;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING,
						   pass->phase == WORKER_TOKENS ?
						   "regstack reaper: deleting expired tokens" :
						   "regstack reaper: deleting stale rate-limit events");

	if (!worker_database_available())
	{
		ereport(DEBUG1,
				(errmsg("regstack reaper leaving database \"%s\": another session needs it",
						pass->datname)));
		goto stop;
	}
	if (!OidIsValid(get_extension_oid("regstack", true)))
	{
		regstack_reaper_slot_forget(pass->datid);
		goto stop;
	}
	if (!pass->claimed)
	{
		if (!regstack_reaper_slot_begin_pass(pass->datid, &no_slot))
			goto stop;			/* another worker is reaping here */
		if (no_slot)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("regstack reaper status table is full; database \"%s\" is reaped but not reported",
							pass->datname),
					 errhint("Raise regstack.reaper_max_databases.")));
		pass->claimed = true;
	}

	/* A table regstack must not write directly: warn once, skip it. */
	if (!worker_tables_usable(pass))
	{
		if (pass->phase == WORKER_EVENTS)
			goto stop;
		pass->phase = WORKER_EVENTS;
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		return WORKER_BATCH_DONE;
	}

	regstack_begin_call(&call);
	if (pass->phase == WORKER_TOKENS)
		*deleted = regstack_purge_tokens_range(limit, &pass->after,
											   pass->stop_block, &nblocks);
	else
		*deleted = regstack_purge_events(limit, &pass->events_cursor);
	regstack_end_call(&call);

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	regstack_reaper_slot_add(*deleted);

	/* move on in the tokens table: next stretch, or the events */
	if (pass->phase == WORKER_TOKENS && *deleted < limit)
	{
		if (pass->stop_block >= nblocks)
		{
			pass->phase = WORKER_EVENTS;
			regstack_stats_reaper_tokens_swept();
		}
		else
		{
			ItemPointerSet(&pass->after, pass->stop_block, 0);
			pass->stop_block = (pass->stop_block > MaxBlockNumber - WORKER_CHUNK_BLOCKS) ?
				MaxBlockNumber : pass->stop_block + WORKER_CHUNK_BLOCKS;
		}
	}
	return WORKER_BATCH_DONE;

stop:
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return WORKER_BATCH_STOP;
}

/* What the worker saw of other writers, kept across the batches of a pass. */
typedef struct WorkerYield
{
	instr_time	start;			/* when the current batch started
								 * (monotonic clock) */
	uint64		next_xid;		/* the next transaction id to be assigned
								 * when the last pause began (or the pass
								 * started) */
	int			quiet_looks;	/* looks in a row that saw no other writer */
} WorkerYield;

/* Start watching for other writers: at the start of a pass. */
static void
worker_yield_init(WorkerYield *yield)
{
	yield->next_xid = U64FromFullTransactionId(ReadNextFullTransactionId());
	yield->quiet_looks = 0;
}

/*
 * Rows the next batch may delete: fewer until WORKER_YIELD_QUIET_LOOKS looks
 * in a row saw no other writer (at the start of a pass too).  One quiet look
 * is not enough: while foreground commits wait for a flush they start no
 * transactions, so a busy server can look quiet for a moment.
 */
static int64
worker_yield_batch_limit(const WorkerYield *yield)
{
	if (yield->quiet_looks < WORKER_YIELD_QUIET_LOOKS)
		return Max(1, regstack_reaper_batch_size / WORKER_YIELD_BATCH_DIVISOR);
	return regstack_reaper_batch_size;
}

/* Note the time before a batch. */
static void
worker_yield_begin(WorkerYield *yield)
{
	INSTR_TIME_SET_CURRENT(yield->start);
}

/* Milliseconds on the monotonic clock since *since. */
static long
worker_ms_since(const instr_time *since)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, *since);
	return (long) INSTR_TIME_GET_MILLISEC(now);
}

/*
 * After a batch that deleted rows: if other transactions that write (each
 * takes a transaction id; the batch took one) started since the last
 * pause began, pause for WORKER_YIELD_FACTOR times the batch's duration
 * (and keep the next batches small: worker_yield_batch_limit), so
 * that a reaper working through a large backlog leaves room for
 * foreground commits; on a server with no other writes it goes on at full
 * speed.  A batch that deleted nothing wrote next to no WAL and is not
 * followed by a pause.  The pause ends early only for a shutdown request
 * or a configuration reload (the pass loop acts on both); batch and pause
 * are timed on the monotonic clock, so a change of the wall clock can
 * neither stretch a pause past WORKER_YIELD_MAX_MS nor cut it short.
 */
static void
worker_yield_end(WorkerYield *yield, int64 deleted)
{
	uint64		next_xid = U64FromFullTransactionId(ReadNextFullTransactionId());
	uint64		xids = next_xid - yield->next_xid;
	long		pause_ms;
	long		wait_ms;
	instr_time	paused_since;

	/* the next look covers this pause and the next batch */
	yield->next_xid = next_xid;
	/*
	 * Only a batch that deleted rows took a transaction id of its own, which
	 * "xids > 1" discounts; after an empty batch the look says nothing.
	 */
	if (deleted > 0)
	{
		if (xids > 1)
			yield->quiet_looks = 0;
		else if (yield->quiet_looks < WORKER_YIELD_QUIET_LOOKS)
			yield->quiet_looks++;
	}
	if (deleted == 0 || xids <= 1)
		return;
	pause_ms = (long) (worker_ms_since(&yield->start) * WORKER_YIELD_FACTOR);
	pause_ms = Min(pause_ms, WORKER_YIELD_MAX_MS);
	INSTR_TIME_SET_CURRENT(paused_since);
	wait_ms = pause_ms;
	while (wait_ms > 0 && !ShutdownRequestPending && !ConfigReloadPending)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		wait_ms = pause_ms - worker_ms_since(&paused_since);
	}
}

/*
 * Called in PG_CATCH: log the error (as a WARNING with its context) and
 * record it, unless it only says that the extension has just been dropped.
 */
static void
worker_report_error(WorkerPass *pass, MemoryContext context)
{
	ErrorData  *edata;
	bool		installed;

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);

	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("regstack", true));
	CommitTransactionCommand();

	if (!installed)
	{
		regstack_reaper_slot_forget(pass->datid);
		FreeErrorData(edata);
		return;
	}
	regstack_reaper_slot_error(edata->message);
	edata->elevel = WARNING;
	ThrowErrorData(edata);
	FreeErrorData(edata);
}

/* One pass over database datid; returns when done, failed or told to stop. */
static void
worker_pass(WorkerPass *pass)
{
	MemoryContext context = CurrentMemoryContext;
	TimestampTz start = GetCurrentTimestamp();
	bool		failed = false;
	WorkerYield yield;

	worker_yield_init(&yield);
	regstack_stats_reaper_pass_begin();

	PG_TRY();
	{
		ErrorContextCallback callback;

		/* pushed inside PG_TRY so that PG_CATCH pops it */
		callback.callback = worker_error_context;
		callback.arg = pass;
		callback.previous = error_context_stack;
		error_context_stack = &callback;

		for (;;)
		{
			int64		limit;
			int64		deleted;
			WorkerPhase phase = pass->phase;

			CHECK_FOR_INTERRUPTS();
			if (ShutdownRequestPending)
				break;
			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
			if (!regstack_reaper_enabled)
				break;

			limit = worker_yield_batch_limit(&yield);
			worker_yield_begin(&yield);
			if (worker_batch(pass, limit, &deleted) == WORKER_BATCH_STOP)
				break;
			pass->batches++;
			if (phase == WORKER_TOKENS)
				pass->tokens += deleted;
			else
			{
				pass->events += deleted;
				if (deleted < limit)
					break;		/* done: no pause before leaving */
			}
			worker_yield_end(&yield, deleted);
		}
		error_context_stack = callback.previous;
	}
	PG_CATCH();
	{
		worker_report_error(pass, context);
		failed = true;
	}
	PG_END_TRY();

	if (pass->claimed)
	{
		regstack_reaper_slot_end_pass();
		regstack_stats_reaper_pass_end(pass->tokens + pass->events);
	}

	if (pass->tokens > 0 || pass->events > 0)
	{
		long		secs;
		int			usecs;

		TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
		ereport(LOG,
				(errmsg("regstack reaper deleted " INT64_FORMAT " expired tokens and " INT64_FORMAT " stale rate-limit events in database \"%s\"",
						pass->tokens, pass->events, pass->datname),
				 errdetail("%lld batches in %ld.%03d s%s.",
						   (long long) pass->batches, secs, usecs / 1000,
						   failed ? ", then the pass failed" : "")));
	}
}

/* Entry point of a reaper worker: one pass in one database, then exit 0. */
void
regstack_reaper_worker_main(Datum main_arg)
{
	WorkerPass	pass;
	char		datname[NAMEDATALEN];

	memset(&pass, 0, sizeof(pass));
	pass.datid = DatumGetObjectId(main_arg);
	memcpy(datname, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	datname[NAMEDATALEN - 1] = '\0';
	pass.datname = datname;
	pass.phase = WORKER_TOKENS;
	ItemPointerSet(&pass.after, 0, 0);
	pass.stop_block = WORKER_CHUNK_BLOCKS;
	regstack_purge_cursor_init(&pass.events_cursor);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(pass.datid, InvalidOid, 0);

	SetConfigOption("application_name", "regstack reaper",
					PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("lock_timeout", WORKER_LOCK_TIMEOUT,
					PGC_USERSET, PGC_S_SESSION);
	/* batches are bounded by batch_size and WORKER_CHUNK_BLOCKS instead */
	SetConfigOption("statement_timeout", "0", PGC_USERSET, PGC_S_SESSION);
	/* always the TID range scan, even when a custom plan sees '(0,0)' */
	SetConfigOption("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION);

	/*
	 * That setting adds its penalty cost to any sequential scan the pass
	 * still makes (reading the policies), which puts the statement over
	 * jit_above_cost: with JIT on, each execution would be compiled, with
	 * inlining and optimization, for about 0.1 s of CPU.  The pass's
	 * statements are small batches that gain nothing from JIT.
	 */
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);

	if (!RecoveryInProgress())
		worker_pass(&pass);

	proc_exit(0);
}
