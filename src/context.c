/*-------------------------------------------------------------------------
 *
 * context.c
 *	  Where regstack's SQL functions run: as the owner of the extension's
 *	  tables, inside SPI, with plans prepared once per backend.
 *
 * The functions are not SECURITY DEFINER.  Instead each call switches to
 * the owner of regstack.auth_ephemeral_tokens with SetUserIdAndSecContext()
 * (the owner-switch pg_cron uses), in a security-restricted operation, and
 * switches back at the end.  An error in between needs no cleanup here:
 * transaction (and subtransaction) abort restores the user id and closes
 * SPI.
 *
 * The tables' OIDs and the owner are cached per backend and forgotten by a
 * relcache callback when a table changes (ALTER ... OWNER, DROP
 * EXTENSION).  The hot-path functions (token_store.c, rate_limit_store.c)
 * use the OIDs only: direct heap access checks no privileges, so they need
 * no owner switch.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/*
 * The tables the direct heap paths address by column number: their names
 * and the names of those columns, in order (the layout is checked once).
 */
typedef struct ContextTable
{
	const char *relname;
	int			ncolumns;
	const char *const *column_names;
} ContextTable;

static const char *const context_token_columns[RS_NUM_COLS] = {
	"subject_tag", "token_hash", "token_type", "subject", "provider", "nonce",
	"code_verifier", "challenge_hash", "redirect_to", "mode",
	"linking_user_id", "result", "payload", "created_at", "expires_at"
};
static const char *const context_state_columns[RS_STATE_NUM_COLS] = {
	"key", "event_type", "lane", "next_seq", "start_seq", "start_at", "window_us",
	"last_at", "clock_at"
};
static const char *const context_event_columns[RS_EVENT_NUM_COLS] = {
	"key", "event_type", "lane", "seq", "occurred_at"
};

static const ContextTable context_tables[RS_NUM_TABLES] = {
	[RS_TABLE_TOKENS] = {"auth_ephemeral_tokens", RS_NUM_COLS, context_token_columns},
	[RS_TABLE_RATE_STATE] = {"auth_rate_limit_state", RS_STATE_NUM_COLS, context_state_columns},
	[RS_TABLE_RATE_EVENTS] = {"auth_rate_limit_events", RS_EVENT_NUM_COLS, context_event_columns},
};

/* OIDs of those tables and the owner of the tokens table; Invalid: unknown. */
static Oid	context_relids[RS_NUM_TABLES];
static Oid	context_owner = InvalidOid;
static bool context_callback_registered = false;

/* Forget the cached OIDs and owner when one of the tables may have changed. */
static void
context_relcache_callback(Datum arg, Oid relid)
{
	for (int i = 0; i < RS_NUM_TABLES; i++)
	{
		if (relid == InvalidOid || relid == context_relids[i])
		{
			memset(context_relids, 0, sizeof(context_relids));
			context_owner = InvalidOid;
			return;
		}
	}
}

/*
 * Check that a table has the columns the direct heap paths address by
 * number; a changed layout is an error, never a wrong column.
 */
static void
context_check_layout(Oid relid, const ContextTable *table)
{
	for (int attnum = 1; attnum <= table->ncolumns; attnum++)
	{
		char	   *name = get_attname(relid, attnum, true);

		if (name == NULL || strcmp(name, table->column_names[attnum - 1]) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table regstack.%s has been altered", table->relname),
					 errdetail("Column %d should be \"%s\".", attnum,
							   table->column_names[attnum - 1]),
					 errhint("Reinstall the extension: DROP EXTENSION regstack; CREATE EXTENSION regstack;")));
	}
}

/* Find regstack's tables and the tokens table's owner, once; cache them. */
static void
context_lookup(void)
{
	Oid			namespace_oid;
	Oid			relids[RS_NUM_TABLES];
	HeapTuple	class_tuple;

	if (!context_callback_registered)
	{
		CacheRegisterRelcacheCallback(context_relcache_callback, (Datum) 0);
		context_callback_registered = true;
	}

	namespace_oid = get_namespace_oid("regstack", true);
	for (int i = 0; i < RS_NUM_TABLES; i++)
	{
		relids[i] = OidIsValid(namespace_oid) ?
			get_relname_relid(context_tables[i].relname, namespace_oid) :
			InvalidOid;
		if (!OidIsValid(relids[i]))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("extension \"regstack\" is not installed in this database"),
					 errhint("Run CREATE EXTENSION regstack.")));
		context_check_layout(relids[i], &context_tables[i]);
	}

	class_tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relids[RS_TABLE_TOKENS]));
	if (!HeapTupleIsValid(class_tuple))
		elog(ERROR, "cache lookup failed for relation %u", relids[RS_TABLE_TOKENS]);
	context_owner = ((Form_pg_class) GETSTRUCT(class_tuple))->relowner;
	ReleaseSysCache(class_tuple);
	memcpy(context_relids, relids, sizeof(context_relids));
}

/* OID of one of regstack's tables, its layout checked; looked up once. */
Oid
regstack_table_relid(RegstackTable table)
{
	if (!OidIsValid(context_relids[table]))
		context_lookup();
	return context_relids[table];
}

/* Connect to SPI and run as the table owner until regstack_end_call(). */
void
regstack_begin_call(RegstackCall *call)
{
	Oid			owner;

	if (!OidIsValid(context_owner))
		context_lookup();
	owner = context_owner;
	GetUserIdAndSecContext(&call->saved_userid, &call->saved_sec_context);
	SetUserIdAndSecContext(owner,
						   call->saved_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/* Leave SPI and return to the caller's user id. */
void
regstack_end_call(RegstackCall *call)
{
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	SetUserIdAndSecContext(call->saved_userid, call->saved_sec_context);
}

/*
 * The saved plan in *slot, preparing it on first use.  Saved plans are
 * revalidated by the plan cache, so they survive DROP/CREATE EXTENSION.
 */
SPIPlanPtr
regstack_plan(SPIPlanPtr *slot, const char *sql, int nargs,
			  const Oid *argtypes)
{
	SPIPlanPtr	plan;

	if (*slot != NULL)
		return *slot;
	plan = SPI_prepare(sql, nargs, (Oid *) argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	*slot = plan;
	return plan;
}

/*
 * The advisory lock tag of (lock_class, key1, key2), hashed to 64 bits.  A
 * hash collision only serializes two unrelated keys.
 */
static void
context_lock_tag(LOCKTAG *tag, uint16 lock_class, const char *key1,
				 const char *key2)
{
	uint64		hash;

	hash = hash_bytes_extended((const unsigned char *) key1,
							   strlen(key1), 0);
	hash = hash_bytes_extended((const unsigned char *) key2,
							   strlen(key2), hash);
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (hash >> 32),
						 (uint32) hash, lock_class);
}

/* Exclusive transaction-scoped advisory lock on (lock_class, key1, key2). */
void
regstack_xact_lock(uint16 lock_class, const char *key1, const char *key2)
{
	(void) regstack_lock_key(lock_class, key1, key2, ExclusiveLock, false, true);
}

/*
 * Lock (lock_class, key1, key2) in mode: to the end of the transaction, or
 * with session until regstack_unlock_key().  Without wait, returns false
 * at once when the lock is not free.
 */
bool
regstack_lock_key(uint16 lock_class, const char *key1, const char *key2,
				  LOCKMODE mode, bool session, bool wait)
{
	LOCKTAG		tag;

	context_lock_tag(&tag, lock_class, key1, key2);
	return LockAcquire(&tag, mode, session, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/* Release a lock regstack_lock_key() took (before the transaction ends). */
void
regstack_unlock_key(uint16 lock_class, const char *key1, const char *key2,
					LOCKMODE mode, bool session)
{
	LOCKTAG		tag;

	context_lock_tag(&tag, lock_class, key1, key2);
	if (!LockRelease(&tag, mode, session))
		elog(ERROR, "regstack lock of class %u was not held", lock_class);
}
