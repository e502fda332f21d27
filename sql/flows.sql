-- The three flows of the README, verbatim (test/check.sh checks that the
-- README's blocks and this file are the same text).

-- Flow 1: password, then second factor.
-- After the password check, the app issues a pre_auth token bound to a
-- random cookie value it sets HttpOnly; the token goes to the page.
SELECT regstack.issue_token('pre_auth', subject => 'alice',
                            challenge => 'cookie-7f3a9c') AS pre_auth \gset
-- The page posts the TOTP code with the token; the browser sends the
-- cookie.  After verifying the code, the app redeems the token once:
SELECT subject FROM regstack.consume_token(:'pre_auth', 'pre_auth',
                                           challenge => 'cookie-7f3a9c');
-- A stolen token without the cookie, or a replay, gets nothing:
SELECT count(*) AS replayed FROM regstack.consume_token(:'pre_auth', 'pre_auth',
                                                        challenge => 'cookie-7f3a9c');

-- Flow 2: OIDC sign-in with PKCE.
-- /login/google: the verifier and nonce are made and kept in the database;
-- the app redirects to the provider with state, nonce and code_challenge.
SELECT state, nonce, code_challenge, code_challenge_method
  FROM regstack.begin_oidc_flow(provider => 'google',
                                redirect_to => 'https://app.example/home') \gset
-- /callback?state=...&code=...: read what the token request needs.
SELECT provider, redirect_to, mode,
       regstack.pkce_challenge(code_verifier) = :'code_challenge' AS verifier_matches
  FROM regstack.peek_token(:'state', 'oidc_state');
-- The app sends code + code_verifier to the provider, checks the ID
-- token's nonce, signs the user in, and parks the session on the state:
SELECT regstack.attach_result(:'state', 'oidc_state', 'session-jwt-for-alice');
-- The single-page app exchanges the state for the session, once:
SELECT result, redirect_to FROM regstack.consume_token(:'state', 'oidc_state');
SELECT count(*) AS second_exchange FROM regstack.consume_token(:'state', 'oidc_state');

-- Flow 3: password reset.
-- "Forgot password", asked twice: each time a reset token for the user,
-- mailed as a link (at most 3 live per user; older ones are dropped).
SELECT regstack.issue_token('password_reset', subject => 'alice') AS first_reset \gset
SELECT regstack.issue_token('password_reset', subject => 'alice') AS reset \gset
-- The link is opened: the token is redeemed once.
SELECT subject, expires_at - created_at AS valid_for
  FROM regstack.consume_token(:'reset', 'password_reset');
-- After the password change, every other outstanding link dies too.
SELECT regstack.revoke_tokens('alice', 'password_reset') AS other_links_revoked;
