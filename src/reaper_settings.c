/*-------------------------------------------------------------------------
 *
 * reaper_settings.c
 *	  The regstack.* settings of the background reaper.
 *
 * Reloadable settings (PGC_SIGHUP) are defined in every process that loads
 * the library, preloaded or not, so that SHOW and postgresql.conf agree
 * everywhere.  The restart-only setting (PGC_POSTMASTER) sizes shared
 * memory and can only be defined while shared_preload_libraries is being
 * processed: regstack_reaper_preload() (reaper_launcher.c) has it defined,
 * then asks for shared memory and registers the launcher.
 *
 * The launcher and the workers pick up reloaded values when they handle
 * SIGHUP (ConfigReloadPending), between batches and between waits.
 *
 *-------------------------------------------------------------------------
 */
#include "reaper.h"

#include <limits.h>

#include "utils/guc.h"
#include "utils/varlena.h"

bool		regstack_reaper_enabled = true;
int			regstack_reaper_naptime = 10;
int			regstack_reaper_batch_size = 10000;
char	   *regstack_reaper_databases = NULL;
int			regstack_reaper_max_databases = 64;

/* Check hook for regstack.reaper_databases: a comma-separated list of names. */
static bool
settings_check_databases(char **newval, void **extra, GucSource source)
{
	char	   *raw;
	List	   *names;
	bool		ok;

	raw = pstrdup(*newval);
	ok = SplitIdentifierString(raw, ',', &names);
	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(names);
	pfree(raw);
	return ok;
}

/* True when datname is listed in regstack.reaper_databases, or the list is empty. */
bool
regstack_reaper_database_listed(const char *datname)
{
	char	   *raw;
	List	   *names;
	ListCell   *cell;
	bool		listed = false;

	if (regstack_reaper_databases == NULL || regstack_reaper_databases[0] == '\0')
		return true;

	raw = pstrdup(regstack_reaper_databases);
	if (!SplitIdentifierString(raw, ',', &names))
	{
		/* the check hook makes this unreachable; reap nothing rather than all */
		pfree(raw);
		return false;
	}
	foreach(cell, names)
	{
		if (strcmp((const char *) lfirst(cell), datname) == 0)
		{
			listed = true;
			break;
		}
	}
	list_free(names);
	pfree(raw);
	return listed;
}

/* Define the reaper's reloadable settings (any process loading regstack). */
void
regstack_reaper_define_settings(void)
{
	DefineCustomBoolVariable("regstack.reaper_enabled",
							 "Whether the background reaper deletes expired rows.",
							 "Takes effect on reload; needs shared_preload_libraries = 'regstack'.",
							 &regstack_reaper_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("regstack.reaper_naptime",
							"Time between two reaper passes over each database.",
							NULL,
							&regstack_reaper_naptime,
							10,
							1,
							86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("regstack.reaper_batch_size",
							"Rows the reaper deletes per transaction.",
							"A pass goes on while batches come back full.",
							&regstack_reaper_batch_size,
							10000,
							1,
							INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("regstack.reaper_databases",
							   "Databases the reaper visits (comma-separated; empty: every database with the extension).",
							   NULL,
							   &regstack_reaper_databases,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   settings_check_databases, NULL, NULL);
}

/*
 * Define the restart-only settings: only while shared_preload_libraries is
 * being processed (regstack_reaper_preload()).
 */
void
regstack_reaper_define_restart_settings(void)
{
	DefineCustomIntVariable("regstack.reaper_max_databases",
							"Databases the reaper status table has room for.",
							"Sizes shared memory; a database beyond it is still reaped, but not reported.",
							&regstack_reaper_max_databases,
							64,
							1,
							10000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);
}
