-- regstack install script: maintenance functions.

CREATE FUNCTION regstack.purge_expired(
    OUT tokens_deleted bigint,
    OUT events_deleted bigint)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_purge_expired';

COMMENT ON FUNCTION regstack.purge_expired() IS
'Delete expired tokens and stale rate-limit events now; returns how many of each';
