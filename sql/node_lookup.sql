-- token_node, subject_node and rate_limit_node name the node that holds a
-- row when Citus distributes regstack's tables (test/citus/ checks that on a
-- cluster).  Here, without Citus, every row is this node's own: one row,
-- is_local, no node; a string that is no token is answered the same way
-- (every node answers it, with a miss).  Arguments are checked as every
-- call checks them.
\set ECHO none
\i sql/include/err.sql
\set ECHO all

SELECT regstack.issue_token('pre_auth', subject => 'ivan') AS tok \gset
SELECT * FROM regstack.token_node(:'tok');
SELECT * FROM regstack.token_node('not a token');
SELECT * FROM regstack.subject_node('ivan');
SELECT * FROM regstack.rate_limit_node('user:42');
SELECT (regstack.token_node(:'tok')).is_local AS composite_form;

SELECT pg_temp.err($$SELECT regstack.token_node(NULL)$$);
SELECT pg_temp.err($$SELECT regstack.token_node('')$$);
SELECT pg_temp.err($$SELECT regstack.token_node(repeat('A', 4097))$$);
SELECT pg_temp.err($$SELECT regstack.subject_node(NULL)$$);
SELECT pg_temp.err($$SELECT regstack.subject_node('')$$);
SELECT pg_temp.err($$SELECT regstack.subject_node(repeat('s', 4097))$$);
SELECT pg_temp.err($$SELECT regstack.rate_limit_node(NULL)$$);
SELECT pg_temp.err($$SELECT regstack.rate_limit_node('')$$);
SELECT pg_temp.err($$SELECT regstack.rate_limit_node(repeat('k', 1025))$$);

-- The token is untouched: looking it up is not consuming it.
SELECT subject FROM regstack.consume_token(:'tok', 'pre_auth');

-- regstack.distribute() is for a Citus coordinator: without Citus it says
-- so (55000) and changes nothing; a bad shard count is 22023 there too,
-- but the missing extension is reported first.
SELECT pg_temp.err($$SELECT * FROM regstack.distribute()$$);
SELECT pg_temp.err($$SELECT * FROM regstack.distribute(0)$$);
SELECT count(*) AS token_types_left FROM regstack.token_types;
