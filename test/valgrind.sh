#!/usr/bin/env bash
# test/valgrind.sh: run the pg_regress and isolation suites with every
# server process under valgrind (memcheck), and fail on any error whose
# stack passes through regstack.so: invalid reads or writes, use of
# uninitialised memory, bad frees.
#
# Run as root on a fresh Debian 12 machine (it installs what it needs) or
# as a user with the packages installed.  The system PostgreSQL is not
# touched: as in check.sh, a private copy is used, in which bin/postgres is
# replaced by a wrapper that starts the real server under valgrind (initdb's
# bootstrap and version checks run natively, to save time).
#
# KEEP=1 keeps the work directory (reports in reports/valgrind.<pid>).
# Errors inside PostgreSQL itself (e.g. uninitialised padding written to
# WAL, which PostgreSQL's own valgrind suppressions cover) are counted and
# shown but do not fail the run; only stacks through regstack do.  Leaks:
# valgrind sees malloc, not palloc, and PostgreSQL frees memory contexts
# wholesale at exit, so leak checking is off here; sql/memory.sql checks
# instead that 220,000 calls leave a backend's memory contexts the same size.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib/common.sh"
regstack_install_packages postgresql-server-dev-15 libipc-run-perl make gcc valgrind

work=$(mktemp -d /tmp/regstack-valgrind.XXXXXX)
chmod 755 "$work"
pg_config=$(regstack_build_private "$src" "$work")
bindir=$("$pg_config" --bindir)
reports="$work/reports"
mkdir -p "$reports"

mv "$bindir/postgres" "$bindir/postgres.real"
cat >"$bindir/postgres" <<WRAPPER
#!/bin/sh
# regstack test/sanitize.sh: the server under valgrind, bootstrap natively.
case " \$* " in
    *" --boot "*|*" --single "*|*" -V "*|*" --version "*|*" -C "*|*" --describe-config "*)
        exec "$bindir/postgres.real" "\$@" ;;
esac
exec valgrind --quiet --error-limit=no --num-callers=40 --trace-children=no \\
    --leak-check=no --log-file="$reports/valgrind.%p" "$bindir/postgres.real" "\$@"
WRAPPER
chmod 755 "$bindir/postgres"
regstack_chown_test_user "$work"

status=0
regstack_as_test_user "cd '$work/src' && make PG_CONFIG='$pg_config' installcheck TAP_TESTS=" \
    >"$work/valgrind-suites.log" 2>&1 || status=1
grep -E '\.\.\. |tests passed|tests failed' "$work/valgrind-suites.log" || true

# valgrind writes one file per process; an error record starts with "==pid== "
# and ends at an empty "==pid== " line.  A frame is ours when it names
# regstack.so (no debug info) or one of our source files (with it).
our_frames="regstack\\.so|[( ]($(cd "$src/src" && ls *.c | sed 's/\./\\./' | paste -sd'|')):[0-9]"
ours=0
theirs=0
for report in "$reports"/valgrind.*; do
    [ -s "$report" ] || continue
    while IFS= read -r -d '' record; do
        if grep -Eq "$our_frames" <<<"$record"; then
            ours=$((ours + 1))
            printf '%s\n\n' "$record"
        else
            theirs=$((theirs + 1))
        fi
    done < <(awk 'BEGIN { RS = "==[0-9]+== \n" } NF { printf "%s%c", $0, 0 }' "$report")
done
echo "valgrind errors through regstack: $ours; inside PostgreSQL only: $theirs"
[ "$ours" -eq 0 ] || status=1

if [ "$status" -ne 0 ]; then
    tail -n 30 "$work/valgrind-suites.log"
    echo "valgrind run FAILED; work directory kept: $work"
elif [ "${KEEP:-0}" = 1 ]; then
    echo "valgrind run clean; work directory kept: $work"
else
    echo "valgrind run clean"
    rm -rf "$work"
fi
exit $status
