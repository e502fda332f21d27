-- Token pair, PL/pgSQL: the same API and checks as regstack, written in
-- PL/pgSQL (test/bench/sql/setup.sql); two transactions.
\set u random(1, 100000)
SELECT plpg.issue_token('pre_auth', subject => 'user' || :u) AS tok \gset
SELECT subject AS got FROM plpg.consume_token(:tok, 'pre_auth') \gset
