#!/usr/bin/env bash
# test/demo.sh: start a throwaway PostgreSQL with regstack preloaded,
# create an application role as the README says, run the README's three
# flows as that role, and leave the cluster running.  It prints how to
# connect and how to stop it.
#
#   bash test/demo.sh [VERSION]     VERSION: 15 (default), 17 or 18;
#                                   PGVERSION=17 says the same
#
# Run as root on a fresh Debian 12 machine with the PostgreSQL 15 server
# installed: it installs what is missing (server headers, make, gcc) and
# runs the server as the unprivileged "postgres" user, from a private copy
# of the installed server under /tmp (the system PostgreSQL is untouched).
# 17 and 18 run in their Debian chroot (test/lib/chroot.sh; built on first
# use, then cached), as that chroot's "postgres"; the server listens on
# 127.0.0.1 and in the work directory as 15's does.
# PORT=n chooses the TCP port on 127.0.0.1 (default: first free from 54329).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib/common.sh"
pgver=$(regstack_pgversion "${1:-}")

# 17 and 18: this script again, in the chroot, on a work directory mounted
# there; the mounts stay while the server runs.
if regstack_needs_chroot "$pgver"; then
    . "$src/test/lib/chroot.sh"
    echo "PostgreSQL $pgver: chroot $(regstack_chroot_root "$pgver") ..."
    regstack_chroot_ensure "$pgver" >/dev/null
    work=$(mktemp -d /tmp/regstack-demo.XXXXXX)
    chmod 755 "$work"
    regstack_copy_source "$src" "$work/tree"
    REGSTACK_DEMO_WORK=$work regstack_chroot_run --keep "$pgver" "$work" \
        "bash '$work/tree/test/demo.sh'"
    exit
fi

regstack_install_packages postgresql-server-dev-$pgver make gcc
if [ -n "${REGSTACK_DEMO_WORK:-}" ]; then
    work=$REGSTACK_DEMO_WORK        # made on the host, mounted in the chroot
else
    work=$(mktemp -d /tmp/regstack-demo.XXXXXX)
fi
chmod 755 "$work"
echo "building regstack into $work ..."
pg_config=$(regstack_build_private "$src" "$work" "$pgver")
bin=$("$pg_config" --bindir)

port=${PORT:-54329}
while [ -z "${PORT:-}" ] && (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; do
    port=$((port + 1))
done

regstack_as_test_user "'$bin/initdb' -D '$work/data' -A trust -U postgres >'$work/initdb.log'"
cat >>"$work/data/postgresql.conf" <<EOF
shared_preload_libraries = 'regstack'
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work'
EOF
regstack_as_test_user "'$bin/pg_ctl' -D '$work/data' -l '$work/server.log' -w start >/dev/null"

psql_as() {
    "$bin/psql" -X -v ON_ERROR_STOP=1 -h "$work" -p "$port" -U "$1" -d regstack_demo "${@:2}"
}

"$bin/psql" -X -q -h "$work" -p "$port" -U postgres -d postgres -c "CREATE DATABASE regstack_demo"
psql_as postgres -q <<'EOF'
CREATE EXTENSION regstack;
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA regstack TO app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA regstack TO app;
EOF

echo
echo "== The README's flows, run as the application role \"app\":"
echo
psql_as app -a -f "$src/sql/flows.sql"

echo
token=$(psql_as app -Atc "SELECT regstack.issue_token('pre_auth', subject => 'bob')")
echo "== A live token, as the application receives it: $token"
echo "== What is stored: its SHA-256, never the token (read as the table owner):"
psql_as postgres -c "SELECT token_type, subject, encode(token_hash, 'hex') AS token_hash,
       token_hash = sha256(convert_to('$token', 'UTF8')) AS is_sha256_of_token, expires_at
  FROM regstack.auth_ephemeral_tokens"
echo "== And what the application role may see of the table directly:"
psql_as app -c "SELECT count(*) FROM regstack.auth_ephemeral_tokens" 2>&1 || true

if [ -n "${REGSTACK_CHROOT:-}" ]; then
    # From the host: its own psql, and a signal to the postmaster (the
    # mounts the chroot's server needs go when it exits).
    psql_cmd=psql
    stop_cmd="kill -INT \$(head -n 1 $work/data/postmaster.pid)  &&  sleep 2  &&  rm -rf $work"
else
    psql_cmd=$bin/psql
    stop_cmd="su postgres -c \"$bin/pg_ctl -D $work/data stop\"  &&  rm -rf $work"
fi
cat <<EOF

The cluster is running: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') (data: $work/data, log: $work/server.log).
Connect:  $psql_cmd -h 127.0.0.1 -p $port -U app -d regstack_demo
          (or -U postgres for the owner; no password, local only)
          from an application: postgresql://app@127.0.0.1:$port/regstack_demo
Stop:     $stop_cmd
EOF
