-- Rate limit, plain SQL, the shared quota key: advisory lock, count the
-- window (it grows with every call), insert when under 1,000,000.
BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended('api_call/tenant/acme', 0));
INSERT INTO app.auth_rate_limit_events (key, event_type)
SELECT 'tenant/acme', 'api_call'
 WHERE (SELECT count(*) FROM app.auth_rate_limit_events
         WHERE key = 'tenant/acme' AND event_type = 'api_call'
           AND occurred_at > now() - interval '1 hour') < 1000000
RETURNING id \gset
COMMIT;
