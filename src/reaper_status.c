/*-------------------------------------------------------------------------
 *
 * reaper_status.c
 *	  The reaper's status table in shared memory, one slot per database,
 *	  and regstack.reaper_status(), the function behind the view.
 *
 * The table has regstack.reaper_max_databases slots (a restart-only setting), so
 * its size is fixed when the postmaster starts.  A slot belongs to a
 * database from the first pass there until its extension is dropped or
 * the database disappears from pg_database; when all slots are taken, a
 * new database is still reaped but not reported.
 *
 * Locking: one LWLock (tranche "regstack_reaper") guards every slot.  The
 * holder never raises an error or does I/O while holding it.  A worker
 * holds at most one slot (status_my_slot) and marks it with its pid; an
 * on_shmem_exit callback clears the pid however the worker exits, so a pid
 * in a slot always names a live process (a crash re-creates shared memory).
 *
 * Without preloading there is no table: the function returns no rows.
 *
 *-------------------------------------------------------------------------
 */
#include "reaper.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(regstack_reaper_status);

/* What the reaper knows about one database; datid InvalidOid: free. */
typedef struct ReaperSlot
{
	Oid			datid;
	int			pid;			/* worker reaping it now; 0: none */
	int64		passes;			/* passes finished */
	TimestampTz last_start;		/* 0: never */
	TimestampTz last_end;		/* 0: never, or a pass is running */
	int64		last_deleted;	/* rows deleted by the last (or current) pass */
	int64		total_deleted;	/* rows deleted since the server started */
	TimestampTz last_error_at;	/* 0: no error */
	char		last_error[REAPER_ERROR_LEN];
} ReaperSlot;

typedef struct ReaperShared
{
	LWLock	   *lock;
	int			nslots;
	ReaperSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} ReaperShared;

#define STATUS_TRANCHE		"regstack_reaper"
#define STATUS_COLUMNS		9

static ReaperShared *status_shared = NULL;
static int	status_my_slot = -1;
static bool status_exit_registered = false;
static shmem_request_hook_type status_prev_request_hook = NULL;
static shmem_startup_hook_type status_prev_startup_hook = NULL;

/* Bytes the status table needs. */
static Size
status_shmem_size(void)
{
	return add_size(offsetof(ReaperShared, slots),
					mul_size(regstack_reaper_max_databases, sizeof(ReaperSlot)));
}

/* shmem_request_hook: reserve the table and its lock. */
static void
status_shmem_request(void)
{
	if (status_prev_request_hook)
		status_prev_request_hook();
	RequestAddinShmemSpace(status_shmem_size());
	RequestNamedLWLockTranche(STATUS_TRANCHE, 1);
}

/* shmem_startup_hook: create (or, in EXEC_BACKEND builds, attach) the table. */
static void
status_shmem_startup(void)
{
	bool		found;

	if (status_prev_startup_hook)
		status_prev_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	status_shared = ShmemInitStruct("regstack reaper status",
									status_shmem_size(), &found);
	if (!found)
	{
		memset(status_shared, 0, status_shmem_size());
		status_shared->lock = &(GetNamedLWLockTranche(STATUS_TRANCHE))->lock;
		status_shared->nslots = regstack_reaper_max_databases;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Install the hooks that reserve and create the status table. */
void
regstack_reaper_request_shmem(void)
{
	status_prev_request_hook = shmem_request_hook;
	shmem_request_hook = status_shmem_request;
	status_prev_startup_hook = shmem_startup_hook;
	shmem_startup_hook = status_shmem_startup;
}

/* on_shmem_exit: give up this process's slot, however it exits. */
static void
status_release(int code, Datum arg)
{
	ReaperSlot *slot;

	if (status_shared == NULL || status_my_slot < 0)
		return;
	LWLockAcquire(status_shared->lock, LW_EXCLUSIVE);
	slot = &status_shared->slots[status_my_slot];
	if (slot->pid == MyProcPid)
	{
		slot->pid = 0;
		if (slot->last_end == 0)
			slot->last_end = GetCurrentTimestamp();
	}
	LWLockRelease(status_shared->lock);
	status_my_slot = -1;
}

/* Claim datid's slot for a pass; false if another process is reaping it. */
bool
regstack_reaper_slot_begin_pass(Oid datid, bool *no_slot)
{
	int			found = -1;
	int			i;
	ReaperSlot *slot;

	*no_slot = false;
	if (status_shared == NULL)
	{
		*no_slot = true;
		return true;
	}

	LWLockAcquire(status_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < status_shared->nslots; i++)
	{
		if (status_shared->slots[i].datid == datid)
		{
			found = i;
			break;
		}
		if (found < 0 && status_shared->slots[i].datid == InvalidOid)
			found = i;			/* first free slot, unless datid has one */
	}
	if (found < 0)
	{
		LWLockRelease(status_shared->lock);
		*no_slot = true;
		return true;
	}
	slot = &status_shared->slots[found];
	if (slot->datid == datid && slot->pid != 0 && slot->pid != MyProcPid)
	{
		LWLockRelease(status_shared->lock);
		return false;
	}
	if (slot->datid != datid)
	{
		memset(slot, 0, sizeof(ReaperSlot));
		slot->datid = datid;
	}
	slot->pid = MyProcPid;
	slot->last_start = GetCurrentTimestamp();
	slot->last_end = 0;
	slot->last_deleted = 0;
	status_my_slot = found;
	LWLockRelease(status_shared->lock);

	if (!status_exit_registered)
	{
		on_shmem_exit(status_release, (Datum) 0);
		status_exit_registered = true;
	}
	return true;
}

/* Add n rows deleted by the current pass. */
void
regstack_reaper_slot_add(int64 n)
{
	ReaperSlot *slot;

	if (status_shared == NULL || status_my_slot < 0 || n == 0)
		return;
	LWLockAcquire(status_shared->lock, LW_EXCLUSIVE);
	slot = &status_shared->slots[status_my_slot];
	slot->last_deleted += n;
	slot->total_deleted += n;
	LWLockRelease(status_shared->lock);
}

/* Record the end of the current pass. */
void
regstack_reaper_slot_end_pass(void)
{
	ReaperSlot *slot;

	if (status_shared == NULL || status_my_slot < 0)
		return;
	LWLockAcquire(status_shared->lock, LW_EXCLUSIVE);
	slot = &status_shared->slots[status_my_slot];
	slot->last_end = GetCurrentTimestamp();
	slot->passes++;
	LWLockRelease(status_shared->lock);
}

/* Record an error message in the current pass's slot. */
void
regstack_reaper_slot_error(const char *message)
{
	ReaperSlot *slot;

	if (status_shared == NULL || status_my_slot < 0)
		return;
	LWLockAcquire(status_shared->lock, LW_EXCLUSIVE);
	slot = &status_shared->slots[status_my_slot];
	strlcpy(slot->last_error, message, REAPER_ERROR_LEN);
	slot->last_error_at = GetCurrentTimestamp();
	LWLockRelease(status_shared->lock);
}

/* Forget datid (its extension was dropped), unless someone is reaping it. */
void
regstack_reaper_slot_forget(Oid datid)
{
	int			i;

	if (status_shared == NULL)
		return;
	LWLockAcquire(status_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < status_shared->nslots; i++)
	{
		ReaperSlot *slot = &status_shared->slots[i];

		if (slot->datid == datid && (slot->pid == 0 || slot->pid == MyProcPid))
		{
			memset(slot, 0, sizeof(ReaperSlot));
			if (i == status_my_slot)
				status_my_slot = -1;
		}
	}
	LWLockRelease(status_shared->lock);
}

/* bsearch comparator for Oids. */
static int
status_oid_cmp(const void *a, const void *b)
{
	Oid			x = *(const Oid *) a;
	Oid			y = *(const Oid *) b;

	return (x > y) - (x < y);
}

/* Forget idle slots whose database is not in the sorted array live. */
void
regstack_reaper_slot_prune(const Oid *live, int nlive)
{
	int			i;

	if (status_shared == NULL)
		return;
	LWLockAcquire(status_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < status_shared->nslots; i++)
	{
		ReaperSlot *slot = &status_shared->slots[i];

		if (slot->datid != InvalidOid && slot->pid == 0 &&
			bsearch(&slot->datid, live, nlive, sizeof(Oid),
					status_oid_cmp) == NULL)
			memset(slot, 0, sizeof(ReaperSlot));
	}
	LWLockRelease(status_shared->lock);
}

/* True when a worker is reaping datid now. */
bool
regstack_reaper_slot_busy(Oid datid)
{
	int			i;
	bool		busy = false;

	if (status_shared == NULL)
		return false;
	LWLockAcquire(status_shared->lock, LW_SHARED);
	for (i = 0; i < status_shared->nslots; i++)
	{
		if (status_shared->slots[i].datid == datid &&
			status_shared->slots[i].pid != 0)
		{
			busy = true;
			break;
		}
	}
	LWLockRelease(status_shared->lock);
	return busy;
}

/* A timestamp column: NULL for 0 ("never"). */
static void
status_timestamp(TimestampTz value, Datum *datum, bool *isnull)
{
	*isnull = (value == 0);
	*datum = TimestampTzGetDatum(value);
}

/*
 * regstack.reaper_status(): one row per database in the status table.
 * Slots are copied under the lock, then turned into rows without it.
 */
Datum
regstack_reaper_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ReaperSlot *copy;
	int			nslots;
	int			i;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (status_shared == NULL)
		PG_RETURN_VOID();

	nslots = status_shared->nslots;
	copy = palloc(sizeof(ReaperSlot) * nslots);
	LWLockAcquire(status_shared->lock, LW_SHARED);
	memcpy(copy, status_shared->slots, sizeof(ReaperSlot) * nslots);
	LWLockRelease(status_shared->lock);

	for (i = 0; i < nslots; i++)
	{
		ReaperSlot *slot = &copy[i];
		Datum		values[STATUS_COLUMNS];
		bool		nulls[STATUS_COLUMNS];

		if (slot->datid == InvalidOid)
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[0] = ObjectIdGetDatum(slot->datid);
		values[1] = Int32GetDatum(slot->pid);
		nulls[1] = (slot->pid == 0);
		values[2] = Int64GetDatum(slot->passes);
		status_timestamp(slot->last_start, &values[3], &nulls[3]);
		status_timestamp(slot->last_end, &values[4], &nulls[4]);
		values[5] = Int64GetDatum(slot->last_deleted);
		values[6] = Int64GetDatum(slot->total_deleted);
		slot->last_error[REAPER_ERROR_LEN - 1] = '\0';
		values[7] = CStringGetTextDatum(slot->last_error);
		nulls[7] = (slot->last_error_at == 0);
		status_timestamp(slot->last_error_at, &values[8], &nulls[8]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
