#!/usr/bin/env bash
# test/demo.sh: start a throwaway PostgreSQL 15 with regstack preloaded,
# create an application role as the README says, run the README's three
# flows as that role, and leave the cluster running.  It prints how to
# connect and how to stop it.
#
# Run as root on a fresh Debian 12 machine with the PostgreSQL 15 server
# installed: it installs what is missing (server headers, make, gcc) and
# runs the server as the unprivileged "postgres" user, from a private copy
# of the installed server under /tmp (the system PostgreSQL is untouched).
# PORT=n chooses the TCP port on 127.0.0.1 (default: first free from 54329).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib/common.sh"
regstack_install_packages postgresql-server-dev-15 make gcc

work=$(mktemp -d /tmp/regstack-demo.XXXXXX)
chmod 755 "$work"
echo "building regstack into $work ..."
pg_config=$(regstack_build_private "$src" "$work")
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

cat <<EOF

The cluster is running (data: $work/data, log: $work/server.log).
Connect:  $bin/psql -h 127.0.0.1 -p $port -U app -d regstack_demo
          (or -U postgres for the owner; no password, local only)
          from an application: postgresql://app@127.0.0.1:$port/regstack_demo
Stop:     su postgres -c "$bin/pg_ctl -D $work/data stop"  &&  rm -rf $work
EOF
