/*-------------------------------------------------------------------------
 *
 * args.c
 *	  Checking the arguments of regstack's SQL functions.
 *
 * The functions are not STRICT: a NULL where a value is required is an
 * error that names the argument, not a silent NULL result.  Every error
 * here carries a precise SQLSTATE:
 *	22004 null_value_not_allowed      a required argument is NULL
 *	22023 invalid_parameter_value     empty text, non-positive interval
 *	22001 string_data_right_truncation text longer than its limit
 *
 *-------------------------------------------------------------------------
 */
#include "regstack.h"

#include "common/int.h"

#include "access/detoast.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

/* The text argument argno after the checks above; NULL if absent and allowed. */
text *
regstack_text_arg(FunctionCallInfo fcinfo, int argno, const char *name,
				  int max_bytes, bool required)
{
	text	   *value;
	Size		len;

	if (PG_ARGISNULL(argno))
	{
		if (required)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", name)));
		return NULL;
	}

	/* Measure before detoasting, so a huge value is rejected cheaply. */
	len = toast_raw_datum_size(PG_GETARG_DATUM(argno)) - VARHDRSZ;
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name)));
	if (len > (Size) max_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long", name),
				 errdetail("The limit is %d bytes; the value has %zu.",
						   max_bytes, len)));
	value = PG_GETARG_TEXT_PP(argno);
	return value;
}

/* interval a < interval b, using PostgreSQL's own interval ordering. */
bool
regstack_interval_lt(const Interval *a, const Interval *b)
{
	return DatumGetBool(DirectFunctionCall2(interval_lt,
											IntervalPGetDatum(a),
											IntervalPGetDatum(b)));
}

/* The interval argument argno, which must be positive; NULL stays NULL. */
Interval *
regstack_interval_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	Interval   *value;
	Interval	zero = {0};

	if (PG_ARGISNULL(argno))
		return NULL;
	value = PG_GETARG_INTERVAL_P(argno);
	if (!regstack_interval_lt(&zero, value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a positive interval", name),
				 errdetail("The value given was %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(value))))));
	return value;
}

/* Longest window accepted (and allowed by the policies' CHECK). */
#define ARGS_MAX_WINDOW_DAYS		(100 * 12 * 30)

/* A window as microseconds; see regstack.h. */
int64
regstack_interval_window_us(const Interval *within, const char *name)
{
	Interval	zero = {0};
	Interval	longest = {0};
	int64		days_us;
	int64		result;

	longest.day = ARGS_MAX_WINDOW_DAYS;
	if (!regstack_interval_lt(&zero, within))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a positive interval", name)));
	if (regstack_interval_lt(&longest, within))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not exceed 100 years", name)));
	/* Within those bounds only the parts can overflow, not the sum. */
	if (pg_mul_s64_overflow((int64) within->month * DAYS_PER_MONTH +
							within->day, USECS_PER_DAY, &days_us) ||
		pg_add_s64_overflow(days_us, within->time, &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", name)));
	return result;
}
