/*-------------------------------------------------------------------------
 *
 * module.c
 *	  Module entry point for regstack: _PG_init and settings.
 *
 * Every SQL function works whether or not the library is preloaded;
 * preloading (shared_preload_libraries = 'regstack') is needed only for
 * the background reaper.
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Define regstack's settings and reserve its prefix. */
void
_PG_init(void)
{
	regstack_rate_limits_define_settings();
	MarkGUCPrefixReserved("regstack");
}
