-- A summarizing index (BRIN) a DBA adds to the tokens table.  From
-- PostgreSQL 16 on, an update that changes only columns such indexes cover
-- is HOT and needs entries in them alone (TU_Summarizing); before 16 it is
-- not HOT and every index gets its entry.  Either way attach_result's
-- direct update must leave the BRIN summary covering the new value and the
-- primary key finding the token.
CREATE INDEX tokens_result_brin ON regstack.auth_ephemeral_tokens
    USING brin (result) WITH (pages_per_range = 1);
SELECT regstack.issue_token('pre_auth', subject => 'brin') AS tok \gset
-- Summarize every page range now, before the result exists.
SELECT brin_summarize_new_values('regstack.tokens_result_brin') >= 0 AS summarized;
SELECT regstack.attach_result(:'tok', 'pre_auth', 'brin-result') AS attached;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT count(*) FROM regstack.auth_ephemeral_tokens WHERE result = 'brin-result';
SELECT count(*) AS found_through_brin
  FROM regstack.auth_ephemeral_tokens WHERE result = 'brin-result';
RESET enable_seqscan;
SELECT result FROM regstack.peek_token(:'tok', 'pre_auth');
SELECT result FROM regstack.consume_token(:'tok', 'pre_auth');
DROP INDEX regstack.tokens_result_brin;
