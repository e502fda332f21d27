/*-------------------------------------------------------------------------
 *
 * reaper.h
 *	  Declarations shared by the background reaper's files only.
 *
 * The reaper is three processes' worth of code in four files:
 *	- reaper_settings.c: the regstack.* settings the reaper reads;
 *	- reaper_launcher.c: the launcher, one per cluster, connected to no
 *	  database, which lists pg_database every naptime and starts one
 *	  short-lived worker per database, one after the other;
 *	- reaper_worker.c: the per-database worker, which runs one pass
 *	  (batches of deletes, each its own transaction) and exits;
 *	- reaper_status.c: the bounded shared-memory table behind the
 *	  regstack.reaper_status view.
 *
 * module.c sees only the block at the end of regstack.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REGSTACK_REAPER_H
#define REGSTACK_REAPER_H

#include "regstack.h"

#include "datatype/timestamp.h"

/* ---- reaper_settings.c ---- */

extern bool regstack_reaper_enabled;
extern int	regstack_reaper_naptime;	/* seconds */
extern int	regstack_reaper_batch_size;
extern char *regstack_reaper_databases;
extern int	regstack_reaper_max_databases;	/* restart-only */

/* Define the restart-only settings (preload only). */
extern void regstack_reaper_define_restart_settings(void);

/*
 * True when database datname is one the reaper should visit according to
 * regstack.reaper_databases (empty: every database).
 */
extern bool regstack_reaper_database_listed(const char *datname);

/* ---- reaper_launcher.c / reaper_worker.c: process entry points ---- */

/* Register the launcher as a static background worker (preload only). */
extern void regstack_reaper_register_launcher(void);

extern PGDLLEXPORT void regstack_reaper_launcher_main(Datum main_arg);
extern PGDLLEXPORT void regstack_reaper_worker_main(Datum main_arg);

/* ---- reaper_status.c: shared-memory status, one slot per database ---- */

/* Longest last_error kept, including the terminating zero. */
#define REAPER_ERROR_LEN	256

/* Install the hooks that reserve and create the status table. */
extern void regstack_reaper_request_shmem(void);

/*
 * Claim the slot of database datid for a pass by this process.  False when
 * another process is already reaping datid: the caller must not reap.  When
 * every slot belongs to another database, true with *no_slot set: the pass
 * goes ahead unrecorded.
 */
extern bool regstack_reaper_slot_begin_pass(Oid datid, bool *no_slot);

/* Add n rows deleted by the current pass (updated after every batch). */
extern void regstack_reaper_slot_add(int64 n);

/* Record the end of the current pass. */
extern void regstack_reaper_slot_end_pass(void);

/* Record an error message in the current pass's slot. */
extern void regstack_reaper_slot_error(const char *message);

/* Forget database datid (its extension was dropped). */
extern void regstack_reaper_slot_forget(Oid datid);

/*
 * Forget databases no longer worth reporting: slots whose database is not
 * in the sorted array live (a pg_database snapshot), and no process holds.
 */
extern void regstack_reaper_slot_prune(const Oid *live, int nlive);

/* True when a reaper worker is reaping datid right now. */
extern bool regstack_reaper_slot_busy(Oid datid);

#endif							/* REGSTACK_REAPER_H */
