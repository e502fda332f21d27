-- regstack install script: statistics and the reaper's lag.
-- Both come from shared memory and need shared_preload_libraries =
-- 'regstack' (the functions raise 55000 otherwise).  They are cluster-wide:
-- every database where the extension is installed shows every database.
-- Readable by pg_monitor and the owner; nothing is granted to PUBLIC.

CREATE FUNCTION regstack.stats(
    OUT datid                   oid,
    OUT kind                    text,
    OUT name                    text,
    OUT issued                  bigint,
    OUT consumed                bigint,
    OUT consume_not_found       bigint,
    OUT consume_wrong_type      bigint,
    OUT consume_wrong_challenge bigint,
    OUT consume_expired         bigint,
    OUT peeked                  bigint,
    OUT peek_misses             bigint,
    OUT results_attached        bigint,
    OUT attach_misses           bigint,
    OUT revoked                 bigint,
    OUT trimmed                 bigint,
    OUT purged                  bigint,
    OUT reaped                  bigint,
    OUT allowed                 bigint,
    OUT denied                  bigint,
    OUT recorded                bigint,
    OUT resets                  bigint,
    OUT stats_reset             timestamptz)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_stats';

COMMENT ON FUNCTION regstack.stats() IS
'Counters per database, token type and event type since the last reset, from shared memory (use the regstack.stats view); needs regstack preloaded';

-- The view adds the database name and the total of consume misses.
CREATE VIEW regstack.stats AS
    SELECT s.datid,
           d.datname,
           s.kind,
           s.name,
           s.issued,
           s.consumed,
           s.consume_not_found OPERATOR(pg_catalog.+) s.consume_wrong_type
               OPERATOR(pg_catalog.+) s.consume_wrong_challenge
               OPERATOR(pg_catalog.+) s.consume_expired AS consume_misses,
           s.consume_not_found,
           s.consume_wrong_type,
           s.consume_wrong_challenge,
           s.consume_expired,
           s.peeked,
           s.peek_misses,
           s.results_attached,
           s.attach_misses,
           s.revoked,
           s.trimmed,
           s.purged,
           s.reaped,
           s.allowed,
           s.denied,
           s.recorded,
           s.resets,
           s.stats_reset
      FROM regstack.stats() AS s
      LEFT JOIN pg_catalog.pg_database AS d ON d.oid OPERATOR(pg_catalog.=) s.datid;

COMMENT ON VIEW regstack.stats IS
'What regstack did since the last regstack.stats_reset(), per database and token type (kind token_type) or rate-limit event type (kind event_type); counters of the other kind are NULL; needs regstack preloaded';

COMMENT ON COLUMN regstack.stats.datid IS 'OID of the database; NULL in an overflow row';
COMMENT ON COLUMN regstack.stats.datname IS 'Name of the database; NULL in an overflow row';
COMMENT ON COLUMN regstack.stats.kind IS 'token_type or event_type';
COMMENT ON COLUMN regstack.stats.name IS 'The token type or event type; NULL in the overflow row of its kind, which counts names that found no slot (regstack.stats_max_entries)';
COMMENT ON COLUMN regstack.stats.issued IS 'Tokens issued (issue_token, begin_oidc_flow)';
COMMENT ON COLUMN regstack.stats.consumed IS 'consume_token calls that returned the token';
COMMENT ON COLUMN regstack.stats.consume_misses IS 'consume_token calls that returned nothing: the sum of the four consume_ columns after it';
COMMENT ON COLUMN regstack.stats.consume_not_found IS 'consume_token calls that found no token (never issued, malformed, already consumed, revoked or purged)';
COMMENT ON COLUMN regstack.stats.consume_wrong_type IS 'consume_token calls that found the token under another type (the token stays)';
COMMENT ON COLUMN regstack.stats.consume_wrong_challenge IS 'consume_token calls with a missing or wrong challenge (the token stays)';
COMMENT ON COLUMN regstack.stats.consume_expired IS 'consume_token calls that found the token expired';
COMMENT ON COLUMN regstack.stats.peeked IS 'peek_token calls that returned the token';
COMMENT ON COLUMN regstack.stats.peek_misses IS 'peek_token calls that returned nothing';
COMMENT ON COLUMN regstack.stats.results_attached IS 'attach_result calls that stored a result';
COMMENT ON COLUMN regstack.stats.attach_misses IS 'attach_result calls that found no live token';
COMMENT ON COLUMN regstack.stats.revoked IS 'Tokens deleted by revoke_tokens';
COMMENT ON COLUMN regstack.stats.trimmed IS 'Tokens issue_token deleted to keep the type''s max_live_per_subject (with the subject''s expired ones)';
COMMENT ON COLUMN regstack.stats.purged IS 'Expired tokens deleted by purge_expired()';
COMMENT ON COLUMN regstack.stats.reaped IS 'Expired tokens deleted by the background reaper';
COMMENT ON COLUMN regstack.stats.allowed IS 'rate_limit_check calls allowed';
COMMENT ON COLUMN regstack.stats.denied IS 'rate_limit_check calls denied';
COMMENT ON COLUMN regstack.stats.recorded IS 'Events recorded, by rate_limit_check (allowed, record => true) and rate_limit_record';
COMMENT ON COLUMN regstack.stats.resets IS 'Keys forgotten by rate_limit_reset (state rows it deleted)';
COMMENT ON COLUMN regstack.stats.stats_reset IS 'When the counters were last reset (or first started; they survive a clean restart)';

CREATE FUNCTION regstack.stats_reset()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_stats_reset';

COMMENT ON FUNCTION regstack.stats_reset() IS
'Set every counter of regstack.stats, of every database, to zero; only the extension''s owner may';

CREATE FUNCTION regstack.reaper_lag(
    OUT datid                 oid,
    OUT last_pass_end         timestamptz,
    OUT last_sweep_start      timestamptz,
    OUT tokens_skipped        bigint,
    OUT oldest_skipped_expiry timestamptz,
    OUT recent_passes         integer,
    OUT reaped_per_second     double precision)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_reaper_lag';

COMMENT ON FUNCTION regstack.reaper_lag() IS
'How far the reaper is behind, per database, from shared memory (use the regstack.reaper_lag view); needs regstack preloaded';

-- max_token_lag: every token that expired before last_sweep_start is gone,
-- except the ones that sweep found locked, so the oldest expired token
-- still in the table expired at least this long ago and no longer.
CREATE VIEW regstack.reaper_lag AS
    SELECT l.datid,
           d.datname,
           l.last_pass_end,
           l.last_sweep_start,
           l.tokens_skipped,
           l.oldest_skipped_expiry,
           pg_catalog.now() OPERATOR(pg_catalog.-)
               LEAST(l.last_sweep_start, l.oldest_skipped_expiry) AS max_token_lag,
           l.recent_passes,
           l.reaped_per_second
      FROM regstack.reaper_lag() AS l
      LEFT JOIN pg_catalog.pg_database AS d ON d.oid OPERATOR(pg_catalog.=) l.datid;

COMMENT ON VIEW regstack.reaper_lag IS
'How far the background reaper is behind, per database, without reading the tokens table; needs regstack preloaded';

COMMENT ON COLUMN regstack.reaper_lag.datid IS 'OID of the database';
COMMENT ON COLUMN regstack.reaper_lag.datname IS 'Name of the database';
COMMENT ON COLUMN regstack.reaper_lag.last_pass_end IS 'When the last reaper pass there ended';
COMMENT ON COLUMN regstack.reaper_lag.last_sweep_start IS 'Start of the last pass that read the whole tokens table: every token expired before then was deleted, except tokens_skipped; NULL until a pass has';
COMMENT ON COLUMN regstack.reaper_lag.tokens_skipped IS 'Expired tokens that pass found locked by another transaction and left';
COMMENT ON COLUMN regstack.reaper_lag.oldest_skipped_expiry IS 'The earliest expires_at among them; NULL if none';
COMMENT ON COLUMN regstack.reaper_lag.max_token_lag IS 'Upper bound of how long ago the oldest expired token still in the table expired: now() - least(last_sweep_start, oldest_skipped_expiry)';
COMMENT ON COLUMN regstack.reaper_lag.recent_passes IS 'Passes that deleted rows among the last 8, which reaped_per_second covers';
COMMENT ON COLUMN regstack.reaper_lag.reaped_per_second IS 'Rows (tokens and rate-limit rows) those passes deleted per second of their duration; NULL if none';

-- Monitoring roles: pg_monitor reads both views (and needs the schema).
GRANT USAGE ON SCHEMA regstack TO pg_monitor;
GRANT SELECT ON regstack.stats, regstack.reaper_lag TO pg_monitor;
GRANT EXECUTE ON FUNCTION regstack.stats(), regstack.reaper_lag() TO pg_monitor;
