#!/usr/bin/env bash
# test/bench/citus.sh: regstack's Citus benchmark (`make bench-citus`).
# In one run, the token pair (alone, and with a routing client's
# lookups) and a rate-limit check on a single server
# without Citus, on the Citus worker that owns every shard, and through
# the Citus coordinator; prints the medians and the ratios of the worker
# and the coordinator to the single server, and writes them to a JSON and
# a Markdown file (paths printed).
#
# Run as root on a Debian 12 machine with PostgreSQL 15: it builds regstack
# into a private PostgreSQL copy under /tmp (or uses BENCH_PG_CONFIG),
# installs Citus there (test/lib/citus.sh: built from the vendor tarball or
# copied from the cache), and starts a single server and a Citus cluster (a
# coordinator and two workers), all as "postgres" with the same settings
# (test/lib/citus.sh's: fsync off, 64MB shared_buffers), sharing the
# machine's cores; everything stops and goes when the script exits.
#
# On the cluster, regstack.distribute(delegate => false) runs with the
# second worker marked shouldhaveshards = false, so that every shard is
# on the first worker: a client connected there is connected to the owner of every row, which is
# what client-side routing (regstack.token_node, regstack.rate_limit_node)
# achieves with any number of workers.  Through the coordinator, the token
# calls are routed statements, and so is the rate-limit call; then
# distribute(delegate => true) delegates the rate-limit functions and the
# rate-limit figures are taken again: through the coordinator Citus sends
# the call to the owner (test/bench/pgbench/rl_citus_delegable.sql), and
# on the owner it plans each call anew.  docs/citus.md turns the figures
# into throughput with N workers.
#
# Environment:
#   BENCH_MODE=full|smoke   full (default: 3 rounds of 5 s per figure) or
#                           smoke (1 round of 10 transactions per client:
#                           fails only when a workload errors)
#   BENCH_OUT=path.json     where the JSON goes (default:
#                           /tmp/regstack-bench-results/bench-citus-<UTC time>-<mode>.json);
#                           the Markdown table goes beside it (.md)
#   BENCH_RECORD=1          write to test/bench/results/citus-pg<major>.{json,md}
#   BENCH_PG_CONFIG=path    an existing private build (test/check.sh's)
#   BENCH_ROUNDS, BENCH_SECONDS   override the mode's sizes
#   KEEP=1                  keep the work directory
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
bench=$src/test/bench
. "$src/test/lib/common.sh"
. "$src/test/lib/citus.sh"

mode=${BENCH_MODE:-full}
case $mode in
    full)  rounds=${BENCH_ROUNDS:-3}; length="-T ${BENCH_SECONDS:-5}" ;;
    smoke) rounds=${BENCH_ROUNDS:-1}; length="-t 10" ;;
    *) echo "BENCH_MODE must be full or smoke" >&2; exit 2 ;;
esac
clients=8
threads=2
failures=0

work=$(mktemp -d /tmp/regstack-bench-citus.XXXXXX)
chmod 755 "$work"
# Stop the single server and remove the work directory unless kept (the
# cluster is stopped first, by the trap test/lib/citus.sh chains before this).
bench_citus_cleanup() {
    local rc=$?
    set +e
    if [ -f "$work/single/postmaster.pid" ]; then
        regstack_as_test_user "'$bin/pg_ctl' -D '$work/single' -m immediate -w stop" >/dev/null 2>&1
    fi
    if [ "${KEEP:-0}" = 1 ] || [ "$failures" -gt 0 ] || [ "$rc" -ne 0 ]; then
        echo "work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
}
trap bench_citus_cleanup EXIT
bin=

if [ -n "${BENCH_PG_CONFIG:-}" ]; then
    pg_config=$BENCH_PG_CONFIG
else
    if [ "$(id -u)" -eq 0 ]; then
        regstack_install_packages postgresql-server-dev-15 make gcc
    fi
    pg_config=$(regstack_build_private "$src" "$work" 15)
fi
bin=$("$pg_config" --bindir)
citus_version=$(regstack_citus_install "$pg_config")
regstack_citus_start "$pg_config" "$work/cluster"
db=$REGSTACK_CITUS_DB
ports=("${REGSTACK_CITUS_PORTS[@]}")

# The single server: the cluster's settings, without Citus.
regstack_chown_test_user "$work"
regstack_as_test_user "'$bin/initdb' -D '$work/single' -A trust -U postgres >'$work/initdb.log' 2>&1" \
    || { cat "$work/initdb.log" >&2; exit 1; }
cat >>"$work/single/postgresql.conf" <<EOF
shared_preload_libraries = 'regstack'
listen_addresses = ''
unix_socket_directories = '$work'
port = 5432
wal_level = logical
max_worker_processes = 32
shared_buffers = 64MB
fsync = off
EOF
regstack_as_test_user "'$bin/pg_ctl' -D '$work/single' -l '$work/single.log' -w start" >/dev/null
"$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p 5432 -U postgres -d postgres \
    -c "CREATE DATABASE $db" >/dev/null
"$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p 5432 -U postgres -d "$db" \
    -c "CREATE EXTENSION regstack" >/dev/null

# The cluster: every shard on worker 1.
regstack_citus_psql 0 "$db" -q >/dev/null <<EOF
SET client_min_messages = warning;
CREATE EXTENSION regstack;
SELECT citus_set_node_property('127.0.0.1', ${ports[2]}, 'shouldhaveshards', false);
SELECT * FROM regstack.distribute(delegate => false);
EOF
owners=$(regstack_citus_psql 0 "$db" -Atq -c "SELECT string_agg(DISTINCT n.nodeport::text, ',')
    FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)
    WHERE s.logicalrelid IN ('regstack.auth_ephemeral_tokens'::regclass,
        'regstack.auth_rate_limit_state'::regclass, 'regstack.auth_rate_limit_events'::regclass)")
[ "$owners" = "${ports[1]}" ] || { echo "the shards are on ports $owners, not only on worker 1 (${ports[1]})" >&2; exit 1; }

# Run pgbench script $2 against target $1 (single, owner, coordinator) and
# print its tps; fails when pgbench reports an error.
bench_citus_pgbench() {
    local target=$1 script=$2 host port out
    case $target in
        single)      host=$work; port=5432 ;;
        owner)       host=$REGSTACK_CITUS_DIR; port=${ports[1]} ;;
        coordinator) host=$REGSTACK_CITUS_DIR; port=${ports[0]} ;;
    esac
    out=$("$bin/pgbench" -n -M prepared -c "$clients" -j "$threads" -h "$host" -p "$port" \
        -U postgres -f "$bench/pgbench/$script" $length "$db" 2>&1) || {
        printf '%s\n' "$out" | grep -m 4 -iE 'error|abort|fatal' >&2
        return 1
    }
    printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p'
}

# Rounds interleave the targets, so that they share the machine's state.
# Phase "routed": the rate-limit functions not delegated (distribute(
# delegate => false), for clients that send calls to the owner), so the
# coordinator routes each call itself; token_pair_lookups adds the
# subject_node and token_node lookups a routing client makes
# (test/bench/pgbench/token_citus_lookup.sql).  Phase "delegated": the same
# cluster after distribute(delegate => true): Citus sends a call made on
# the coordinator to the owner, and plans every call anew, on the owner too.
: >"$work/results.tsv"
run_phase() {   # run_phase <phase> <target>...
    local phase=$1 round workload script target tps
    shift
    for round in $(seq "$rounds"); do
        for workload in token_pair token_pair_lookups rate_limit; do
            case $workload in
                token_pair) script=token_regstack.sql ;;
                token_pair_lookups) script=token_citus_lookup.sql ;;
                rate_limit) script=rl_citus_delegable.sql ;;
            esac
            [ "$phase" = delegated ] && [ "$workload" != rate_limit ] && continue
            for target in "$@"; do
                if tps=$(bench_citus_pgbench "$target" "$script"); then
                    printf '%s\t%s\t%s\t%s\t%s\n' "$phase" "$workload" "$target" "$round" "$tps" >>"$work/results.tsv"
                    printf '%-9s %-18s %-12s round %s: %10.1f tps\n' "$phase" "$workload" "$target" "$round" "$tps"
                else
                    echo "WORKLOAD ERROR: $workload on $target ($phase), round $round" >&2
                    failures=$((failures + 1))
                fi
            done
        done
    done
}
run_phase routed single owner coordinator
regstack_citus_psql 0 "$db" -q -c "SELECT count(*) FROM regstack.distribute(delegate => true)" >/dev/null
run_phase delegated single owner coordinator

# Medians and ratios (figures are tps: higher is better).
if [ "${BENCH_RECORD:-0}" = 1 ]; then
    out=$src/test/bench/results/citus-pg15.json
else
    mkdir -p /tmp/regstack-bench-results
    out=${BENCH_OUT:-/tmp/regstack-bench-results/bench-citus-$(date -u +%Y%m%dT%H%M%SZ)-$mode.json}
fi
python3 - "$work/results.tsv" "$out" "$mode" "$citus_version" "$("$bin/postgres" --version)" <<'EOF'
import json, statistics, sys
rows = [line.rstrip('\n').split('\t') for line in open(sys.argv[1]) if line.strip()]
out, mode, citus, postgres = sys.argv[2:6]
tps = {}
for phase, workload, target, _round, value in rows:
    tps.setdefault((phase, workload), {}).setdefault(target, []).append(float(value))
result = {"mode": mode, "citus": citus, "postgres": postgres, "clients": 8,
          "unit": "transactions per second (median of rounds)", "figures": []}
lines = ["| workload | rate-limit functions | single server | owner worker | coordinator | owner / single (target >= 0.8) | coordinator / single |",
         "|---|---|---|---|---|---|---|"]
for (phase, workload), by_target in tps.items():
    med = {t: statistics.median(v) for t, v in by_target.items()}
    entry = {"phase": phase, "workload": workload, "rounds": by_target, "median": med}
    if med.get("single", 0) > 0:
        entry["owner_ratio"] = med.get("owner", 0) / med["single"]
        entry["coordinator_ratio"] = med.get("coordinator", 0) / med["single"]
        lines.append("| %s | %s | %.0f | %.0f | %.0f | %.2f | %.2f |" % (
            workload, "not delegated" if phase == "routed" else "delegated",
            med["single"], med.get("owner", 0), med.get("coordinator", 0),
            entry["owner_ratio"], entry["coordinator_ratio"]))
    result["figures"].append(entry)
json.dump(result, open(out, "w"), indent=2, sort_keys=True)
open(out[:-len(".json")] + ".md", "w").write(
    "regstack on Citus %s, %s, %s mode, 8 clients\n\n%s\n" % (citus, postgres, mode, "\n".join(lines)))
print("\n".join(lines))
print("figures written to %s and %s" % (out, out[:-len(".json")] + ".md"))
EOF
[ "$failures" = 0 ]
