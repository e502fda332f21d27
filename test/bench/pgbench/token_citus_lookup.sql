-- Token pair with the lookups a routing client makes
-- (examples/python/citus_routing.py): where the subject's tokens live,
-- issue; where the token lives, consume (four statements, each its own
-- transaction).  Run on the node that owns every shard, it measures the
-- pair at the owner plus the lookups' cost; \gset fails the client unless
-- each statement returns its row.
\set u random(1, 100000)
SELECT is_local AS here FROM regstack.subject_node('user' || :u) \gset
SELECT regstack.issue_token('pre_auth', subject => 'user' || :u) AS tok \gset
SELECT is_local AS here FROM regstack.token_node(:tok) \gset
SELECT subject AS got FROM regstack.consume_token(:tok, 'pre_auth') \gset
