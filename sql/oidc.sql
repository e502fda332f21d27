-- pkce_challenge and begin_oidc_flow.
\set ECHO none
\i sql/include/err.sql
\set ECHO all

-- RFC 7636 appendix B: the S256 challenge of the example verifier.
SELECT regstack.pkce_challenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk');
-- Shortest and longest verifiers, and every allowed character.
SELECT length(regstack.pkce_challenge(repeat('a', 43))) AS min_ok,
       length(regstack.pkce_challenge(repeat('Z', 128))) AS max_ok,
       length(regstack.pkce_challenge('ABCXYZabcxyz0189-._~' || repeat('q', 23))) AS alphabet_ok;
SELECT pg_temp.err($$SELECT regstack.pkce_challenge(NULL)$$);
SELECT pg_temp.err($$SELECT regstack.pkce_challenge('')$$);
SELECT pg_temp.err($$SELECT regstack.pkce_challenge(repeat('a', 42))$$);
SELECT pg_temp.err($$SELECT regstack.pkce_challenge(repeat('a', 129))$$);
SELECT pg_temp.err($$SELECT regstack.pkce_challenge(repeat('a', 42) || '+')$$);
SELECT pg_temp.err($$SELECT regstack.pkce_challenge(repeat('a', 42) || ' ')$$);
SELECT pg_temp.err($$SELECT regstack.pkce_challenge(repeat('a', 5000))$$);

-- begin_oidc_flow: state, nonce and challenge for the authorize URL; the
-- verifier stays in the database until the callback consumes the state.
SELECT * FROM regstack.begin_oidc_flow('google', 'https://app.example/home') \gset flow_
SELECT length(:'flow_state') AS state_length, length(:'flow_nonce') AS nonce_length,
       length(:'flow_code_challenge') AS challenge_length,
       :'flow_code_challenge_method' AS method,
       :'flow_state' <> :'flow_nonce' AS distinct_values;
SELECT provider, redirect_to, mode, linking_user_id, nonce = :'flow_nonce' AS nonce_matches,
       regstack.pkce_challenge(code_verifier) = :'flow_code_challenge' AS verifier_matches,
       length(code_verifier) AS verifier_length, expires_at - created_at AS ttl
  FROM regstack.consume_token(:'flow_state', 'oidc_state');
SELECT count(*) AS replay FROM regstack.consume_token(:'flow_state', 'oidc_state');

-- Link mode carries the user the new identity is attached to.
SELECT state FROM regstack.begin_oidc_flow('github', '/settings', mode => 'link',
                                           linking_user_id => 'u42', ttl => '1 minute') \gset flow_
SELECT provider, mode, linking_user_id, expires_at - created_at AS ttl
  FROM regstack.peek_token(:'flow_state', 'oidc_state');

-- Called in a select list it returns the same row as one composite value.
SELECT (f).code_challenge_method, length((f).state) AS state_length
  FROM (SELECT regstack.begin_oidc_flow('google', '/select-list') AS f) AS s;
DELETE FROM regstack.auth_ephemeral_tokens WHERE redirect_to = '/select-list';

-- Errors name the missing or bad field.
SELECT pg_temp.err($$SELECT * FROM regstack.begin_oidc_flow(NULL, '/x')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.begin_oidc_flow('google', NULL)$$);
SELECT pg_temp.err($$SELECT * FROM regstack.begin_oidc_flow('google', '/x', mode => NULL)$$);
SELECT pg_temp.err($$SELECT * FROM regstack.begin_oidc_flow('google', '/x', mode => 'link')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.begin_oidc_flow('google', '/x', mode => 'relink')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.begin_oidc_flow('google', '/x', linking_user_id => 'u1')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.begin_oidc_flow('', '/x')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.begin_oidc_flow('google', repeat('/', 4097))$$);
SELECT pg_temp.err($$SELECT * FROM regstack.begin_oidc_flow('google', '/x', ttl => '16 minutes')$$);
SELECT pg_temp.err($$SELECT * FROM regstack.begin_oidc_flow('google', '/x', ttl => '-1 minute')$$);
SELECT count(*) AS live_states FROM regstack.auth_ephemeral_tokens WHERE token_type = 'oidc_state';
TRUNCATE regstack.auth_ephemeral_tokens;
