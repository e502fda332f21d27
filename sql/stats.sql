-- regstack.stats: each call moves exactly the counters it should (and a
-- call that fails moves none); stats_reset(); who may read and reset.
-- The instance preloads regstack (test/regstack.conf) with the reaper off.
-- The counter without preloading, the overflow row, restarts, the reaper's
-- counters and concurrency are in test/t/030_stats.pl and 031_stats_sessions.pl.
\set ECHO none
\i sql/include/err.sql
\set ECHO all
TRUNCATE regstack.auth_ephemeral_tokens, regstack.auth_rate_limit_events,
         regstack.auth_rate_limit_state;

-- What moved in this database since the last reset: per row, the counters
-- that are not zero; then reset, so that each step shows its own moves.
CREATE FUNCTION pg_temp.moved() RETURNS TABLE (kind text, name text, counters text)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    SELECT s.kind, s.name, string_agg(c.key || '=' || c.value, ' ' ORDER BY c.key)
      FROM regstack.stats AS s,
           jsonb_each_text(to_jsonb(s) - '{datid,datname,kind,name,stats_reset}'::text[]) AS c
     WHERE s.datname = current_database() AND c.value <> '0'
     GROUP BY s.kind, s.name ORDER BY s.kind, s.name;
    PERFORM regstack.stats_reset();
END $$;

-- The view's columns.
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'regstack.stats'::regclass AND attnum > 0
 ORDER BY attnum;

-- Reset: nothing left, and the reset time moves.
SELECT regstack.stats_reset();
SELECT now() AS before \gset
SELECT regstack.stats_reset();
SELECT count(*) AS rows_after_reset FROM regstack.stats;
SELECT regstack.issue_token('pre_auth', subject => 'alice') AS tok \gset
SELECT kind, name, issued, consumed, allowed, stats_reset >= :'before' AS reset_since
  FROM regstack.stats WHERE datname = current_database();
SELECT * FROM pg_temp.moved();

-- Tokens.  issue_token and begin_oidc_flow: issued.
SELECT regstack.issue_token('pre_auth', subject => 'alice', challenge => 'c1') AS tok \gset
SELECT * FROM pg_temp.moved();
SELECT state AS state FROM regstack.begin_oidc_flow('google', '/home') \gset
SELECT * FROM pg_temp.moved();

-- peek_token: peeked, or peek_misses (wrong challenge, malformed).
SELECT count(*) FROM regstack.peek_token(:'tok', 'pre_auth', 'c1');
SELECT * FROM pg_temp.moved();
SELECT count(*) FROM regstack.peek_token(:'tok', 'pre_auth', 'c2');
SELECT count(*) FROM regstack.peek_token('x', 'pre_auth');
SELECT * FROM pg_temp.moved();

-- consume_token misses, each by its reason; the token stays.
SELECT count(*) FROM regstack.consume_token(:'tok', 'pre_auth', 'c2');
SELECT * FROM pg_temp.moved();
SELECT count(*) FROM regstack.consume_token(:'tok', 'pre_auth');
SELECT * FROM pg_temp.moved();
SELECT count(*) FROM regstack.consume_token(:'tok', 'oidc_exchange', 'c1');
SELECT * FROM pg_temp.moved();
SELECT count(*) FROM regstack.consume_token(repeat('A', 48), 'pre_auth');
SELECT count(*) FROM regstack.consume_token('not a token', 'pre_auth');
SELECT * FROM pg_temp.moved();
-- consumed, then a replay: not found.
SELECT count(*) FROM regstack.consume_token(:'tok', 'pre_auth', 'c1');
SELECT * FROM pg_temp.moved();
SELECT count(*) FROM regstack.consume_token(:'tok', 'pre_auth', 'c1');
SELECT * FROM pg_temp.moved();
-- expired (a type is checked before expiry, expiry before the challenge).
SELECT regstack.issue_token('pre_auth', subject => 'alice', ttl => '1 millisecond', challenge => 'c1') AS tok \gset
SELECT pg_sleep(0.01);
SELECT regstack.stats_reset();
SELECT count(*) FROM regstack.consume_token(:'tok', 'pre_auth', 'wrong');
SELECT count(*) FROM regstack.consume_token(:'tok', 'oidc_exchange');
SELECT * FROM pg_temp.moved();

-- attach_result: results_attached, or attach_misses.
SELECT regstack.attach_result(:'state', 'oidc_state', 'jwt');
SELECT regstack.attach_result(:'tok', 'pre_auth', 'jwt');
SELECT regstack.attach_result('x', 'oidc_state', 'jwt');
SELECT * FROM pg_temp.moved();

-- revoke_tokens: per type, also when no type is given.
SELECT regstack.issue_token('pre_auth', subject => 'bob') IS NOT NULL,
       regstack.issue_token('pre_auth', subject => 'bob') IS NOT NULL,
       regstack.issue_token('oidc_exchange', subject => 'bob') IS NOT NULL;
SELECT regstack.stats_reset();
SELECT regstack.revoke_tokens('bob', 'oidc_exchange');
SELECT * FROM pg_temp.moved();
SELECT regstack.revoke_tokens('bob');
SELECT * FROM pg_temp.moved();
SELECT regstack.revoke_tokens('nobody');
SELECT * FROM pg_temp.moved();

-- Per-subject caps: password_reset keeps 3, email_otp_setup 1.
SELECT count(regstack.issue_token('password_reset', subject => 'carol'))
  FROM generate_series(1, 5);
SELECT count(regstack.issue_token('email_otp_setup', subject => 'carol'))
  FROM generate_series(1, 2);
SELECT * FROM pg_temp.moved();

-- purge_expired(): purged, per type (reaped: the reaper, in 030_stats.pl).
TRUNCATE regstack.auth_ephemeral_tokens;
SELECT regstack.issue_token('pre_auth', subject => 'dave', ttl => '1 millisecond') IS NOT NULL,
       regstack.issue_token('pre_auth', subject => 'erin', ttl => '1 millisecond') IS NOT NULL,
       regstack.issue_token('download', payload => '{}', ttl => '1 millisecond') IS NOT NULL,
       regstack.issue_token('download', payload => '{}') IS NOT NULL;
SELECT pg_sleep(0.01);
SELECT regstack.stats_reset();
SELECT * FROM regstack.purge_expired();
SELECT * FROM pg_temp.moved();

-- Rate limits: allowed and recorded; allowed without recording; denied.
SELECT allowed FROM regstack.rate_limit_check('u1', '2fa_attempt');
SELECT * FROM pg_temp.moved();
SELECT allowed FROM regstack.rate_limit_check('u1', '2fa_attempt', record => false);
SELECT * FROM pg_temp.moved();
SELECT allowed FROM regstack.rate_limit_check('u2', 'custom', 1, '1 hour');
SELECT allowed FROM regstack.rate_limit_check('u2', 'custom', 1, '1 hour');
SELECT allowed FROM regstack.rate_limit_check('u2', 'custom', 1, '1 hour', record => false);
SELECT * FROM pg_temp.moved();
-- rate_limit_record: recorded only.
SELECT regstack.rate_limit_record('u1', 'login_attempt');
SELECT * FROM pg_temp.moved();
-- rate_limit_reset: keys reset, per event type; a key without events: none.
SELECT regstack.rate_limit_reset('u1', '2fa_attempt');
SELECT * FROM pg_temp.moved();
SELECT regstack.rate_limit_record('u2', 'login_attempt');
SELECT regstack.stats_reset();
SELECT regstack.rate_limit_reset('u2');
SELECT * FROM pg_temp.moved();
SELECT regstack.rate_limit_reset('nobody');
SELECT * FROM pg_temp.moved();

-- A call that fails counts nothing.
SELECT pg_temp.err($$SELECT regstack.issue_token('no_such_type', subject => 'a')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token('x', 'no_such_type')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.rate_limit_check('k', 'no_policy')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.rate_limit_check('k', '2fa_attempt', 0)$$);
SELECT * FROM pg_temp.moved();

-- Counters are not transactional: a rolled-back call still counts.
BEGIN;
SELECT regstack.issue_token('pre_auth', subject => 'frank') IS NOT NULL;
ROLLBACK;
SELECT * FROM pg_temp.moved();

-- The reaper's lag: no pass has run here (the reaper is off).
SELECT count(*) AS reaper_lag_rows FROM regstack.reaper_lag;
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'regstack.reaper_lag'::regclass AND attnum > 0
 ORDER BY attnum;

-- Privileges.  Nothing for PUBLIC; pg_monitor reads both views; only
-- pg_monitor and the owner read, and only the owner resets, even with
-- EXECUTE (the README's application grant).
SELECT c.relname, a.grantee::regrole, a.privilege_type
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.oid IN ('regstack.stats'::regclass, 'regstack.reaper_lag'::regclass)
   AND a.grantee <> c.relowner
 ORDER BY 1, 2, 3;
SELECT p.oid::regprocedure, a.grantee::regrole, a.privilege_type
  FROM pg_proc p, aclexplode(p.proacl) a
 WHERE p.oid IN ('regstack.stats()'::regprocedure, 'regstack.stats_reset()'::regprocedure,
                 'regstack.reaper_lag()'::regprocedure)
   AND a.grantee <> p.proowner
 ORDER BY 1, 2, 3;
CREATE ROLE regress_monitor IN ROLE pg_monitor;
CREATE ROLE regress_nobody;
CREATE ROLE regress_app;
GRANT USAGE ON SCHEMA regstack TO regress_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA regstack TO regress_app;
GRANT EXECUTE ON FUNCTION pg_temp.err(text) TO PUBLIC;
SELECT regstack.issue_token('pre_auth', subject => 'gina') IS NOT NULL;
SET ROLE regress_monitor;
SELECT kind, name, issued FROM regstack.stats WHERE datname = current_database();
SELECT count(*) FROM regstack.reaper_lag;
SELECT pg_temp.err($$SELECT regstack.stats_reset()$$);
SELECT pg_temp.err($$SELECT * FROM regstack.auth_ephemeral_tokens$$);
RESET ROLE;
SET ROLE regress_nobody;
SELECT pg_temp.err($$SELECT * FROM regstack.stats$$);
RESET ROLE;
-- With USAGE on the schema, still nothing.
GRANT USAGE ON SCHEMA regstack TO regress_nobody;
SET ROLE regress_nobody;
SELECT pg_temp.err($$SELECT * FROM regstack.stats$$);
SELECT pg_temp.err($$SELECT * FROM regstack.stats()$$);
SELECT pg_temp.err($$SELECT * FROM regstack.reaper_lag$$);
SELECT pg_temp.err($$SELECT regstack.stats_reset()$$);
RESET ROLE;
-- The application role may execute every function, but not read these.
SET ROLE regress_app;
SELECT pg_temp.err($$SELECT * FROM regstack.stats$$);
SELECT pg_temp.err($$SELECT * FROM regstack.stats()$$);
SELECT pg_temp.err($$SELECT * FROM regstack.reaper_lag()$$);
SELECT pg_temp.err($$SELECT regstack.stats_reset()$$);
RESET ROLE;
SELECT * FROM pg_temp.moved();
DROP OWNED BY regress_app, regress_nobody;
DROP ROLE regress_monitor, regress_nobody, regress_app;
TRUNCATE regstack.auth_ephemeral_tokens, regstack.auth_rate_limit_events,
         regstack.auth_rate_limit_state;
