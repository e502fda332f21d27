-- test/bench/sql/report.sql: turns the figures run.sh collected (tables
-- results, latency and windows in schema report of the bench database, on
-- the search_path) into the printed tables and the JSON file.  psql
-- variables: mode, rounds, clients, length, reaper_rows, batch_size,
-- have_reaper, machine (JSON), command, started, connect_cpu, failures,
-- json_out, md_out.
\set ON_ERROR_STOP on

-- Median of each (workload, contender, sync), with every round's figure.
CREATE VIEW medians AS
SELECT workload, contender, sync, unit,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY value) AS median,
       array_agg(round(value::numeric, 1) ORDER BY round) AS rounds
  FROM results
 GROUP BY workload, contender, sync, unit;

-- Token-pair latency per phase, by completion time: idle (before the
-- reaper is enabled, after the first second; and from half a second after
-- the table is empty and the reaper has been switched off again, so that
-- neither it nor the ALTER SYSTEM and reload that switch it off fall in
-- the idle figure) and reaping (from enabling it, the ALTER SYSTEM and
-- reload included, until the table is empty).
CREATE VIEW latency_phases AS
SELECT phase, count(*) AS pairs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_us) / 1000 AS p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_us) / 1000 AS p99_ms,
       max(latency_us) / 1000 AS max_ms
  FROM (SELECT CASE WHEN l.epoch + l.epoch_us / 1e6 BETWEEN w.t_start + 1 AND w.t_enable THEN 'idle'
                    WHEN l.epoch + l.epoch_us / 1e6 BETWEEN w.t_enable AND w.t_done THEN 'reaping'
                    WHEN l.epoch + l.epoch_us / 1e6 > w.t_off + 0.5 THEN 'idle'
               END AS phase, l.latency_us
          FROM latency AS l, windows AS w) AS s
 WHERE phase IS NOT NULL
 GROUP BY phase;

-- The targets (issues 3, 4, 5 and 21): numerator / denominator against a bound.
CREATE VIEW targets AS
WITH t (ord, figure, num_w, num_c, num_s, den_w, den_c, den_s, op, bound) AS (VALUES
    (1, 'token pair vs plain SQL, sync off', 'token_pair', 'regstack', 'off', 'token_pair', 'plain_sql', 'off', '>=', 1.3),
    (2, 'token pair vs plain SQL, sync on', 'token_pair', 'regstack', 'on', 'token_pair', 'plain_sql', 'on', '>=', 1.0),
    (3, 'token pair vs PL/pgSQL, sync off', 'token_pair', 'regstack', 'off', 'token_pair', 'plpgsql', 'off', '>=', 1.5),
    (4, 'token pair vs PL/pgSQL, sync on', 'token_pair', 'regstack', 'on', 'token_pair', 'plpgsql', 'on', '>=', 1.5),
    (5, 'token pair vs Redis, sync off (goal)', 'token_pair', 'regstack', 'off', 'token_pair', 'redis', 'off', '>=', 0.5),
    (6, 'rate limit spread vs plain SQL, sync off', 'rate_limit', 'regstack_spread', 'off', 'rate_limit', 'plain_sql_spread', 'off', '>=', 1.5),
    (7, 'rate limit spread vs plain SQL, sync on', 'rate_limit', 'regstack_spread', 'on', 'rate_limit', 'plain_sql_spread', 'on', '>=', 1.0),
    (8, 'attack (denied) vs spread-key check, sync off', 'rl_attack', 'regstack_attack', 'off', 'rate_limit', 'regstack_spread', 'off', '>=', 1.0),
    (9, 'attack (denied) vs spread-key check, sync on', 'rl_attack', 'regstack_attack', 'on', 'rate_limit', 'regstack_spread', 'on', '>=', 1.0),
    (15, 'server CPU per check, spread / attack (denied), sync off', 'rate_limit_cpu', 'regstack_spread', 'off', 'rl_attack_cpu', 'regstack_attack', 'off', '>=', 1.0),
    (16, 'attack (denied) vs plain SQL, sync off (report)', 'rl_attack', 'regstack_attack', 'off', 'rl_attack', 'plain_sql_attack', 'off', NULL, NULL),
    (17, 'failures on one account vs plain SQL insert, sync on (report)', 'rl_failures', 'regstack_failures', 'on', 'rl_failures', 'plain_sql_failures', 'on', NULL, NULL),
    (18, 'failures on one account vs plain SQL insert, sync off (report)', 'rl_failures', 'regstack_failures', 'off', 'rl_failures', 'plain_sql_failures', 'off', NULL, NULL),
    (19, 'shared quota key vs spread keys, sync on (report)', 'rl_quota', 'regstack_quota', 'on', 'rate_limit', 'regstack_spread', 'on', NULL, NULL),
    (25, 'shared quota key vs spread keys, sync off (report)', 'rl_quota', 'regstack_quota', 'off', 'rate_limit', 'regstack_spread', 'off', NULL, NULL),
    (26, 'shared quota key vs plain SQL, sync on (report)', 'rl_quota', 'regstack_quota', 'on', 'rl_quota', 'plain_sql_quota', 'on', NULL, NULL),
    (10, 'reaper rows/s vs plain batched delete', 'reaper', 'regstack_reaper', 'on', 'reaper', 'plain_sql', 'on', '>=', 1.0),
    (11, 'reaper pass alone (its own start/end) vs plain batched delete (report)', 'reaper', 'regstack_reaper_pass_only', 'on', 'reaper', 'plain_sql', 'on', NULL, NULL),
    (12, 'purge_expired rows/s vs plain batched delete (report)', 'reaper', 'purge_expired', 'on', 'reaper', 'plain_sql', 'on', NULL, NULL),
    (14, 'WAL per row deleted, reaper / plain batched delete (report)', 'reaper_wal', 'regstack_reaper', 'on', 'reaper_wal', 'plain_sql', 'on', NULL, NULL),
    -- Server CPU per transaction, the other way round (lower is better):
    -- how many times regstack's CPU per transaction the other one uses.
    (20, 'server CPU per token pair, plain SQL / regstack, sync off (report)', 'token_pair_cpu', 'plain_sql', 'off', 'token_pair_cpu', 'regstack', 'off', NULL, NULL),
    (21, 'server CPU per token pair, PL/pgSQL / regstack, sync off (report)', 'token_pair_cpu', 'plpgsql', 'off', 'token_pair_cpu', 'regstack', 'off', NULL, NULL),
    (22, 'server CPU per token pair, Redis / regstack (report)', 'token_pair_cpu', 'redis', 'off', 'token_pair_cpu', 'regstack', 'off', NULL, NULL),
    (23, 'server CPU per check, plain SQL / regstack, spread, sync off (report)', 'rate_limit_cpu', 'plain_sql_spread', 'off', 'rate_limit_cpu', 'regstack_spread', 'off', NULL, NULL),
    (24, 'shared quota key, regstack vs Redis one key, sync off (report)', 'rl_quota', 'regstack_quota', 'off', 'rl_quota', 'redis_one_key', 'off', NULL, NULL))
SELECT t.ord, t.figure, n.median / nullif(d.median, 0) AS ratio, t.op, t.bound,
       CASE WHEN n.median IS NULL OR d.median IS NULL THEN 'not measured'
            WHEN d.median = 0 THEN 'not measured (zero)'
            WHEN :'mode' = 'smoke' THEN 'not judged (smoke)'
            WHEN t.op IS NULL THEN 'report'
            WHEN t.op = '>=' AND n.median / d.median >= t.bound THEN 'met'
            ELSE 'NOT met' END AS verdict
  FROM t
  LEFT JOIN medians AS n ON (n.workload, n.contender, n.sync) = (t.num_w, t.num_c, t.num_s)
  LEFT JOIN medians AS d ON (d.workload, d.contender, d.sync) = (t.den_w, t.den_c, t.den_s)
UNION ALL
SELECT 13, 'token pair p99 reaping vs idle', r.p99_ms / nullif(i.p99_ms, 0), '<=', 2.0,
       CASE WHEN r.p99_ms IS NULL OR i.p99_ms IS NULL THEN 'not measured'
            WHEN i.p99_ms = 0 THEN 'not measured (zero)'
            WHEN :'mode' = 'smoke' THEN 'not judged (smoke)'
            WHEN r.p99_ms / i.p99_ms <= 2.0 THEN 'met' ELSE 'NOT met' END
  FROM (SELECT 1) AS one
  LEFT JOIN latency_phases AS i ON i.phase = 'idle'
  LEFT JOIN latency_phases AS r ON r.phase = 'reaping';

\echo == Medians (throughput per second, reaper in rows per second; *_cpu: server CPU microseconds per transaction)
SELECT workload, contender, sync AS sync_commit,
       round(median::numeric, 1) AS median, unit, rounds
  FROM medians
 ORDER BY workload DESC, contender, sync DESC;

\echo == Token pair latency (regstack, synchronous_commit on, fixed rate), milliseconds
SELECT phase, pairs, round(p50_ms::numeric, 3) AS p50_ms, round(p99_ms::numeric, 3) AS p99_ms,
       round(max_ms::numeric, 3) AS max_ms, (SELECT rate FROM windows) AS rate_per_s
  FROM latency_phases ORDER BY phase;

\echo == Targets (ratios from this run)
SELECT figure, round(ratio::numeric, 2) AS ratio,
       coalesce(op || ' ' || bound, '') AS target, verdict
  FROM targets ORDER BY ord;

-- The JSON file: settings, machine, every round's figure, medians,
-- latency and targets.
\pset format unaligned
\pset tuples_only on
\o :json_out
SELECT jsonb_pretty(jsonb_build_object(
    'mode', :'mode',
    'started_at', :'started',
    'command', :'command',
    'machine', :'machine'::jsonb,
    'settings', jsonb_build_object(
        'clients', :clients, 'pgbench_threads', 2, 'rounds', :rounds,
        'round_length', :'length', 'pgbench_protocol', 'prepared',
        'reaper_rows', :reaper_rows, 'batch_size', :batch_size,
        'reaper_naptime_s', 1, 'background_reaper_built', :have_reaper = 1,
        'connect_cpu_s_subtracted_per_run', :connect_cpu),
    'failed_workloads', :failures,
    'runs', (SELECT jsonb_agg(to_jsonb(r) ORDER BY workload DESC, round, contender, sync) FROM results AS r),
    'medians', (SELECT jsonb_agg(jsonb_build_object('workload', workload, 'contender', contender,
                                                    'sync_commit', sync, 'median', median, 'unit', unit,
                                                    'rounds', rounds)
                                 ORDER BY workload DESC, contender, sync DESC) FROM medians),
    'latency', jsonb_build_object(
        'rate_per_s', (SELECT rate FROM windows),
        'idle_s', (SELECT t_enable - t_start FROM windows),
        'reaping_s', (SELECT t_done - t_enable FROM windows),
        'phases', (SELECT jsonb_agg(to_jsonb(p) ORDER BY phase) FROM latency_phases AS p)),
    'targets', (SELECT jsonb_agg(jsonb_build_object('figure', figure, 'ratio', ratio, 'op', op,
                                                    'bound', bound, 'verdict', verdict) ORDER BY ord)
                  FROM targets)));
\o

-- The same tables as Markdown (md_out, next to the JSON; the README quotes them).

\o :md_out
SELECT '| workload | contender | synchronous_commit | median | unit | rounds |' || E'\n' ||
       '|---|---|---|---:|---|---|' || E'\n' ||
       string_agg(format('| %s | %s | %s | %s | %s | %s |', workload, contender, sync,
                         round(median::numeric, 1), replace(unit, '_', ' '),
                         array_to_string(rounds, ', ')),
                  E'\n' ORDER BY workload DESC, contender, sync DESC)
  FROM medians;
SELECT '';
SELECT '| token pair latency | pairs | p50 ms | p99 ms | max ms |' || E'\n' ||
       '|---|---:|---:|---:|---:|' || E'\n' ||
       coalesce(string_agg(format('| %s | %s | %s | %s | %s |', phase, pairs,
                                  round(p50_ms::numeric, 2), round(p99_ms::numeric, 2),
                                  round(max_ms::numeric, 2)), E'\n' ORDER BY phase), '')
  FROM latency_phases;
SELECT '';
SELECT '| figure | ratio | target | verdict |' || E'\n' || '|---|---:|---|---|' || E'\n' ||
       string_agg(format('| %s | %s | %s | %s |', figure, coalesce(round(ratio::numeric, 2)::text, '-'),
                         coalesce(op || ' ' || bound, 'report'), verdict), E'\n' ORDER BY ord)
  FROM targets;
\o
