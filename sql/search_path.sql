-- A hostile search_path changes nothing.  An application role creates, in
-- public, functions and operators shadowing every name regstack's
-- implementation could resolve; each raises an error if ever called.  With
-- public first in its search_path the role then runs every function: the
-- results are the normal ones and no hostile object runs.
\set ECHO none
\i sql/include/err.sql
\set ECHO all
GRANT EXECUTE ON FUNCTION pg_temp.err(text) TO PUBLIC;

CREATE ROLE regress_hostile;
GRANT USAGE ON SCHEMA regstack TO regress_hostile;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA regstack TO regress_hostile;
GRANT CREATE ON SCHEMA public TO regress_hostile;

SET ROLE regress_hostile;
CREATE FUNCTION public.hostile() RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'a hostile object was called'; END $$;
CREATE FUNCTION public.hostile_text(text, text) RETURNS boolean
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'a hostile text operator was called'; END $$;
CREATE FUNCTION public.hostile_bytea(bytea, bytea) RETURNS boolean
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'a hostile bytea operator was called'; END $$;
CREATE FUNCTION public.hostile_tid(tid, tid) RETURNS boolean
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'a hostile tid operator was called'; END $$;
CREATE FUNCTION public.hostile_tstz(timestamptz, timestamptz) RETURNS boolean
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'a hostile timestamptz operator was called'; END $$;
CREATE FUNCTION public.hostile_ts(timestamptz, interval) RETURNS timestamptz
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'a hostile operator was called'; END $$;
CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'hostile clock_timestamp() called'; END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'hostile now() called'; END $$;
CREATE FUNCTION public.sha256(bytea) RETURNS bytea LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'hostile sha256() called'; END $$;
CREATE FUNCTION public.digest(text, text) RETURNS bytea LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'hostile digest() called'; END $$;
CREATE FUNCTION public.gen_random_bytes(integer) RETURNS bytea LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'hostile gen_random_bytes() called'; END $$;
CREATE FUNCTION public.octet_length(text) RETURNS integer LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'hostile octet_length() called'; END $$;
CREATE FUNCTION public.encode(bytea, text) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'hostile encode() called'; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hostile_text);
CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hostile_text);
CREATE OPERATOR public.= (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = public.hostile_bytea);
CREATE OPERATOR public.<> (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = public.hostile_bytea);
CREATE OPERATOR public.= (LEFTARG = tid, RIGHTARG = tid, FUNCTION = public.hostile_tid);
CREATE OPERATOR public.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.hostile_tstz);
CREATE OPERATOR public.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.hostile_tstz);
CREATE OPERATOR public.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.hostile_tstz);
CREATE OPERATOR public.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = public.hostile_ts);
CREATE OPERATOR public.- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = public.hostile_ts);
-- A look-alike table, too.
CREATE TABLE public.auth_ephemeral_tokens (token_hash bytea);

SET search_path = public, pg_catalog;
-- The shadows are live: the role's own unqualified SQL would call them.
SELECT pg_temp.err($$SELECT now()$$);
SELECT pg_temp.err($$SELECT clock_timestamp()$$);
SELECT pg_temp.err($$SELECT 'a'::text = 'a'::text$$);
SELECT pg_temp.err($$SELECT 'a'::text <> 'b'::text$$);
SELECT pg_temp.err($$SELECT '\x00'::bytea = '\x00'::bytea$$);
SELECT pg_temp.err($$SELECT '(0,1)'::tid = '(0,1)'::tid$$);
SELECT pg_temp.err($$SELECT now() > now()$$);
SELECT pg_temp.err($$SELECT pg_catalog.now() > pg_catalog.now()$$);
SELECT pg_temp.err($$SELECT pg_catalog.now() + '1 day'::interval$$);

-- Every regstack function, with results checked by regstack itself.
SELECT regstack.issue_token('pre_auth', subject => 'alice', challenge => 'c') AS tok \gset
SELECT subject FROM regstack.peek_token(:'tok', 'pre_auth', 'c');
SELECT count(*) AS wrong_challenge FROM regstack.consume_token(:'tok', 'pre_auth', 'x');
SELECT subject FROM regstack.consume_token(:'tok', 'pre_auth', 'c');
SELECT count(*) AS replay FROM regstack.consume_token(:'tok', 'pre_auth', 'c');
SELECT state AS tok FROM regstack.begin_oidc_flow('google', '/home') \gset
SELECT regstack.attach_result(:'tok', 'oidc_state', 'jwt') AS attached;
SELECT result FROM regstack.consume_token(:'tok', 'oidc_state');
SELECT count(regstack.issue_token('password_reset', subject => 'bob')) FROM generate_series(1, 5);
SELECT regstack.revoke_tokens('bob', 'password_reset') AS revoked_within_cap;
SELECT regstack.pkce_challenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk');
SELECT regstack.issue_token('pre_auth', subject => 'carol', ttl => '1 second') IS NOT NULL AS issued;
SELECT pg_sleep(1.1);
SELECT * FROM regstack.purge_expired();
SELECT pg_temp.err($$SELECT regstack.issue_token('no_such_type')$$);
-- Rate limits, through the fast and the general path, and a denial.
SELECT allowed, remaining FROM regstack.rate_limit_check('k1', '2fa_attempt');
SELECT allowed, remaining FROM regstack.rate_limit_check('k1', '2fa_attempt');
SELECT regstack.rate_limit_record('k1', '2fa_attempt');
SELECT allowed, remaining FROM regstack.rate_limit_check('k1', '2fa_attempt', record => false);
SELECT allowed, remaining, retry_after > '0' AS must_wait
  FROM regstack.rate_limit_check('k2', 'api', 1, '1 hour');
SELECT allowed, remaining, retry_after > '0' AS must_wait
  FROM regstack.rate_limit_check('k2', 'api', 1, '1 hour');
SELECT allowed FROM regstack.rate_limit_check('k2', 'api', 1, '2 hours');
SELECT regstack.rate_limit_reset('k1') AS reset_events;
SELECT pg_temp.err($$SELECT * FROM regstack.rate_limit_check('k3', 'no_policy')$$);
-- An empty search_path works too.
SET search_path = '';
SELECT length(regstack.issue_token('pre_auth', subject => 'dave'));
SELECT regstack.revoke_tokens('dave') AS revoked;
SELECT allowed FROM regstack.rate_limit_check('k4', '2fa_attempt');
RESET search_path;
RESET ROLE;

-- The look-alike table was never written.
SELECT count(*) AS lookalike_rows FROM public.auth_ephemeral_tokens;
DROP OWNED BY regress_hostile;
REVOKE CREATE ON SCHEMA public FROM regress_hostile;
DROP ROLE regress_hostile;
TRUNCATE regstack.auth_ephemeral_tokens, regstack.auth_rate_limit_events,
         regstack.auth_rate_limit_state;
