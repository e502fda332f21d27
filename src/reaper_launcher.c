/*-------------------------------------------------------------------------
 *
 * reaper_launcher.c
 *	  The reaper's launcher: one background worker per cluster that, every
 *	  regstack.reaper_naptime, starts a short-lived reaper worker in each
 *	  database.
 *
 * The launcher is registered statically when regstack is preloaded, and
 * the postmaster starts it once recovery has finished: on a standby it
 * does not run, and after promotion it starts by itself.  It is restarted
 * LAUNCHER_RESTART_SECONDS after it exits with code 1, which is how it
 * always exits: on pg_terminate_backend, on an error it cannot handle, on
 * shutdown (when the postmaster no longer restarts anything).  It never
 * exits with code 0, which would unregister it for good.
 *
 * The launcher connects to no database: pg_database is a shared catalog it
 * can read without one, so DROP DATABASE never waits for it.  It cannot see
 * pg_extension, so every naptime it starts one worker per database that
 * accepts connections and is not a template (or only those named in
 * regstack.reaper_databases); the worker checks for the extension, reaps if
 * it is there, and exits.  Workers run one at a time, so the reaper needs one
 * background-worker slot besides the launcher's.  A database where CREATE
 * EXTENSION runs later is therefore picked up at the next round.
 *
 * Signals: SIGHUP reloads the configuration (a new naptime applies to the
 * current wait, and turning regstack.reaper_enabled on starts a round at
 * once); SIGTERM stops the running worker (which finishes its
 * batch) and exits with code 1.
 *
 *-------------------------------------------------------------------------
 */
#include "reaper.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

/* Seconds the postmaster waits before restarting an exited launcher. */
#define LAUNCHER_RESTART_SECONDS	5

/* One database the launcher may visit. */
typedef struct LauncherDatabase
{
	Oid			datid;
	NameData	datname;
} LauncherDatabase;

/* Memory for one round (the database list), reset at every round. */
static MemoryContext launcher_round_context = NULL;

/* Whether the "no background worker slot" warning was given (say it once). */
static bool launcher_warned_no_slot = false;

/*
 * Fill *worker for one of regstack's background workers: function in
 * regstack.so, shown as type (and, until the caller changes it, as name).
 */
static void
launcher_worker_init(BackgroundWorker *worker, const char *function,
					 const char *type, int restart_time)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = restart_time;
	strlcpy(worker->bgw_library_name, "regstack", BGW_MAXLEN);
	strlcpy(worker->bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker->bgw_name, type, BGW_MAXLEN);
	strlcpy(worker->bgw_type, type, BGW_MAXLEN);
}

/* Register the launcher as a static background worker (preload only). */
void
regstack_reaper_register_launcher(void)
{
	BackgroundWorker worker;

	launcher_worker_init(&worker, "regstack_reaper_launcher_main",
						 "regstack launcher", LAUNCHER_RESTART_SECONDS);
	RegisterBackgroundWorker(&worker);
}

/*
 * Define the restart-only settings, reserve shared memory and register the
 * launcher: only while shared_preload_libraries is being processed.
 */
void
regstack_reaper_preload(void)
{
	regstack_reaper_define_restart_settings();
	regstack_reaper_request_shmem();
	regstack_reaper_register_launcher();
}

/* Handle a pending reload or shutdown request (the latter does not return). */
static void
launcher_handle_signals(BackgroundWorkerHandle *running)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	if (ShutdownRequestPending)
	{
		/* the worker finishes its batch and exits by itself */
		if (running != NULL)
			TerminateBackgroundWorker(running);
		ereport(DEBUG1,
				(errmsg("regstack launcher shutting down")));
		/* exit code 1: the postmaster restarts us unless it is stopping */
		proc_exit(1);
	}
}

/* qsort comparator: databases by OID. */
static int
launcher_database_cmp(const void *a, const void *b)
{
	Oid			x = ((const LauncherDatabase *) a)->datid;
	Oid			y = ((const LauncherDatabase *) b)->datid;

	return (x > y) - (x < y);
}

/*
 * The databases a worker may connect to, sorted by OID, allocated in the
 * round context: every database that allows connections, is not a
 * template (a connection there would make CREATE DATABASE fail) and is not
 * half-dropped.  Reads the shared catalog pg_database, in its own
 * transaction.
 */
static LauncherDatabase *
launcher_list_databases(int *count)
{
	LauncherDatabase *databases;
	int			allocated = 16;
	int			n = 0;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;

	databases = MemoryContextAlloc(launcher_round_context,
								   sizeof(LauncherDatabase) * allocated);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		if (!db->datallowconn || db->datistemplate ||
			database_is_invalid_form(db))
			continue;
		if (n == allocated)
		{
			allocated *= 2;
			databases = repalloc(databases,
								 sizeof(LauncherDatabase) * allocated);
		}
		databases[n].datid = db->oid;
		namestrcpy(&databases[n].datname, NameStr(db->datname));
		n++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	CommitTransactionCommand();

	qsort(databases, n, sizeof(LauncherDatabase), launcher_database_cmp);
	*count = n;
	return databases;
}

/*
 * Start a reaper worker in database db and wait until it has exited.
 * False when no worker could be started (no free background-worker slot).
 */
static bool
launcher_run_worker(const LauncherDatabase *db)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	launcher_worker_init(&worker, "regstack_reaper_worker_main",
						 "regstack reaper", BGW_NEVER_RESTART);
	snprintf(worker.bgw_name, BGW_MAXLEN, "regstack reaper for database \"%s\"",
			 NameStr(db->datname));
	worker.bgw_main_arg = ObjectIdGetDatum(db->datid);
	/* the worker names its database in its messages without a lookup */
	StaticAssertStmt(NAMEDATALEN <= BGW_EXTRALEN, "bgw_extra too small for a name");
	memcpy(worker.bgw_extra, NameStr(db->datname), NAMEDATALEN);
	/* the postmaster sets our latch when the worker starts and stops */
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		if (!launcher_warned_no_slot)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("regstack launcher could not start a reaper worker"),
					 errdetail("Every background worker slot is in use; expired rows are not being deleted."),
					 errhint("Raise max_worker_processes (regstack needs two slots: the launcher and one worker).")));
		launcher_warned_no_slot = true;
		return false;
	}
	launcher_warned_no_slot = false;

	for (;;)
	{
		pid_t		pid;
		BgwHandleStatus status;

		status = GetBackgroundWorkerPid(handle, &pid);
		if (status == BGWH_STOPPED)
			break;
		if (status == BGWH_POSTMASTER_DIED)
			proc_exit(1);
		/* a timeout too, in case a notification is missed */
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		launcher_handle_signals(handle);
	}
	pfree(handle);
	return true;
}

/*
 * One round: a worker in each database the settings allow, one after the
 * other, skipping databases another worker is still reaping (one left over
 * from a previous launcher).
 */
static void
launcher_round(void)
{
	LauncherDatabase *databases;
	Oid		   *live;
	int			count;
	int			i;

	MemoryContextReset(launcher_round_context);
	databases = launcher_list_databases(&count);

	/* forget the status of databases that are gone */
	live = MemoryContextAlloc(launcher_round_context, sizeof(Oid) * Max(count, 1));
	for (i = 0; i < count; i++)
		live[i] = databases[i].datid;
	regstack_reaper_slot_prune(live, count);

	for (i = 0; i < count; i++)
	{
		/* settings may change during a round: check them for each database */
		if (!regstack_reaper_enabled)
			break;
		if (!regstack_reaper_database_listed(NameStr(databases[i].datname)))
			continue;
		if (regstack_reaper_slot_busy(databases[i].datid))
			continue;
		if (!launcher_run_worker(&databases[i]))
			break;
	}
}

/* A round whose errors are logged and forgotten: never a crash loop. */
static void
launcher_round_guarded(void)
{
	MemoryContext saved_context = CurrentMemoryContext;

	PG_TRY();
	{
		launcher_round();
	}
	PG_CATCH();
	{
		/* log it and try again next round */
		MemoryContextSwitchTo(saved_context);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
}

/* Entry point of the launcher. */
void
regstack_reaper_launcher_main(Datum main_arg)
{
	TimestampTz last_round = 0;
	bool		have_round = false;
	bool		was_enabled = regstack_reaper_enabled;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/* no database: shared catalogs only */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	SetConfigOption("application_name", "regstack launcher",
					PGC_USERSET, PGC_S_SESSION);

	launcher_round_context = AllocSetContextCreate(TopMemoryContext,
												   "regstack launcher round",
												   ALLOCSET_DEFAULT_SIZES);
	ereport(DEBUG1,
			(errmsg("regstack launcher started")));

	for (;;)
	{
		TimestampTz now_ts;
		TimestampTz next_round;
		long		delay;

		CHECK_FOR_INTERRUPTS();
		launcher_handle_signals(NULL);

		/* Turned on by a reload: reap now, not a naptime from now. */
		if (regstack_reaper_enabled && !was_enabled)
			have_round = false;
		was_enabled = regstack_reaper_enabled;

		now_ts = GetCurrentTimestamp();
		next_round = TimestampTzPlusMilliseconds(last_round,
												 regstack_reaper_naptime * 1000L);
		if (!have_round || now_ts >= next_round)
		{
			last_round = now_ts;
			have_round = true;

			/*
			 * The postmaster starts us only after recovery, but check anyway:
			 * nothing may be deleted on a standby.
			 */
			if (regstack_reaper_enabled && !RecoveryInProgress())
				launcher_round_guarded();
			pgstat_report_stat(true);
			continue;			/* recompute the deadline with fresh settings */
		}

		delay = TimestampDifferenceMilliseconds(now_ts, next_round);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 delay, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
