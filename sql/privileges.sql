-- Least privilege: a role with no grants can do nothing; an application
-- role granted as the README says can call every function but cannot
-- touch the tables, even after an error inside a call.
\set ECHO none
\i sql/include/err.sql
\set ECHO all
GRANT EXECUTE ON FUNCTION pg_temp.err(text) TO PUBLIC;

CREATE ROLE regress_outsider;
CREATE ROLE regress_app;
-- The README's grant for an application role:
GRANT USAGE ON SCHEMA regstack TO regress_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA regstack TO regress_app;

-- Every object, not just the ones called below: the role without grants
-- may execute no function and touch no table or view; the application role
-- may execute every function and touch no table or view.
SELECT p.oid::regprocedure AS executable_without_grant
  FROM pg_proc p WHERE p.pronamespace = 'regstack'::regnamespace
   AND has_function_privilege('regress_outsider', p.oid, 'EXECUTE');
SELECT p.oid::regprocedure AS not_executable_by_app
  FROM pg_proc p WHERE p.pronamespace = 'regstack'::regnamespace
   AND NOT has_function_privilege('regress_app', p.oid, 'EXECUTE');
SELECT c.relname AS table_reachable, r.rolname
  FROM pg_class c, pg_roles r
 WHERE c.relnamespace = 'regstack'::regnamespace AND c.relkind IN ('r', 'v')
   AND r.rolname IN ('regress_outsider', 'regress_app')
   AND has_table_privilege(r.rolname, c.oid,
                           'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER');

-- No grants: neither the schema, nor the functions, nor the tables.
SET ROLE regress_outsider;
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.auth_ephemeral_tokens$$);
RESET ROLE;
-- USAGE on the schema alone still grants nothing.
GRANT USAGE ON SCHEMA regstack TO regress_outsider;
SET ROLE regress_outsider;
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token(repeat('A', 48), 'pre_auth')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.purge_expired()$$);
SELECT pg_temp.err($$SELECT * FROM regstack.auth_ephemeral_tokens$$);
SELECT pg_temp.err($$SELECT * FROM regstack.token_types$$);
SELECT pg_temp.err($$SELECT * FROM regstack.auth_rate_limit_events$$);
RESET ROLE;
REVOKE USAGE ON SCHEMA regstack FROM regress_outsider;

-- The application role: every function works...
SET ROLE regress_app;
SELECT regstack.issue_token('pre_auth', subject => 'alice', challenge => 'c') AS tok \gset
SELECT subject FROM regstack.peek_token(:'tok', 'pre_auth', 'c');
SELECT subject FROM regstack.consume_token(:'tok', 'pre_auth', 'c');
SELECT state AS tok FROM regstack.begin_oidc_flow('google', '/home') \gset
SELECT regstack.attach_result(:'tok', 'oidc_state', 'jwt') AS attached;
SELECT result FROM regstack.consume_token(:'tok', 'oidc_state');
SELECT length(regstack.issue_token('password_reset', subject => 'alice'));
SELECT regstack.revoke_tokens('alice') AS revoked;
SELECT length(regstack.pkce_challenge(repeat('v', 43)));
SELECT * FROM regstack.purge_expired();
-- ...but no table can be read or changed directly.
SELECT pg_temp.err($$SELECT * FROM regstack.auth_ephemeral_tokens$$);
SELECT pg_temp.err($$SELECT count(*) FROM regstack.auth_ephemeral_tokens$$);
SELECT pg_temp.err($$DELETE FROM regstack.auth_ephemeral_tokens$$);
SELECT pg_temp.err($$UPDATE regstack.auth_ephemeral_tokens SET expires_at = now()$$);
SELECT pg_temp.err($$INSERT INTO regstack.auth_ephemeral_tokens (token_hash, token_type, created_at, expires_at) VALUES ('\x00', 'pre_auth', now(), now())$$);
SELECT pg_temp.err($$SELECT * FROM regstack.token_types$$);
SELECT pg_temp.err($$INSERT INTO regstack.token_types (name, default_ttl, max_ttl) VALUES ('mine', '1 hour', '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.auth_rate_limit_events$$);
-- An error inside a call (raised while running as the owner) returns the
-- caller to its own identity: still no table access afterwards.
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth')$$);
SELECT current_user;
SELECT pg_temp.err($$SELECT * FROM regstack.auth_ephemeral_tokens$$);
DO $$
BEGIN
    BEGIN
        PERFORM regstack.issue_token('oidc_state');
    EXCEPTION WHEN null_value_not_allowed THEN
        RAISE NOTICE 'caught: %', SQLERRM;
    END;
    RAISE NOTICE 'current_user after the caught error: %', current_user;
    PERFORM count(*) FROM regstack.auth_ephemeral_tokens;
END $$;
RESET ROLE;

DROP OWNED BY regress_app, regress_outsider;
DROP ROLE regress_app, regress_outsider;
TRUNCATE regstack.auth_ephemeral_tokens;
