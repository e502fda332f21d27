#!/usr/bin/env bash
# test/bench/run.sh: regstack's benchmark (`make bench`).  Compares regstack
# side by side, in one run, with the plain SQL an application writes, the
# same API in PL/pgSQL, and Redis; prints a table of medians and target
# ratios and writes every figure to a JSON file (its path is printed).
#
# Run as root on a fresh Debian 12 machine with the PostgreSQL 15 server
# installed: it installs what is missing (server headers, redis-server,
# libhiredis-dev, gcc, make), builds regstack into a private copy of
# PostgreSQL under /tmp (never into the system directories), and starts a
# throwaway PostgreSQL (as "postgres", Unix socket in the work directory,
# no TCP) and a throwaway Redis (Unix socket only, no persistence).  Both
# stop, and the work directory goes, when the script exits.  PGVERSION=17
# or 18 runs it all, Redis included, in that version's Debian chroot
# (test/lib/chroot.sh; built on first use, then cached); the figures are
# written on the host as usual.
#
# Workloads (8 clients each, rounds interleaved, medians; details in
# docs/benchmark.md): token pair, rate limit on spread keys, an attack on
# one key (every call denied), failures recorded on one account, a shared
# quota key far from its limit, reaper (1M expired rows) and token-pair
# latency while reaping.
#
# Environment:
#   BENCH_MODE=full|smoke   full (default, under 5 minutes) or smoke (a few
#                           seconds of load, for CI: fails only when a
#                           workload errors, never because of a figure)
#   PGVERSION=15|17|18      the PostgreSQL (default 15, the host's)
#   BENCH_OUT=path.json     where the JSON goes (default:
#                           /tmp/regstack-bench-results/bench-<UTC time>-<mode>.json,
#                           -<mode>-pg<version>.json for 17 and 18); the
#                           Markdown tables go beside it (.md)
#   BENCH_RECORD=1          write to test/bench/results/ instead: the run of
#                           record of the current code, to commit (one per
#                           supported version; git history keeps the rest)
#   BENCH_PG_CONFIG=path    use an existing private build (test/check.sh)
#                           of this machine's PostgreSQL
#   BENCH_ROUNDS, BENCH_SECONDS, BENCH_REAPER_ROWS   override the mode's sizes
#   KEEP=1                  keep the work directory (logs, pgbench logs)
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
bench=$src/test/bench
. "$src/test/lib/common.sh"

mode=${BENCH_MODE:-full}
case $mode in
    full)
        rounds=${BENCH_ROUNDS:-3}; length="-T ${BENCH_SECONDS:-2}"
        reaper_rows=${BENCH_REAPER_ROWS:-1000000}; reaper_rounds=1
        warmup=1; idle_seconds=5 ;;
    smoke)
        rounds=${BENCH_ROUNDS:-1}; length="-t 10"
        reaper_rows=${BENCH_REAPER_ROWS:-20000}; reaper_rounds=1
        warmup=0; idle_seconds=1 ;;
    *) echo "BENCH_MODE must be full or smoke" >&2; exit 2 ;;
esac
clients=8
threads=2
batch_size=10000
failures=0

# Report a failed workload; the run goes on and exits 1 at the end.
bench_fail() {
    echo "WORKLOAD ERROR: $*" >&2
    failures=$((failures + 1))
}

# Stop the servers this script started and remove the work directory
# (kept after a failure, or with KEEP=1).
bench_cleanup() {
    local rc=$?
    set +e
    if [ -n "${pgbench_bg:-}" ]; then kill "$pgbench_bg" 2>/dev/null; wait "$pgbench_bg" 2>/dev/null; fi
    if [ -f "$work/redis.pid" ]; then kill "$(cat "$work/redis.pid")" 2>/dev/null; fi
    if [ -f "$work/data/postmaster.pid" ]; then
        regstack_as_test_user "'$bin/pg_ctl' -D '$work/data' -m immediate -w stop" >/dev/null 2>&1
    fi
    if [ "${KEEP:-0}" = 1 ] || [ "$failures" -gt 0 ] || [ "$rc" -ne 0 ]; then
        echo "work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
}

# psql as the superuser on database $1; the rest are psql arguments.
bench_psql() {
    "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$port" -U postgres -d "$1" "${@:2}"
}

# Seconds since the epoch, with fractions.
bench_now() {
    date +%s.%N
}

# Evaluate an arithmetic expression of decimals (awk; no bc needed).
bench_calc() {
    awk "BEGIN { printf \"%.6f\", $1 }"
}

# Append one figure to the results file: workload contender sync round value unit.
bench_record() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$work/results.tsv"
}

# Run pgbench with script $1 at synchronous_commit $2 and print its tps
# and how many transactions it ran;
# extra pgbench arguments follow.  Fails when pgbench reports an error.
bench_pgbench() {
    local script=$1 sync=$2 out
    out=$(PGOPTIONS="-c synchronous_commit=$sync" "$bin/pgbench" -n -M prepared \
        -c "$clients" -j "$threads" -h "$work" -p "$port" -U bench_app \
        -f "$bench/pgbench/$script" "${@:3}" bench 2>&1) || {
        printf '%s\n' "$out" | grep -m 4 -iE 'error|abort|fatal' >&2
        return 1
    }
    printf '%s %s\n' \
        "$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p')" \
        "$(printf '%s\n' "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')"
}

# Run the Redis driver for workload $1 and print its transactions per
# second and their number; the run length (-T s or -t n) follows.
bench_redis() {
    local out
    out=$("$work/redis_driver" -s "$work/redis.sock" -w "$1" -L "$bench/ratelimit.lua" \
        -c "$clients" -j "$threads" "${@:2}" 2>&1) || {
        printf '%s\n' "$out" | tail -n 5 >&2
        return 1
    }
    printf '%s\n' "$out" | sed -n 's/^transactions=\([0-9]*\) .* tps=\([0-9.]*\) .*/\2 \1/p'
}

# CPU seconds the server has used so far: for Redis ($1 = redis), the
# redis-server process; for PostgreSQL, the postmaster's exited children
# (the backends of finished pgbench runs, autovacuum workers).
bench_server_cpu() {
    local tck
    tck=$(getconf CLK_TCK)
    if [ "$1" = redis ]; then
        awk -v t="$tck" '{printf "%.2f", ($14 + $15) / t}' "/proc/$(cat "$work/redis.pid")/stat"
    else
        awk -v t="$tck" '{printf "%.2f", ($16 + $17) / t}' "/proc/$(head -n 1 "$work/data/postmaster.pid")/stat"
    fi
}

# Print the server CPU seconds that the 8 connections of one pgbench run
# cost by themselves (backend start and exit), median of 3 tries.
bench_connect_cpu() {
    local i a b
    for i in 1 2 3; do
        a=$(bench_server_cpu postgres)
        bench_pgbench connect_only.sql off -t 1 >/dev/null
        sleep 0.1
        b=$(bench_server_cpu postgres)
        bench_calc "$b - $a"; echo
    done | sort -n | sed -n 2p
}

# Run one contender of a throughput workload and record its throughput and
# the server's CPU time per transaction, less the connections' own cost
# (round 0 is the unrecorded warm-up, 1 second long).
# Arguments: workload contender sync round (pgbench script | redis:workload).
bench_case() {
    local workload=$1 contender=$2 sync=$3 round=$4 what=$5 res len=$length server=postgres
    local cpu0 cpu1 cpu connect=$connect_cpu
    [ "$round" -eq 0 ] && len="-T 1"
    [[ $what == redis:* ]] && { server=redis; connect=0; }
    cpu0=$(bench_server_cpu $server)
    if [ $server = redis ]; then
        res=$(bench_redis "${what#redis:}" $len) || { bench_fail "$workload/$contender"; return 0; }
    else
        res=$(bench_pgbench "$what" "$sync" $len) || { bench_fail "$workload/$contender sync=$sync"; return 0; }
        sleep 0.1       # let the postmaster reap the run's backends
    fi
    cpu1=$(bench_server_cpu $server)
    set -- $res
    if [ $# -ne 2 ] || [ "$2" -eq 0 ]; then bench_fail "$workload/$contender: no figure"; return 0; fi
    cpu=$(bench_calc "($cpu1 - $cpu0 - $connect) / $2 * 1000000")
    if [ "$round" -gt 0 ]; then
        bench_record "$workload" "$contender" "$sync" "$round" "$1" per_s
        bench_record "${workload}_cpu" "$contender" "$sync" "$round" "$cpu" server_cpu_us_per_txn
    fi
    printf '  %-10s %-16s sync=%-3s %-9s %10.1f/s %8.1f us server CPU each\n' "$workload" "$contender" \
        "$sync" "$([ "$round" -gt 0 ] && echo "round $round" || echo warm-up)" "$1" "$cpu"
}

# Run the rounds of a workload (after a warm-up round at sync off, when
# warm-ups are on): cases are "contender=script" words, where
# "script@off" runs at synchronous_commit off only and "redis:..." (Redis
# has no such setting) runs once per round, beside the sync-off cases.  The
# starting contender rotates each round, so none always follows the same one.
bench_rounds() {
    local workload=$1 r sync i n
    shift
    local cases=("$@")
    n=${#cases[@]}
    for ((r = 1 - warmup; r <= rounds; r++)); do
        for sync in off on; do
            [ "$r" -eq 0 ] && [ "$sync" = on ] && continue    # one warm-up suffices
            for ((i = 0; i < n; i++)); do
                local c=${cases[$(((i + r + n) % n))]}
                local what=${c#*=}
                [[ ( $what == redis:* || $what == *@off ) && $sync == on ]] && continue
                bench_case "$workload" "${c%%=*}" "$sync" "$r" "${what%@off}"
            done
        done
    done
}

# Fill the attack key's window to its limit, for regstack (the shipped
# login_ip policy: 100 per 15 minutes) and for the plain-SQL table, so
# that every call of the attack workload is denied.
bench_fill_attack_key() {
    bench_psql bench -q \
        -c "SELECT regstack.rate_limit_record('ip:203.0.113.7', 'login_ip') FROM generate_series(1, 100)" \
        -c "INSERT INTO app.auth_rate_limit_events (key, event_type)
            SELECT 'ip:203.0.113.7', 'login_ip' FROM generate_series(1, 100)"
}

# Enable the reaper and wait (in one session, polling regstack.reaper_status
# through bench.reaper()) until it has deleted $1 more rows; print the
# seconds from enabling it until then, and the duration of the reaper's
# pass as it reports it.  Fails if expired rows are left behind.
bench_reap() {
    local out
    out=$(bench_psql bench -At <<EOF
SELECT deleted AS before FROM bench.reaper() \gset
SELECT clock_timestamp() AS t0 \gset
ALTER SYSTEM SET regstack.reaper_enabled = on;
SELECT pg_reload_conf() AS reloaded \gset
CALL bench.wait_reaped(:before + $1);
SELECT extract(epoch FROM clock_timestamp() - :'t0') AS secs \gset
CALL bench.wait_pass_end(:'t0');
ALTER SYSTEM SET regstack.reaper_enabled = off;
SELECT pg_reload_conf() AS reloaded \gset
SELECT :secs, extract(epoch FROM pass_end - pass_start),
       (SELECT count(*) FROM regstack.auth_ephemeral_tokens WHERE expires_at <= now())
  FROM bench.reaper();
EOF
) || return 1
    out=$(printf '%s\n' "$out" | tail -n 1)
    [ "${out##*|}" = 0 ] || { echo "expired rows left behind: ${out##*|}" >&2; return 1; }
    echo "${out%|*}"
}

# Refill regstack.auth_ephemeral_tokens with the template's expired rows.
bench_refill() {
    bench_psql bench -c "TRUNCATE regstack.auth_ephemeral_tokens" \
        -c "INSERT INTO regstack.auth_ephemeral_tokens SELECT * FROM bench.expired_template" \
        -c "VACUUM (ANALYZE) regstack.auth_ephemeral_tokens"
}

# Time one SQL statement ($1) that deletes the table's rows; print seconds.
bench_time_sql() {
    local out
    out=$(bench_psql bench -At <<EOF
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
$1;
SELECT extract(epoch FROM clock_timestamp()) - :t0,
       (SELECT count(*) FROM regstack.auth_ephemeral_tokens WHERE expires_at <= now());
EOF
) || return 1
    out=$(printf '%s\n' "$out" | tail -n 1)
    [ "${out#*|}" = 0 ] || { echo "expired rows left behind: ${out#*|}" >&2; return 1; }
    echo "${out%%|*}"
}

# The server's current WAL position.
bench_wal_lsn() {
    bench_psql bench -Atc "SELECT pg_current_wal_lsn()"
}

# Record the WAL a reaper contender ($1, round $2) wrote since LSN $3, per row.
bench_record_wal() {
    bench_record reaper_wal "$1" on "$2" \
        "$(bench_psql bench -Atc "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$3') / $reaper_rows")" \
        wal_bytes_per_row
}

# The reaper workload: rows/s of the plain-SQL batched delete,
# purge_expired() and the reaper, each on the same freshly filled table,
# and the WAL each writes per row.
bench_reaper_rows() {
    local r secs pass lsn
    bench_psql bench -c "CALL bench.make_expired($reaper_rows)"
    for ((r = 1; r <= reaper_rounds; r++)); do
        bench_refill
        lsn=$(bench_wal_lsn)
        if secs=$(bench_time_sql "CALL bench.plain_batched_delete($batch_size)"); then
            bench_record reaper plain_sql on "$r" "$(bench_calc "$reaper_rows / $secs")" rows_per_s
            bench_record_wal plain_sql "$r" "$lsn"
            printf '  reaper     %-16s round %s: %.2f s\n' plain_sql "$r" "$secs"
        else bench_fail "reaper/plain_sql"; fi
        bench_refill
        lsn=$(bench_wal_lsn)
        if secs=$(bench_time_sql "SELECT * FROM regstack.purge_expired()"); then
            bench_record reaper purge_expired on "$r" "$(bench_calc "$reaper_rows / $secs")" rows_per_s
            bench_record_wal purge_expired "$r" "$lsn"
            printf '  reaper     %-16s round %s: %.2f s\n' purge_expired "$r" "$secs"
        else bench_fail "reaper/purge_expired"; fi
        if [ "$have_reaper" = 1 ]; then
            bench_refill
            lsn=$(bench_wal_lsn)
            if secs=$(bench_reap "$reaper_rows"); then
                pass=${secs#*|}; secs=${secs%|*}
                bench_record reaper regstack_reaper on "$r" "$(bench_calc "$reaper_rows / $secs")" rows_per_s
                bench_record reaper regstack_reaper_pass_only on "$r" "$(bench_calc "$reaper_rows / $pass")" rows_per_s
                bench_record_wal regstack_reaper "$r" "$lsn"
                printf '  reaper     %-16s round %s: %.2f s from enabling it (its pass: %.2f s)\n' \
                    regstack_reaper "$r" "$secs" "$pass"
            else bench_fail "reaper/regstack_reaper"; fi
        fi
    done
}

# Token-pair latency (regstack, synchronous_commit on, at 30% of the
# measured throughput) idle and while the reaper empties a freshly filled
# table: pgbench per-transaction logs (-l) in $work/latency; the report
# computes the percentiles.  pgbench runs long enough to cover the idle
# period, the reaping (six times as long as the reaper took alone: under
# this load it deletes small batches with pauses, at about a fifth of that
# rate) and some idle time after it.  A checkpoint first, as a server in
# steady state has had: it recycles the WAL segments the earlier phases
# filled, so that no commit in either window waits while a backend
# creates and zero-fills a new 16 MB segment under WALWriteLock (50-70 ms
# for every commit on this machine; each 16 MB of WAL did it, idle or
# reaping).  It comes before the refill, so the reaper's deletes carry no
# full-page images, as in every run before.
bench_reaper_latency() {
    local rate total t_start t_enable t_done t_off secs
    rate=$(awk -F'\t' '$1 == "token_pair" && $2 == "regstack" && $3 == "on" {s += $5; n++}
                       END {r = (n ? s / n : 1000) * 0.3; print (r < 50 ? 50 : int(r))}' "$work/results.tsv")
    total=$(awk -F'\t' -v rows="$reaper_rows" -v idle="$idle_seconds" \
        '$1 == "reaper" && $2 == "regstack_reaper" {r = $5}
         END {t = idle + 3 + (r ? 6 * rows / r : 20); print int(t + 0.999)}' "$work/results.tsv")
    bench_psql bench -qc "CHECKPOINT"
    bench_refill
    mkdir -p "$work/latency"
    t_start=$(bench_now)
    (cd "$work/latency" && PGOPTIONS="-c synchronous_commit=on" exec "$bin/pgbench" -n -M prepared \
        -c "$clients" -j "$threads" -h "$work" -p "$port" -U bench_app -R "$rate" -T "$total" \
        -l --log-prefix=pair -f "$bench/pgbench/token_regstack.sql" bench \
        >"$work/latency/pgbench.out" 2>&1) &
    pgbench_bg=$!
    sleep "$idle_seconds"
    t_enable=$(bench_now)
    if secs=$(bench_reap "$reaper_rows"); then
        secs=${secs%|*}
        t_done=$(bench_calc "$t_enable + $secs")
        bench_record reaper regstack_reaper_under_load on 1 "$(bench_calc "$reaper_rows / $secs")" rows_per_s
    else
        bench_fail "latency: reaper"; t_done=$(bench_now)
    fi
    # bench_reap has switched the reaper off again (ALTER SYSTEM, reload):
    # the idle time after reaping is counted from half a second after that.
    t_off=$(bench_now)
    if ! wait "$pgbench_bg"; then
        tail -n 5 "$work/latency/pgbench.out" >&2
        bench_fail "latency: pgbench"
    fi
    pgbench_bg=
    cat "$work"/latency/pair.* >"$work/latency.log"
    printf '%s\t%s\t%s\t%s\t%s\n' "$rate" "$t_start" "$t_enable" "$t_done" "$t_off" \
        >"$work/latency_windows.tsv"
    printf '  latency    token pair at %s/s for %s s: idle %.1f s, then reaping %.2f s\n' "$rate" "$total" \
        "$(bench_calc "$t_enable - $t_start")" "$(bench_calc "$t_done - $t_enable")"
}

# Start the throwaway PostgreSQL from the private copy.
bench_start_postgres() {
    regstack_as_test_user "'$bin/initdb' -D '$work/data' -A trust -U postgres -E UTF8 --locale=C >'$work/initdb.log'"
    cat >>"$work/data/postgresql.conf" <<EOF
# regstack benchmark: a 2-core / 24 GiB machine; the same for every contender.
listen_addresses = ''
port = $port
unix_socket_directories = '$work'
max_connections = 40
shared_buffers = 4GB
effective_cache_size = 16GB
work_mem = 16MB
maintenance_work_mem = 1GB
wal_buffers = 64MB
max_wal_size = 16GB
min_wal_size = 1GB
checkpoint_timeout = 30min
random_page_cost = 1.1
jit = off
shared_preload_libraries = 'regstack'
EOF
    if [ "$have_reaper" = 1 ]; then
        cat >>"$work/data/postgresql.conf" <<EOF
regstack.reaper_enabled = off
regstack.reaper_naptime = 1
regstack.reaper_batch_size = $batch_size
EOF
    fi
    regstack_as_test_user "'$bin/pg_ctl' -D '$work/data' -l '$work/server.log' -w start" >/dev/null
    bench_psql postgres -c "CREATE DATABASE bench"
    bench_psql bench -f "$bench/sql/setup.sql"
}

# Start the throwaway Redis: Unix socket only, no RDB snapshots, no AOF.
bench_start_redis() {
    regstack_as_test_user "redis-server --port 0 --unixsocket '$work/redis.sock' --unixsocketperm 700 \
        --save '' --appendonly no --daemonize yes --pidfile '$work/redis.pid' \
        --logfile '$work/redis.log' --dir '$work'"
    for _ in $(seq 50); do [ -S "$work/redis.sock" ] && return 0; sleep 0.1; done
    echo "redis did not start" >&2
    return 1
}

# The machine and software, as JSON.
bench_machine_json() {
    printf '{"cores": %s, "cpu": "%s", "memory_gib": %s, "kernel": "%s", "postgresql": "%s", "redis": "%s"}' \
        "$(nproc)" "$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)" \
        "$(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)" "$(uname -r)" \
        "$("$bin/postgres" --version | awk '{print $3}')" \
        "$(redis-server --version | sed -n 's/.* v=\([0-9.]*\) .*/\1/p')"
}

# Load the figures into schema report of the bench database (after every
# measurement; CREATE DATABASE would force a checkpoint) and print the
# tables; report.sql writes the JSON.
bench_report() {
    bench_psql bench -c "CREATE SCHEMA report" \
        -c "CREATE TABLE report.results (workload text, contender text, sync text, round int, value float8, unit text)" \
        -c "CREATE TABLE report.latency (client int, txn int, latency_us float8, script int, epoch bigint, epoch_us int, lag_us float8)" \
        -c "CREATE TABLE report.windows (rate int, t_start float8, t_enable float8, t_done float8, t_off float8)"
    bench_psql bench -c "COPY report.results FROM STDIN" <"$work/results.tsv"
    if [ -s "$work/latency.log" ]; then
        bench_psql bench -c "COPY report.latency FROM STDIN (DELIMITER ' ')" <"$work/latency.log"
    fi
    if [ -s "$work/latency_windows.tsv" ]; then
        bench_psql bench -c "COPY report.windows FROM STDIN" <"$work/latency_windows.tsv"
    fi
    mkdir -p "$(dirname "$out")"
    PGOPTIONS="-c search_path=report" bench_psql bench -P footer=off \
        -v mode="$mode" -v rounds="$rounds" -v clients="$clients" -v length="$length" \
        -v reaper_rows="$reaper_rows" -v batch_size="$batch_size" -v have_reaper="$have_reaper" \
        -v machine="$(bench_machine_json)" -v command="$command" -v started="$started" \
        -v connect_cpu="$connect_cpu" -v failures="$failures" -v json_out="$out" -v md_out="${out%.json}.md" \
        -f "$bench/sql/report.sql"
}

# Run this script in version $pgver's chroot, with the work directory
# mounted there, and copy the figures to $out on the host.
bench_in_chroot() {
    local outer rc=0
    . "$src/test/lib/chroot.sh"
    if [ -n "${BENCH_PG_CONFIG:-}" ]; then
        echo "BENCH_PG_CONFIG names a build on this machine; PostgreSQL $pgver is built in its chroot" >&2
        exit 2
    fi
    echo "== PostgreSQL $pgver: chroot $(regstack_chroot_root "$pgver")"
    regstack_chroot_ensure "$pgver" >/dev/null
    outer=$(mktemp -d /tmp/regstack-bench.XXXXXX)
    chmod 755 "$outer"
    regstack_copy_source "$src" "$outer/tree"
    REGSTACK_BENCH_WORK=$outer/work BENCH_OUT=$outer/figures/bench.json \
        regstack_chroot_run "$pgver" "$outer" "bash '$outer/tree/test/bench/run.sh'" || rc=$?
    if [ -f "$outer/figures/bench.json" ]; then
        mkdir -p "$(dirname "$out")"
        cp "$outer/figures/bench.json" "$out"
        cp "$outer/figures/bench.md" "${out%.json}.md"
        echo "figures copied to $out (tables as Markdown: ${out%.json}.md)"
    fi
    if [ "$rc" -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf --one-file-system "$outer"
    else
        echo "work directory kept: $outer/work" >&2
    fi
    exit $rc
}

pgver=$(regstack_pgversion)
out=${BENCH_OUT:-}
if [ -z "$out" ]; then
    results=/tmp/regstack-bench-results
    [ "${BENCH_RECORD:-0}" = 1 ] && results=$bench/results
    out=$results/bench-$(date -u +%Y%m%dT%H%M%SZ)-$mode$([ "$pgver" = "$(regstack_host_pgversion)" ] || echo "-pg$pgver").json
fi
if regstack_needs_chroot "$pgver"; then
    bench_in_chroot
fi

regstack_install_packages postgresql-server-dev-$pgver redis-server libhiredis-dev gcc make
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
command="$([ "$pgver" = "$(regstack_host_pgversion)" ] || echo "PGVERSION=$pgver ")BENCH_MODE=$mode bash test/bench/run.sh"
if [ -n "${REGSTACK_BENCH_WORK:-}" ]; then
    work=$REGSTACK_BENCH_WORK       # made by bench_in_chroot on the host
    mkdir -p "$work"
else
    work=$(mktemp -d /tmp/regstack-bench.XXXXXX)
fi
chmod 755 "$work"
regstack_chown_test_user "$work"
bin=
port=55437
pgbench_bg=
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

echo "== regstack benchmark ($mode, PostgreSQL $pgver): building into $work"
if [ -n "${BENCH_PG_CONFIG:-}" ]; then
    pg_config=$BENCH_PG_CONFIG
else
    pg_config=$(regstack_build_private "$src" "$work" "$pgver")
fi
bin=$("$pg_config" --bindir)
have_reaper=0
grep -qs 'reaper_status' "$("$pg_config" --sharedir)"/extension/regstack--*.sql && have_reaper=1
gcc -O2 -Wall -o "$work/redis_driver" "$bench/redis_driver.c" -lhiredis -lpthread

bench_start_postgres
bench_start_redis
connect_cpu=$(bench_connect_cpu)
echo "== $clients clients, $rounds round(s) of pgbench $length, interleaved; reaper: $reaper_rows rows"
echo "   (8 connections cost the server $connect_cpu s of CPU; subtracted from each run's CPU figure)"

echo "== token pair (issue_token + consume_token, pairs/s)"
bench_rounds token_pair regstack=token_regstack.sql plain_sql=token_plain.sql \
    plpgsql=token_plpgsql.sql redis=redis:tokpair
echo "== rate limit, spread keys (checks/s)"
bench_rounds rate_limit regstack_spread=rl_regstack_spread.sql plain_sql_spread=rl_plain_spread.sql \
    redis_spread=redis:rl_spread
echo "== rate limit, an attack on one key: every call denied (checks/s)"
bench_fill_attack_key
bench_rounds rl_attack regstack_attack=rl_regstack_attack.sql plain_sql_attack=rl_plain_attack.sql
echo "== rate limit, failures recorded on one account (records/s)"
bench_rounds rl_failures regstack_failures=rl_regstack_failures.sql plain_sql_failures=rl_plain_failures.sql
echo "== rate limit, one shared quota key far from its limit (checks/s)"
bench_rounds rl_quota regstack_quota=rl_regstack_quota.sql plain_sql_quota=rl_plain_quota.sql \
    redis_one_key=redis:rl_hot
echo "== reaper ($reaper_rows expired rows, batch $batch_size)"
bench_reaper_rows
if [ "$have_reaper" = 1 ]; then
    bench_reaper_latency
else
    echo "  (no background reaper in this build: reaper and latency-while-reaping figures skipped)"
fi

echo
bench_report
echo "figures written to $out (tables as Markdown: ${out%.json}.md)"
if [ "$failures" -gt 0 ]; then
    echo "$failures workload(s) failed" >&2
    exit 1
fi
