-- Every error of the token functions, with its SQLSTATE.  None is XX000,
-- none crashes; where the API promises zero rows, there are zero rows.
\set ECHO none
\i sql/include/err.sql
\set ECHO all

-- issue_token: required arguments, empty and oversized text.
SELECT pg_temp.err($$SELECT regstack.issue_token(NULL)$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token(repeat('t', 64))$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('no_such_type', subject => 'a')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => NULL)$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => '')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => repeat('s', 4096)) IS NOT NULL$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => repeat('s', 4097))$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => repeat('s', 1048576))$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', provider => '')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', nonce => repeat('n', 4097))$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', code_verifier => '')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', challenge => '')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', challenge => repeat('c', 4097))$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', redirect_to => repeat('r', 4097))$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', linking_user_id => '', mode => 'link')$$);
-- result may hold a session token: its limit is 16 KiB.
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', result => repeat('j', 16384)) IS NOT NULL$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', result => repeat('j', 16385))$$);
-- Multibyte text is measured in bytes.
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => repeat('é', 2049))$$);

-- payload: at most 16 KiB of jsonb; deep and odd documents are fine.
SELECT pg_temp.err($$SELECT regstack.issue_token('download', payload => jsonb_build_object('x', repeat('p', 20000)))$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('download', payload => (repeat('[', 1000) || repeat(']', 1000))::jsonb) IS NOT NULL$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('download', payload => 'null'::jsonb) IS NOT NULL$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('download', payload => NULL)$$);

-- mode and linking_user_id.
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', mode => 'admin')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', mode => 'SIGNIN')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', mode => 'link')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', mode => 'signin', linking_user_id => 'u1')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', linking_user_id => 'u1')$$);

-- ttl: positive and at most the type's maximum.
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', ttl => '0')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', ttl => '-1 second')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', ttl => '1 month -30 days')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', ttl => '15 minutes 1 microsecond')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', ttl => '178000000 years')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', ttl => '-178000000 years')$$);
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a', ttl => '1 microsecond') IS NOT NULL$$);

-- consume_token and peek_token.
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token(NULL, 'pre_auth')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token('', 'pre_auth')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token(repeat('A', 512), 'pre_auth')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token(repeat('A', 513), 'pre_auth')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token(repeat('A', 1048576), 'pre_auth')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token(repeat('A', 48), NULL)$$);
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token(repeat('A', 48), '')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token(repeat('A', 48), 'pre_auth', '')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token(repeat('A', 48), 'pre_auth', repeat('c', 4097))$$);
SELECT pg_temp.err($$SELECT * FROM regstack.peek_token(NULL, 'pre_auth')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.peek_token(repeat('A', 48), NULL)$$);
SELECT pg_temp.err($$SELECT * FROM regstack.peek_token(repeat('A', 513), 'pre_auth')$$);
-- Well-formed but unknown, and odd-but-short strings: zero rows.
SELECT count(*) FROM regstack.consume_token(repeat('A', 48), 'pre_auth');
SELECT count(*) FROM regstack.consume_token(E'\u00e9\u00e9\u00e9', 'pre_auth');
SELECT count(*) FROM regstack.consume_token(repeat(' ', 48), 'pre_auth');
-- A token type not in the registry is an error (22023, the known types in
-- the hint), whatever the token: a typo must not look like a bad token.
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token(repeat('A', 48), 'no_such_type')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.peek_token(repeat('A', 48), 'no_such_type')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.peek_token('not a token', 'no_such_type')$$);
SELECT pg_temp.err($$SELECT regstack.attach_result(repeat('A', 48), 'no_such_type', 'r')$$);
SELECT pg_temp.err($$SELECT regstack.attach_result('not a token', 'no_such_type', 'r')$$);

-- attach_result.
SELECT pg_temp.err($$SELECT regstack.attach_result(NULL, 'oidc_state', 'r')$$);
SELECT pg_temp.err($$SELECT regstack.attach_result(repeat('A', 48), NULL, 'r')$$);
SELECT pg_temp.err($$SELECT regstack.attach_result(repeat('A', 48), 'oidc_state', NULL)$$);
SELECT pg_temp.err($$SELECT regstack.attach_result(repeat('A', 48), 'oidc_state', '')$$);
SELECT pg_temp.err($$SELECT regstack.attach_result(repeat('A', 48), 'oidc_state', repeat('r', 16385))$$);
SELECT regstack.attach_result(repeat('A', 48), 'oidc_state', 'r') AS attached_to_nothing;

-- revoke_tokens: a NULL subject or an unknown type is an error, never
-- "nothing to revoke".
SELECT pg_temp.err($$SELECT regstack.revoke_tokens(NULL)$$);
SELECT pg_temp.err($$SELECT regstack.revoke_tokens('')$$);
SELECT pg_temp.err($$SELECT regstack.revoke_tokens('a', 'no_such_type')$$);
SELECT pg_temp.err($$SELECT regstack.revoke_tokens('a', '')$$);

-- Nothing above left a row behind except the calls that succeeded.
SELECT token_type, count(*) FROM regstack.auth_ephemeral_tokens GROUP BY 1 ORDER BY 1;
TRUNCATE regstack.auth_ephemeral_tokens;

-- In a read-only transaction (as on a hot standby) writes are refused with
-- 25006, reads work.
SELECT regstack.issue_token('pre_auth', subject => 'ro') AS tok \gset
BEGIN READ ONLY;
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'a')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.consume_token('$$ || :'tok' || $$', 'pre_auth')$$);
SELECT pg_temp.err($$SELECT regstack.attach_result('$$ || :'tok' || $$', 'pre_auth', 'r')$$);
SELECT pg_temp.err($$SELECT regstack.revoke_tokens('ro')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.purge_expired()$$);
SELECT pg_temp.err($$SELECT * FROM regstack.rate_limit_check('ro', 'api', 5, '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.rate_limit_check('ro', 'api', 5, '1 hour', record => false)$$);
SELECT pg_temp.err($$SELECT regstack.rate_limit_record('ro', 'api')$$);
SELECT pg_temp.err($$SELECT regstack.rate_limit_reset('ro')$$);
SELECT subject FROM regstack.peek_token(:'tok', 'pre_auth');
COMMIT;
SELECT subject FROM regstack.consume_token(:'tok', 'pre_auth');

-- Without regstack.secret_keys' subject_tag row no token with a subject
-- can be issued, and no subject's tokens revoked (55000); a token without
-- a subject needs no key.
BEGIN;
DELETE FROM regstack.secret_keys;
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'ivan')$$);
SELECT pg_temp.err($$SELECT regstack.revoke_tokens('ivan')$$);
SELECT pg_temp.err($$SELECT length(regstack.issue_token('download', payload => '{"f": 1}'))$$);
ROLLBACK;
-- A key outside 16..64 bytes (possible only with the table's CHECK
-- dropped) is refused the same way, not truncated.
BEGIN;
ALTER TABLE regstack.secret_keys DROP CONSTRAINT secret_keys_secret_check;
UPDATE regstack.secret_keys SET secret = '\x00';
SELECT pg_temp.err($$SELECT regstack.issue_token('pre_auth', subject => 'ivan')$$);
UPDATE regstack.secret_keys SET secret = sha512('a') || '\x00';
SELECT pg_temp.err($$SELECT regstack.revoke_tokens('ivan')$$);
ROLLBACK;
