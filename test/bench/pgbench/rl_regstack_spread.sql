-- Rate limit, regstack, one of 100,000 keys at random; every call must be
-- allowed (\gset fails the client on a denied call).
\set k random(1, 100000)
SELECT remaining FROM regstack.rate_limit_check('k' || :k, 'login_attempt',
    max_events => 1000000, within => '1 hour') WHERE allowed \gset
