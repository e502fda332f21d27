#!/usr/bin/env bash
# test/sanitize.sh: build regstack with AddressSanitizer and
# UndefinedBehaviorSanitizer and run the pg_regress and isolation suites
# with the sanitizer runtime preloaded into every server process.  Any
# report (out-of-bounds access, use after free, undefined behaviour) fails
# the run and is printed.
#
# Run as root on a fresh Debian 12 machine (it installs what it needs) or
# as a user with the packages installed.  The system PostgreSQL is not
# touched: as in check.sh, a private copy is used.
#
# Leak detection is off (detect_leaks=0): PostgreSQL frees memory contexts
# wholesale at process exit, which LeakSanitizer reports as leaks in the
# server itself.  Leaks in regstack's own allocations are checked instead by
# sql/memory.sql, which watches a backend's memory contexts over 220,000
# calls.  Note that ASan sees malloc, not palloc: the suites' value here is
# in stack and global buffers, the OpenSSL-backed hashing, and UBSan.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib/common.sh"
regstack_install_packages postgresql-server-dev-15 libipc-run-perl make gcc libasan8 libubsan1

work=$(mktemp -d /tmp/regstack-sanitize.XXXXXX)
chmod 755 "$work"
sanitize_flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
pg_config=$(REGSTACK_MAKE_FLAGS="with_llvm=no COPT='$sanitize_flags'" \
    regstack_build_private "$src" "$work")

mkdir -p "$work/reports"
regstack_chown_test_user "$work/reports"
runtime_env="LD_PRELOAD=$(gcc -print-file-name=libasan.so)"
runtime_env+=" ASAN_OPTIONS=detect_leaks=0:log_path=$work/reports/asan"
runtime_env+=" UBSAN_OPTIONS=print_stacktrace=1:log_path=$work/reports/ubsan"

status=0
regstack_as_test_user "cd '$work/src' && $runtime_env make PG_CONFIG='$pg_config' with_llvm=no installcheck TAP_TESTS=" \
    >"$work/sanitize.log" 2>&1 || status=1
grep -E '\.\.\. |tests passed|failed' "$work/sanitize.log" || true

if compgen -G "$work/reports/*" >/dev/null; then
    echo "sanitizer reports:"
    head -c 20000 "$work"/reports/*
    status=1
fi
if [ "$status" -ne 0 ]; then
    tail -n 30 "$work/sanitize.log"
    echo "sanitizer run FAILED; work directory kept: $work"
else
    echo "sanitizer run clean: no AddressSanitizer or UBSan report"
    rm -rf "$work"
fi
exit $status
