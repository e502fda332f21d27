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
 * The table's OID and owner are cached per backend and forgotten by a
 * relcache callback when the table changes (ALTER ... OWNER, DROP
 * EXTENSION).  The hot-path functions (token_store.c) use the OID only:
 * direct heap access checks no privileges, so they need no owner switch.
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

/* OID of regstack.auth_ephemeral_tokens and of its owner; Invalid: unknown. */
static Oid	context_tokens_relid = InvalidOid;
static Oid	context_owner = InvalidOid;
static bool context_callback_registered = false;

/* Forget the cached owner when the tokens table may have changed. */
static void
context_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == context_tokens_relid)
	{
		context_tokens_relid = InvalidOid;
		context_owner = InvalidOid;
	}
}

/*
 * Check that the tokens table has the columns token_store.c addresses by
 * number; a changed layout is an error, never a wrong column.
 */
static void
context_check_tokens_layout(Oid relid)
{
	static const char *const column_names[RS_NUM_COLS] = {
		"token_hash", "token_type", "subject", "provider", "nonce",
		"code_verifier", "challenge_hash", "redirect_to", "mode",
		"linking_user_id", "result", "payload", "created_at", "expires_at"
	};

	for (int attnum = 1; attnum <= RS_NUM_COLS; attnum++)
	{
		char	   *name = get_attname(relid, attnum, true);

		if (name == NULL || strcmp(name, column_names[attnum - 1]) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table regstack.auth_ephemeral_tokens has been altered"),
					 errdetail("Column %d should be \"%s\".", attnum,
							   column_names[attnum - 1]),
					 errhint("Reinstall the extension: DROP EXTENSION regstack; CREATE EXTENSION regstack;")));
	}
}

/* Find regstack's tokens table and its owner, once; cache both. */
static void
context_lookup(void)
{
	Oid			namespace_oid;
	Oid			relid = InvalidOid;
	HeapTuple	class_tuple;

	if (!context_callback_registered)
	{
		CacheRegisterRelcacheCallback(context_relcache_callback, (Datum) 0);
		context_callback_registered = true;
	}

	namespace_oid = get_namespace_oid("regstack", true);
	if (OidIsValid(namespace_oid))
		relid = get_relname_relid("auth_ephemeral_tokens", namespace_oid);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"regstack\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION regstack.")));

	context_check_tokens_layout(relid);
	class_tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(class_tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	context_owner = ((Form_pg_class) GETSTRUCT(class_tuple))->relowner;
	context_tokens_relid = relid;
	ReleaseSysCache(class_tuple);
}

/* OID of regstack.auth_ephemeral_tokens, looked up once and cached. */
Oid
regstack_tokens_relid(void)
{
	if (!OidIsValid(context_tokens_relid))
		context_lookup();
	return context_tokens_relid;
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
 * Exclusive transaction-scoped advisory lock on (lock_class, key1, key2),
 * hashed to 64 bits.  A hash collision only serializes two unrelated keys.
 */
void
regstack_xact_lock(uint16 lock_class, const char *key1, const char *key2)
{
	uint64		hash;
	LOCKTAG		tag;

	hash = hash_bytes_extended((const unsigned char *) key1,
							   strlen(key1), 0);
	hash = hash_bytes_extended((const unsigned char *) key2,
							   strlen(key2), hash);
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (hash >> 32),
						 (uint32) hash, lock_class);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}
