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
# Then, with the tokens table distributed by subject_tag (and every node
# given the coordinator's subject-tag key), the token contract on every
# node: issue on each node and consume on each (once), type, challenge,
# attach_result and peek_token through the owner and through Citus,
# revoke_tokens anywhere, a per-subject cap on the owner (refused
# elsewhere), concurrent consumers on three nodes (one winner each),
# purge_expired() and the reapers (each expired token removed once): "test
# citus_tokens ... ok".  Then "test citus_tokens_move": a shard of 300,000
# rows moved with block_writes and then force_logical while 7,500 tokens
# are issued on its source worker and through the coordinator, a restart
# of the target, and every one of those tokens consumed exactly once.
#
# Then "test citus_guard": with the rate-limit state table distributed
# and its events table not, rate-limit calls fail on every node with 55000
# (a call needs both on one node), token calls still work, and each
# node's reaper warns instead of failing.  Then "test citus_rate_limits",
# with the events distributed too, colocated: a limit called from three
# nodes in turn, record, reset and record => false from any node, routed
# calls in transactions (rolled back; committed on two workers with
# two-phase commit), 32 concurrent calls on one key through three nodes
# (exactly the limit allowed), a key exhausted before its shard moved
# denied after, and stale rows purged from the workers' shards.
#
# Last, with those tables distributed, regstack.token_node() and
# regstack.rate_limit_node() (src/citus.c) must name on every node the
# shard and node Citus itself gives for 101 tokens and 101 keys, and
# follow a shard move; regstack.subject_node() the node of a subject's
# tokens.  It prints "test citus_node_lookup ... ok" (or
# FAILED).
#
# Then "test citus_waits": calls cancelled while they wait for a shard's
# metadata lock on the owner and, routed from the coordinator, for that
# lock and for a row lock, leave nothing behind; savepoints undo routed
# calls.  Last, "test citus_distribute": DROP EXTENSION regstack leaves no shard
# on any node (and a rolled-back one keeps them all), then
# regstack.distribute() on a fresh CREATE EXTENSION: refused while the
# coordinator is not in Citus's metadata and while a worker holds a token
# of its own, then everything distributed in one call (the coordinator's
# local tables emptied; an ignored shard_count and a kept delegation
# told), the shipped registry rows still shipped, one subject-tag key
# everywhere, registry changes seen at once by long-lived sessions on
# every node (test/citus/registry_sessions.py), tokens across nodes,
# rate-limit calls delegated from the coordinator (a 32-way race), a
# worker added (its calls refused until Citus copies the reference tables
# to it, then the cluster's key, and a shard moved to it), DROP
# EXTENSION again, and DROP SCHEMA regstack CASCADE of a distributed
# regstack.
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

# The registry test's client (test/citus/registry_sessions.py).
regstack_install_packages python3-psycopg \
    || { echo "test citus_smoke ... FAILED (python3-psycopg could not be installed)"; exit 1; }

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
    "$citus_version" "$(awk "BEGIN { print $t1 - $t0 }")" "${REGSTACK_CITUS_PORTS[*]}" "$(awk "BEGIN { print $t2 - $t1 }")"

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

# ---- citus_tokens: the tokens table distributed by subject_tag ----
# Every token call gives the single-node answer on every node: on the node
# holding the token's shard regstack writes that shard directly (under
# Citus's shard metadata lock), elsewhere it sends SQL that Citus routes
# (src/citus.c, src/token_store.c, src/token_routed.c).
tok_fail() {
    echo "test citus_tokens ... FAILED ($*)"
    KEEP=1
    exit 1
}
refusal() {   # refusal <node> <sql>: the error, or "no error"
    regstack_citus_psql "$1" "$db" -Atq -v VERBOSITY=default -c "$2" 2>&1 >/dev/null | head -n 1 || true
}
node_of_port() {   # node_of_port <port>: 0, 1 or 2
    local i
    for i in 0 1 2; do [ "${REGSTACK_CITUS_PORTS[$i]}" = "$1" ] && { echo "$i"; return; }; done
    echo "no node has port $1" >&2; return 1
}
live() {   # live <where clause>: tokens seen through Citus
    q 0 "SELECT count(*) FROM regstack.auth_ephemeral_tokens WHERE $1"
}
# One subject-tag key on every node, the coordinator's (each node's CREATE
# EXTENSION drew its own): revoke_tokens and the caps find a subject's
# shard by its tag.
key=$(q 0 "SELECT encode(secret, 'hex') FROM regstack.secret_keys WHERE name = 'subject_tag'")
for n in 1 2; do
    q "$n" "INSERT INTO regstack.secret_keys (name, secret) VALUES ('subject_tag', decode('$key', 'hex'))" >/dev/null \
        || tok_fail "setting the coordinator's subject-tag key on ${node_name[$n]}"
done
q 0 "SELECT create_distributed_table('regstack.auth_ephemeral_tokens', 'subject_tag')" >/dev/null \
    || tok_fail "create_distributed_table of the tokens table"

# Issued on each node, consumed on each node (9 pairs, with and without a
# subject): the consumer gets the row once, a second consume on a third
# node gets nothing, and nothing is left in the shards.
for n in 0 1 2; do
    for m in 0 1 2; do
        o=$(( (m + 1) % 3 ))
        token=$(q "$n" "SELECT regstack.issue_token('pre_auth', subject => 'pair-$n-$m')") \
            || tok_fail "issue_token on ${node_name[$n]}"
        got=$(q "$m" "SELECT subject FROM regstack.consume_token('$token', 'pre_auth')") \
            || tok_fail "consume_token on ${node_name[$m]}"
        [ "$got" = "pair-$n-$m" ] || tok_fail "issued on ${node_name[$n]}, consumed on ${node_name[$m]}: '$got'"
        again=$(q "$o" "SELECT count(*) FROM regstack.consume_token('$token', 'pre_auth')")
        [ "$again" = 0 ] || tok_fail "a second consume on ${node_name[$o]} got $again rows"
        token=$(q "$n" "SELECT regstack.issue_token('download', payload => '{\"file\": \"$n$m\"}')") \
            || tok_fail "issue_token without a subject on ${node_name[$n]}"
        got=$(q "$m" "SELECT payload->>'file' FROM regstack.consume_token('$token', 'download')")
        [ "$got" = "$n$m" ] || tok_fail "a download issued on ${node_name[$n]}, consumed on ${node_name[$m]}: '$got'"
    done
done
left=$(live "subject LIKE 'pair-%' OR token_type = 'download'")
[ "$left" = 0 ] || tok_fail "$left tokens left in the shards after every pair consumed its own"
echo "issue on each node, consume on each node: once each, none left"

# The conditions, through a node that does not hold the shard and the one
# that does: a wrong type or challenge leaves the token; attach_result and
# peek_token see each other's work.
token=$(q 1 "SELECT regstack.issue_token('pre_auth', subject => 'cond', challenge => 'c1')")
owner=$(node_of_port "$(q 0 "SELECT node_port FROM regstack.token_node('$token')")")
for m in 0 "$owner"; do
    [ "$(q "$m" "SELECT count(*) FROM regstack.consume_token('$token', 'oidc_exchange')")" = 0 ] \
        || tok_fail "a wrong type consumed the token on ${node_name[$m]}"
    [ "$(q "$m" "SELECT count(*) FROM regstack.consume_token('$token', 'pre_auth', 'c2')")" = 0 ] \
        || tok_fail "a wrong challenge consumed the token on ${node_name[$m]}"
    [ "$(q "$m" "SELECT count(*) FROM regstack.consume_token('$token', 'pre_auth')")" = 0 ] \
        || tok_fail "no challenge consumed the token on ${node_name[$m]}"
    [ "$(q "$m" "SELECT regstack.attach_result('$token', 'pre_auth', 'r-$m')")" = t ] \
        || tok_fail "attach_result on ${node_name[$m]}"
    for p in 0 1 2; do
        [ "$(q "$p" "SELECT result FROM regstack.peek_token('$token', 'pre_auth', 'c1')")" = "r-$m" ] \
            || tok_fail "peek_token on ${node_name[$p]} after attach_result on ${node_name[$m]}"
    done
done
[ "$(q 0 "SELECT result FROM regstack.consume_token('$token', 'pre_auth', 'c1')")" = "r-$owner" ] \
    || tok_fail "consume_token with the right challenge"
[ "$(q 2 "SELECT regstack.attach_result('$token', 'pre_auth', 'late')")" = f ] \
    || tok_fail "attach_result on a consumed token"
echo "type, challenge, attach_result and peek_token: the same on the owner and through Citus"

# revoke_tokens on any node finds a subject's tokens issued on every node.
for n in 0 1 2; do
    q "$n" "SELECT regstack.issue_token('pre_auth', subject => 'revoked')" >/dev/null \
        || tok_fail "issue_token on ${node_name[$n]}"
done
for n in 1 0; do
    revoked=$(q "$n" "SELECT regstack.revoke_tokens('revoked')") || tok_fail "revoke_tokens on ${node_name[$n]}"
    expect=3; [ "$n" = 0 ] && expect=0
    [ "$revoked" = "$expect" ] || tok_fail "revoke_tokens on ${node_name[$n]} revoked $revoked, not $expect"
done
echo "revoke_tokens on any node: every token of the subject, once"

# A per-subject cap (password_reset: 3) holds whichever nodes issue: the
# issue runs on the node of the subject's shard, under the cap's lock
# there; 4 issues at once from each of the three nodes leave 3 live.
for n in 0 1 2; do
    for _ in 1 2; do
        q "$n" "SELECT regstack.issue_token('password_reset', subject => 'capped')" >/dev/null \
            || tok_fail "issue_token of a capped type on ${node_name[$n]}"
    done
done
[ "$(live "subject = 'capped' AND token_type = 'password_reset'")" = 3 ] \
    || tok_fail "the cap of 3 does not hold: $(live "subject = 'capped' AND token_type = 'password_reset'") live"
token=$(q 2 "SELECT regstack.issue_token('password_reset', subject => 'capped')")
[ "$(q 1 "SELECT subject FROM regstack.consume_token('$token', 'password_reset')")" = capped ] \
    || tok_fail "a capped token issued through another node is not consumable"
for n in 0 1 2; do
    for _ in 1 2 3 4; do
        q "$n" "SELECT regstack.issue_token('password_reset', subject => 'capped-race')" >/dev/null &
    done
done
wait
[ "$(live "subject = 'capped-race' AND token_type = 'password_reset'")" = 3 ] \
    || tok_fail "12 concurrent capped issues on three nodes left $(live "subject = 'capped-race'") live, not 3"
echo "a per-subject cap: exact whichever nodes issue, also 12 at once"

# Concurrent consumers on three nodes: exactly one winner per token.
race=$(mktemp -d "$work/race.XXXXXX")
chmod 777 "$race"
for i in $(seq 12); do
    q 0 "SELECT regstack.issue_token('pre_auth', subject => 'race-$i')" > "$race/token-$i" \
        || tok_fail "issue_token for the race"
done
for i in $(seq 12); do
    for m in 0 1 2; do
        q "$m" "SELECT subject FROM regstack.consume_token('$(cat "$race/token-$i")', 'pre_auth')" \
            > "$race/got-$i-$m" 2>&1 &
    done
done
wait
for i in $(seq 12); do
    winners=$(cat "$race/got-$i-"* | grep -c "^race-$i\$" || true)
    [ "$winners" = 1 ] || tok_fail "token $i: $winners winners among consumers on three nodes ($(cat "$race/got-$i-"* | tr '\n' ' '))"
done
echo "12 tokens, each consumed at once on three nodes: exactly one winner each"

# Expired tokens go from every worker's shards: purge_expired() on each
# node and the reapers together delete each exactly once (counted in
# regstack.stats, per node).
removed() {
    local total=0 n c
    for n in 0 1 2; do
        c=$(q "$n" "SELECT coalesce(sum(purged + reaped), 0) FROM regstack.stats WHERE name = 'download'")
        total=$((total + c))
    done
    echo "$total"
}
before=$(removed)
for i in $(seq 12); do
    q $((i % 3)) "SELECT regstack.issue_token('download', payload => '{}', ttl => '1 second')" >/dev/null \
        || tok_fail "issue_token of a short-lived token on ${node_name[$((i % 3))]}"
done
sleep 1.5
for n in 0 1 2; do
    q "$n" "SELECT tokens_deleted FROM regstack.purge_expired()" >/dev/null || tok_fail "purge_expired on ${node_name[$n]}"
done
for _ in $(seq 30); do
    [ "$(live "token_type = 'download'")" = 0 ] && break
    sleep 1
done
[ "$(live "token_type = 'download'")" = 0 ] || tok_fail "expired tokens left in the shards"
after=$(removed)
[ $((after - before)) = 12 ] || tok_fail "purges and reapers removed $((after - before)) expired tokens, not 12"
echo "12 expired tokens: purged from the workers' shards, each once"
echo "test citus_tokens ... ok"

# ---- citus_tokens_move: a shard move under load, and a restart ----
move_fail() {
    echo "test citus_tokens_move ... FAILED ($*)"
    KEEP=1
    exit 1
}
token=$(q 0 "SELECT regstack.issue_token('pre_auth', subject => 'mover')") || move_fail "issue_token"
shard=$(q 0 "SELECT shard_id FROM regstack.token_node('$token')") || move_fail "token_node"
q 0 "SELECT count(*) FROM regstack.consume_token('$token', 'pre_auth')" >/dev/null || move_fail "consume_token"
# 300,000 rows of another subject with the same tag make the shard's copy
# last long enough for the writers below to meet it.
tag="('x' || encode(substring(decode(translate('$token', '-_', '+/'), 'base64') from 1 for 4), 'hex'))::bit(32)::int"
q 0 "INSERT INTO regstack.auth_ephemeral_tokens (subject_tag, token_hash, token_type, subject, created_at, expires_at)
     SELECT $tag, sha256(int4send(g)), 'pre_auth', 'filler', now(), now() + interval '1 hour'
       FROM generate_series(1, 300000) AS g" >/dev/null || move_fail "filling shard $shard"
load() {   # load <node> <file> <n>: issue n tokens of 'mover' there, one per statement
    local i
    for i in $(seq "$3"); do echo "SELECT regstack.issue_token('pre_auth', subject => 'mover');"; done \
        | regstack_citus_psql "$1" "$db" -Atq > "$2" 2>&1
}
for mode in block_writes force_logical; do
    src_port=$(q 0 "SELECT nodeport FROM pg_dist_placement JOIN pg_dist_node USING (groupid) WHERE shardid = $shard")
    from_node=$(node_of_port "$src_port")
    dst=$(( 3 - from_node ))
    load "$from_node" "$race/move-$mode-src" 6000 &
    load 0 "$race/move-$mode-coord" 1500 &
    sleep 0.5
    q 0 "SELECT citus_move_shard_placement($shard, '127.0.0.1', $src_port, '127.0.0.1', ${REGSTACK_CITUS_PORTS[$dst]}, shard_transfer_mode => '$mode')" >/dev/null \
        || move_fail "citus_move_shard_placement ($mode) of shard $shard"
    wait
    [ "$(q 0 "SELECT nodeport FROM pg_dist_placement JOIN pg_dist_node USING (groupid) WHERE shardid = $shard")" = "${REGSTACK_CITUS_PORTS[$dst]}" ] \
        || move_fail "shard $shard did not move ($mode)"
    issued=$(cat "$race/move-$mode-src" "$race/move-$mode-coord" | grep -c '^[A-Za-z0-9_-]\{48\}$' || true)
    [ "$issued" = 7500 ] || move_fail "$issued of 7500 tokens issued during the $mode move ($(grep -v '^[A-Za-z0-9_-]\{48\}$' "$race/move-$mode-src" | head -n 2))"
    [ "$(live "subject = 'mover'")" = 7500 ] || move_fail "$(live "subject = 'mover'") of 7500 tokens issued during the $mode move are in the shard"
    echo "shard $shard moved ($mode) from ${node_name[$from_node]} to ${node_name[$dst]} while 7500 tokens were issued there and through the coordinator"
    if [ "$mode" = block_writes ]; then
        regstack_citus_restart "$dst" || move_fail "restarting ${node_name[$dst]}"
        echo "${node_name[$dst]} restarted"
    fi
    # each consumed once, on the old owner (now routed) and the new one
    cat "$race/move-$mode-src" "$race/move-$mode-coord" \
        | awk -v a="$race/consume-$from_node" -v b="$race/consume-$dst" \
            '{ printf "SELECT count(*) FROM regstack.consume_token(%c%s%c, %cpre_auth%c);\n", 39, $0, 39, 39, 39 > (NR % 2 ? a : b) }'
    got=$( (regstack_citus_psql "$from_node" "$db" -Atq -f "$race/consume-$from_node"; regstack_citus_psql "$dst" "$db" -Atq -f "$race/consume-$dst") | sort | uniq -c | tr -s ' ')
    [ "$got" = " 7500 1" ] || move_fail "consuming the 7500 tokens after the $mode move: '$got'"
    [ "$(live "subject = 'mover'")" = 0 ] || move_fail "tokens left after consuming them all"
done
q 0 "DELETE FROM regstack.auth_ephemeral_tokens WHERE subject_tag = $tag AND subject = 'filler'" >/dev/null \
    || move_fail "deleting the filler rows"
echo "test citus_tokens_move ... ok"

# ---- citus_guard: the rate-limit tables distributed apart ----
# The state table distributed alone: rate-limit calls fail on every node
# with 55000 (a call needs both tables on one node), token calls still
# work, and each node's reaper warns instead of failing.
guard_fail() {
    echo "test citus_guard ... FAILED ($*)"
    KEEP=1
    exit 1
}
for n in 0 1 2; do
    allowed=$(q "$n" "SELECT allowed FROM regstack.rate_limit_check('guard-$n', 'login', 2, '1 hour')") \
        || guard_fail "rate_limit_check on ${node_name[$n]} while only the tokens table is distributed"
    [ "$allowed" = t ] || guard_fail "rate_limit_check on ${node_name[$n]}: $allowed"
done
q 0 "SET client_min_messages = warning; SELECT create_distributed_table('regstack.auth_rate_limit_state', 'key', colocate_with => 'none')" >/dev/null \
    || guard_fail "create_distributed_table of the state table"
for n in 0 1 2; do
    err=$(refusal "$n" "SELECT * FROM regstack.rate_limit_check('guard-x$n', 'login', 2, '1 hour')")
    [[ $err == *'are not distributed together'* ]] \
        || guard_fail "rate_limit_check on ${node_name[$n]} with only the state table distributed: '$err'"
    token=$(q "$n" "SELECT regstack.issue_token('pre_auth', subject => 'guard')") \
        || guard_fail "issue_token on ${node_name[$n]} with the state table distributed"
    [ "$(q "$n" "SELECT count(*) FROM regstack.consume_token('$token', 'pre_auth')")" = 1 ] \
        || guard_fail "consume_token on ${node_name[$n]} with the state table distributed"
done
echo "state table distributed alone: rate-limit calls refused on every node, token calls work"
for n in 0 1 2; do
    log=$REGSTACK_CITUS_DIR/node$n.log
    for _ in $(seq 60); do
        grep -q 'WARNING:  tables regstack.auth_rate_limit_state and regstack.auth_rate_limit_events are not distributed together' "$log" 2>/dev/null && break
        sleep 1
    done
    grep -q 'WARNING:  tables regstack.auth_rate_limit_state and regstack.auth_rate_limit_events are not distributed together' "$log" \
        || guard_fail "no reaper warning in ${node_name[$n]}'s log"
done
echo "every node's reaper warns about them"
echo "test citus_guard ... ok"

# ---- citus_rate_limits: state and events distributed by key, colocated ----
# Every rate-limit call decides on the node that holds its key's shard:
# there directly, from elsewhere by a call Citus routes there
# (src/citus_route.c).
rl_fail() {
    echo "test citus_rate_limits ... FAILED ($*)"
    KEEP=1
    exit 1
}
q 0 "SET client_min_messages = warning; SELECT create_distributed_table('regstack.auth_rate_limit_events', 'key', colocate_with => 'regstack.auth_rate_limit_state')" >/dev/null \
    || rl_fail "create_distributed_table of the events table"
# A limit of 2 per key, called in turn from each node: allowed, allowed,
# denied, whichever node holds the key.
for k in $(seq 6); do
    got=
    for n in 0 1 2; do
        got+=$(q $(( (n + k) % 3 )) "SELECT allowed FROM regstack.rate_limit_check('rl-$k', 'login', 2, '1 hour')") \
            || rl_fail "rate_limit_check on ${node_name[$(( (n + k) % 3 ))]}"
    done
    [ "$got" = ttf ] || rl_fail "key rl-$k called from three nodes in turn: $got"
done
remaining=$(q 1 "SELECT remaining || ' ' || (retry_after > '0'::interval) FROM regstack.rate_limit_check('rl-1', 'login', 2, '1 hour')")
[ "$remaining" = "0 true" ] || rl_fail "a denied call's remaining and retry_after: $remaining"
echo "a limit of 2, called from three nodes in turn: allowed, allowed, denied, for 6 keys"
# rate_limit_record and rate_limit_reset from any node; check without
# recording.
q 2 "SELECT regstack.rate_limit_record('rl-rec', 'login')" >/dev/null || rl_fail "rate_limit_record on worker2"
q 0 "SELECT regstack.rate_limit_record('rl-rec', 'login')" >/dev/null || rl_fail "rate_limit_record on the coordinator"
[ "$(q 1 "SELECT allowed FROM regstack.rate_limit_check('rl-rec', 'login', 2, '1 hour', record => false)")" = f ] \
    || rl_fail "two recorded events do not deny a limit of 2"
[ "$(q 1 "SELECT regstack.rate_limit_reset('rl-rec')")" = 2 ] || rl_fail "rate_limit_reset did not delete 2 events"
[ "$(q 2 "SELECT allowed FROM regstack.rate_limit_check('rl-rec', 'login', 2, '1 hour', record => false)")" = t ] \
    || rl_fail "a reset key is still denied"
[ "$(q 0 "SELECT allowed FROM regstack.rate_limit_check('rl-rec', 'login', 1, '1 hour')")" = t ] \
    || rl_fail "record => false recorded an event"
echo "rate_limit_record, rate_limit_reset and record => false from any node"
# In transactions: a routed call rolls back with the caller; two keys on
# the two workers in one transaction commit together (two-phase commit).
k1=$(q 0 "SELECT k FROM (SELECT 'tx-' || g AS k FROM generate_series(1, 100) g) s, regstack.rate_limit_node(s.k) WHERE node_port = ${REGSTACK_CITUS_PORTS[1]} LIMIT 1")
k2=$(q 0 "SELECT k FROM (SELECT 'tx-' || g AS k FROM generate_series(1, 100) g) s, regstack.rate_limit_node(s.k) WHERE node_port = ${REGSTACK_CITUS_PORTS[2]} LIMIT 1")
got=$(regstack_citus_psql 0 "$db" -Atq -c "BEGIN" \
    -c "SELECT allowed FROM regstack.rate_limit_check('$k1', 'login', 1, '1 hour')" \
    -c "SELECT allowed FROM regstack.rate_limit_check('$k2', 'login', 1, '1 hour')" \
    -c "ROLLBACK" | tr -d '\n')
[ "$got" = tt ] || rl_fail "in a transaction: $got"
got=$(regstack_citus_psql 0 "$db" -Atq -c "SET citus.log_remote_commands = on" -c "BEGIN" \
    -c "SELECT allowed FROM regstack.rate_limit_check('$k1', 'login', 1, '1 hour')" \
    -c "SELECT allowed FROM regstack.rate_limit_check('$k2', 'login', 1, '1 hour')" \
    -c "SELECT allowed FROM regstack.rate_limit_check('$k1', 'login', 1, '1 hour')" \
    -c "COMMIT" 2>"$race/tx.log" | tr '\n' ' ')
[ "$got" = "t t f " ] || rl_fail "after a rolled-back transaction, a committed one on keys of both workers: $got"
prepares=$(grep -c 'issuing PREPARE TRANSACTION' "$race/tx.log" || true)
[ "$prepares" = 2 ] || rl_fail "the transaction on both workers prepared $prepares remote transactions, not 2"
for n in 1 2; do
    [ "$(q "$n" "SELECT allowed FROM regstack.rate_limit_check('$k1', 'login', 1, '1 hour')")$(q "$n" "SELECT allowed FROM regstack.rate_limit_check('$k2', 'login', 1, '1 hour')")" = ff ] \
        || rl_fail "the committed events are not seen from ${node_name[$n]}"
done
echo "routed calls roll back with their transaction, and commit on two workers with two-phase commit"
# 32 calls at once on one key (limit 10), through the three nodes: 10 allowed.
rate_race() {   # rate_race <key> <node>...: 32 calls at once (limit 10), nodes in turn: allowed/denied
    local key=$1 i out
    shift
    local nodes=("$@")
    out=$(mktemp -d "$work/rate-race.XXXXXX")
    chmod 777 "$out"
    for i in $(seq 32); do
        q "${nodes[$((i % ${#nodes[@]}))]}" "SELECT allowed FROM regstack.rate_limit_check('$key', 'login', 10, '1 hour')" \
            > "$out/$i" 2>&1 &
    done
    wait
    echo "$(cat "$out"/* | grep -c '^t$' || true)/$(cat "$out"/* | grep -c '^f$' || true)$(cat "$out"/* | grep -v '^[tf]$' | head -n 2 | sed 's/^/ /')"
}
got=$(rate_race rl-race 0 1 2)
[ "$got" = 10/22 ] || rl_fail "32 concurrent calls with a limit of 10, allowed/denied: $got"
echo "32 concurrent calls on one key through three nodes, limit 10: exactly 10 allowed"
# A shard move keeps every limit: a key exhausted before the move stays
# denied from every node after it.
shard=$(q 0 "SELECT shard_id FROM regstack.rate_limit_node('rl-1')")
src_port=$(q 0 "SELECT node_port FROM regstack.rate_limit_node('rl-1')")
dst=$(( 3 - $(node_of_port "$src_port") ))
q 0 "SELECT citus_move_shard_placement($shard, '127.0.0.1', $src_port, '127.0.0.1', ${REGSTACK_CITUS_PORTS[$dst]}, shard_transfer_mode => 'block_writes')" >/dev/null \
    || rl_fail "citus_move_shard_placement of shard $shard"
[ "$(q 0 "SELECT node_port FROM regstack.rate_limit_node('rl-1')")" = "${REGSTACK_CITUS_PORTS[$dst]}" ] \
    || rl_fail "shard $shard did not move"
for n in 0 1 2; do
    [ "$(q "$n" "SELECT allowed FROM regstack.rate_limit_check('rl-1', 'login', 2, '1 hour')")" = f ] \
        || rl_fail "key rl-1 allowed again on ${node_name[$n]} after its shard moved"
done
echo "an exhausted key stays denied on every node after its shard moved"
# Stale events and state rows go from every worker's shards
# (purge_expired() there): rows aged by SQL through Citus.
for g in $(seq 20); do
    q $((g % 3)) "SELECT allowed FROM regstack.rate_limit_check('stale-$g', 'login_attempt')" >/dev/null \
        || rl_fail "rate_limit_check of stale-$g"
done
# (constants: Citus refuses timestamptz arithmetic on columns in UPDATE)
q 0 "UPDATE regstack.auth_rate_limit_events SET occurred_at = '2000-01-01 00:00+00' WHERE key LIKE 'stale-%'" >/dev/null \
    || rl_fail "ageing the events"
q 0 "UPDATE regstack.auth_rate_limit_state SET last_at = '2000-01-01 00:00+00', clock_at = '2000-01-01 00:00+00',
            start_at = CASE WHEN start_at IS NULL THEN NULL ELSE '2000-01-01 00:00+00'::timestamptz END
      WHERE key LIKE 'stale-%'" >/dev/null || rl_fail "ageing the state rows"
purged=0
for n in 0 1 2; do
    c=$(q "$n" "SELECT events_deleted FROM regstack.purge_expired()") || rl_fail "purge_expired on ${node_name[$n]}"
    purged=$((purged + c))
done
left=$(q 0 "SELECT (SELECT count(*) FROM regstack.auth_rate_limit_events WHERE key LIKE 'stale-%') + (SELECT count(*) FROM regstack.auth_rate_limit_state WHERE key LIKE 'stale-%')")
[ "$left" = 0 ] || rl_fail "$left stale rate-limit rows left after purge_expired on every node"
echo "stale rate-limit rows purged from the workers' shards ($purged rows, counting the reapers' share as 0 or more)"
echo "test citus_rate_limits ... ok"

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
# subject_node names, on every node, the shard and node token_node names
# for a token of that subject (checked against Citus's just above).
subject_tokens=$(for g in $(seq 101); do
                     echo "SELECT 'subject-$g', regstack.issue_token('pre_auth', subject => 'subject-$g');"
                 done | regstack_citus_psql 0 "$db" -Atq -F ' ') || lookup_fail "issuing tokens of 101 subjects"
values=$(awk '{ printf "%s(%c%s%c, %c%s%c)", (NR > 1 ? ", " : ""), 39, $1, 39, 39, $2, 39 }' <<<"$subject_tokens")
local_total=0
for n in 0 1 2; do
    got=$(q "$n" "SELECT count(*) FILTER (WHERE s IS DISTINCT FROM t) || '|' || count(*) FILTER (WHERE (s).is_local)
                         || '|' || count(*)
                    FROM (SELECT regstack.subject_node(v.subject) AS s, regstack.token_node(v.token) AS t
                            FROM (VALUES $values) AS v(subject, token)) AS x") || lookup_fail "subject_node on ${node_name[$n]}"
    IFS='|' read -r wrong local total <<<"$got"
    [ "$wrong" = 0 ] && [ "$total" = 101 ] \
        || lookup_fail "subject_node on ${node_name[$n]}: $wrong of $total answers differ from token_node's"
    local_total=$((local_total + local))
done
[ "$local_total" = 101 ] || lookup_fail "subject_node: $local_total of 101 subjects local on some node, not 101"
echo "subject_node: the node of 101 subjects is their tokens' on every node"
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

# ---- citus_waits: cancels at every wait, savepoints ----
# A call that waits on the cluster is cancelled cleanly (57014) and leaves
# nothing behind: on the owner worker, waiting for the shard's metadata
# lock (held here as a shard move holds it, through Citus's
# lock_shard_metadata()); through the coordinator, a whole routed call
# waiting there for that lock and for a row lock.  Afterwards no client
# holds an advisory lock on the worker, the cancelled calls wrote nothing,
# and the same calls succeed.  Then savepoints: routed token and
# rate-limit calls rolled back to a savepoint are undone, the rest commits.
wait_fail() {
    echo "test citus_waits ... FAILED ($*)"
    KEEP=1
    exit 1
}
hold() {   # hold <node> <sql>: run sql in a transaction held open for 3 s, in the background
    local tries
    regstack_citus_psql "$1" "$db" -Atq -c "BEGIN; $2; SELECT pg_sleep(3); COMMIT; -- held" >/dev/null 2>&1 &
    # Back once that transaction sleeps, its sql done.
    for tries in $(seq 100); do
        [ "$(q "$1" "SELECT count(*) FROM pg_stat_activity
                      WHERE wait_event = 'PgSleep' AND query LIKE '%-- held'")" = 1 ] && return 0
        sleep 0.05
    done
    "${hold_fail:-wait_fail}" "the transaction holding '$2' on ${node_name[$1]} did not reach its sleep"
}
client_advisory_locks() {   # client_advisory_locks <node>: advisory locks other client backends hold
    q "$1" "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             WHERE l.locktype = 'advisory' AND a.backend_type = 'client backend'
               AND l.pid <> pg_backend_pid()"
}
timed_out() {   # timed_out <node> <sql>: the error of sql under a 300 ms statement_timeout
    refusal "$1" "SET statement_timeout = '300ms'; $2"
}
# A subject and a key on worker 1, and their shards.
probe=$(q 1 "SELECT regstack.issue_token('pre_auth', subject => 'wait-subject')") || wait_fail "issue on worker1"
read -r tok_port tok_shard <<<"$(q 0 "SELECT node_port || ' ' || shard_id FROM regstack.token_node('$probe')")"
q 0 "SELECT count(*) FROM regstack.consume_token('$probe', 'pre_auth')" >/dev/null || wait_fail "consume on the coordinator"
owner=$(node_of_port "$tok_port")
[ "$owner" != 0 ] || wait_fail "a token shard on the coordinator"
key=
for i in $(seq 100); do
    if [ "$(q 0 "SELECT node_port FROM regstack.rate_limit_node('wait-key-$i')")" = "$tok_port" ]; then
        key=wait-key-$i; break
    fi
done
[ -n "$key" ] || wait_fail "no key among 100 on ${node_name[$owner]}"
key_shard=$(q 0 "SELECT shard_id FROM regstack.rate_limit_node('$key')")

# (1) On the owner, issue_token waits for the shard's metadata lock.
hold "$owner" "SELECT lock_shard_metadata(7, ARRAY[$tok_shard]::bigint[])"
err=$(timed_out "$owner" "SELECT regstack.issue_token('pre_auth', subject => 'wait-subject')")
wait
case $err in *"canceling statement due to statement timeout"*) ;; *) wait_fail "issue_token waiting for the metadata lock: '$err'" ;; esac
[ "$(client_advisory_locks "$owner")" = 0 ] || wait_fail "advisory locks left on ${node_name[$owner]}"
[ "$(live "subject = 'wait-subject'")" = 0 ] || wait_fail "a cancelled issue_token left a token"
t=$(q "$owner" "SELECT regstack.issue_token('pre_auth', subject => 'wait-subject')") || wait_fail "issue_token after the cancel"
[ "$(q 0 "SELECT subject FROM regstack.consume_token('$t', 'pre_auth')")" = wait-subject ] \
    || wait_fail "the token issued after the cancel"
echo "on the owner worker: a call waiting for the shard metadata lock cancelled (57014), nothing left, the next call works"

# (2) Through the coordinator, a routed rate_limit_check waits there for
# the same lock of the key's shard; (3) then for the key's row lock.
q 0 "SELECT regstack.rate_limit_reset('$key')" >/dev/null || wait_fail "rate_limit_reset"
hold "$owner" "SELECT lock_shard_metadata(7, ARRAY[$key_shard]::bigint[])"
err=$(timed_out 0 "BEGIN; SELECT allowed FROM regstack.rate_limit_check('$key', 'login', 2, '1 hour'); COMMIT")
wait
case $err in *"canceling statement due to statement timeout"*) ;; *) wait_fail "routed call waiting for the metadata lock: '$err'" ;; esac
[ "$(client_advisory_locks "$owner")" = 0 ] || wait_fail "advisory locks left on ${node_name[$owner]} after a routed cancel"
q "$owner" "SELECT allowed FROM regstack.rate_limit_check('$key', 'login', 2, '1 hour')" >/dev/null \
    || wait_fail "rate_limit_check after the routed cancel"
hold "$owner" "SELECT 1 FROM regstack.auth_rate_limit_state WHERE key = '$key' FOR UPDATE"
err=$(timed_out 0 "BEGIN; SELECT allowed FROM regstack.rate_limit_check('$key', 'login', 2, '1 hour'); COMMIT")
wait
case $err in *"canceling statement due to statement timeout"*) ;; *) wait_fail "routed call waiting for the row lock: '$err'" ;; esac
# One event so far (the call between the cancels): one more allowed, then denied.
got=$(q 0 "SELECT allowed FROM regstack.rate_limit_check('$key', 'login', 2, '1 hour')")$(q 1 "SELECT allowed FROM regstack.rate_limit_check('$key', 'login', 2, '1 hour')")
[ "$got" = tf ] || wait_fail "after two cancelled routed calls, a limit of 2 with one event gave $got, not tf"
echo "through the coordinator: a routed call waiting for the metadata lock, then for the row lock, cancelled; neither counted"

# Savepoints, through the coordinator (routed calls).
got=$(regstack_citus_psql 0 "$db" -Atq <<EOS
SELECT regstack.rate_limit_reset('sp-key');
BEGIN;
SAVEPOINT a;
SELECT regstack.issue_token('pre_auth', subject => 'sp-subject') AS undone \gset
SELECT allowed FROM regstack.rate_limit_check('sp-key', 'login', 1, '1 hour');
ROLLBACK TO SAVEPOINT a;
SELECT count(*) FROM regstack.consume_token(:'undone', 'pre_auth');
SELECT allowed FROM regstack.rate_limit_check('sp-key', 'login', 1, '1 hour');
SELECT regstack.issue_token('pre_auth', subject => 'sp-subject') AS kept \gset
COMMIT;
SELECT subject FROM regstack.consume_token(:'kept', 'pre_auth');
SELECT allowed FROM regstack.rate_limit_check('sp-key', 'login', 1, '1 hour');
EOS
) || wait_fail "the savepoint script"
[ "$(echo $got)" = "0 t 0 t sp-subject f" ] || wait_fail "savepoints: got '$(echo $got)'"
echo "savepoints: a token and a rate-limit event rolled back to a savepoint are undone, the rest commits"
echo "test citus_waits ... ok"

# ---- citus_distribute: regstack.distribute() and DROP EXTENSION ----
# DROP EXTENSION regstack leaves no shard behind on any node (src/
# citus_drop.c), a DROP rolled back keeps every shard and row;
# regstack.distribute() refuses while a worker holds rows of its own,
# then distributes everything once (a second call changes nothing): the
# registry and key tables as reference tables with their shipped rows
# still shipped, one subject-tag key on every node, registry changes seen
# at once by sessions on every node (test/citus/registry_sessions.py),
# rate-limit calls delegated to the key's node (a 32-way race through the
# coordinator allows exactly the limit), and the token contract across
# nodes without any key copied by hand.
dist_fail() {
    echo "test citus_distribute ... FAILED ($*)"
    KEEP=1
    exit 1
}
leftovers() {   # leftovers <node>: regstack relations (shards too), Citus tables, distributed functions
    q "$1" "SET citus.override_table_visibility = off;
            SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'regstack')
                   || '|' || (SELECT count(*) FROM pg_dist_partition)
                   || '|' || (SELECT count(*) FROM pg_dist_object o JOIN pg_proc p ON p.oid = o.objid
                               WHERE o.classid = 'pg_proc'::regclass AND p.proname LIKE 'rate_limit%')"
}
nothing_left() {   # nothing_left <what dropped regstack>: no trace of it on any node
    local n
    for n in "${!REGSTACK_CITUS_PORTS[@]}"; do
        [ "$(leftovers "$n")" = "0|0|0" ] \
            || dist_fail "after $1, ${node_name[$n]} keeps relations|Citus tables|functions: $(leftovers "$n")"
        [ -z "$(q "$n" "SELECT 1 FROM pg_extension WHERE extname = 'regstack'")" ] \
            || dist_fail "regstack still installed on ${node_name[$n]} after $1"
    done
}
create_everywhere() {   # create_everywhere: CREATE EXTENSION regstack on the coordinator, and where Citus did not
    local n
    q 0 "CREATE EXTENSION regstack" >/dev/null || dist_fail "CREATE EXTENSION regstack again"
    for n in "${!REGSTACK_CITUS_PORTS[@]}"; do
        [ -n "$(q "$n" "SELECT 1 FROM pg_extension WHERE extname = 'regstack'")" ] \
            || q "$n" "CREATE EXTENSION regstack" >/dev/null || dist_fail "CREATE EXTENSION on ${node_name[$n]}"
    done
}
cleanup_moves() {   # cleanup_moves: the source placements shard moves left, dropped by Citus
    regstack_citus_psql 0 "$db" -q -c "SET client_min_messages = warning" \
        -c "CALL citus_cleanup_orphaned_resources()" >/dev/null || dist_fail "citus_cleanup_orphaned_resources"
}
# The tables distributed so far (tokens and the rate-limit tables), with rows.
tok=$(q 0 "SELECT regstack.issue_token('pre_auth', subject => 'kept')") || dist_fail "issue before the rolled-back DROP"
# A DROP waiting on a worker for its lock of regstack's tables ends at a
# cancel (57014), dropping nothing (the token above is checked below).
hold_fail=dist_fail
hold 1 "LOCK TABLE regstack.auth_rate_limit_state IN ROW EXCLUSIVE MODE"
err=$(timed_out 0 "DROP EXTENSION regstack")
wait
case $err in *"canceling statement due to statement timeout"*) ;; *) dist_fail "DROP EXTENSION waiting for a lock: '$err'" ;; esac
echo "DROP EXTENSION waiting for its lock on worker1 cancelled (57014)"
regstack_citus_psql 0 "$db" -q -c "BEGIN" -c "DROP EXTENSION regstack" -c "ROLLBACK" >/dev/null 2>&1 \
    || dist_fail "BEGIN; DROP EXTENSION regstack; ROLLBACK"
[ "$(q 1 "SELECT subject FROM regstack.consume_token('$tok', 'pre_auth')")" = kept ] \
    || dist_fail "a token issued before a rolled-back DROP EXTENSION is gone"
echo "DROP EXTENSION rolled back: shards and rows kept"
# The source placements of the shard moves above are Citus's to drop (its
# deferred cleanup, pg_dist_cleanup), not orphans of the DROP: gone first.
cleanup_moves
q 0 "DROP EXTENSION regstack" >/dev/null || dist_fail "DROP EXTENSION regstack (distributed tables)"
nothing_left "DROP EXTENSION"
echo "DROP EXTENSION regstack with distributed tables: no relation or shard left on any node"

create_everywhere
# Without the coordinator in Citus's metadata, it would get no copy of the
# reference tables: refused.
coded_refusal() {   # coded_refusal <node> <sql>: the error with its SQLSTATE, or "no error"
    regstack_citus_psql "$1" "$db" -Atq -v VERBOSITY=verbose -c "$2" 2>&1 >/dev/null | head -n 1 || true
}
q 0 "SELECT citus_remove_node('127.0.0.1', ${REGSTACK_CITUS_PORTS[0]})" >/dev/null \
    || dist_fail "citus_remove_node of the coordinator"
err=$(coded_refusal 0 "SELECT * FROM regstack.distribute()")
[ "$err" = "ERROR:  55000: the coordinator is not in the Citus metadata" ] \
    || dist_fail "distribute() with the coordinator out of the metadata: '$err'"
q 0 "SELECT citus_set_coordinator_host('127.0.0.1', ${REGSTACK_CITUS_PORTS[0]})" >/dev/null \
    || dist_fail "citus_set_coordinator_host"
echo "distribute() refused while the coordinator was not in the metadata ($err)"
# A token issued on worker 1 before distributing lives in its own table.
early=$(q 1 "SELECT regstack.issue_token('pre_auth', subject => 'early')") || dist_fail "issue on worker1"
err=$(refusal 0 "SELECT * FROM regstack.distribute()")
case $err in
    *"worker 127.0.0.1:${REGSTACK_CITUS_PORTS[1]} holds 1 row(s) in its own copy of table regstack.auth_ephemeral_tokens"*) ;;
    *) dist_fail "distribute() with a token on worker1: '$err'" ;;
esac
[ "$(q 0 "SELECT count(*) FROM pg_dist_partition")" = 0 ] || dist_fail "a refused distribute() left Citus tables"
[ "$(q 1 "SELECT subject FROM regstack.consume_token('$early', 'pre_auth')")" = early ] \
    || dist_fail "the token on worker1 was not kept by the refused distribute()"
echo "distribute() refused while worker1 held a token of its own ($err)"

got=$(q 0 "SELECT string_agg(object || ' ' || distribution || ' ' || changed, ', ' ORDER BY object) FROM regstack.distribute()") \
    || dist_fail "regstack.distribute()"
want="regstack.auth_ephemeral_tokens hash(subject_tag) true, regstack.auth_rate_limit_events hash(key) true, regstack.auth_rate_limit_state hash(key) true, regstack.rate_limit_check(text,text,integer,interval,boolean) delegated(key) true, regstack.rate_limit_policies reference true, regstack.rate_limit_record(text,text) delegated(key) true, regstack.rate_limit_reset(text,text) delegated(key) true, regstack.secret_keys reference true, regstack.token_types reference true"
[ "$got" = "$want" ] || dist_fail "distribute() returned: $got"
again=$(q 0 "SELECT count(*) FILTER (WHERE changed) || '/' || count(*) FROM regstack.distribute()")
[ "$again" = "0/9" ] || dist_fail "a second distribute() changed $again objects"
colocated=$(q 0 "SELECT count(DISTINCT colocationid) FROM pg_dist_partition
                  WHERE logicalrelid IN ('regstack.auth_rate_limit_state'::regclass, 'regstack.auth_rate_limit_events'::regclass)")
[ "$colocated" = 1 ] || dist_fail "the rate-limit tables are not colocated"
echo "distribute(): 3 reference tables, 3 distributed, 3 functions delegated; a second call changes nothing"
# The coordinator's own tables, Citus's shells, keep no rows (no key).
shells=$(q 0 "SELECT string_agg(c.relname || ' ' || pg_relation_size(c.oid), ', ' ORDER BY c.relname)
               FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid
               WHERE pg_relation_size(c.oid) > 0")
[ -z "$shells" ] || dist_fail "the coordinator keeps rows in the local tables: $shells"
notices=$(regstack_citus_psql 0 "$db" -Atq -c "SELECT count(*) FILTER (WHERE changed) FROM regstack.distribute(shard_count => 4)" 2>&1) \
    || dist_fail "distribute(shard_count => 4) again"
[ "$(grep -c "is already distributed, in 32 shards: shard_count 4 ignored" <<<"$notices")" = 2 ] \
    && [ "$(tail -n 1 <<<"$notices")" = 0 ] \
    || dist_fail "distribute(shard_count => 4) on distributed tables: $notices"
notices=$(regstack_citus_psql 0 "$db" -Atq \
    -c "SELECT count(*) FILTER (WHERE distribution = 'delegated(key)') FROM regstack.distribute(delegate => false)" 2>&1) \
    || dist_fail "distribute(delegate => false) after delegating"
[ "$(grep -c "NOTICE:  function regstack.rate_limit_[a-z]*(.*) stays delegated" <<<"$notices")" = 3 ] \
    && [ "$(tail -n 1 <<<"$notices")" = 3 ] \
    || dist_fail "distribute(delegate => false) after delegating: $notices"
echo "the coordinator's local tables emptied; an ignored shard_count and a kept delegation are told"

registry_seen() {   # registry_seen <node>: shipped/all token types, shipped/all policies, key hash
    q "$1" "SELECT (SELECT count(*) FILTER (WHERE builtin) || '/' || count(*) FROM regstack.token_types)
                   || ' ' || (SELECT count(*) FILTER (WHERE builtin) || '/' || count(*) FROM regstack.rate_limit_policies)
                   || ' ' || (SELECT encode(sha256(secret), 'hex') FROM regstack.secret_keys WHERE name = 'subject_tag')"
}
keys=
for n in 0 1 2; do
    read -r types policies key_hash <<<"$(registry_seen "$n")"
    [ "$types" = 6/6 ] && [ "$policies" = 6/6 ] \
        || dist_fail "${node_name[$n]}: shipped token types $types, policies $policies (want 6/6)"
    keys+="$key_hash "
done
[ "$(tr ' ' '\n' <<<"$keys" | sort -u | grep -c .)" = 1 ] || dist_fail "different subject-tag keys: $keys"
echo "every node: the 6 shipped token types and policies still shipped, one subject-tag key"

# The client-side router of examples/python/citus_routing.py, given the
# coordinator: every call sent to a worker, the one holding its row.
routed=$(DATABASE_URL="postgresql://postgres@127.0.0.1:${REGSTACK_CITUS_PORTS[0]}/$db" \
             /usr/bin/python3 "$src/examples/python/citus_routing.py" 2>&1) \
    || dist_fail "examples/python/citus_routing.py: $routed"
grep -q "^calls sent to 127.0.0.1:[0-9]*: [0-9]*" <<<"$routed" && ! grep -q "the first node" <<<"$routed" \
    || dist_fail "examples/python/citus_routing.py sent calls to the coordinator: $routed"
echo "examples/python/citus_routing.py: $(tail -n 1 <<<"$routed")"

REGSTACK_CITUS_DB=$db /usr/bin/python3 "$src/test/citus/registry_sessions.py" "${REGSTACK_CITUS_PORTS[@]}" \
    || dist_fail "registry changes across nodes"

# Tokens: issue on each node, consume on each other; a subject's tokens
# revoked from any node, with no key copied by hand.
for i in 0 1 2; do
    t=$(q "$i" "SELECT regstack.issue_token('password_reset', subject => 'dist-user')") || dist_fail "issue on ${node_name[$i]}"
    j=$(((i + 1) % 3))
    [ "$(q "$j" "SELECT subject FROM regstack.peek_token('$t', 'password_reset')")" = dist-user ] \
        || dist_fail "a token issued on ${node_name[$i]} is not seen on ${node_name[$j]}"
done
[ "$(q 2 "SELECT regstack.revoke_tokens('dist-user')")" = 3 ] || dist_fail "revoke_tokens from worker2 missed tokens"
echo "tokens issued on every node, seen on the next, all three revoked from worker2"
# A call routed from the coordinator reads the registry there (on the
# worker's copy of the reference table, inside Citus's routed statement).
got=$(regstack_citus_psql 0 "$db" -Atq -c "BEGIN" \
    -c "SELECT allowed FROM regstack.rate_limit_check('dist-policy', 'login_attempt')" -c "COMMIT" 2>&1) \
    || dist_fail "a routed rate_limit_check with its policy: $got"
[ "$(echo $got)" = "t" ] || dist_fail "a routed rate_limit_check with its policy gave '$got'"
echo "a routed call in a transaction reads the policy on the owner worker"

# Delegation: a call made alone on the coordinator runs on the key's node.
pushed=$(regstack_citus_psql 0 "$db" -Atq -c "SET client_min_messages = debug1" \
    -c "SELECT allowed FROM regstack.rate_limit_check('dist-key', 'login', 10, '1 hour')" 2>&1) \
    || dist_fail "rate_limit_check on the coordinator"
grep -q "pushing down the function call" <<<"$pushed" || dist_fail "rate_limit_check was not delegated: $pushed"
got=$(rate_race dist-race 0)
[ "$got" = 10/22 ] || dist_fail "32 delegated calls with a limit of 10, allowed/denied: $got"
echo "rate_limit_check delegated from the coordinator; 32 delegated calls at once, limit 10: 10 allowed"

# A worker added now: Citus creates regstack there, whose own tables hold
# its own key; its calls are refused (55000) until Citus copies the
# reference tables to it, then see the cluster's registry and key, and
# run on the shards moved there.
regstack_citus_add_node || dist_fail "adding a third worker"
new=$((${#REGSTACK_CITUS_PORTS[@]} - 1))
node_name[$new]=worker3
[ -n "$(q "$new" "SELECT 1 FROM pg_extension WHERE extname = 'regstack'")" ] \
    || dist_fail "citus_add_node did not create regstack on worker3"
err=$(coded_refusal "$new" "SELECT regstack.issue_token('password_reset', subject => 'new-node')")
[ "$err" = "ERROR:  55000: table regstack.token_types has no copy on this node" ] \
    || dist_fail "a call on worker3 before the reference tables reached it: '$err'"
q 0 "SELECT replicate_reference_tables()" >/dev/null || dist_fail "replicate_reference_tables()"
seen_new=$(registry_seen "$new") || dist_fail "the registry on worker3"
seen_0=$(registry_seen 0) || dist_fail "the registry on the coordinator"
seen_1=$(registry_seen 1) || dist_fail "the registry on worker1"
[ -n "$seen_new" ] && [ "$seen_new" = "$seen_0" ] && [ "$seen_new" = "$seen_1" ] \
    || dist_fail "worker3 sees the registry and key as '$seen_new', the coordinator as '$seen_0', worker1 as '$seen_1'"
t=$(q 1 "SELECT regstack.issue_token('password_reset', subject => 'new-node')") || dist_fail "issue on worker1"
read -r tok_port tok_shard <<<"$(q 0 "SELECT node_port || ' ' || shard_id FROM regstack.token_node('$t')")"
q 0 "SELECT citus_move_shard_placement($tok_shard, '127.0.0.1', $tok_port, '127.0.0.1', ${REGSTACK_CITUS_PORTS[$new]}, shard_transfer_mode => 'block_writes')" >/dev/null \
    || dist_fail "moving the token's shard to worker3"
[ "$(q "$new" "SELECT is_local FROM regstack.token_node('$t')")" = t ] || dist_fail "the moved shard is not local on worker3"
t2=$(q "$new" "SELECT regstack.issue_token('password_reset', subject => 'new-node')") || dist_fail "issue on worker3"
[ "$(q "$new" "SELECT subject FROM regstack.consume_token('$t', 'password_reset')")" = new-node ] \
    || dist_fail "worker3 did not consume a token moved to it"
[ "$(q 2 "SELECT regstack.revoke_tokens('new-node')")" = 1 ] || dist_fail "worker2 did not revoke the token issued on worker3"
[ "$(q "$new" "SELECT count(*) FROM regstack.consume_token('$t2', 'password_reset')")" = 0 ] \
    || dist_fail "a revoked token was consumed on worker3"
echo "worker3 added: calls refused until the reference tables reached it, then one key; it owns a moved shard"

# A rebalance onto worker3 under load.  Tokens with no subject (a random
# tag each, so every shard) issued before it and, on the coordinator and
# worker1, all through it, are each consumed once afterwards, spread over
# the four nodes; rate limits exhausted before it stay exhausted.
downloads() {   # downloads <node> <file>: 100 download tokens issued there in one session, appended
    local i
    for i in $(seq 100); do echo "SELECT regstack.issue_token('download', payload => '{}');"; done \
        | regstack_citus_psql "$1" "$db" -Atq >> "$2" 2>&1
}
spread_load() {   # spread_load <node> <file>: downloads there until $race/stop exists
    while [ ! -e "$race/stop" ]; do downloads "$1" "$2"; done
}
limit_calls() {   # limit_calls <node>: rate_limit_check of keys reb-1 .. reb-20 (limit 2), allowed as t/f
    local i
    for i in $(seq 20); do echo "SELECT allowed FROM regstack.rate_limit_check('reb-$i', 'login', 2, '1 hour');"; done \
        | regstack_citus_psql "$1" "$db" -Atq | tr -d '\n'
}
[ "$(limit_calls 0)$(limit_calls 2)" = "$(printf 't%.0s' $(seq 40))" ] || dist_fail "20 keys, two calls each before the rebalance"
rm -f "$race/stop" "$race/reb-"*
downloads 2 "$race/reb-before"
spread_load 0 "$race/reb-coord" &
spread_load 1 "$race/reb-worker1" &
for _ in $(seq 200); do
    [ -s "$race/reb-coord" ] && [ -s "$race/reb-worker1" ] && break
    sleep 0.05
done
at_start=$(cat "$race/reb-coord" "$race/reb-worker1" | wc -l)
regstack_citus_psql 0 "$db" -q -c "SET client_min_messages = warning" \
    -c "SELECT rebalance_table_shards(shard_transfer_mode => 'block_writes')" >/dev/null \
    || { touch "$race/stop"; wait; dist_fail "rebalance_table_shards()"; }
at_end=$(cat "$race/reb-coord" "$race/reb-worker1" | wc -l)
touch "$race/stop"
wait
[ "$at_end" -gt "$at_start" ] || dist_fail "no token was issued while the rebalance ran ($at_start before, $at_end after)"
moved=$(q 0 "SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid)
              WHERE p.groupid = (SELECT groupid FROM pg_dist_node WHERE nodeport = ${REGSTACK_CITUS_PORTS[$new]})
                AND s.logicalrelid = 'regstack.auth_ephemeral_tokens'::regclass")
[ "$moved" -ge 8 ] || dist_fail "after the rebalance worker3 holds $moved token shards"
bad=$(cat "$race/reb-"* | grep -v '^[A-Za-z0-9_-]\{48\}$' | head -n 2 || true)
[ -z "$bad" ] || dist_fail "issue_token during the rebalance: $bad"
issued=$(cat "$race/reb-"* | wc -l)
during=$(cat "$race/reb-coord" "$race/reb-worker1" | wc -l)
cat "$race/reb-"* | awk -v dir="$race" \
    '{ printf "SELECT count(*) FROM regstack.consume_token(%c%s%c, %cdownload%c);\n", 39, $0, 39, 39, 39 > (dir "/reb-consume-" NR % 4) }'
got=$(for n in 0 1 2 3; do regstack_citus_psql "$n" "$db" -Atq -f "$race/reb-consume-$n"; done | sort | uniq -c | tr -s ' ')
[ "$got" = " $issued 1" ] || dist_fail "consuming the $issued tokens after the rebalance: '$got'"
[ "$(live "token_type = 'download'")" = 0 ] || dist_fail "download tokens left after consuming them all"
[ "$(limit_calls "$new")" = "$(printf 'f%.0s' $(seq 20))" ] || dist_fail "a limit exhausted before the rebalance allowed a call after it"
echo "a rebalance onto worker3 ($moved token shards there) with $((at_end - at_start)) tokens issued while it ran ($during in all): all $issued consumed once, exhausted limits kept"

# Rolled-back DROPs while the reapers run every second on four nodes:
# the hook's LOCK and a reaper batch take the tables in one order (before
# the reaper's was mended, about one DROP in 200 deadlocked; without the
# hook, one DROP SCHEMA in 6).
for i in $(seq 30); do
    for drop in "DROP EXTENSION regstack" "DROP SCHEMA regstack CASCADE"; do
        err=$(regstack_citus_psql 0 "$db" -q -c "SET client_min_messages = warning" -c "BEGIN" -c "$drop" -c "ROLLBACK" 2>&1) \
            || dist_fail "BEGIN; $drop; ROLLBACK (try $i): $err"
    done
done
[ "$(q 0 "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::text LIKE 'regstack.%'")" = 6 ] \
    || dist_fail "rolled-back DROPs changed regstack's Citus tables"
echo "60 DROPs rolled back while the reapers ran: none deadlocked, every table kept"
cleanup_moves   # the source placement of the move to worker3
q 0 "DROP EXTENSION regstack" >/dev/null || dist_fail "DROP EXTENSION regstack (reference tables, delegated functions)"
nothing_left "DROP EXTENSION"
echo "DROP EXTENSION regstack after distribute(): nothing left on any node"

# DROP SCHEMA regstack CASCADE drops the extension with the schema; the
# hook (src/citus_drop.c) locks the tables and drops the shards first, as
# for DROP EXTENSION, and Citus propagates the DROP to every node.
create_everywhere
q 0 "SELECT count(*) FROM regstack.distribute()" >/dev/null || dist_fail "distribute() before DROP SCHEMA"
err=$(regstack_citus_psql 0 "$db" -Atq -c "SET client_min_messages = warning" -c "DROP SCHEMA regstack CASCADE" 2>&1) \
    || dist_fail "DROP SCHEMA regstack CASCADE: $err"
nothing_left "DROP SCHEMA regstack CASCADE"
echo "DROP SCHEMA regstack CASCADE after distribute(): nothing left on any node"
echo "test citus_distribute ... ok"
