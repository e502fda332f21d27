-- issue_token, consume_token, peek_token, attach_result, revoke_tokens:
-- behaviour of each function on good input.  Errors: bad_input.sql.

CREATE EXTENSION pgcrypto;
\set ECHO none
\i sql/include/err.sql
\set ECHO all

-- A token is 48 characters of base64url (its subject tag and 256 random
-- bits, no padding) and only its SHA-256 is stored; pgcrypto's digest()
-- checks that independently.
SELECT regstack.issue_token('pre_auth', subject => 'alice', challenge => 'cookie-1') AS tok \gset
SELECT length(:'tok') AS length, :'tok' ~ '^[A-Za-z0-9_-]{48}$' AS base64url;
SELECT token_hash = digest(:'tok', 'sha256') AS hash_is_sha256,
       challenge_hash = digest('cookie-1', 'sha256') AS challenge_is_sha256,
       expires_at - created_at AS ttl
  FROM regstack.auth_ephemeral_tokens WHERE subject = 'alice';
-- The plaintext token and challenge appear in no column.
SELECT count(*) AS rows_with_plaintext
  FROM regstack.auth_ephemeral_tokens t
 WHERE position(:'tok' IN t::text) > 0 OR position('cookie-1' IN t::text) > 0;
-- Two tokens are never equal.
SELECT count(DISTINCT regstack.issue_token('oidc_exchange', subject => 'x')) AS distinct_tokens
  FROM generate_series(1, 100);
DELETE FROM regstack.auth_ephemeral_tokens WHERE subject = 'x';

-- peek_token shows the row without consuming it, only with the challenge.
SELECT token_type, subject, expires_at - created_at AS ttl
  FROM regstack.peek_token(:'tok', 'pre_auth', 'cookie-1');
SELECT count(*) AS rows_without_challenge FROM regstack.peek_token(:'tok', 'pre_auth');
SELECT count(*) AS rows_wrong_challenge FROM regstack.peek_token(:'tok', 'pre_auth', 'cookie-2');

-- consume_token: a wrong challenge or a wrong type returns nothing and
-- does not burn the token; the right call returns the row exactly once.
SELECT count(*) AS wrong_challenge FROM regstack.consume_token(:'tok', 'pre_auth', 'cookie-2');
SELECT count(*) AS no_challenge FROM regstack.consume_token(:'tok', 'pre_auth');
SELECT count(*) AS wrong_type FROM regstack.consume_token(:'tok', 'password_reset', 'cookie-1');
-- A type not in the registry is an error, and leaves the token in place.
SELECT pg_temp.err(format($$SELECT * FROM regstack.consume_token(%L, 'no_such_type', 'cookie-1')$$, :'tok'));
SELECT token_type, subject, provider, nonce, code_verifier, redirect_to, mode,
       linking_user_id, result, payload, expires_at - created_at AS ttl
  FROM regstack.consume_token(:'tok', 'pre_auth', 'cookie-1');
SELECT count(*) AS second_consume FROM regstack.consume_token(:'tok', 'pre_auth', 'cookie-1');
SELECT count(*) AS rows_left FROM regstack.auth_ephemeral_tokens WHERE subject = 'alice';

-- A token issued without a challenge is consumed with or without one.
SELECT regstack.issue_token('oidc_exchange', subject => 'bob') AS tok \gset
SELECT subject FROM regstack.consume_token(:'tok', 'oidc_exchange', 'anything');

-- Malformed tokens: zero rows, no error (length, alphabet, case).
SELECT regstack.issue_token('oidc_exchange', subject => 'bob') AS tok \gset
SELECT count(*) FROM regstack.consume_token(left(:'tok', 47), 'oidc_exchange');
SELECT count(*) FROM regstack.consume_token(:'tok' || 'A', 'oidc_exchange');
SELECT count(*) FROM regstack.consume_token(upper(:'tok'), 'oidc_exchange')
 WHERE upper(:'tok') <> :'tok';
SELECT count(*) FROM regstack.consume_token(repeat('!', 48), 'oidc_exchange');
SELECT count(*) FROM regstack.consume_token('x', 'oidc_exchange');
SELECT count(*) FROM regstack.peek_token(repeat('=', 48), 'oidc_exchange');
SELECT regstack.attach_result(repeat('=', 48), 'oidc_exchange', 'jwt');
SELECT subject FROM regstack.consume_token(:'tok', 'oidc_exchange');

-- Every field round-trips, payload included.
SELECT regstack.issue_token('download', subject => 'carol', ttl => '1 day',
         provider => 'p', nonce => 'n', code_verifier => 'v', challenge => 'c',
         redirect_to => '/r', mode => 'link', linking_user_id => 'u42',
         result => 'res', payload => '{"file": "report.pdf", "n": [1, 2]}') AS tok \gset
SELECT token_type, subject, provider, nonce, code_verifier, redirect_to, mode,
       linking_user_id, result, payload, expires_at - created_at AS ttl
  FROM regstack.peek_token(:'tok', 'download', 'c') \gx
SELECT token_type, subject, provider, nonce, code_verifier, redirect_to, mode,
       linking_user_id, result, payload, expires_at - created_at AS ttl
  FROM regstack.consume_token(:'tok', 'download', 'c') \gx

-- A large payload (stored out of line) comes back whole from consume.
SELECT regstack.issue_token('download', payload =>
         jsonb_build_object('blob', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i))) AS tok \gset
SELECT length(payload->>'blob') AS blob_length,
       payload->>'blob' = (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i) AS intact
  FROM regstack.consume_token(:'tok', 'download');

-- TTLs: the type's default, any positive value up to the maximum (one
-- second included), and expiry judged by the clock, not the transaction.
SELECT regstack.issue_token('pre_auth', subject => 'dave', ttl => '1 second') AS tok \gset
SELECT expires_at - created_at AS ttl FROM regstack.peek_token(:'tok', 'pre_auth');
BEGIN;
SELECT count(*) AS live_before FROM regstack.peek_token(:'tok', 'pre_auth');
SELECT pg_sleep(1.2);
-- Same transaction, token now expired: invisible to every function.
SELECT count(*) AS peek_after FROM regstack.peek_token(:'tok', 'pre_auth');
SELECT count(*) AS consume_after FROM regstack.consume_token(:'tok', 'pre_auth');
SELECT regstack.attach_result(:'tok', 'pre_auth', 'late') AS attach_after;
SELECT regstack.revoke_tokens('dave') AS revoked_after;
COMMIT;
-- The expired row is still there until purged.
SELECT count(*) AS expired_rows FROM regstack.auth_ephemeral_tokens WHERE subject = 'dave';
SELECT * FROM regstack.purge_expired();
SELECT count(*) AS expired_rows FROM regstack.auth_ephemeral_tokens WHERE subject = 'dave';
-- purge_expired sees rows written earlier in the same statement.
SELECT p.tokens_deleted
  FROM (SELECT regstack.issue_token('pre_auth', subject => 'erin', ttl => '1 microsecond') AS t,
               pg_sleep(0.01)) AS issued,
       LATERAL regstack.purge_expired() AS p;
SELECT regstack.issue_token('password_reset', subject => 'dave', ttl => '24 hours') IS NOT NULL AS max_ttl_ok;
SELECT expires_at - created_at AS ttl FROM regstack.auth_ephemeral_tokens WHERE subject = 'dave';

-- attach_result: stores a result on a live token of that type.
SELECT state AS tok FROM regstack.begin_oidc_flow('google', 'https://app.example/after') \gset
SELECT regstack.attach_result(:'tok', 'pre_auth', 'jwt-1') AS wrong_type;
SELECT regstack.attach_result(:'tok', 'oidc_state', 'jwt-1') AS attached;
SELECT regstack.attach_result(:'tok', 'oidc_state', 'jwt-2') AS attached_again;
SELECT provider, redirect_to, mode, result FROM regstack.consume_token(:'tok', 'oidc_state');
SELECT regstack.attach_result(:'tok', 'oidc_state', 'jwt-3') AS after_consume;

-- revoke_tokens: a subject's live tokens, of one type or of all types.
SELECT count(regstack.issue_token('pre_auth', subject => 'erin')) FROM generate_series(1, 2);
SELECT count(regstack.issue_token('password_reset', subject => 'erin')) FROM generate_series(1, 2);
SELECT length(regstack.issue_token('pre_auth', subject => 'frank'));
SELECT regstack.revoke_tokens('erin', 'password_reset') AS revoked_resets;
SELECT regstack.revoke_tokens('erin', 'password_reset') AS revoked_again;
SELECT regstack.revoke_tokens('erin') AS revoked_rest;
SELECT regstack.revoke_tokens('nobody') AS revoked_none;
SELECT subject, token_type FROM regstack.auth_ephemeral_tokens
 WHERE subject IN ('erin', 'frank') ORDER BY 1, 2;

-- Subject tags.  The first 4 bytes of a token are its subject's tag: the
-- first 32 bits of HMAC-SHA-256 keyed with secret_keys' subject_tag row
-- (pgcrypto's hmac() checks that independently); the row stores the same
-- tag.  A token without a subject carries a random tag, stored in its row.
SELECT regstack.issue_token('pre_auth', subject => 'heidi') AS tok \gset
SELECT regstack.issue_token('download', payload => '{"file": 1}') AS anon \gset
CREATE FUNCTION pg_temp.token_tag(token text) RETURNS integer
LANGUAGE sql AS $$
    SELECT ('x' || encode(substring(decode(translate(left(token, 8), '-_', '+/'), 'base64')
                                    FROM 1 FOR 4), 'hex'))::bit(32)::integer
$$;
SELECT pg_temp.token_tag(:'tok') = ('x' || encode(substring(hmac('heidi',
           (SELECT secret FROM regstack.secret_keys WHERE name = 'subject_tag'), 'sha256')
           FROM 1 FOR 4), 'hex'))::bit(32)::integer AS tag_is_hmac,
       pg_temp.token_tag(:'tok') = (SELECT subject_tag FROM regstack.auth_ephemeral_tokens
                                     WHERE subject = 'heidi') AS row_has_tag,
       pg_temp.token_tag(:'anon') = (SELECT subject_tag FROM regstack.auth_ephemeral_tokens
                                      WHERE token_hash = sha256(:'anon'::bytea)) AS anon_row_has_tag,
       (SELECT octet_length(secret) FROM regstack.secret_keys) AS key_bytes;
-- Random tags spread subject-less tokens over the key's range (and over a
-- distributed table's shards): 20 tokens share no tag (2^-32 odds each
-- pair), and each is consumed by the tag it carries.
CREATE TEMP TABLE anon_tokens AS
SELECT regstack.issue_token('download', payload => jsonb_build_object('file', i)) AS token
  FROM generate_series(1, 20) AS i;
SELECT count(DISTINCT pg_temp.token_tag(token)) AS distinct_tags,
       count(*) FILTER (WHERE pg_temp.token_tag(token) = 0) AS zero_tags
  FROM anon_tokens;
SELECT count(*) AS consumed
  FROM anon_tokens, LATERAL regstack.consume_token(token, 'download') AS c;
DROP TABLE anon_tokens;
-- Lookups use the tag the token carries: a row stored with the SHA-256 of
-- a token (:'other', the first character changed) under another tag than
-- that token's is not found; under the token's own tag it is.
SELECT translate(left(:'tok', 1), 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_',
                 'BCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_A')
       || substr(:'tok', 2) AS other \gset
INSERT INTO regstack.auth_ephemeral_tokens
    (subject_tag, token_hash, token_type, subject, created_at, expires_at)
VALUES (pg_temp.token_tag(:'tok'), sha256(convert_to(:'other', 'UTF8')), 'pre_auth',
        'other', now(), now() + interval '5 minutes');
SELECT pg_temp.token_tag(:'other') <> pg_temp.token_tag(:'tok') AS tags_differ,
       (SELECT count(*) FROM regstack.peek_token(:'other', 'pre_auth')) AS under_other_tag;
UPDATE regstack.auth_ephemeral_tokens SET subject_tag = pg_temp.token_tag(:'other')
 WHERE subject = 'other';
SELECT subject AS under_own_tag FROM regstack.consume_token(:'other', 'pre_auth');
-- revoke_tokens and the cap find tokens by tag, then compare the subject:
-- a row of another subject under the same tag (a 1 in 2^32 collision,
-- made here by hand) is left alone.
INSERT INTO regstack.auth_ephemeral_tokens
    (subject_tag, token_hash, token_type, subject, created_at, expires_at)
SELECT subject_tag, sha256('collision'), 'pre_auth', 'not-heidi', now(), now() + interval '5 minutes'
  FROM regstack.auth_ephemeral_tokens WHERE subject = 'heidi';
SELECT regstack.revoke_tokens('heidi') AS revoked_heidi;
SELECT subject FROM regstack.auth_ephemeral_tokens WHERE subject LIKE '%heidi';
DELETE FROM regstack.auth_ephemeral_tokens WHERE subject = 'not-heidi';
SELECT count(*) AS anon_consumed FROM regstack.consume_token(:'anon', 'download');
-- Inserting a subject_tag row replaces the key, the shipped one or one
-- inserted before (how a restore puts back the dumped one, also into a
-- database that was itself restored), and the cached key is reloaded at
-- once.  Without the key: bad_input.sql.
BEGIN;
INSERT INTO regstack.secret_keys (name, secret) VALUES ('subject_tag', sha256('first key'));
INSERT INTO regstack.secret_keys (name, secret) VALUES ('subject_tag', sha256('restored key'));
SELECT count(*) AS key_rows, bool_and(secret = sha256('restored key')) AS replaced,
       bool_or(builtin) AS builtin
  FROM regstack.secret_keys;
SELECT regstack.issue_token('pre_auth', subject => 'ivan') AS tok \gset
SELECT pg_temp.token_tag(:'tok') = ('x' || encode(substring(hmac('ivan', sha256('restored key'), 'sha256')
           FROM 1 FOR 4), 'hex'))::bit(32)::integer AS tag_uses_new_key,
       pg_temp.token_tag(:'tok') < 0 AS tag_negative;
-- A token whose tag has the high bit set is found like any other.
SELECT subject FROM regstack.peek_token(:'tok', 'pre_auth');
SELECT regstack.revoke_tokens('ivan') AS revoked_negative_tag;
ROLLBACK;

-- Functions work inside a transaction that rolls back: nothing is kept.
BEGIN;
SELECT length(regstack.issue_token('pre_auth', subject => 'grace'));
ROLLBACK;
SELECT count(*) AS after_rollback FROM regstack.auth_ephemeral_tokens WHERE subject = 'grace';

-- A token is visible to peek and consume within the statement that issued it.
SELECT subject FROM regstack.peek_token(
    regstack.issue_token('pre_auth', subject => 'heidi'), 'pre_auth');
SELECT subject FROM regstack.consume_token(
    regstack.issue_token('pre_auth', subject => 'ivan'), 'pre_auth');

-- Called in a select list (and with its columns renamed), consume and peek
-- return the same row: the result's shape comes from the calling plan.
SELECT regstack.issue_token('pre_auth', subject => 'judy') AS tok \gset
SELECT (regstack.peek_token(:'tok', 'pre_auth')).subject AS peeked;
SELECT p.who FROM regstack.peek_token(:'tok', 'pre_auth') AS p(kind, who);
SELECT (regstack.consume_token(:'tok', 'pre_auth')).subject AS consumed;
SELECT count(*) AS consumed_again
  FROM (SELECT regstack.consume_token(:'tok', 'pre_auth')) AS c;

TRUNCATE regstack.auth_ephemeral_tokens;
DROP EXTENSION pgcrypto;
