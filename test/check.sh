#!/usr/bin/env bash
# test/check.sh: build regstack and run every test suite (pg_regress,
# isolation, TAP, benchmark smoke) on every supported PostgreSQL: 15, the
# one a fresh Debian 12 machine ships, on the host, and 17 and 18 each in
# a Debian chroot (trixie, forky) that test/lib/chroot.sh builds on first
# use with debootstrap and caches under /var/cache/regstack/chroots/.
#
# Run as root, it installs what is missing (server headers, IPC::Run,
# debootstrap) from Debian's archive and runs the tests as the unprivileged
# "postgres" user (the chroot's own in a chroot); run as any other user, it
# needs those packages already installed and can run 15 only.
#
# The tests never touch the system PostgreSQL: for each version the script
# copies that installed server into a private directory under /tmp,
# installs regstack there, and every suite starts its own temporary
# instances from that copy.
#
# Environment: PGVERSIONS="15 17" picks versions (default: all, "15 17
# 18"); SUITES="regress isolation tap bench examples citus package" chooses
# suites (default: all seven; examples and citus run once, on the host,
# against the build of 15: the client programs of examples/ and regstack
# on a Citus cluster, and on 18 again in its chroot with Citus 14; package
# builds and tests the Debian package of each version and the PGXN zip);
# KEEP=1 keeps the work directory.  The bench suite runs the
# benchmark in smoke mode (test/bench/run.sh, BENCH_MODE=smoke) against the
# same private build: it fails when a workload errors, never on a figure.
#
# Every line a version's run prints starts with the version ("[17] test
# tokens ... ok"); the README check, the same for all versions, is "[all]".
# The last line, "N passed, N failed", covers every version.  Internally
# the script runs itself once per version, with REGSTACK_CHECK_WORK naming
# that version's work directory: on the host for 15, in the chroot for the
# others.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
suites=${SUITES:-regress isolation tap bench examples citus package}

. "$src/test/lib/common.sh"
. "$src/test/lib/chroot.sh"

# Run the suites on PostgreSQL $PGVERSION of this machine (the host or a
# chroot) in work directory $REGSTACK_CHECK_WORK; write "passed failed" to
# its file "counts".
check_one_version() {
    local pgver work pg_config log status=0 suite vars passed failed diffs tap_log
    pgver=$(regstack_pgversion)
    work=$REGSTACK_CHECK_WORK
    mkdir -p "$work"
    chmod 755 "$work"
    echo "0 1" >"$work/counts"
    regstack_install_packages postgresql-server-dev-$pgver libipc-run-perl make gcc sqlsmith postgresql-$pgver-cron \
        python3-psycopg python3-yaml pgbouncer
    echo "=== build ($("/usr/lib/postgresql/$pgver/bin/postgres" --version))"
    if ! pg_config=$(regstack_build_private "$src" "$work" "$pgver"); then
        echo "test build ... FAILED (compiler output above)"
        return 1
    fi
    log="$work/check.log"
    : >"$log"

    for suite in $suites; do
        case $suite in examples|citus|package) continue ;; esac    # run once, below
        if [ "$suite" = bench ]; then
            echo "=== bench"
            if BENCH_MODE=smoke BENCH_PG_CONFIG="$pg_config" BENCH_OUT="$work/bench-smoke.json" \
                    PGVERSION=$pgver bash "$src/test/bench/run.sh" 2>&1 | tee "$work/bench.log"; then
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

    # regstack on Citus 14 (test/citus/smoke.sh), on PostgreSQL 18 in its
    # chroot; on 15, the host runs it with Citus 13 (below).
    if [[ " $suites " == *" citus "* ]] && [ "$pgver" = 18 ]; then
        echo "=== citus"
        if ! bash "$src/test/citus/smoke.sh" "$pg_config" 2>&1 | tee -a "$log"; then
            status=1
        fi
    fi

    # Test files (pg_regress, isolation: "test x ... ok" up to 15, TAP-style
    # "ok 1 - x" from 16) and TAP scripts.
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
    fi
    echo "$passed $failed" >"$work/counts"
    echo "PostgreSQL $pgver: $passed test(s) passed, $failed failed"
    return $status
}

if [ -n "${REGSTACK_CHECK_WORK:-}" ]; then
    check_one_version
    exit
fi

versions=${PGVERSIONS:-$(regstack_supported_pgversions)}
for ver in $versions; do
    regstack_pgversion "$ver" >/dev/null || exit 2
done

work=$(mktemp -d /tmp/regstack-check.XXXXXX)
chmod 755 "$work"
log="$work/check.log"
status=0
total_passed=0
total_failed=0
summary=()

# Citus's release tarballs, where the chroots see them (the work directory).
if [[ " $suites " == *" citus "* ]]; then
    . "$src/test/lib/citus.sh"
    mkdir -p "$work/vendor"
    cp "$(regstack_citus_vendor)"/citus-*.tar.gz "$work/vendor/" 2>/dev/null || true
    export REGSTACK_VENDOR=$work/vendor
fi

# The chroots the versions need, found cached or built side by side in the
# background (while the host's version runs; about 3 minutes from nothing).
declare -A chroot_job=()
for ver in $versions; do
    if regstack_needs_chroot "$ver"; then
        if [ "$(id -u)" -eq 0 ] && [ ${#chroot_job[@]} -eq 0 ]; then
            regstack_install_packages debootstrap util-linux
        fi
        echo "=== [$ver] chroot $(regstack_chroot_root "$ver") (log: $work/chroot-$ver.log)"
        regstack_chroot_ensure "$ver" >"$work/chroot-$ver.log" 2>&1 &
        chroot_job[$ver]=$!
    fi
done

# Every SQL block of the README and docs/ marked as a tested file's text
# must be that text (test/check_doc_sql.py); pg_regress runs the files.
echo "=== [all] documentation"
python3 "$src/test/check_doc_sql.py" "$src" >"$work/doc_sql.log" 2>&1 || status=1
sed 's/^/[all] /' "$work/doc_sql.log" | tee -a "$log"
total_passed=$(grep -c '\.\.\. ok$' "$work/doc_sql.log" || true)
total_failed=$(grep -c '\.\.\. FAILED' "$work/doc_sql.log" || true)
if [ "$status" -ne 0 ] && [ "$total_failed" -eq 0 ]; then
    total_failed=1
fi

for ver in $versions; do
    vwork=$work/pg$ver
    mkdir -p "$vwork"
    if [ -n "${chroot_job[$ver]:-}" ]; then
        if ! wait "${chroot_job[$ver]}"; then
            tail -n 30 "$work/chroot-$ver.log" | sed "s/^/[$ver] /"
            echo "[$ver] test chroot ... FAILED (could not build the chroot, see above)" | tee -a "$log"
            echo "0 1" >"$vwork/counts"
        else
            [ -d "$work/tree" ] || regstack_copy_source "$src" "$work/tree"
            if ! regstack_chroot_run "$ver" "$work" \
                    "REGSTACK_CHECK_WORK='$vwork' bash '$work/tree/test/check.sh'" 2>&1 \
                    | sed -u "s/^/[$ver] /" | tee -a "$log"; then
                status=1
            fi
        fi
    elif ! REGSTACK_CHECK_WORK=$vwork PGVERSION=$ver bash "$src/test/check.sh" 2>&1 \
            | sed -u "s/^/[$ver] /" | tee -a "$log"; then
        status=1
    fi
    read -r passed failed <"$vwork/counts" || { passed=0; failed=1; }
    [ "$failed" -gt 0 ] && status=1
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    summary+=("PostgreSQL $ver: $passed test(s) passed, $failed failed")
done

# Run a suite once, for the whole tree: prefix $1 ("host", "pkg") on its
# lines, label $2 in the summary, then the command; count its "test ...
# ok" and "... FAILED" lines into the totals.
run_once() {
    local prefix=$1 label=$2 suite_status=0 passed failed
    shift 2
    echo "=== [$prefix] $label"
    "$@" >"$work/$prefix-$label.raw" 2>&1 || suite_status=1
    sed "s/^/[$prefix] /" "$work/$prefix-$label.raw" | tee "$work/$prefix-$label.log" | tee -a "$log"
    passed=$(grep -cE '^\[[a-z]+\] test .* \.\.\. ok' "$work/$prefix-$label.log" || true)
    failed=$(grep -cE '^\[[a-z]+\] test .* \.\.\. FAILED' "$work/$prefix-$label.log" || true)
    if [ "$suite_status" -ne 0 ]; then
        status=1
        [ "$failed" -eq 0 ] && failed=1
    fi
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    summary+=("$label: $passed test(s) passed, $failed failed")
}

# On the host, against the build of PostgreSQL 15: the client examples
# (directly and through PgBouncer) and regstack on a Citus cluster (the
# Citus release tarball in the vendor directory, built and cached by
# test/lib/citus.sh).
host_pg_config=$work/pg15/pg/usr/lib/postgresql/15/bin/pg_config
for suite in $suites; do
    case $suite in
        examples) cmd=(bash "$src/test/examples.sh" "$host_pg_config") ;;
        citus) cmd=(bash "$src/test/citus/smoke.sh" "$host_pg_config") ;;
        *) continue ;;
    esac
    if [ ! -x "$host_pg_config" ] && [ "$suite" = citus ] && [[ " $versions " == *" 18 "* ]]; then
        echo "[host] citus: skipped without PostgreSQL 15 (it ran on 18)"
        continue
    fi
    if [ ! -x "$host_pg_config" ]; then
        echo "[host] test $suite ... FAILED (needs PostgreSQL 15 in PGVERSIONS)" | tee -a "$log"
        total_failed=$((total_failed + 1))
        status=1
        continue
    fi
    run_once host "$suite" "${cmd[@]}"
done

# The Debian package of each version, built, linted, installed into that
# version's system server and tested there, then removed; and the PGXN
# metadata and zip (test/package.sh, which enters the chroots itself).  The
# installed package runs pg_regress and the upgrade test: the whole suite
# has run on the private builds above (REGSTACK_INSTALLCHECK_FLAGS="" runs
# it all against the package too).
if [[ " $suites " == *" package "* ]]; then
    run_once pkg packages env PGVERSIONS="$versions" \
        REGSTACK_INSTALLCHECK_FLAGS="${REGSTACK_INSTALLCHECK_FLAGS-ISOLATION= PROVE_TESTS=test/t/070_upgrade.pl}" \
        bash "$src/test/package.sh"
fi

echo "=== versions"
printf '%s\n' "${summary[@]}"
if [ "$status" -ne 0 ]; then
    [ "$total_failed" -eq 0 ] && total_failed=1
    echo "work directory kept: $work"
elif [ "${KEEP:-0}" != 1 ]; then
    rm -rf --one-file-system "$work"
else
    echo "work directory kept: $work"
fi
echo "$total_passed passed, $total_failed failed"
exit $status
