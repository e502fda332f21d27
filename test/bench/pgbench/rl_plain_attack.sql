-- Rate limit, plain SQL, the attack: the same check an application writes
-- for the spread keys (advisory lock, count the window, insert when under
-- the limit) on one key whose window already holds its 100 events, so it
-- counts them and inserts nothing.
BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended('login_ip/ip:203.0.113.7', 0));
INSERT INTO app.auth_rate_limit_events (key, event_type)
SELECT 'ip:203.0.113.7', 'login_ip'
 WHERE (SELECT count(*) FROM app.auth_rate_limit_events
         WHERE key = 'ip:203.0.113.7' AND event_type = 'login_ip'
           AND occurred_at > now() - interval '15 minutes') < 100;
COMMIT;
