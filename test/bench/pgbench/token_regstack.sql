-- Token pair, regstack: issue a pre_auth token, then consume it (two
-- transactions).  \gset fails the client unless consume returns the row.
\set u random(1, 100000)
SELECT regstack.issue_token('pre_auth', subject => 'user' || :u) AS tok \gset
SELECT subject AS got FROM regstack.consume_token(:tok, 'pre_auth') \gset
