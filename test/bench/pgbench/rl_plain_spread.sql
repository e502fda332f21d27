-- Rate limit, plain SQL an application writes, one of 100,000 keys at
-- random: a transaction-scoped advisory lock on the key, then count the
-- window and insert the event when under the limit (one statement).
\set k random(1, 100000)
BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended('login_attempt/k' || :k, 0));
INSERT INTO app.auth_rate_limit_events (key, event_type)
SELECT 'k' || :k, 'login_attempt'
 WHERE (SELECT count(*) FROM app.auth_rate_limit_events
         WHERE key = 'k' || :k AND event_type = 'login_attempt'
           AND occurred_at > now() - interval '1 hour') < 1000000
RETURNING id \gset
COMMIT;
