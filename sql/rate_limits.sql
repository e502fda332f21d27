-- Rate limits: rate_limit_check, rate_limit_record, rate_limit_reset, the
-- policy registry, purge, privileges and every error.

SET intervalstyle = postgres;

-- How many events of a key the log holds.
CREATE FUNCTION rl_events(k text, t text) RETURNS bigint LANGUAGE sql AS
$$ SELECT count(*) FROM regstack.auth_rate_limit_events
   WHERE key = k AND event_type = t $$;

-- The shipped policies.
SELECT event_type, max_events, within, builtin
  FROM regstack.rate_limit_policies ORDER BY event_type;

-- pg_dump keeps user policies, and the event log with its state.
SELECT c.relname, x.cond
  FROM pg_extension e,
       unnest(e.extconfig, e.extcondition) AS x(oid, cond)
       JOIN pg_class c ON c.oid = x.oid
 WHERE e.extname = 'regstack' ORDER BY c.relname;

-- A policy's numbers: login_attempt allows 10 in 15 minutes.
SELECT allowed, remaining, retry_after,
       reset_at - clock_timestamp() BETWEEN '14 minutes 59 seconds' AND '15 minutes' AS reset_in_15_min
  FROM regstack.rate_limit_check('alice', 'login_attempt');
SELECT rl_events('alice', 'login_attempt');

-- record => false counts without recording; remaining is what is left.
SELECT allowed, remaining, retry_after
  FROM regstack.rate_limit_check('alice', 'login_attempt', record => false);
SELECT rl_events('alice', 'login_attempt');

-- A key that never had an event: nothing is created by a check-only call.
SELECT allowed, remaining, retry_after,
       reset_at <= clock_timestamp() AS empty_now
  FROM regstack.rate_limit_check('nobody', 'login_attempt', record => false);
SELECT count(*) FROM regstack.auth_rate_limit_state WHERE key = 'nobody';

-- Explicit numbers: three allowed, then denied; a denied call records nothing.
SELECT allowed, remaining, retry_after
  FROM regstack.rate_limit_check('bob', 'api', 3, '1 hour');
SELECT allowed, remaining, retry_after
  FROM regstack.rate_limit_check('bob', 'api', 3, '1 hour');
SELECT allowed, remaining, retry_after
  FROM regstack.rate_limit_check('bob', 'api', 3, '1 hour');
SELECT allowed, remaining, retry_after
  FROM regstack.rate_limit_check('bob', 'api', 3, '1 hour');
SELECT allowed, remaining, retry_after
  FROM regstack.rate_limit_check('bob', 'api', 3, '1 hour', record => false);
SELECT rl_events('bob', 'api');

-- retry_after is whole seconds, rounded up: here the oldest event leaves
-- the hour-long window in just under an hour.
SELECT retry_after = '1 hour' AS retry_one_hour,
       reset_at - (SELECT max(occurred_at) FROM regstack.auth_rate_limit_events
                    WHERE key = 'bob' AND event_type = 'api') AS reset_after_newest
  FROM regstack.rate_limit_check('bob', 'api', 3, '1 hour');

-- A larger max_events lets the same key through; keys and event types are
-- independent.
SELECT allowed, remaining
  FROM regstack.rate_limit_check('bob', 'api', 5, '1 hour');
SELECT allowed, remaining
  FROM regstack.rate_limit_check('bob', 'other', 3, '1 hour');
SELECT allowed, remaining
  FROM regstack.rate_limit_check('carol', 'api', 3, '1 hour');

-- Only one of max_events and within: the other comes from the policy.
SELECT allowed, remaining
  FROM regstack.rate_limit_check('dave', '2fa_attempt', max_events => 2);
SELECT allowed, remaining
  FROM regstack.rate_limit_check('dave', '2fa_attempt', max_events => 2);
SELECT allowed, remaining, retry_after > '14 minutes' AS policy_window
  FROM regstack.rate_limit_check('dave', '2fa_attempt', max_events => 2);
SELECT allowed, remaining
  FROM regstack.rate_limit_check('dave', '2fa_attempt', within => '1 hour');

-- The 2FA flow: record failures, check before verifying, reset on success.
SELECT regstack.rate_limit_record('erin', '2fa_attempt') FROM generate_series(1, 4);
SELECT allowed, remaining
  FROM regstack.rate_limit_check('erin', '2fa_attempt', record => false);
SELECT regstack.rate_limit_record('erin', '2fa_attempt');
SELECT allowed, remaining, retry_after > '0' AS must_wait
  FROM regstack.rate_limit_check('erin', '2fa_attempt', record => false);
-- rate_limit_record is unconditional: it records past the limit.
SELECT regstack.rate_limit_record('erin', '2fa_attempt');
SELECT rl_events('erin', '2fa_attempt');
SELECT regstack.rate_limit_reset('erin', '2fa_attempt');
SELECT allowed, remaining
  FROM regstack.rate_limit_check('erin', '2fa_attempt', record => false);
SELECT regstack.rate_limit_reset('erin', '2fa_attempt');

-- reset without an event type forgets every event type of the key.
SELECT regstack.rate_limit_reset('bob');
SELECT rl_events('bob', 'api') + rl_events('bob', 'other') AS left_over;
SELECT count(*) FROM regstack.auth_rate_limit_state WHERE key = 'bob';
SELECT allowed, remaining
  FROM regstack.rate_limit_check('bob', 'api', 3, '1 hour');
SELECT regstack.rate_limit_reset('nobody');

-- retry_after is honest: waiting exactly that long succeeds.  Two events
-- in a 1.5-second window, then the third call is denied for 2 seconds
-- (1.5 rounded up); after sleeping 2 seconds it is allowed.
SELECT allowed FROM regstack.rate_limit_check('frank', 'short', 2, '1.5 seconds');
SELECT allowed FROM regstack.rate_limit_check('frank', 'short', 2, '1.5 seconds');
SELECT allowed, remaining, retry_after
  FROM regstack.rate_limit_check('frank', 'short', 2, '1.5 seconds') \gset
SELECT :'allowed' AS allowed, :'remaining' AS remaining, :'retry_after' AS retry_after;
SELECT pg_sleep(extract(epoch FROM :'retry_after'::interval));
SELECT allowed, remaining
  FROM regstack.rate_limit_check('frank', 'short', 2, '1.5 seconds');
-- Past the window the old events no longer count.
SELECT allowed, remaining
  FROM regstack.rate_limit_check('frank', 'short', 2, '1.5 seconds');
SELECT rl_events('frank', 'short');

-- With more events than max_events (recorded unconditionally), retry_after
-- waits for enough of them to leave, not just the oldest.
SELECT regstack.rate_limit_record('gina', 'short');
SELECT pg_sleep(1);
SELECT regstack.rate_limit_record('gina', 'short') FROM generate_series(1, 2);
-- 3 events; max 2 needs the second one (1 second younger) to leave too.
SELECT allowed, retry_after
  FROM regstack.rate_limit_check('gina', 'short', 2, '3 seconds', record => false);
SELECT allowed, retry_after
  FROM regstack.rate_limit_check('gina', 'short', 1, '3 seconds', record => false);

-- The window is found in the log whatever within each call uses.  100
-- events, one a minute, the newest 30 seconds ago (written directly, as if
-- left by an earlier state row that purge removed).
INSERT INTO regstack.auth_rate_limit_events (key, event_type, seq, occurred_at)
SELECT 'henry', 'scan', 99 - i, clock_timestamp() - (i * interval '1 minute') - interval '30 seconds'
  FROM generate_series(0, 99) AS i;
SELECT w AS within, remaining AS events_left_room_for
  FROM unnest(ARRAY['10 minutes', '30 minutes', '5 minutes', '50 minutes',
                    '50 minutes', '1 minute', '2 hours', '20 seconds',
                    '99 minutes', '10 minutes']::interval[]) WITH ORDINALITY AS u(w, n),
       LATERAL regstack.rate_limit_check('henry', 'scan', 1000, w, record => false)
 ORDER BY n;
-- Recording continues the sequence after the leftover events.
SELECT allowed, remaining
  FROM regstack.rate_limit_check('henry', 'scan', 1000, '10 minutes');
SELECT max(seq), count(*) FROM regstack.auth_rate_limit_events WHERE key = 'henry';
SELECT next_seq FROM regstack.auth_rate_limit_state WHERE key = 'henry';

-- The per-key clock never runs backwards: when a call has already judged
-- the key at a later time (as after the system clock stepped back by an
-- hour), new events are recorded at that time, and retry_after still counts
-- from the real clock, so waiting it out succeeds.
INSERT INTO regstack.auth_rate_limit_state (key, event_type, next_seq, start_seq, clock_at)
VALUES ('ivan', 'clock', 0, 0, clock_timestamp() + interval '1 hour');
SELECT allowed, remaining
  FROM regstack.rate_limit_check('ivan', 'clock', 2, '10 minutes');
SELECT allowed, remaining
  FROM regstack.rate_limit_check('ivan', 'clock', 2, '10 minutes');
SELECT allowed, remaining, retry_after
  FROM regstack.rate_limit_check('ivan', 'clock', 2, '10 minutes');
SELECT seq, occurred_at >= clock_timestamp() + interval '59 minutes' AS at_key_clock
  FROM regstack.auth_rate_limit_events WHERE key = 'ivan' ORDER BY seq;
SELECT regstack.rate_limit_reset('ivan');

-- retry_after: when enough of the oldest events have left that fewer than
-- max_events remain.  Six events an hour's window holds, 50, 40, 30, 30,
-- 20 and 10 minutes old (two equally old), written directly.
BEGIN;
INSERT INTO regstack.auth_rate_limit_events (key, event_type, seq, occurred_at)
SELECT 'six', 'scan', seq, now() - age
  FROM (VALUES (0, interval '50 minutes'), (1, interval '40 minutes'),
               (2, interval '30 minutes'), (3, interval '30 minutes'),
               (4, interval '20 minutes'), (5, interval '10 minutes'))
       AS e(seq, age);
INSERT INTO regstack.auth_rate_limit_state (key, event_type, next_seq, start_seq, last_at, clock_at)
VALUES ('six', 'scan', 6, 0, now() - interval '10 minutes', now() - interval '10 minutes');
COMMIT;
SELECT allowed, remaining
  FROM regstack.rate_limit_check('six', 'scan', 10, '1 hour', record => false);
-- max 6: the oldest (50 minutes) must go; max 4: the third oldest, one of
-- the two 30-minute-old ones; max 2: the fifth (20 minutes); max 1: the
-- newest.
SELECT m AS max_events, allowed, retry_after,
       reset_at = (SELECT max(occurred_at) + interval '1 hour'
                     FROM regstack.auth_rate_limit_events WHERE key = 'six') AS resets_with_newest
  FROM unnest(ARRAY[6, 5, 4, 3, 2, 1]) AS m,
       LATERAL regstack.rate_limit_check('six', 'scan', m, '1 hour', record => false);
-- A shorter window holds only the newer events.
SELECT allowed, remaining, retry_after
  FROM regstack.rate_limit_check('six', 'scan', 3, '35 minutes', record => false);
-- A recording call counts all six and continues the sequence.
SELECT allowed, remaining
  FROM regstack.rate_limit_check('six', 'scan', 10, '1 hour');
SELECT next_seq, start_seq FROM regstack.auth_rate_limit_state WHERE key = 'six';
SELECT regstack.rate_limit_reset('six');
-- A call that fails while it writes (its event's seq is taken by a row
-- written behind regstack's back: 23505, with the key in the context)
-- leaves no lock behind: the same session calls again at once, inside an
-- exception block too.
BEGIN;
INSERT INTO regstack.auth_rate_limit_events (key, event_type, seq, occurred_at)
VALUES ('dup', 'scan', 0, now());
INSERT INTO regstack.auth_rate_limit_state (key, event_type, next_seq, start_seq, clock_at)
VALUES ('dup', 'scan', 0, 0, now());
COMMIT;
SELECT allowed FROM regstack.rate_limit_check('dup', 'scan', 10, '1 hour');
DO $$
BEGIN
  PERFORM regstack.rate_limit_check('dup', 'scan', 10, '1 hour');
EXCEPTION WHEN unique_violation THEN
  RAISE NOTICE 'caught %', SQLSTATE;
END
$$;
SELECT allowed, remaining FROM regstack.rate_limit_check('dup2', 'scan', 10, '1 hour');
SELECT locktype, mode FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype IN ('advisory', 'tuple', 'transactionid');
SELECT regstack.rate_limit_reset('dup'), regstack.rate_limit_reset('dup2');
-- An index a DBA adds to the events table gets its entries, and its
-- constraint holds: an exclusion constraint refuses a second event of a
-- key (23P01).
CREATE INDEX dba_events_at ON regstack.auth_rate_limit_events (occurred_at);
ALTER TABLE regstack.auth_rate_limit_events
  ADD CONSTRAINT dba_one_event EXCLUDE USING btree (key WITH =)
  WHERE (key OPERATOR(pg_catalog.=) 'dba');
SELECT allowed FROM regstack.rate_limit_check('dba', 'scan', 10, '1 hour');
SELECT regstack.rate_limit_record('dba', 'scan');
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM regstack.auth_rate_limit_events
 WHERE occurred_at > now() - interval '1 minute' AND key || '' = 'dba';
SELECT count(*) FROM regstack.auth_rate_limit_events
 WHERE occurred_at > now() - interval '1 minute' AND key || '' = 'dba';
RESET enable_seqscan;
RESET enable_bitmapscan;
ALTER TABLE regstack.auth_rate_limit_events DROP CONSTRAINT dba_one_event;
DROP INDEX regstack.dba_events_at;
SELECT regstack.rate_limit_reset('dba');
-- regstack.rate_limit_lanes (1.0) is gone: the prefix is reserved.
SET regstack.rate_limit_lanes = 1;

-- User policies: used at once, kept by pg_dump (builtin = false), and a
-- changed shipped policy becomes a user row.
INSERT INTO regstack.rate_limit_policies (event_type, max_events, within, builtin)
VALUES ('sms_send', 2, '1 day', true);
SELECT event_type, max_events, within, builtin
  FROM regstack.rate_limit_policies WHERE event_type = 'sms_send';
SELECT allowed, remaining
  FROM regstack.rate_limit_check('+15550100', 'sms_send');
UPDATE regstack.rate_limit_policies SET max_events = 1 WHERE event_type = 'sms_send';
SELECT allowed, remaining
  FROM regstack.rate_limit_check('+15550100', 'sms_send');
UPDATE regstack.rate_limit_policies SET max_events = 20 WHERE event_type = 'email_send';
SELECT event_type, max_events, builtin
  FROM regstack.rate_limit_policies WHERE event_type = 'email_send';
SELECT remaining FROM regstack.rate_limit_check('x@example.com', 'email_send');
-- A restore inserts a changed shipped row over the one CREATE EXTENSION made.
INSERT INTO regstack.rate_limit_policies (event_type, max_events, within)
VALUES ('login_ip', 500, '1 hour');
SELECT event_type, max_events, within, builtin
  FROM regstack.rate_limit_policies WHERE event_type = 'login_ip';
DELETE FROM regstack.rate_limit_policies WHERE event_type = 'sms_send';
SELECT * FROM regstack.rate_limit_check('+15550100', 'sms_send');
-- The table's constraints.
INSERT INTO regstack.rate_limit_policies (event_type, max_events, within)
VALUES ('bad', 0, '1 hour');
INSERT INTO regstack.rate_limit_policies (event_type, max_events, within)
VALUES ('bad', 1, '0 seconds');
INSERT INTO regstack.rate_limit_policies (event_type, max_events, within)
VALUES ('bad', 1, '101 years');
INSERT INTO regstack.rate_limit_policies (event_type, max_events, within)
VALUES (repeat('t', 64), 1, '1 hour');

-- Bad input: precise SQLSTATEs, never XX000.
\set VERBOSITY sqlstate
\echo null key, null event type, null record: 22004
SELECT * FROM regstack.rate_limit_check(NULL, 'api', 3, '1 hour');
SELECT * FROM regstack.rate_limit_check('k', NULL, 3, '1 hour');
SELECT * FROM regstack.rate_limit_check('k', 'api', 3, '1 hour', NULL);
SELECT regstack.rate_limit_record(NULL, 'api');
SELECT regstack.rate_limit_record('k', NULL);
SELECT regstack.rate_limit_reset(NULL);
SELECT regstack.rate_limit_reset(NULL, 'api');
\echo empty key or event type, max_events or within not positive, within over 100 years: 22023
SELECT * FROM regstack.rate_limit_check('', 'api', 3, '1 hour');
SELECT * FROM regstack.rate_limit_check('k', '', 3, '1 hour');
SELECT * FROM regstack.rate_limit_check('k', 'api', 0, '1 hour');
SELECT * FROM regstack.rate_limit_check('k', 'api', -1, '1 hour');
SELECT * FROM regstack.rate_limit_check('k', 'api', 3, '0 seconds');
SELECT * FROM regstack.rate_limit_check('k', 'api', 3, '-1 hour');
SELECT * FROM regstack.rate_limit_check('k', 'api', 3, '1 month -31 days');
SELECT * FROM regstack.rate_limit_check('k', 'api', 3, '100 years 1 day');
SELECT * FROM regstack.rate_limit_check('k', 'login_attempt', 0);
SELECT regstack.rate_limit_record('', 'api');
SELECT regstack.rate_limit_reset('k', '');
\echo key over 1024 bytes, event type over 63 bytes: 22001
SELECT * FROM regstack.rate_limit_check(repeat('k', 1025), 'api', 3, '1 hour');
SELECT * FROM regstack.rate_limit_check('k', repeat('t', 64), 3, '1 hour');
SELECT regstack.rate_limit_record(repeat('é', 513), 'api');
SELECT regstack.rate_limit_reset(repeat('k', 1025));
\echo the limits themselves are accepted
SELECT allowed FROM regstack.rate_limit_check(repeat('k', 1024), repeat('t', 63), 1, '100 years');
SELECT regstack.rate_limit_reset(repeat('k', 1024));
\echo max_events without within (or within without max_events) and no policy: 22004
SELECT * FROM regstack.rate_limit_check('k', 'api', 3);
SELECT * FROM regstack.rate_limit_check('k', 'api', within => '1 hour');
\echo neither and no policy: 22023
SELECT * FROM regstack.rate_limit_check('k', 'api');
\set VERBOSITY default
-- The messages name the argument or the event type.
SELECT * FROM regstack.rate_limit_check('k', 'api');
SELECT * FROM regstack.rate_limit_check('k', 'api', 3);
SELECT * FROM regstack.rate_limit_check('k', 'api', 3, '-1 hour');
SELECT * FROM regstack.rate_limit_check(repeat('k', 1025), 'api', 3, '1 hour');
SELECT regstack.rate_limit_record('k', NULL);

-- Purge: events older than their policy's window (plus a minute's margin),
-- or than regstack.event_retention without a policy, and state rows whose
-- newest event is that old.  Nothing inside a window goes.
SELECT count(regstack.rate_limit_reset(key)) > 0 AS cleared
  FROM (SELECT key FROM regstack.auth_rate_limit_events
        UNION SELECT key FROM regstack.auth_rate_limit_state) AS k;
SELECT count(*) FROM regstack.auth_rate_limit_events;
SHOW regstack.event_retention;
INSERT INTO regstack.auth_rate_limit_events (key, event_type, seq, occurred_at) VALUES
    ('p1', '2fa_attempt', 0, clock_timestamp() - interval '20 minutes'),  -- past 15 min + 1
    ('p1', '2fa_attempt', 1, clock_timestamp() - interval '14 minutes'),  -- inside
    ('p1', 'custom', 0, clock_timestamp() - interval '25 hours'),         -- past 1 day + 1 min
    ('p1', 'custom', 1, clock_timestamp() - interval '23 hours'),         -- kept
    ('p2', 'login_attempt', 0, clock_timestamp() - interval '17 minutes'), -- past
    ('p2', 'login_attempt', 1, clock_timestamp() - interval '15 minutes 30 seconds'); -- within the margin
INSERT INTO regstack.auth_rate_limit_state (key, event_type, next_seq, start_seq, last_at, clock_at) VALUES
    ('p1', '2fa_attempt', 2, 0, clock_timestamp() - interval '14 minutes', clock_timestamp()),
    ('p3', 'custom', 1, 1, clock_timestamp() - interval '2 days', clock_timestamp() - interval '2 days');
SELECT * FROM regstack.purge_expired();
SELECT key, event_type, seq FROM regstack.auth_rate_limit_events ORDER BY 1, 2, 3;
SELECT key, event_type FROM regstack.auth_rate_limit_state ORDER BY 1, 2;
-- A shorter retention (superuser setting) purges the custom event too.
SET regstack.event_retention = '1h';
SELECT * FROM regstack.purge_expired();
RESET regstack.event_retention;
SELECT key, event_type, seq FROM regstack.auth_rate_limit_events ORDER BY 1, 2, 3;
-- The remaining event still counts.
SELECT allowed, remaining
  FROM regstack.rate_limit_check('p1', '2fa_attempt', record => false);
SELECT regstack.rate_limit_reset('p1');
SELECT * FROM regstack.purge_expired();

-- Privileges: nothing for PUBLIC; EXECUTE is all an application needs.
CREATE ROLE regress_rl_app;
GRANT USAGE ON SCHEMA regstack TO regress_rl_app;
SET ROLE regress_rl_app;
SELECT * FROM regstack.rate_limit_check('app', 'api', 1, '1 minute');
RESET ROLE;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA regstack TO regress_rl_app;
SET ROLE regress_rl_app;
SET search_path = pg_temp;
SELECT allowed, remaining FROM regstack.rate_limit_check('app', 'api', 1, '1 minute');
SELECT allowed, remaining FROM regstack.rate_limit_check('app', 'api', 1, '1 minute');
SELECT regstack.rate_limit_record('app', 'api');
SELECT regstack.rate_limit_reset('app');
SELECT count(*) FROM regstack.auth_rate_limit_events;
SELECT count(*) FROM regstack.rate_limit_policies;
RESET search_path;
RESET ROLE;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA regstack FROM regress_rl_app;
REVOKE ALL ON SCHEMA regstack FROM regress_rl_app;
DROP ROLE regress_rl_app;
DROP FUNCTION rl_events(text, text);
-- Called in a select list, rate_limit_check returns the same row as one
-- composite value.
SELECT (regstack.rate_limit_check('select-list', 'api', 2, '1 hour')).allowed AS first;
SELECT c.ok, c.left_now
  FROM regstack.rate_limit_check('select-list', 'api', 2, '1 hour') AS c(ok, left_now);
SELECT (r).allowed, (r).remaining, (r).retry_after > '0' AS must_wait
  FROM (SELECT regstack.rate_limit_check('select-list', 'api', 2, '1 hour') AS r) AS s;
SELECT regstack.rate_limit_reset('select-list');

-- Put the shipped numbers back for the tests that follow.
UPDATE regstack.rate_limit_policies SET max_events = 5 WHERE event_type = 'email_send';
UPDATE regstack.rate_limit_policies SET max_events = 100, within = '15 minutes'
 WHERE event_type = 'login_ip';
SELECT regstack.rate_limit_reset('p2');
SELECT count(*) AS events_left FROM regstack.auth_rate_limit_events;
