-- regstack upgrade script: 1.0 to 1.1.
-- ALTER EXTENSION regstack UPDATE runs it; afterwards the database is the
-- same, object by object, as a fresh CREATE EXTENSION of 1.1
-- (test/t/070_upgrade.pl checks that, with live rows in every table).

\echo Use "ALTER EXTENSION regstack UPDATE" to load this file. \quit

-- Rate limits: one state row and one event log per (key, event_type).
-- 1.0 kept a key's events in up to 64 "lanes", each with its own state row
-- and its own seq; the lanes are merged here.  A key's events are
-- renumbered 0, 1, 2, ... in the order (occurred_at, lane, seq), so
-- occurred_at still never decreases along seq; the key's state row takes
-- the merged numbers with its window pointer unknown (window_us NULL), so
-- the next call finds the window afresh.
LOCK TABLE regstack.auth_rate_limit_state, regstack.auth_rate_limit_events
    IN ACCESS EXCLUSIVE MODE;

ALTER TABLE regstack.auth_rate_limit_events
    DROP CONSTRAINT auth_rate_limit_events_pkey;
UPDATE regstack.auth_rate_limit_events AS e
   SET seq = n.new_seq
  FROM (SELECT ctid AS row_ctid,
               pg_catalog.row_number() OVER (PARTITION BY key, event_type
                                             ORDER BY occurred_at, lane, seq)
               OPERATOR(pg_catalog.-) 1 AS new_seq
          FROM regstack.auth_rate_limit_events) AS n
 WHERE e.ctid OPERATOR(pg_catalog.=) n.row_ctid;
ALTER TABLE regstack.auth_rate_limit_events DROP COLUMN lane;
ALTER TABLE regstack.auth_rate_limit_events
    ADD PRIMARY KEY (key, event_type, seq);

ALTER TABLE regstack.auth_rate_limit_state
    DROP CONSTRAINT auth_rate_limit_state_pkey;
UPDATE regstack.auth_rate_limit_state AS s
   SET next_seq = m.next_seq,
       start_seq = 0,
       start_at = NULL,
       window_us = NULL,
       last_at = m.last_at,
       clock_at = m.clock_at
  FROM (SELECT l.key, l.event_type,
               (SELECT pg_catalog.count(*)
                  FROM regstack.auth_rate_limit_events AS e
                 WHERE e.key OPERATOR(pg_catalog.=) l.key
                   AND e.event_type OPERATOR(pg_catalog.=) l.event_type) AS next_seq,
               pg_catalog.max(l.last_at) AS last_at,
               pg_catalog.max(l.clock_at) AS clock_at
          FROM regstack.auth_rate_limit_state AS l
         GROUP BY l.key, l.event_type) AS m
 WHERE s.key OPERATOR(pg_catalog.=) m.key
   AND s.event_type OPERATOR(pg_catalog.=) m.event_type;
DELETE FROM regstack.auth_rate_limit_state AS s
 WHERE EXISTS (SELECT FROM regstack.auth_rate_limit_state AS t
                WHERE t.key OPERATOR(pg_catalog.=) s.key
                  AND t.event_type OPERATOR(pg_catalog.=) s.event_type
                  AND t.lane OPERATOR(pg_catalog.<) s.lane);
ALTER TABLE regstack.auth_rate_limit_state
    DROP CONSTRAINT auth_rate_limit_state_lane_check;
ALTER TABLE regstack.auth_rate_limit_state DROP COLUMN lane;
ALTER TABLE regstack.auth_rate_limit_state ADD PRIMARY KEY (key, event_type);

COMMENT ON TABLE regstack.auth_rate_limit_state IS
'Rate-limit bookkeeping per key and event type (sequence and window pointer); use the regstack functions, not this table';

-- Statistics and the reaper's lag (as sql/install/30_stats.sql), then what
-- sql/install/90_privileges.sql does for a fresh install: nothing to PUBLIC.
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

REVOKE ALL ON regstack.stats, regstack.reaper_lag FROM PUBLIC;
REVOKE ALL ON FUNCTION regstack.stats(), regstack.stats_reset(), regstack.reaper_lag() FROM PUBLIC;

-- Where rows live on Citus (sql/install/40_citus.sql).

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

CREATE FUNCTION regstack.subject_node(
    subject       text,
    OUT node_name text,
    OUT node_port integer,
    OUT shard_id  bigint,
    OUT is_local  boolean)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_subject_node';

COMMENT ON FUNCTION regstack.subject_node(text) IS
'On Citus, the node holding the tokens of subject (send its issue_token and revoke_tokens there); without Citus, is_local and no node';

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

REVOKE ALL ON FUNCTION regstack.token_node(text), regstack.subject_node(text),
    regstack.rate_limit_node(text) FROM PUBLIC;

-- Distribute regstack on Citus, on the coordinator (docs/citus.md): the
-- registry and key tables become reference tables (one copy, so one
-- subject-tag key, on every node; the coordinator's own rows, its key
-- among them, are then truncated from its local table), the tokens are
-- distributed by subject_tag, the rate-limit state and events by key,
-- colocated, and the rate-limit functions are delegated by their key, or
-- with delegate false not (docs/citus.md says what delegation costs on
-- the owner).  Tables already distributed this way are left as they are;
-- one distributed otherwise is an error.  Rows the workers hold in their
-- own copies of the token or rate-limit tables would be hidden by the
-- distribution: refused.
CREATE FUNCTION regstack.distribute(shard_count integer DEFAULT NULL,
                                    delegate boolean DEFAULT true)
RETURNS TABLE (object text, distribution text, changed boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $distribute$
DECLARE
    -- the copied tables, each with its row trigger
    reference_tables constant text[] :=
        ARRAY['token_types', 'rate_limit_policies', 'secret_keys'];
    row_triggers constant text[] :=
        ARRAY['token_types_row', 'rate_limit_policies_row', 'secret_keys_row'];
    -- the distributed tables: column, colocated with
    hash_tables constant text[] :=
        ARRAY['auth_ephemeral_tokens', 'auth_rate_limit_state', 'auth_rate_limit_events'];
    hash_columns constant text[] := ARRAY['subject_tag', 'key', 'key'];
    colocations constant text[] :=
        ARRAY['none', 'none', 'regstack.auth_rate_limit_state'];
    delegated constant text[] :=
        ARRAY['regstack.rate_limit_check(text,text,integer,interval,boolean)',
              'regstack.rate_limit_record(text,text)',
              'regstack.rate_limit_reset(text,text)'];
    unsafe_triggers text;
    messages text;
    quiet_messages text;
    tbl regclass;
    method "char";
    repmodel "char";
    dist_column text;
    colocation integer;
    state_colocation integer;
    shards bigint;
    is_delegated boolean;
    any_delegation boolean;
    worker record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'regstack.distribute() needs the citus extension'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run it on a Citus coordinator, after CREATE EXTENSION citus.';
    END IF;
    IF NOT citus_is_coordinator() THEN
        RAISE EXCEPTION 'regstack.distribute() must run on the Citus coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF shard_count IS NOT NULL AND shard_count NOT BETWEEN 1 AND 64000 THEN
        RAISE EXCEPTION 'shard_count must be between 1 and 64000, not %', shard_count
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF delegate IS NULL THEN
        RAISE EXCEPTION 'delegate must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- The coordinator's calls read its copy of the reference tables: it
    -- needs one, which Citus places only on nodes in its metadata.
    IF NOT EXISTS (SELECT FROM pg_dist_node WHERE groupid = 0 AND noderole = 'primary' AND isactive) THEN
        RAISE EXCEPTION 'the coordinator is not in the Citus metadata'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'regstack''s calls on the coordinator read its copy of the reference tables.',
                  HINT = 'Run SELECT citus_set_coordinator_host(''<host>'', <port>) first.';
    END IF;

    -- A worker's own rows in a token or rate-limit table (calls made there
    -- before) would stay in its copy, out of sight once the table is
    -- distributed: refused before anything is changed.
    FOR i IN 1 .. array_length(hash_tables, 1) LOOP
        tbl := format('regstack.%I', hash_tables[i])::regclass;
        CONTINUE WHEN EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = tbl);
        FOR worker IN
            SELECT * FROM run_command_on_workers(format('SELECT pg_catalog.count(*) FROM %s', tbl))
        LOOP
            IF NOT worker.success THEN
                RAISE EXCEPTION 'could not read table % on worker %:%: %',
                                tbl, worker.nodename, worker.nodeport, worker.result
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'regstack must be installed on every node.';
            END IF;
            IF worker.result <> '0' THEN
                RAISE EXCEPTION 'worker %:% holds % row(s) in its own copy of table %',
                                worker.nodename, worker.nodeport, worker.result, tbl
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          DETAIL = 'Distributing the table would hide them.',
                          HINT = 'Distribute regstack before calling it on the workers, or delete those rows there.';
            END IF;
        END LOOP;
    END LOOP;

    -- Citus refuses to copy tables with triggers unless told they are safe:
    -- the registry triggers touch only the row's own shard (registry.c).
    unsafe_triggers := current_setting('citus.enable_unsafe_triggers');
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    -- Citus's notices while it copies a table tell to truncate the local
    -- rows, which this function does: not shown.
    messages := current_setting('client_min_messages');
    quiet_messages := CASE WHEN messages IN ('error', 'warning') THEN messages ELSE 'warning' END;

    FOR i IN 1 .. array_length(reference_tables, 1) LOOP
        tbl := format('regstack.%I', reference_tables[i])::regclass;
        SELECT p.partmethod, p.repmodel INTO method, repmodel
        FROM pg_dist_partition p WHERE p.logicalrelid = tbl;
        IF FOUND THEN
            IF method <> 'n' OR repmodel <> 't' THEN
                RAISE EXCEPTION 'table % is already a Citus table, but not a reference table', tbl
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'Citus cannot undistribute a table an extension owns: DROP EXTENSION regstack and CREATE EXTENSION regstack, then run regstack.distribute().';
            END IF;
            -- made by hand: its rows may still be in the shell too
            IF pg_relation_size(tbl) > 0 THEN
                PERFORM truncate_local_data_after_distributing_table(tbl);
            END IF;
            object := tbl::text; distribution := 'reference'; changed := false;
            RETURN NEXT;
            CONTINUE;
        END IF;
        -- The copy into the shards fires the shards' row trigger, which
        -- would mark the shipped rows as the user's: not while copying.
        EXECUTE format('ALTER TABLE %s DISABLE TRIGGER %I', tbl, row_triggers[i]);
        PERFORM set_config('client_min_messages', quiet_messages, true);
        PERFORM create_reference_table(tbl);
        -- The shards hold the rows now: no copy of the key stays behind.
        PERFORM truncate_local_data_after_distributing_table(tbl);
        PERFORM set_config('client_min_messages', messages, true);
        EXECUTE format('ALTER TABLE %s ENABLE TRIGGER %I', tbl, row_triggers[i]);
        object := tbl::text; distribution := 'reference'; changed := true;
        RETURN NEXT;
    END LOOP;

    FOR i IN 1 .. array_length(hash_tables, 1) LOOP
        tbl := format('regstack.%I', hash_tables[i])::regclass;
        SELECT p.partmethod, column_to_column_name(p.logicalrelid, p.partkey), p.colocationid
        INTO method, dist_column, colocation
        FROM pg_dist_partition p WHERE p.logicalrelid = tbl;
        IF FOUND THEN
            IF method <> 'h' OR dist_column IS DISTINCT FROM hash_columns[i] THEN
                RAISE EXCEPTION 'table % is already a Citus table, but not distributed by hash of column "%"',
                                tbl, hash_columns[i]
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'Citus cannot undistribute a table an extension owns: DROP EXTENSION regstack and CREATE EXTENSION regstack, then run regstack.distribute().';
            END IF;
            IF colocations[i] <> 'none' THEN
                SELECT p.colocationid INTO state_colocation
                FROM pg_dist_partition p WHERE p.logicalrelid = colocations[i]::regclass;
                IF colocation IS DISTINCT FROM state_colocation THEN
                    RAISE EXCEPTION 'table % is distributed, but not colocated with %', tbl, colocations[i]
                        USING ERRCODE = 'object_not_in_prerequisite_state',
                              DETAIL = 'A key''s rate-limit state and events must be on one node.',
                              HINT = format('With equal shard counts, SELECT update_distributed_table_colocation(%L, colocate_with => %L); '
                                            'else DROP EXTENSION regstack, CREATE EXTENSION regstack, then regstack.distribute().',
                                            tbl::text, colocations[i]);
                END IF;
            ELSIF shard_count IS NOT NULL THEN
                SELECT count(*) INTO shards FROM pg_dist_shard s WHERE s.logicalrelid = tbl;
                IF shards <> shard_count THEN
                    RAISE NOTICE 'table % is already distributed, in % shards: shard_count % ignored',
                                 tbl, shards, shard_count
                        USING HINT = 'Citus''s alter_distributed_table() changes the shard count of a table.';
                END IF;
            END IF;
            IF pg_relation_size(tbl) > 0 THEN
                PERFORM truncate_local_data_after_distributing_table(tbl);
            END IF;
            object := tbl::text; distribution := format('hash(%s)', hash_columns[i]);
            changed := false;
            RETURN NEXT;
            CONTINUE;
        END IF;
        PERFORM set_config('client_min_messages', quiet_messages, true);
        IF colocations[i] = 'none' THEN
            PERFORM create_distributed_table(tbl, hash_columns[i], colocate_with => 'none',
                                             shard_count => distribute.shard_count);
        ELSE
            PERFORM create_distributed_table(tbl, hash_columns[i], colocate_with => colocations[i]);
        END IF;
        PERFORM truncate_local_data_after_distributing_table(tbl);
        PERFORM set_config('client_min_messages', messages, true);
        object := tbl::text; distribution := format('hash(%s)', hash_columns[i]);
        changed := true;
        RETURN NEXT;
    END LOOP;

    -- Calls of these, made alone, go straight to the node of their key.
    -- Citus then plans each call anew, on the owner too (a prepared
    -- statement's plan is not reused), so clients that send calls to the
    -- owner themselves are faster without it: delegate => false.  Citus
    -- cannot take the delegation of an extension's function back.
    SELECT p.colocationid INTO state_colocation
    FROM pg_dist_partition p WHERE p.logicalrelid = 'regstack.auth_rate_limit_state'::regclass;
    FOREACH object IN ARRAY delegated LOOP
        SELECT o.distribution_argument_index = 0 AND o.colocationid = state_colocation
        INTO is_delegated
        FROM pg_dist_object o
        WHERE o.classid = 'pg_proc'::regclass AND o.objid = object::regprocedure
          AND o.distribution_argument_index IS NOT NULL;
        any_delegation := FOUND;
        changed := delegate AND NOT coalesce(is_delegated, false);
        IF changed THEN
            PERFORM create_distributed_function(object::regprocedure, 'key',
                                                colocate_with => 'regstack.auth_rate_limit_state');
        ELSIF any_delegation AND NOT delegate THEN
            RAISE NOTICE 'function % stays delegated', object::regprocedure
                USING DETAIL = 'Citus cannot take back the delegation of a function an extension owns.',
                      HINT = 'To run without it: DROP EXTENSION regstack, CREATE EXTENSION regstack, then regstack.distribute(delegate => false).';
        END IF;
        object := object::regprocedure::text;
        distribution := CASE WHEN delegate OR any_delegation THEN 'delegated(key)' ELSE 'not delegated' END;
        RETURN NEXT;
    END LOOP;

    PERFORM set_config('citus.enable_unsafe_triggers', unsafe_triggers, true);
END;
$distribute$;

COMMENT ON FUNCTION regstack.distribute(integer, boolean) IS
'On a Citus coordinator: make the registry and key tables reference tables, distribute the tokens by subject_tag and the rate-limit tables by key, delegate the rate-limit functions (unless delegate is false)';

REVOKE ALL ON FUNCTION regstack.distribute(integer, boolean) FROM PUBLIC;
