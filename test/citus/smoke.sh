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
# Then it checks the table guard (src/tables.c) on the cluster: once a
# regstack table is distributed by Citus, every call that touches it fails
# on every node with 55000 naming Citus (regstack does not support
# distributed tables yet: its direct path would write the node's local
# shell table), calls on the other tables still work, and each node's
# reaper says so with a WARNING instead of failing.  It prints "test
# citus_guard ... ok" (or FAILED).
#
# Last, with those tables distributed, regstack.token_node() and
# regstack.rate_limit_node() (src/citus.c) must name on every node the
# shard and node Citus itself gives for 101 tokens and 101 keys, and
# follow a shard move.  It prints "test citus_node_lookup ... ok" (or
# FAILED).
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

# Reapers that look every second, so that their warnings come soon.
export REGSTACK_CITUS_CONF="regstack.reaper_naptime = 1"
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

# The guard on a real cluster.
guard_fail() {
    echo "test citus_guard ... FAILED ($*)"
    KEEP=1
    exit 1
}
refusal() {   # refusal <node> <sql>: the error, or "no error"
    regstack_citus_psql "$1" "$db" -Atq -v VERBOSITY=default -c "$2" 2>&1 >/dev/null | head -n 1 || true
}
q 0 "SELECT create_distributed_table('regstack.auth_ephemeral_tokens', 'subject_tag')" >/dev/null \
    || guard_fail "create_distributed_table"
for n in 0 1 2; do
    err=$(refusal "$n" "SELECT regstack.issue_token('pre_auth', subject => 'u3')")
    [[ $err == *'table regstack.auth_ephemeral_tokens is distributed by Citus'* ]] \
        || guard_fail "issue_token on ${node_name[$n]} after distributing the tokens table: '$err'"
    err=$(refusal "$n" "SELECT * FROM regstack.consume_token(repeat('A', 48), 'pre_auth')")
    [[ $err == *'distributed by Citus'* ]] \
        || guard_fail "consume_token on ${node_name[$n]}: '$err'"
    err=$(refusal "$n" "SELECT regstack.revoke_tokens('u3')")
    [[ $err == *'distributed by Citus'* ]] \
        || guard_fail "revoke_tokens on ${node_name[$n]}: '$err'"
    allowed=$(q "$n" "SELECT allowed FROM regstack.rate_limit_check('guard-$n', 'login', 2, '1 hour')") \
        || guard_fail "rate_limit_check on ${node_name[$n]} while only the tokens table is distributed"
    [ "$allowed" = t ] || guard_fail "rate_limit_check on ${node_name[$n]}: $allowed"
done
echo "tokens table distributed: token calls refused on every node, rate limits work"
q 0 "SET client_min_messages = warning; SELECT create_distributed_table('regstack.auth_rate_limit_state', 'key')" >/dev/null \
    || guard_fail "create_distributed_table of the state table"
for n in 0 1 2; do
    err=$(refusal "$n" "SELECT * FROM regstack.rate_limit_check('guard-$n', 'login', 2, '1 hour')")
    [[ $err == *'table regstack.auth_rate_limit_state is distributed by Citus'* ]] \
        || guard_fail "rate_limit_check on ${node_name[$n]} after distributing the state table: '$err'"
done
echo "state table distributed: rate-limit calls refused on every node"
# Each node's reaper (preloaded with regstack, naptime 10 s by default)
# warns about the refused tables instead of failing its pass.
for n in 0 1 2; do
    log=$REGSTACK_CITUS_DIR/node$n.log
    for _ in $(seq 60); do
        grep -q 'WARNING:  table regstack.auth_ephemeral_tokens is distributed by Citus' "$log" 2>/dev/null && break
        sleep 1
    done
    grep -q 'WARNING:  table regstack.auth_ephemeral_tokens is distributed by Citus' "$log" \
        || guard_fail "no reaper warning in ${node_name[$n]}'s log"
done
echo "every node's reaper warns about the refused tables"
echo "test citus_guard ... ok"

# Where rows live (src/citus.c): with the tokens table distributed by
# subject_tag and the state table by key, regstack.token_node() and
# regstack.rate_limit_node() give, on every node, the shard Citus's own
# get_shard_id_for_distribution_column() gives, the node of its active
# placement, and is_local on exactly the node holding it.  Tokens are
# made from 101 tags over the whole int4 range (their first 4 bytes; the
# 32 more bytes are the tag's SHA-256), keys are 'key-1' to 'key-101'.
lookup_fail() {
    echo "test citus_node_lookup ... FAILED ($*)"
    KEEP=1
    exit 1
}
lookup_check() {   # lookup_check <node> <table> <values as (value, arg)> <function>: wrong|local|total
    q "$1" "
WITH v AS ($3),
     r AS (SELECT v.value, n.* FROM v, LATERAL regstack.$4(v.arg) AS n),
     c AS (SELECT r.*, get_shard_id_for_distribution_column('$2', r.value) AS citus_shard FROM r),
     e AS (SELECT c.*, x.nodename AS e_name, x.nodeport AS e_port,
                  x.groupid = (SELECT groupid FROM pg_dist_local_group) AS e_local
             FROM c LEFT JOIN LATERAL
                  (SELECT d.nodename, d.nodeport, p.groupid
                     FROM pg_dist_placement p JOIN pg_dist_node d USING (groupid)
                    WHERE p.shardid = c.citus_shard AND p.shardstate = 1
                      AND d.noderole = 'primary') AS x ON true)
SELECT count(*) FILTER (WHERE shard_id IS DISTINCT FROM citus_shard
                           OR node_name IS DISTINCT FROM e_name
                           OR node_port IS DISTINCT FROM e_port
                           OR is_local IS DISTINCT FROM e_local)
       || '|' || count(*) FILTER (WHERE is_local) || '|' || count(*)
  FROM e"
}
tokens_sql="SELECT g AS value, translate(encode(int4send(g) || sha256(int4send(g)), 'base64'), '+/', '-_') AS arg
              FROM generate_series(-2000000000, 2000000000, 40000000) AS g"
keys_sql="SELECT 'key-' || g AS value, 'key-' || g AS arg FROM generate_series(1, 101) AS g"
for what in tokens keys; do
    if [ $what = tokens ]; then
        table=regstack.auth_ephemeral_tokens values=$tokens_sql fn=token_node
    else
        table=regstack.auth_rate_limit_state values=$keys_sql fn=rate_limit_node
    fi
    local_total=0
    for n in 0 1 2; do
        got=$(lookup_check "$n" "$table" "$values" "$fn") || lookup_fail "$fn on ${node_name[$n]}"
        IFS='|' read -r wrong local total <<<"$got"
        [ "$wrong" = 0 ] && [ "$total" = 101 ] \
            || lookup_fail "$fn on ${node_name[$n]}: $wrong of $total answers differ from Citus's"
        [ "$n" != 0 ] || [ "$local" = 0 ] \
            || lookup_fail "$fn on the coordinator: $local rows said local (it holds no shards)"
        local_total=$((local_total + local))
    done
    [ "$local_total" = 101 ] || lookup_fail "$fn: $local_total of 101 rows local on some node, not 101"
    echo "$fn: the shard and node of 101 $what agree with Citus's on every node; each is local on one node"
done
# A shard move: in one session, the lookup before and after the move names
# the source and then the target node, and the workers' is_local follows.
src_port=$(q 0 "SELECT node_port FROM regstack.rate_limit_node('move-me')")
shard=$(q 0 "SELECT shard_id FROM regstack.rate_limit_node('move-me')")
if [ "$src_port" = "${REGSTACK_CITUS_PORTS[1]}" ]; then dst=2; else dst=1; fi
dst_port=${REGSTACK_CITUS_PORTS[$dst]}
moved=$(regstack_citus_psql 0 "$db" -Atq \
    -c "SELECT node_port FROM regstack.rate_limit_node('move-me')" \
    -c "SELECT citus_move_shard_placement($shard, '127.0.0.1', $src_port, '127.0.0.1', $dst_port, shard_transfer_mode => 'block_writes')" \
    -c "SELECT node_port FROM regstack.rate_limit_node('move-me')" | tr '\n' ' ') \
    || lookup_fail "citus_move_shard_placement of shard $shard"
[ "$moved" = "$src_port  $dst_port " ] \
    || lookup_fail "before and after moving shard $shard from $src_port to $dst_port, one session saw: '$moved'"
for n in 1 2; do
    is_local=$(q "$n" "SELECT is_local FROM regstack.rate_limit_node('move-me')")
    expect=f; [ "$n" = "$dst" ] && expect=t
    [ "$is_local" = "$expect" ] || lookup_fail "after the move, ${node_name[$n]} says is_local $is_local"
done
echo "a shard move: one session's lookup follows it, and so does every worker's is_local"
echo "test citus_node_lookup ... ok"
