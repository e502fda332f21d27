#!/usr/bin/env bash
# test/citus/smoke.sh <pg_config>: regstack on a throwaway Citus cluster.
#
# <pg_config> is that of a private PostgreSQL copy with regstack installed
# (regstack_build_private in test/lib/common.sh, as test/check.sh makes).
# The script installs Citus into that copy (built from the vendor tarball,
# or copied from the cache: test/lib/citus.sh), starts a coordinator and
# two workers preloading citus and regstack, creates the extension, and on
# each node issues a token, consumes it, and checks a rate limit there.  It
# prints "test citus_smoke ... ok" (or FAILED) and exits non-zero on
# failure.
#
# Then, as information for the design of the Citus issue and never as a
# pass or fail, it tries create_distributed_table on the tokens table and
# create_reference_table on the token type registry, and prints exactly
# what happens.
#
# Run as root (installs Citus's build dependencies, runs the servers as
# "postgres").  KEEP=1 keeps the work directory (the cluster is stopped).
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/test/lib/common.sh"
. "$src/test/lib/citus.sh"

pg_config=${1:?usage: test/citus/smoke.sh <pg_config of a private copy with regstack installed>}
[ -f "$("$pg_config" --sharedir)/extension/regstack.control" ] \
    || { echo "regstack is not installed in $("$pg_config" --sharedir)" >&2; exit 2; }

work=$(mktemp -d /tmp/regstack-citus-smoke.XXXXXX)
chmod 755 "$work"
trap '[ "${KEEP:-0}" = 1 ] && echo "work directory kept: $work" || rm -rf "$work"' EXIT

t0=$(date +%s.%N)
citus_version=$(regstack_citus_install "$pg_config") \
    || { echo "test citus_smoke ... FAILED (Citus could not be installed)"; exit 1; }
t1=$(date +%s.%N)
regstack_citus_start "$pg_config" "$work/cluster" \
    || { echo "test citus_smoke ... FAILED (the cluster did not start; logs in $work/cluster)"
         KEEP=1; exit 1; }
t2=$(date +%s.%N)
printf 'citus %s installed in %.1f s; cluster (ports %s) started in %.1f s\n' \
    "$citus_version" "$(echo "$t1 - $t0" | bc)" "${REGSTACK_CITUS_PORTS[*]}" "$(echo "$t2 - $t1" | bc)"

db=$REGSTACK_CITUS_DB
node_name=(coordinator worker1 worker2)
q() {   # q <node> <sql>: one value, unaligned
    regstack_citus_psql "$1" "$db" -Atq -c "$2"
}
fail() {
    echo "test citus_smoke ... FAILED ($*)"
    KEEP=1
    exit 1
}

# CREATE EXTENSION on the coordinator; does Citus create it on the workers?
q 0 "CREATE EXTENSION regstack" >/dev/null || fail "CREATE EXTENSION regstack on the coordinator"
for n in 1 2; do
    v=$(q "$n" "SELECT extversion FROM pg_extension WHERE extname = 'regstack'")
    if [ -n "$v" ]; then
        echo "${node_name[$n]}: regstack $v created by Citus's propagation"
    else
        echo "${node_name[$n]}: regstack not propagated; creating it there"
        q "$n" "CREATE EXTENSION regstack" >/dev/null || fail "CREATE EXTENSION regstack on ${node_name[$n]}"
    fi
done

# On each node, a token issued there is consumed there exactly once, and a
# rate limit of 2 allows two calls and refuses the third.
for n in 0 1 2; do
    token=$(q "$n" "SELECT regstack.issue_token('pre_auth', subject => 'u')") \
        || fail "issue_token on ${node_name[$n]}"
    got=$(q "$n" "SELECT subject FROM regstack.consume_token('$token', 'pre_auth')") \
        || fail "consume_token on ${node_name[$n]}"
    [ "$got" = u ] || fail "consume_token on ${node_name[$n]} returned '$got', not 'u'"
    again=$(q "$n" "SELECT count(*) FROM regstack.consume_token('$token', 'pre_auth')")
    [ "$again" = 0 ] || fail "a second consume_token on ${node_name[$n]} returned $again rows"
    allowed=
    for _ in 1 2 3; do
        allowed+=$(q "$n" "SELECT allowed FROM regstack.rate_limit_check('smoke-$n', 'login', 2, '1 hour')") \
            || fail "rate_limit_check on ${node_name[$n]}"
    done
    [ "$allowed" = ttf ] || fail "rate limit on ${node_name[$n]}: $allowed"
    echo "${node_name[$n]}: issue/consume once, rate limit 2 of 3: ok"
done
echo "test citus_smoke ... ok"

# Information only: what Citus does with regstack's tables as shipped.
echo
echo "== information for the design (not a test):"
try() {   # try <node> <sql>: print the statement and exactly what it gave
    echo "-- on ${node_name[$1]}: $2"
    regstack_citus_psql "$1" "$db" -Atq -c "$2" 2>&1 | sed 's/^/   /' || true
}
try 0 "SELECT create_distributed_table('regstack.auth_ephemeral_tokens', 'subject_tag')"
try 0 "SELECT logicalrelid, partmethod, colocationid, repmodel FROM pg_dist_partition WHERE logicalrelid::text LIKE 'regstack.%'"
try 0 "SELECT create_reference_table('regstack.token_types')"
try 0 "SELECT regstack.issue_token('pre_auth', subject => 'u2') IS NOT NULL AS issued"
try 1 "SELECT regstack.issue_token('pre_auth', subject => 'u2') IS NOT NULL AS issued"
try 0 "SELECT count(*) AS rows_seen_through_citus FROM regstack.auth_ephemeral_tokens"
try 0 "SELECT undistribute_table('regstack.auth_ephemeral_tokens')"
