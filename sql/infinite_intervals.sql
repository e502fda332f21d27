-- Infinite intervals.  From PostgreSQL 17 on the interval type accepts
-- 'infinity' and '-infinity', so they reach regstack, whose own checks
-- refuse them (expected/infinite_intervals_1.out); before 17 the interval
-- input refuses them (expected/infinite_intervals.out).  Either way no
-- token is issued and no event recorded.
\set ECHO none
\i sql/include/err.sql
\set ECHO all

SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'infinite', ttl => 'infinity')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'infinite', ttl => '-infinity')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.begin_oidc_flow('google', '/', ttl => 'infinity')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.rate_limit_check('infinite', 'login_attempt', 5, 'infinity')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.rate_limit_check('infinite', 'login_attempt', 5, '-infinity')$$);
SELECT pg_temp.err($$INSERT INTO regstack.rate_limit_policies (event_type, max_events, within)
                     VALUES ('infinite', 5, 'infinity')$$);
SELECT count(*) AS tokens FROM regstack.auth_ephemeral_tokens WHERE subject = 'infinite';
SELECT count(*) AS events FROM regstack.auth_rate_limit_events WHERE key = 'infinite';
