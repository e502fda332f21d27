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
