-- Rate limit on Citus (test/bench/citus.sh), one of 100,000 keys at random,
-- written so that Citus can delegate it: the whole statement is the call
-- (no WHERE), the key a constant once pgbench binds it.  The limit is so
-- high that every call is allowed, as in rl_regstack_spread.sql.
\set k random(1, 100000)
SELECT allowed FROM regstack.rate_limit_check('k' || :k, 'login_attempt',
    max_events => 1000000, within => '1 hour') \gset
