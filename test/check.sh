#!/usr/bin/env bash
# test/check.sh: build regstack and run every test suite (pg_regress,
# isolation, TAP), on a fresh Debian 12 machine with the PostgreSQL 15
# server installed.
#
# Run as root, it installs what is missing (server headers, IPC::Run) from
# Debian's archive and runs the tests as the unprivileged "postgres" user;
# run as any other user, it needs those packages already installed.
#
# The tests never touch the system PostgreSQL: the script copies the
# installed server into a private directory under /tmp, installs regstack
# there, and every suite starts its own temporary instances from that copy.
#
# Environment: KEEP=1 keeps the work directory; SUITES="regress isolation
# tap bench examples" chooses suites (default: all five; examples runs the
# client programs of examples/, test/examples.sh).  The bench suite runs the
# benchmark in smoke mode (test/bench/run.sh, BENCH_MODE=smoke) against the
# same private build: it fails when a workload errors, never on a figure.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
pgver=15
suites=${SUITES:-regress isolation tap bench examples}

. "$src/test/lib/common.sh"
regstack_install_packages postgresql-server-dev-$pgver libipc-run-perl make gcc sqlsmith postgresql-$pgver-cron \
    python3-psycopg pgbouncer

work=$(mktemp -d /tmp/regstack-check.XXXXXX)
chmod 755 "$work"
pg_config=$(regstack_build_private "$src" "$work") || { echo "0 passed, 1 failed"; exit 1; }

log="$work/check.log"
status=0

# The README's flow examples must be sql/flows.sql, which pg_regress runs.
echo "=== readme"
if sed -n '/^<!-- flows.sql -->$/,/^<!-- \/flows.sql -->$/p' "$src/README.md" \
        | sed '1,2d;$d' | sed '$d' | diff - "$src/sql/flows.sql" >"$work/readme.diff"; then
    echo "test readme_flows ... ok" | tee -a "$log"
else
    cat "$work/readme.diff"
    echo "test readme_flows ... FAILED (README flows differ from sql/flows.sql)" | tee -a "$log"
    status=1
fi

for suite in $suites; do
    if [ "$suite" = examples ]; then
        echo "=== examples"
        if ! bash "$src/test/examples.sh" "$pg_config" 2>&1 | tee -a "$log"; then
            status=1
        fi
        continue
    fi
    if [ "$suite" = bench ]; then
        echo "=== bench"
        if BENCH_MODE=smoke BENCH_PG_CONFIG="$pg_config" BENCH_OUT="$work/bench-smoke.json" \
                bash "$src/test/bench/run.sh" 2>&1 | tee "$work/bench.log"; then
            echo "test bench_smoke ... ok" | tee -a "$log"
        else
            echo "test bench_smoke ... FAILED (a benchmark workload failed, see above)" | tee -a "$log"
            status=1
        fi
        continue
    fi
    case $suite in
        regress)   vars="ISOLATION= TAP_TESTS=" ;;
        isolation) vars="REGRESS= TAP_TESTS=" ;;
        tap)       vars="REGRESS= ISOLATION=" ;;
        *) echo "unknown suite $suite"; exit 2 ;;
    esac
    echo "=== $suite"
    if ! regstack_as_test_user "cd '$work/src' && make PG_CONFIG='$pg_config' installcheck $vars" \
        2>&1 | tee -a "$log"; then
        status=1
    fi
done

# One summary line: test files (pg_regress, isolation) and TAP scripts.
passed=$(grep -cE '^(ok [0-9]+ +[-+] |test .* \.\.\. ok|     [a-z_0-9]+ +\.\.\. ok|test/t/.*\.pl \.+ ok)' "$log" || true)
failed=$(grep -cE '(\.\.\. FAILED|^not ok [0-9]+ +[-+] |test/t/.*\.pl \.+ (Dubious|Failed))' "$log" || true)
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1
fi
if [ "$status" -ne 0 ]; then
    for diffs in "$work"/src/regression.diffs "$work"/src/output_iso/regression.diffs; do
        [ -f "$diffs" ] && { echo "=== $diffs"; head -c 20000 "$diffs"; }
    done
    for tap_log in "$work"/src/tmp_check/log/regress_log_*; do
        [ -f "$tap_log" ] && { echo "=== $tap_log (tail)"; tail -n 40 "$tap_log"; }
    done
    echo "work directory kept: $work"
elif [ "${KEEP:-0}" != 1 ]; then
    rm -rf "$work"
else
    echo "work directory kept: $work"
fi
echo "$passed passed, $failed failed"
exit $status
