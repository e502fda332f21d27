-- Token pair, plain SQL on the seed application's table: a server-side
-- random token (pgcrypto), its SHA-256 stored in hex, INSERT; then one
-- DELETE ... RETURNING checking type and expiry.  Two transactions.
\set u random(1, 100000)
WITH t AS (SELECT translate(rtrim(encode(gen_random_bytes(32), 'base64'), '='), '+/', '-_') AS tok)
INSERT INTO app.auth_ephemeral_tokens (token, token_type, username, expires_at)
SELECT encode(sha256(convert_to(tok, 'UTF8')), 'hex'), 'pre_auth', 'user' || :u,
       now() + interval '5 minutes'
  FROM t
RETURNING (SELECT tok FROM t) AS tok \gset
DELETE FROM app.auth_ephemeral_tokens
 WHERE token = encode(sha256(convert_to(:tok, 'UTF8')), 'hex')
   AND token_type = 'pre_auth' AND expires_at > now()
RETURNING username AS got \gset
