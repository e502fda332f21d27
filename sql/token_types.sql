-- The token type registry: user types, constraints, the builtin flag,
-- replacing a shipped type, and cache invalidation on change.

\set ECHO none
\i sql/include/err.sql
\set ECHO all

-- A user type: usable at once, marked as not builtin (so pg_dump keeps it).
INSERT INTO regstack.token_types (name, default_ttl, max_ttl, required_fields)
VALUES ('invite', '2 days', '7 days', '{subject,payload}');
SELECT name, builtin FROM regstack.token_types WHERE name = 'invite';
SELECT pg_temp.err($$SELECT regstack.issue_token('invite', subject => 'carol')$$);
SELECT length(regstack.issue_token('invite', subject => 'carol', payload => '{"team": 7}'));
SELECT subject, payload, expires_at - created_at AS ttl
  FROM regstack.auth_ephemeral_tokens WHERE token_type = 'invite';

-- An update is seen by the next call in the same session (cache invalidated).
UPDATE regstack.token_types SET required_fields = '{subject}' WHERE name = 'invite';
SELECT length(regstack.issue_token('invite', subject => 'carol'));

-- ... and rolled back with the transaction that made it.
BEGIN;
UPDATE regstack.token_types SET max_ttl = '3 days', default_ttl = '1 day' WHERE name = 'invite';
SELECT pg_temp.err($$SELECT regstack.issue_token('invite', subject => 'carol', ttl => '4 days')$$);
ROLLBACK;
SELECT length(regstack.issue_token('invite', subject => 'carol', ttl => '4 days'));

-- Deleting a type: new tokens of it are refused, the hint lists the rest.
DELETE FROM regstack.token_types WHERE name = 'invite';
SELECT pg_temp.err($$SELECT regstack.issue_token('invite', subject => 'carol')$$);
DELETE FROM regstack.auth_ephemeral_tokens WHERE token_type = 'invite';

-- Changing a shipped type makes it a user row, which pg_dump keeps.
UPDATE regstack.token_types SET default_ttl = '10 minutes' WHERE name = 'pre_auth';
SELECT name, default_ttl, builtin FROM regstack.token_types WHERE name = 'pre_auth';
UPDATE regstack.token_types SET default_ttl = '5 minutes' WHERE name = 'pre_auth';

-- Inserting a row named like a shipped type replaces the shipped row (this
-- is how a restore brings back a changed shipped type).
INSERT INTO regstack.token_types (name, default_ttl, max_ttl, required_fields)
VALUES ('download', '1 hour', '2 days', '{}');
SELECT name, default_ttl, max_ttl, required_fields, builtin
  FROM regstack.token_types WHERE name = 'download';
-- ... but a user row is not replaced: a duplicate is an error.
SELECT pg_temp.err($$INSERT INTO regstack.token_types (name, default_ttl, max_ttl) VALUES ('download', '1 hour', '2 days')$$);

-- Constraints on registry rows.
SELECT pg_temp.err($$INSERT INTO regstack.token_types (name, default_ttl, max_ttl) VALUES ('t1', '0', '1 hour')$$);
SELECT pg_temp.err($$INSERT INTO regstack.token_types (name, default_ttl, max_ttl) VALUES ('t1', '2 hours', '1 hour')$$);
SELECT pg_temp.err($$INSERT INTO regstack.token_types (name, default_ttl, max_ttl) VALUES ('t1', '1 hour', '101 years')$$);
SELECT pg_temp.err($$INSERT INTO regstack.token_types (name, default_ttl, max_ttl, required_fields) VALUES ('t1', '1 hour', '1 hour', '{subject,colour}')$$);
SELECT pg_temp.err($$INSERT INTO regstack.token_types (name, default_ttl, max_ttl, required_fields) VALUES ('t1', '1 hour', '1 hour', '{NULL}')$$);
SELECT pg_temp.err($$INSERT INTO regstack.token_types (name, default_ttl, max_ttl, max_live_per_subject) VALUES ('t1', '1 hour', '1 hour', 0)$$);
SELECT pg_temp.err($$INSERT INTO regstack.token_types (name, default_ttl, max_ttl) VALUES (repeat('x', 64), '1 hour', '1 hour')$$);

-- The per-subject cap: password_reset keeps the 3 newest live tokens.
CREATE TEMP TABLE resets AS
SELECT i, regstack.issue_token('password_reset', subject => 'dave') AS tok
  FROM generate_series(1, 5) AS i;
SELECT i AS still_live FROM resets
 WHERE EXISTS (SELECT 1 FROM regstack.peek_token(tok, 'password_reset'))
 ORDER BY i;
-- A cap does not reach across subjects or types.
SELECT length(regstack.issue_token('password_reset', subject => 'erin'));
SELECT length(regstack.issue_token('pre_auth', subject => 'dave'));
SELECT subject, token_type, count(*)
  FROM regstack.auth_ephemeral_tokens GROUP BY 1, 2 ORDER BY 1, 2;

-- The registry trigger refuses to be called any other way.
SELECT pg_temp.err($$SELECT regstack.registry_trigger()$$);
-- ... and to fire with an argument it does not know.
CREATE TEMP TABLE registry_misuse (name text, builtin boolean);
CREATE TRIGGER registry_misuse_row BEFORE INSERT ON registry_misuse
    FOR EACH ROW EXECUTE FUNCTION regstack.registry_trigger('name', 'bogus');
SELECT pg_temp.err($$INSERT INTO registry_misuse VALUES ('x', false)$$);

-- Put the shipped 'download' type back for the other tests.
DELETE FROM regstack.token_types WHERE name = 'download';
INSERT INTO regstack.token_types (name, default_ttl, max_ttl, required_fields, description)
VALUES ('download', '15 minutes', '7 days', '{payload}',
        'one-time download link; the payload names what to download');
TRUNCATE regstack.auth_ephemeral_tokens;
