-- regstack install script, part 1: the single-use token store.
-- The parts in sql/install/ are concatenated, in name order, into the
-- install script of the current version (regstack--1.1.sql) by the
-- Makefile.  Released versions keep their own script (regstack--1.0.sql)
-- and reach this one through the upgrade scripts (regstack--1.0--1.1.sql):
-- a change here needs the same change there.

\echo Use "CREATE EXTENSION regstack" to load this file. \quit

-- The registry of token types.  Rows with builtin = true are the ones this
-- script ships; pg_dump keeps the others (see pg_extension_config_dump
-- below), and inserting a row named like a shipped one replaces it.
CREATE TABLE regstack.token_types (
    name                 text PRIMARY KEY
        CONSTRAINT token_types_name_check
        CHECK (pg_catalog.octet_length(name) OPERATOR(pg_catalog.<=) 63),
    default_ttl          interval NOT NULL,
    max_ttl              interval NOT NULL,
    required_fields      text[] NOT NULL DEFAULT '{}',
    max_live_per_subject integer
        CONSTRAINT token_types_cap_check
        CHECK (max_live_per_subject OPERATOR(pg_catalog.>) 0),
    description          text,
    builtin              boolean NOT NULL DEFAULT false,
    CONSTRAINT token_types_ttl_check
        CHECK (default_ttl OPERATOR(pg_catalog.>) '0'::interval
               AND default_ttl OPERATOR(pg_catalog.<=) max_ttl
               AND max_ttl OPERATOR(pg_catalog.<=) '100 years'::interval),
    CONSTRAINT token_types_required_fields_check
        CHECK (required_fields OPERATOR(pg_catalog.<@)
               ARRAY['subject', 'provider', 'nonce', 'code_verifier',
                     'challenge', 'redirect_to', 'mode', 'linking_user_id',
                     'result', 'payload']::text[])
);

COMMENT ON TABLE regstack.token_types IS
'Registry of token types: TTLs, required fields and an optional cap on live tokens per subject';

CREATE FUNCTION regstack.registry_trigger()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'regstack_registry_trigger';

COMMENT ON FUNCTION regstack.registry_trigger() IS
'Trigger on registry tables: marks user rows, replaces shipped rows, invalidates caches';

CREATE TRIGGER token_types_row
    BEFORE INSERT OR UPDATE ON regstack.token_types
    FOR EACH ROW EXECUTE FUNCTION regstack.registry_trigger('name');
CREATE TRIGGER token_types_statement
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON regstack.token_types
    FOR EACH STATEMENT EXECUTE FUNCTION regstack.registry_trigger();

INSERT INTO regstack.token_types
    (name, default_ttl, max_ttl, required_fields, max_live_per_subject, description)
VALUES
    ('pre_auth', '5 minutes', '15 minutes', '{subject}', NULL,
     'issued after the password check, consumed when the second factor is verified'),
    ('oidc_state', '5 minutes', '15 minutes',
     '{provider,nonce,code_verifier,redirect_to,mode}', NULL,
     'OAuth/OIDC state: PKCE verifier, nonce, provider, landing page, mode'),
    ('oidc_exchange', '2 minutes', '5 minutes', '{subject}', NULL,
     'bridge from the OAuth callback to the single-page app'),
    ('password_reset', '1 hour', '24 hours', '{subject}', 3,
     'single-use password reset link'),
    ('email_otp_setup', '10 minutes', '1 hour', '{subject}', 1,
     'confirmation of an email one-time-password setup'),
    ('download', '15 minutes', '7 days', '{payload}', NULL,
     'one-time download link; the payload names what to download');

SELECT pg_catalog.pg_extension_config_dump('regstack.token_types',
                                           'WHERE NOT builtin');

-- Keys regstack derives values from, made by CREATE EXTENSION.  One today:
-- 'subject_tag', the HMAC-SHA-256 key of subject tags (below).  pg_dump
-- keeps every row, and inserting a row replaces any row of the same name
-- (registry_trigger's 'replace'), so a restore puts back the dumped key over
-- the one CREATE EXTENSION made and a restored database finds its tokens'
-- subjects.
CREATE TABLE regstack.secret_keys (
    name    text PRIMARY KEY
        CONSTRAINT secret_keys_name_check
        CHECK (pg_catalog.octet_length(name) OPERATOR(pg_catalog.<=) 63),
    secret  bytea NOT NULL
        CONSTRAINT secret_keys_secret_check
        CHECK (pg_catalog.octet_length(secret) OPERATOR(pg_catalog.>=) 16
               AND pg_catalog.octet_length(secret) OPERATOR(pg_catalog.<=) 64),
    builtin boolean NOT NULL DEFAULT false
);

COMMENT ON TABLE regstack.secret_keys IS
'Keys made by CREATE EXTENSION (subject_tag: keys subject tags); changing one makes revoke_tokens and per-subject caps miss tokens issued before';

CREATE TRIGGER secret_keys_row
    BEFORE INSERT OR UPDATE ON regstack.secret_keys
    FOR EACH ROW EXECUTE FUNCTION regstack.registry_trigger('name', 'replace');
CREATE TRIGGER secret_keys_statement
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON regstack.secret_keys
    FOR EACH STATEMENT EXECUTE FUNCTION regstack.registry_trigger();

-- 32 bytes from pg_strong_random (gen_random_uuid: 122 random bits each).
INSERT INTO regstack.secret_keys (name, secret)
VALUES ('subject_tag',
        pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
        OPERATOR(pg_catalog.||) pg_catalog.uuid_send(pg_catalog.gen_random_uuid()));

SELECT pg_catalog.pg_extension_config_dump('regstack.secret_keys', '');

-- One row per live token.  The token itself is never stored: token_hash is
-- its SHA-256, challenge_hash the SHA-256 of the binding secret.
-- subject_tag is the first 32 bits of HMAC-SHA-256(subject_tag key,
-- subject), 0 without a subject; the token carries it in its first 4
-- bytes.  So the primary key finds a token by (tag from the token, hash of
-- the token), and a subject's tokens (revoke_tokens, per-subject caps) by
-- the tag: one index serves both.
CREATE TABLE regstack.auth_ephemeral_tokens (
    subject_tag     integer NOT NULL,
    token_hash      bytea NOT NULL,
    token_type      text NOT NULL,
    subject         text,
    provider        text,
    nonce           text,
    code_verifier   text,
    challenge_hash  bytea,
    redirect_to     text,
    mode            text,
    linking_user_id text,
    result          text,
    payload         jsonb,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (subject_tag, token_hash)
);

COMMENT ON TABLE regstack.auth_ephemeral_tokens IS
'Live single-use tokens, keyed by the subject tag and the SHA-256 of the token; use the regstack functions, not this table';

SELECT pg_catalog.pg_extension_config_dump('regstack.auth_ephemeral_tokens', '');

CREATE FUNCTION regstack.issue_token(
    token_type      text,
    subject         text DEFAULT NULL,
    ttl             interval DEFAULT NULL,
    provider        text DEFAULT NULL,
    nonce           text DEFAULT NULL,
    code_verifier   text DEFAULT NULL,
    challenge       text DEFAULT NULL,
    redirect_to     text DEFAULT NULL,
    mode            text DEFAULT NULL,
    linking_user_id text DEFAULT NULL,
    result          text DEFAULT NULL,
    payload         jsonb DEFAULT NULL)
RETURNS text
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_issue_token';

COMMENT ON FUNCTION regstack.issue_token(text, text, interval, text, text, text, text, text, text, text, text, jsonb) IS
'Store a new single-use token of a registered type and return it (48 characters, base64url)';

CREATE FUNCTION regstack.consume_token(
    token       text,
    token_type  text,
    challenge   text DEFAULT NULL)
RETURNS TABLE (
    token_type      text,
    subject         text,
    provider        text,
    nonce           text,
    code_verifier   text,
    redirect_to     text,
    mode            text,
    linking_user_id text,
    result          text,
    payload         jsonb,
    created_at      timestamptz,
    expires_at      timestamptz)
LANGUAGE C VOLATILE ROWS 1
AS 'MODULE_PATHNAME', 'regstack_consume_token';

COMMENT ON FUNCTION regstack.consume_token(text, text, text) IS
'Delete a live token of that type (and challenge) and return its row; of concurrent callers exactly one gets it';

CREATE FUNCTION regstack.peek_token(
    token       text,
    token_type  text,
    challenge   text DEFAULT NULL)
RETURNS TABLE (
    token_type      text,
    subject         text,
    provider        text,
    nonce           text,
    code_verifier   text,
    redirect_to     text,
    mode            text,
    linking_user_id text,
    result          text,
    payload         jsonb,
    created_at      timestamptz,
    expires_at      timestamptz)
LANGUAGE C VOLATILE ROWS 1
AS 'MODULE_PATHNAME', 'regstack_peek_token';

COMMENT ON FUNCTION regstack.peek_token(text, text, text) IS
'The row consume_token would return, without consuming the token';

CREATE FUNCTION regstack.attach_result(
    token       text,
    token_type  text,
    result      text)
RETURNS boolean
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_attach_result';

COMMENT ON FUNCTION regstack.attach_result(text, text, text) IS
'Store a result (e.g. a session token) on a live token; false if there is no such token';

CREATE FUNCTION regstack.revoke_tokens(
    subject     text,
    token_type  text DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_revoke_tokens';

COMMENT ON FUNCTION regstack.revoke_tokens(text, text) IS
'Delete the live tokens of a subject (of one type, or all types); returns how many';

CREATE FUNCTION regstack.pkce_challenge(code_verifier text)
RETURNS text
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'regstack_pkce_challenge';

COMMENT ON FUNCTION regstack.pkce_challenge(text) IS
'RFC 7636 S256 code challenge of a PKCE code verifier';

CREATE FUNCTION regstack.begin_oidc_flow(
    provider        text,
    redirect_to     text,
    mode            text DEFAULT 'signin',
    linking_user_id text DEFAULT NULL,
    ttl             interval DEFAULT NULL)
RETURNS TABLE (
    state                 text,
    nonce                 text,
    code_challenge        text,
    code_challenge_method text)
LANGUAGE C VOLATILE ROWS 1
AS 'MODULE_PATHNAME', 'regstack_begin_oidc_flow';

COMMENT ON FUNCTION regstack.begin_oidc_flow(text, text, text, text, interval) IS
'Start an OIDC authorization-code flow with PKCE: store an oidc_state token, return state, nonce and S256 challenge';
