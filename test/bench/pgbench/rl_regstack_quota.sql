-- Rate limit, regstack, one shared quota key far from its limit (a
-- tenant-wide 100,000 calls per hour): every call allowed and recorded.
SELECT remaining FROM regstack.rate_limit_check('tenant/acme', 'api_call',
    max_events => 100000, within => '1 hour') WHERE allowed \gset
