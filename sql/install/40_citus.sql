-- regstack install script: where rows live on Citus.
-- With regstack's tables distributed by Citus, a token's row lives on the
-- node holding its subject tag's shard, a rate-limit key's rows on the
-- node holding the key's shard.  These functions name that node, for
-- clients that send calls straight to it (src/citus.c).

CREATE FUNCTION regstack.token_node(
    token         text,
    OUT node_name text,
    OUT node_port integer,
    OUT shard_id  bigint,
    OUT is_local  boolean)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_token_node';

COMMENT ON FUNCTION regstack.token_node(text) IS
'On Citus, the node holding the token''s row (send its calls there); without Citus, or for a string that is no token, is_local and no node';

CREATE FUNCTION regstack.rate_limit_node(
    key           text,
    OUT node_name text,
    OUT node_port integer,
    OUT shard_id  bigint,
    OUT is_local  boolean)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_rate_limit_node';

COMMENT ON FUNCTION regstack.rate_limit_node(text) IS
'On Citus, the node holding the rate-limit state of key (send its calls there); without Citus, is_local and no node';
