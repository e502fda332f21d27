-- test/bench/sql/setup.sql: the contenders of regstack's benchmark, run by
-- test/bench/run.sh as the superuser in the benchmark database.
--
--   regstack  the extension, called by the application role bench_app with
--             exactly the grants the README gives an application
--   app       the plain SQL an application writes, on the seed
--             application's table shapes, owned by bench_app
--   plpg      the same API as regstack's, written in PL/pgSQL, on regstack's
--             table shapes, with the same checks, SECURITY DEFINER with a
--             pinned search_path (how a PL/pgSQL version meets the same
--             privilege rules)
\set ON_ERROR_STOP on
SET client_min_messages = warning;

CREATE EXTENSION regstack;
CREATE EXTENSION pgcrypto;          -- gen_random_bytes for app and plpg
CREATE ROLE bench_app LOGIN;
GRANT USAGE ON SCHEMA regstack TO bench_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA regstack TO bench_app;

------------------------------------------------------------------------
-- (a) plain SQL: the seed application's tables (surrogate id, unique token
-- column holding the SHA-256 of the token in hex, index on expiry; a
-- rate-limit event log with an index that serves the window count).
------------------------------------------------------------------------
CREATE SCHEMA app AUTHORIZATION bench_app;
SET ROLE bench_app;
CREATE TABLE app.auth_ephemeral_tokens (
    id            bigserial PRIMARY KEY,
    token         varchar(128) NOT NULL UNIQUE,
    token_type    varchar(20) NOT NULL,
    username      varchar(150),
    provider_id   integer,
    nonce         varchar(128),
    code_verifier varchar(128),
    challenge_id  varchar(128),
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_ephemeral_tokens_expires_at ON app.auth_ephemeral_tokens (expires_at);

CREATE TABLE app.auth_rate_limit_events (
    id          bigserial PRIMARY KEY,
    key         varchar(150) NOT NULL,
    event_type  varchar(20) NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_rate_limit_events_window
    ON app.auth_rate_limit_events (key, event_type, occurred_at);
RESET ROLE;

------------------------------------------------------------------------
-- (b) PL/pgSQL: regstack's API and table shapes, the same checks.
------------------------------------------------------------------------
CREATE SCHEMA plpg;
CREATE TABLE plpg.token_types (LIKE regstack.token_types INCLUDING ALL);
INSERT INTO plpg.token_types SELECT * FROM regstack.token_types;
CREATE TABLE plpg.secret_keys (LIKE regstack.secret_keys INCLUDING ALL);
INSERT INTO plpg.secret_keys SELECT * FROM regstack.secret_keys;
-- The same columns and indexes as regstack's table: the primary key
-- (subject_tag, token_hash) and no other index.
CREATE TABLE plpg.auth_ephemeral_tokens
    (LIKE regstack.auth_ephemeral_tokens INCLUDING ALL);

-- The row consume_token returns.
CREATE TYPE plpg.token_row AS (
    token_type text, subject text, provider text, nonce text,
    code_verifier text, redirect_to text, mode text, linking_user_id text,
    result text, payload jsonb, created_at timestamptz, expires_at timestamptz);

-- issue_token: regstack.issue_token in PL/pgSQL.
CREATE FUNCTION plpg.issue_token(
    token_type text, subject text DEFAULT NULL, ttl interval DEFAULT NULL,
    provider text DEFAULT NULL, nonce text DEFAULT NULL,
    code_verifier text DEFAULT NULL, challenge text DEFAULT NULL,
    redirect_to text DEFAULT NULL, mode text DEFAULT NULL,
    linking_user_id text DEFAULT NULL, result text DEFAULT NULL,
    payload jsonb DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    names CONSTANT text[] := ARRAY['subject', 'provider', 'nonce', 'code_verifier',
        'challenge', 'redirect_to', 'mode', 'linking_user_id', 'result'];
    vals text[];
    t plpg.token_types;
    f text;
    tok text;
    issued timestamptz;
    tag integer := 0;
BEGIN
    IF token_type IS NULL THEN
        RAISE EXCEPTION 'token_type must not be null' USING ERRCODE = '22004';
    ELSIF token_type = '' THEN
        RAISE EXCEPTION 'token_type must not be empty' USING ERRCODE = '22023';
    ELSIF octet_length(token_type) > 63 THEN
        RAISE EXCEPTION 'token_type is too long' USING ERRCODE = '22001';
    END IF;
    vals := ARRAY[subject, provider, nonce, code_verifier, challenge,
                  redirect_to, mode, linking_user_id, result];
    FOR i IN 1 .. 9 LOOP
        IF vals[i] = '' THEN
            RAISE EXCEPTION '% must not be empty', names[i] USING ERRCODE = '22023';
        ELSIF octet_length(vals[i]) > (CASE WHEN i = 9 THEN 16384 ELSE 4096 END) THEN
            RAISE EXCEPTION '% is too long', names[i] USING ERRCODE = '22001';
        END IF;
    END LOOP;
    IF octet_length(payload::text) > 16384 THEN
        RAISE EXCEPTION 'payload is too large' USING ERRCODE = '54000';
    END IF;
    IF ttl IS NOT NULL AND ttl <= interval '0' THEN
        RAISE EXCEPTION 'ttl must be a positive interval' USING ERRCODE = '22023';
    END IF;

    SELECT * INTO t FROM plpg.token_types WHERE name = issue_token.token_type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown token type "%"', token_type USING ERRCODE = '22023',
            HINT = 'Known types: ' || (SELECT string_agg(name, ', ' ORDER BY name)
                                         FROM plpg.token_types) || '.';
    END IF;
    FOREACH f IN ARRAY t.required_fields LOOP
        IF (CASE f WHEN 'payload' THEN payload IS NULL
                   ELSE vals[array_position(names, f)] IS NULL END) THEN
            RAISE EXCEPTION 'token type "%" requires %', t.name, f USING ERRCODE = '22004';
        END IF;
    END LOOP;
    IF mode IS NOT NULL AND mode NOT IN ('signin', 'link') THEN
        RAISE EXCEPTION 'mode must be ''signin'' or ''link''' USING ERRCODE = '22023';
    ELSIF mode = 'link' AND linking_user_id IS NULL THEN
        RAISE EXCEPTION 'mode ''link'' requires linking_user_id' USING ERRCODE = '22004';
    ELSIF mode IS DISTINCT FROM 'link' AND linking_user_id IS NOT NULL THEN
        RAISE EXCEPTION 'linking_user_id is only allowed with mode ''link''' USING ERRCODE = '22023';
    END IF;
    IF ttl IS NULL THEN
        ttl := t.default_ttl;
    ELSIF ttl > t.max_ttl THEN
        RAISE EXCEPTION 'ttl exceeds the maximum for token type "%"', t.name
            USING ERRCODE = '22023';
    END IF;

    -- The subject tag: the first 32 bits of HMAC-SHA-256 of the subject.
    IF subject IS NOT NULL THEN
        tag := ('x' || encode(substring(public.hmac(convert_to(subject, 'UTF8'),
                   (SELECT secret FROM plpg.secret_keys WHERE name = 'subject_tag'),
                   'sha256') FROM 1 FOR 4), 'hex'))::bit(32)::integer;
    END IF;
    IF t.max_live_per_subject IS NOT NULL AND subject IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(t.name || '/' || subject, 0));
        DELETE FROM plpg.auth_ephemeral_tokens
         WHERE subject_tag = tag AND subject = issue_token.subject AND token_type = t.name
           AND token_hash <> ALL (ARRAY(
               SELECT token_hash FROM plpg.auth_ephemeral_tokens
                WHERE subject_tag = tag AND subject = issue_token.subject
                  AND token_type = t.name
                  AND expires_at > clock_timestamp()
                ORDER BY created_at DESC, token_hash DESC
                LIMIT t.max_live_per_subject - 1));
    END IF;

    -- The tag and 256 random bits: 36 bytes, 48 characters, no padding.
    tok := translate(encode(int4send(tag) || public.gen_random_bytes(32), 'base64'), '+/', '-_');
    issued := clock_timestamp();
    INSERT INTO plpg.auth_ephemeral_tokens
        (subject_tag, token_hash, token_type, subject, provider, nonce, code_verifier,
         challenge_hash, redirect_to, mode, linking_user_id, result, payload,
         created_at, expires_at)
    VALUES (tag, sha256(convert_to(tok, 'UTF8')), t.name, issue_token.subject,
            issue_token.provider, issue_token.nonce, issue_token.code_verifier,
            sha256(convert_to(issue_token.challenge, 'UTF8')),
            issue_token.redirect_to, issue_token.mode, issue_token.linking_user_id,
            issue_token.result, issue_token.payload, issued, issued + ttl);
    RETURN tok;
END
$$;

-- consume_token: regstack.consume_token in PL/pgSQL (one DELETE ... RETURNING).
CREATE FUNCTION plpg.consume_token(token text, token_type text, challenge text DEFAULT NULL)
RETURNS SETOF plpg.token_row
LANGUAGE plpgsql VOLATILE SECURITY DEFINER ROWS 1
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF token IS NULL THEN
        RAISE EXCEPTION 'token must not be null' USING ERRCODE = '22004';
    ELSIF token_type IS NULL THEN
        RAISE EXCEPTION 'token_type must not be null' USING ERRCODE = '22004';
    ELSIF token = '' OR token_type = '' OR challenge = '' THEN
        RAISE EXCEPTION 'arguments must not be empty' USING ERRCODE = '22023';
    ELSIF octet_length(token) > 512 OR octet_length(token_type) > 4096
          OR octet_length(challenge) > 4096 THEN
        RAISE EXCEPTION 'argument is too long' USING ERRCODE = '22001';
    END IF;
    IF token !~ '^[A-Za-z0-9_-]{48}$' THEN
        RETURN;                     -- never issued: no row, no lookup
    END IF;
    RETURN QUERY
    DELETE FROM plpg.auth_ephemeral_tokens
     WHERE subject_tag = ('x' || encode(substring(decode(translate(substr(consume_token.token, 1, 8),
                                                                   '-_', '+/'), 'base64')
                                                  FROM 1 FOR 4), 'hex'))::bit(32)::integer
       AND token_hash = sha256(convert_to(consume_token.token, 'UTF8'))
       AND token_type = consume_token.token_type
       AND expires_at > clock_timestamp()
       AND (challenge_hash IS NULL
            OR challenge_hash = sha256(convert_to(consume_token.challenge, 'UTF8')))
    RETURNING token_type, subject, provider, nonce, code_verifier, redirect_to,
              mode, linking_user_id, result, payload, created_at, expires_at;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA plpg FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA plpg FROM PUBLIC;
GRANT USAGE ON SCHEMA plpg TO bench_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA plpg TO bench_app;

------------------------------------------------------------------------
-- Reaper workload: a template of expired token rows, copied into the
-- table under test before each contender (sorted by primary key, so the
-- copy is quick), and the plain-SQL batched delete.
------------------------------------------------------------------------
CREATE SCHEMA bench;
CREATE TABLE bench.expired_template (LIKE regstack.auth_ephemeral_tokens);

-- Fill the template with n expired pre_auth rows.  Their subject tags are
-- hashint4 of the subject, not the keyed HMAC regstack computes: the rows
-- are only ever reaped, which reads no tag, and this spreads them over
-- the primary key as real tags would.
CREATE PROCEDURE bench.make_expired(n bigint)
LANGUAGE sql
AS $$
    TRUNCATE bench.expired_template;
    INSERT INTO bench.expired_template
        (subject_tag, token_hash, token_type, subject, created_at, expires_at)
    SELECT hashint4((i % 100000)::integer), h, 'pre_auth', 'user' || (i % 100000),
           now() - interval '10 minutes', now() - interval '5 minutes'
      FROM (SELECT i, sha256(int8send(i)) AS h FROM generate_series(1, n) AS i) AS s
     ORDER BY 1, 2;
$$;

-- The plain-SQL reaper an application schedules: batched ctid deletes of
-- expired rows from regstack.auth_ephemeral_tokens, one committed
-- transaction per batch, until a batch comes back short.
CREATE PROCEDURE bench.plain_batched_delete(batch int, INOUT deleted bigint DEFAULT 0)
LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
BEGIN
    deleted := 0;
    LOOP
        DELETE FROM regstack.auth_ephemeral_tokens
         WHERE ctid = ANY (ARRAY(SELECT ctid FROM regstack.auth_ephemeral_tokens
                                  WHERE expires_at < now() LIMIT batch));
        GET DIAGNOSTICS n = ROW_COUNT;
        deleted := deleted + n;
        COMMIT;
        EXIT WHEN n < batch;
    END LOOP;
END
$$;

-- What the reaper reports for this database: rows deleted since the server
-- started, and the start and end of its last (or current) pass.  (Not
-- checked at creation: a build without the reaper has no reaper_status.)
SET check_function_bodies = off;
CREATE FUNCTION bench.reaper(OUT deleted bigint, OUT pass_start timestamptz, OUT pass_end timestamptz)
LANGUAGE sql
AS $$
    SELECT coalesce(sum(total_deleted), 0)::bigint, max(last_pass_start), max(last_pass_end)
      FROM regstack.reaper_status WHERE datname = current_database()
$$;
RESET check_function_bodies;

-- Wait until the reaper has deleted target rows in all (bench.reaper()),
-- then, separately timed by the caller, until the pass that did it has
-- ended (pass_end set, after since); error after timeout.  Polls shared
-- memory every 20 ms from one session, committing each time so that it
-- holds no snapshot (which would keep the deleted rows from being pruned).
CREATE PROCEDURE bench.wait_reaped(target bigint, timeout interval DEFAULT '120 seconds')
LANGUAGE plpgsql
AS $$
DECLARE
    give_up timestamptz := clock_timestamp() + timeout;
BEGIN
    WHILE (SELECT deleted FROM bench.reaper()) < target LOOP
        IF clock_timestamp() > give_up THEN
            RAISE EXCEPTION 'the reaper did not finish within %', timeout;
        END IF;
        PERFORM pg_sleep(0.02);
        COMMIT;
    END LOOP;
END
$$;

CREATE PROCEDURE bench.wait_pass_end(since timestamptz, timeout interval DEFAULT '10 seconds')
LANGUAGE plpgsql
AS $$
DECLARE
    give_up timestamptz := clock_timestamp() + timeout;
BEGIN
    WHILE (SELECT pass_end IS NULL OR pass_end < since OR pass_end < pass_start
             FROM bench.reaper()) LOOP
        IF clock_timestamp() > give_up THEN
            RAISE EXCEPTION 'the reaper''s pass did not end within %', timeout;
        END IF;
        PERFORM pg_sleep(0.02);
        COMMIT;
    END LOOP;
END
$$;
