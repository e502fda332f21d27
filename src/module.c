/*-------------------------------------------------------------------------
 *
 * module.c
 *	  Module entry point for regstack: _PG_init and settings.
 *
 * Every SQL function works whether or not the library is preloaded;
 * preloading (shared_preload_libraries = 'regstack') is needed for the
 * background reaper and for the statistics (regstack.stats), and on Citus
 * for DROP EXTENSION to drop regstack's shards (citus_drop.c).
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"
#include "stats.h"

#include "miscadmin.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Define regstack's settings, start the reaper when preloaded, reserve the prefix. */
void
_PG_init(void)
{
	/* Reloadable settings: defined in every process that loads regstack. */
	regstack_rate_limits_define_settings();
	regstack_reaper_define_settings();

	/* DROP EXTENSION regstack on Citus drops the shards first (citus_drop.c). */
	regstack_citus_drop_hook_install();

	/*
	 * Restart-only settings, shared memory, the reaper's launcher and the
	 * statistics exist only when preloaded (shared_preload_libraries =
	 * 'regstack').  The statistics size their lag table by the reaper's
	 * regstack.reaper_max_databases, so they come second.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		regstack_reaper_preload();
		regstack_stats_preload();
	}

	MarkGUCPrefixReserved("regstack");
}
