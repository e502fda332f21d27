-- The guard (src/tables.c): a change a DBA makes to a table regstack
-- writes directly is either honoured (an added index, row security
-- enabled but not forced) or refused with 55000 naming it, by every
-- function that touches the table; undoing the change makes every call
-- work again at once, in the same session.

-- outcome(statement): 'ok', or the SQLSTATE of its error.
CREATE FUNCTION pg_temp.outcome(statement text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'ok';
EXCEPTION WHEN others THEN
    RETURN SQLSTATE;
END $$;

-- message(statement): the error a statement raises, with its hint.
CREATE FUNCTION pg_temp.message(statement text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    message text; hint text;
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ': ' || message || ' (hint: ' || hint || ')';
END $$;

-- Every function that touches the tokens table (or the rate-limit tables),
-- each on rows made before the change: a live token, a capped subject's
-- token, a key with history.
CREATE FUNCTION pg_temp.token_calls() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    results text[] := '{}';
BEGIN
    results := results
        || ('issue ' || pg_temp.outcome($q$SELECT regstack.issue_token('pre_auth', subject => 'g')$q$))
        || ('cap ' || pg_temp.outcome($q$SELECT regstack.issue_token('email_otp_setup', subject => 'g')$q$))
        || ('oidc ' || pg_temp.outcome($q$SELECT * FROM regstack.begin_oidc_flow('p', 'https://x')$q$))
        || ('peek ' || pg_temp.outcome(format($q$SELECT * FROM regstack.peek_token(%L, 'pre_auth')$q$,
                                             current_setting('guard.token'))))
        || ('attach ' || pg_temp.outcome(format($q$SELECT regstack.attach_result(%L, 'pre_auth', 'r')$q$,
                                               current_setting('guard.token'))))
        || ('consume ' || pg_temp.outcome(format($q$SELECT * FROM regstack.consume_token(%L, 'pre_auth')$q$,
                                                current_setting('guard.token'))))
        || ('revoke ' || pg_temp.outcome($q$SELECT regstack.revoke_tokens('g')$q$))
        || ('purge ' || pg_temp.outcome($q$SELECT * FROM regstack.purge_expired()$q$));
    RETURN array_to_string(results, ', ');
END $$;

CREATE FUNCTION pg_temp.rate_calls() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    results text[] := '{}';
BEGIN
    results := results
        || ('check ' || pg_temp.outcome($q$SELECT * FROM regstack.rate_limit_check('g', 'guard', 100, '1 hour')$q$))
        || ('check_only ' || pg_temp.outcome($q$SELECT * FROM regstack.rate_limit_check('g', 'guard', 100, '1 hour', record => false)$q$))
        || ('new_key ' || pg_temp.outcome($q$SELECT * FROM regstack.rate_limit_check('g' || clock_timestamp(), 'guard', 100, '1 hour')$q$))
        || ('record ' || pg_temp.outcome($q$SELECT regstack.rate_limit_record('g', 'guard')$q$))
        || ('reset ' || pg_temp.outcome($q$SELECT regstack.rate_limit_reset('g2')$q$))
        || ('purge ' || pg_temp.outcome($q$SELECT * FROM regstack.purge_expired()$q$));
    RETURN array_to_string(results, ', ');
END $$;

-- change(table, change, undo): the calls on that table with the change
-- made, the message of the first refused one, and the calls once it is
-- undone.
CREATE FUNCTION pg_temp.change(tbl text, change text, undo text,
                               OUT during text, OUT message text, OUT undone text)
LANGUAGE plpgsql AS $$
DECLARE
    token_table boolean := tbl = 'auth_ephemeral_tokens';
BEGIN
    PERFORM set_config('guard.token', regstack.issue_token('pre_auth', subject => 'g'), false);
    PERFORM regstack.rate_limit_record('g', 'guard');
    EXECUTE change;
    during := CASE WHEN token_table THEN pg_temp.token_calls() ELSE pg_temp.rate_calls() END;
    message := pg_temp.message(CASE WHEN token_table
                                    THEN $q$SELECT regstack.issue_token('pre_auth', subject => 'g')$q$
                                    ELSE $q$SELECT * FROM regstack.rate_limit_check('g', 'guard', 100, '1 hour')$q$ END);
    EXECUTE undo;
    PERFORM set_config('guard.token', regstack.issue_token('pre_auth', subject => 'g'), false);
    undone := CASE WHEN token_table THEN pg_temp.token_calls() ELSE pg_temp.rate_calls() END;
END $$;

\pset format unaligned
\pset fieldsep '\n'
\pset recordsep '\n\n'
\pset tuples_only on

-- Without a change (and without Citus) every call works.
SELECT set_config('guard.token', regstack.issue_token('pre_auth', subject => 'g'), false) IS NOT NULL;
SELECT pg_temp.token_calls();
SELECT pg_temp.rate_calls();

-- A trigger function for the triggers below.
CREATE FUNCTION public.guard_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;

-- Each kind of change on each table regstack writes (%1$s is the table).
CREATE TABLE pg_temp.changes (tbl text, change text, undo text);
INSERT INTO pg_temp.changes
SELECT t, c, u
  FROM unnest(ARRAY['auth_ephemeral_tokens', 'auth_rate_limit_state', 'auth_rate_limit_events']) AS t,
       (VALUES
        ('ALTER TABLE %1$s ADD COLUMN tenant text NOT NULL DEFAULT ''acme''',
         'ALTER TABLE %1$s DROP COLUMN tenant'),
        ('ALTER TABLE %1$s ADD COLUMN note text',
         'ALTER TABLE %1$s DROP COLUMN note'),
        ('ALTER TABLE %1$s ADD CONSTRAINT dba_check CHECK (event_type <> ''mallory'')',
         'ALTER TABLE %1$s DROP CONSTRAINT dba_check'),
        ('CREATE TRIGGER audit BEFORE INSERT OR UPDATE OR DELETE ON %1$s FOR EACH ROW EXECUTE FUNCTION public.guard_trigger()',
         'DROP TRIGGER audit ON %1$s'),
        ('CREATE TRIGGER audit AFTER INSERT OR DELETE ON %1$s FOR EACH ROW EXECUTE FUNCTION public.guard_trigger()',
         'DROP TRIGGER audit ON %1$s'),
        ('CREATE TRIGGER audit AFTER TRUNCATE ON %1$s FOR EACH STATEMENT EXECUTE FUNCTION public.guard_trigger()',
         'DROP TRIGGER audit ON %1$s'),
        ('CREATE RULE audit AS ON DELETE TO %1$s DO ALSO NOTIFY regstack_audit',
         'DROP RULE audit ON %1$s'),
        ('ALTER TABLE %1$s ENABLE ROW LEVEL SECURITY',
         'ALTER TABLE %1$s DISABLE ROW LEVEL SECURITY'),
        ('ALTER TABLE %1$s ENABLE ROW LEVEL SECURITY; ALTER TABLE %1$s FORCE ROW LEVEL SECURITY',
         'ALTER TABLE %1$s NO FORCE ROW LEVEL SECURITY; ALTER TABLE %1$s DISABLE ROW LEVEL SECURITY'),
        ('CREATE INDEX dba_index ON %1$s (created_at)',
         'DROP INDEX regstack.dba_index'),
        ('ALTER TABLE %1$s ADD CONSTRAINT dba_unique UNIQUE (token_hash)',
         'ALTER TABLE %1$s DROP CONSTRAINT dba_unique'),
        ('ALTER TABLE %1$s ADD CONSTRAINT dba_unique UNIQUE (token_hash) DEFERRABLE',
         'ALTER TABLE %1$s DROP CONSTRAINT dba_unique'),
        ('CREATE PUBLICATION guard_pub FOR TABLE %1$s',
         'DROP PUBLICATION guard_pub'),
        ('ALTER TABLE %1$s REPLICA IDENTITY NOTHING; CREATE PUBLICATION guard_pub FOR TABLE %1$s',
         'DROP PUBLICATION guard_pub; ALTER TABLE %1$s REPLICA IDENTITY DEFAULT'),
        ('CREATE TABLE public.guard_child () INHERITS (%1$s)',
         'DROP TABLE public.guard_child'),
        ('CREATE TABLE public.guard_parent (LIKE %1$s) PARTITION BY LIST (event_type);
          ALTER TABLE public.guard_parent ATTACH PARTITION %1$s DEFAULT',
         'ALTER TABLE public.guard_parent DETACH PARTITION %1$s; DROP TABLE public.guard_parent')
       ) AS x(c, u);
-- The tokens table has no event_type or key; the rate-limit tables no
-- created_at or token_hash: each table gets the change on its own columns.
UPDATE pg_temp.changes
   SET change = replace(change, 'event_type', 'token_type'),
       undo = replace(undo, 'event_type', 'token_type')
 WHERE tbl = 'auth_ephemeral_tokens';
UPDATE pg_temp.changes
   SET change = replace(change, 'created_at', 'event_type'),
       undo = replace(undo, 'created_at', 'event_type')
 WHERE tbl <> 'auth_ephemeral_tokens';
UPDATE pg_temp.changes
   SET change = replace(change, '(token_hash)', '(key, event_type, clock_at)')
 WHERE tbl = 'auth_rate_limit_state';
UPDATE pg_temp.changes
   SET change = replace(change, '(token_hash)', '(key, event_type, occurred_at)')
 WHERE tbl = 'auth_rate_limit_events';
-- Column changes, per table: a default, NOT NULL set and dropped, a type.
INSERT INTO pg_temp.changes VALUES
  ('auth_ephemeral_tokens', 'ALTER TABLE %1$s ALTER COLUMN subject SET DEFAULT ''nobody''',
   'ALTER TABLE %1$s ALTER COLUMN subject DROP DEFAULT'),
  ('auth_ephemeral_tokens', 'DELETE FROM %1$s WHERE subject IS NULL; ALTER TABLE %1$s ALTER COLUMN subject SET NOT NULL',
   'ALTER TABLE %1$s ALTER COLUMN subject DROP NOT NULL'),
  ('auth_ephemeral_tokens', 'ALTER TABLE %1$s ALTER COLUMN expires_at DROP NOT NULL',
   'ALTER TABLE %1$s ALTER COLUMN expires_at SET NOT NULL'),
  ('auth_ephemeral_tokens', 'ALTER TABLE %1$s ALTER COLUMN mode TYPE varchar(10)',
   'ALTER TABLE %1$s ALTER COLUMN mode TYPE text'),
  ('auth_ephemeral_tokens', 'CREATE TABLE public.guard_ref (tag int, hash bytea, FOREIGN KEY (tag, hash) REFERENCES %1$s)',
   'DROP TABLE public.guard_ref'),
  ('auth_ephemeral_tokens', 'CREATE PUBLICATION guard_pub FOR TABLE %1$s WHERE (subject <> ''internal'')',
   'DROP PUBLICATION guard_pub'),
  ('auth_rate_limit_state', 'ALTER TABLE %1$s ALTER COLUMN next_seq SET DEFAULT 0',
   'ALTER TABLE %1$s ALTER COLUMN next_seq DROP DEFAULT'),
  ('auth_rate_limit_state', 'UPDATE %1$s SET start_at = clock_at WHERE start_at IS NULL; ALTER TABLE %1$s ALTER COLUMN start_at SET NOT NULL',
   'ALTER TABLE %1$s ALTER COLUMN start_at DROP NOT NULL'),
  ('auth_rate_limit_state', 'ALTER TABLE %1$s ALTER COLUMN key TYPE varchar',
   'ALTER TABLE %1$s ALTER COLUMN key TYPE text COLLATE "C"'),
  ('auth_rate_limit_events', 'ALTER TABLE %1$s ALTER COLUMN occurred_at DROP NOT NULL',
   'ALTER TABLE %1$s ALTER COLUMN occurred_at SET NOT NULL'),
  ('auth_rate_limit_events', 'CREATE TABLE public.guard_keys (key text COLLATE "C" PRIMARY KEY);
     ALTER TABLE %1$s ADD CONSTRAINT dba_fk FOREIGN KEY (key) REFERENCES public.guard_keys NOT VALID',
   'ALTER TABLE %1$s DROP CONSTRAINT dba_fk; DROP TABLE public.guard_keys');
-- A publication is honoured: the direct updates and deletes check the
-- replica identity it needs, as UPDATE and DELETE do, with the executor's
-- own error (55000) where a row would change.  Not testable here: a table
-- access method other than heap (PostgreSQL ships none), and Citus
-- (test/citus/smoke.sh runs the guard on a Citus cluster).

-- (client_min_messages: CREATE PUBLICATION warns that wal_level is not
-- logical, which does not matter here.)
SET client_min_messages = error;
SELECT tbl || ': ' || regexp_replace(change, '\s+', ' ', 'g') AS change, r.*
  FROM pg_temp.changes,
       LATERAL pg_temp.change(tbl, format(change, 'regstack.' || tbl),
                              format(undo, 'regstack.' || tbl)) AS r
 ORDER BY tbl, change;
RESET client_min_messages;

-- An index a DBA adds is maintained by the direct writes: the plan uses
-- it and finds the rows the calls wrote.
CREATE INDEX dba_subject ON regstack.auth_ephemeral_tokens (subject);
CREATE INDEX dba_occurred ON regstack.auth_rate_limit_events (occurred_at);
\pset format aligned
\pset recordsep '\n'
\pset tuples_only off
SELECT regstack.issue_token('pre_auth', subject => 'indexed') IS NOT NULL AS issued;
SELECT regstack.rate_limit_record('indexed', 'guard');
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM regstack.auth_ephemeral_tokens WHERE subject = 'indexed';
SELECT count(*) FROM regstack.auth_ephemeral_tokens WHERE subject = 'indexed';
EXPLAIN (COSTS OFF) SELECT count(*) FROM regstack.auth_rate_limit_events WHERE occurred_at > now() - interval '1 minute';
SELECT count(*) > 0 FROM regstack.auth_rate_limit_events WHERE occurred_at > now() - interval '1 minute';
RESET enable_seqscan;
RESET enable_bitmapscan;
DROP INDEX regstack.dba_subject;
DROP INDEX regstack.dba_occurred;

DROP FUNCTION public.guard_trigger();
-- Changes made and undone by another session: test/isolation/specs/table_guard_sessions.spec.

-- Leave no rows behind for the tests that follow.
DELETE FROM regstack.auth_ephemeral_tokens
 WHERE subject IN ('g', 'indexed') OR (subject IS NULL AND provider = 'p');
DELETE FROM regstack.auth_rate_limit_events WHERE event_type = 'guard';
DELETE FROM regstack.auth_rate_limit_state WHERE event_type = 'guard';
