-- Rate limit, plain SQL, one hot key (the count grows with the window).
BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended('login_attempt/hot', 0));
INSERT INTO app.auth_rate_limit_events (key, event_type)
SELECT 'hot', 'login_attempt'
 WHERE (SELECT count(*) FROM app.auth_rate_limit_events
         WHERE key = 'hot' AND event_type = 'login_attempt'
           AND occurred_at > now() - interval '1 hour') < 1000000
RETURNING id \gset
COMMIT;
