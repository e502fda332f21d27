-- Rate limit, regstack, one shared quota key far from its limit (a
-- tenant-wide 1,000,000 calls per hour): every call allowed and recorded;
-- a run makes at most about 300,000, so no round reaches it.
SELECT remaining FROM regstack.rate_limit_check('tenant/acme', 'api_call',
    max_events => 1000000, within => '1 hour') WHERE allowed \gset
