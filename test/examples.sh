#!/usr/bin/env bash
# test/examples.sh: run every client example in examples/ against a
# throwaway PostgreSQL with regstack (examples/python/citus_routing.py on
# one server, without Citus), then the Python, Node and Java ones again
# through PgBouncer in transaction mode.
#
#   bash test/examples.sh <path-to-pg_config>
#
# pg_config belongs to a PostgreSQL installation in which regstack is
# already installed (test/check.sh's private build from
# regstack_build_private in test/lib/common.sh).  Run as root, it installs
# the Debian packages the examples need and runs the server, PgBouncer and
# every client as the unprivileged "postgres" user, in a temporary
# directory; node-postgres comes from the npm registry (`npm ci` from the
# committed package-lock.json, into that directory).  Each example gets its
# own database; the server listens on 127.0.0.1 and a Unix socket in the
# temporary directory, PgBouncer on 127.0.0.1 only, each on a free port.
#
# Prints one line per example, "test examples_python ... ok" (or FAILED,
# followed by the example's output), and "examples: N passed, N failed";
# exits non-zero on any failure.  The servers are stopped on every exit.
# KEEP=1 keeps the temporary directory (it is kept on failure anyway);
# VERBOSE=1 prints each example's output.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
pg_config=${1:?usage: bash test/examples.sh <path-to-pg_config>}
. "$src/test/lib/common.sh"

regstack_install_packages python3-psycopg libpostgresql-jdbc-java openjdk-17-jdk-headless pgbouncer
# Node.js and npm: the machine's own if it has them, else Debian's.
command -v npm >/dev/null 2>&1 || regstack_install_packages nodejs npm
jdbc_jar=/usr/share/java/postgresql.jar

bin=$("$pg_config" --bindir)
if [ ! -f "$("$pg_config" --sharedir)/extension/regstack.control" ]; then
    echo "regstack is not installed in $("$pg_config" --sharedir); build it first (regstack_build_private)" >&2
    exit 2
fi

work=$(mktemp -d /tmp/regstack-examples.XXXXXX)
chmod 755 "$work"
status=0

as_user() { regstack_as_test_user "$1"; }

# The script's own stdout, for the exit trap: a signal's trap runs inside
# whatever redirection the interrupted command had (an example's log).
exec 9>&1

cleanup() {
    local rc=$?
    if [ -f "$work/pgbouncer.pid" ]; then
        kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true
    fi
    if [ -f "$work/data/postmaster.pid" ]; then
        as_user "'$bin/pg_ctl' -D '$work/data' -m fast -w stop" >/dev/null 2>&1 || true
    fi
    if [ "$rc" -eq 0 ] && [ "$status" -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$work"
    else
        echo "work directory kept: $work" >&9
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The first port from $1 on that nobody listens on.
free_port() {
    local port=$1
    while (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; do
        port=$((port + 1))
    done
    echo "$port"
}

# The examples, without anything built or installed in the checkout.
mkdir -p "$work/examples"
tar -C "$src/examples" --exclude=node_modules --exclude=classes --exclude='*.class' \
    --exclude=__pycache__ -cf - . | tar -C "$work/examples" -xf -
echo "npm ci (examples/node) ..."
(cd "$work/examples/node" && npm ci --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1) || {
    cat "$work/npm.log"
    echo "test examples_node ... FAILED (npm ci)"
    exit 1
}
regstack_chown_test_user "$work"

# The server.
pg_port=$(free_port 55432)
as_user "'$bin/initdb' -D '$work/data' -A trust -U postgres >'$work/initdb.log'"
cat >>"$work/data/postgresql.conf" <<EOF
shared_preload_libraries = 'regstack'
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$work'
fsync = off
EOF
as_user "'$bin/pg_ctl' -D '$work/data' -l '$work/server.log' -w start >/dev/null"
psql_su() { "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$pg_port" -U postgres "$@"; }
psql_su -d postgres -c "CREATE ROLE app LOGIN"

# PgBouncer in transaction mode, as the unprivileged user (it refuses root).
# Two server connections per database, used round-robin: a client's
# consecutive transactions land on different server connections, so
# anything that leans on session state (a named prepared statement) fails
# at once rather than now and then.
bouncer_port=$(free_port $((pg_port + 1)))
printf '"app" ""\n"postgres" ""\n' >"$work/pgbouncer-users.txt"
cat >"$work/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$pg_port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $work/pgbouncer-users.txt
pool_mode = transaction
default_pool_size = 2
server_round_robin = 1
max_client_conn = 100
ignore_startup_parameters = extra_float_digits
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
EOF
regstack_chown_test_user "$work"
as_user "pgbouncer -d -q '$work/pgbouncer.ini'"
for _ in $(seq 50); do
    "$bin/psql" -X -q -h 127.0.0.1 -p "$bouncer_port" -U postgres -d postgres -c "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.1
done

# One database per run, with regstack and the README's grants.
new_database() {
    psql_su -d postgres -c "CREATE DATABASE $1"
    psql_su -d "$1" <<'EOF'
CREATE EXTENSION regstack;
GRANT USAGE ON SCHEMA regstack TO app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA regstack TO app;
EOF
}

# Open two server connections in the database's PgBouncer pool (two
# clients at once), so that round-robin has two to alternate between.
warm_pool() {
    local i
    for i in 1 2; do
        "$bin/psql" -X -q -h 127.0.0.1 -p "$bouncer_port" -U app -d "$1" -c "SELECT pg_sleep(0.2)" >/dev/null &
    done
    wait
}

# run_example NAME PORT DIRECTORY COMMAND
run_example() {
    local name=$1 port=$2 dir=$3 cmd=$4 log="$work/$1.log" start end
    new_database "$name"
    if [ "$port" = "$bouncer_port" ]; then warm_pool "$name"; fi
    start=$(date +%s%N)
    if as_user "cd '$work/examples/$dir' && export DATABASE_URL='postgresql://app@127.0.0.1:$port/$name' && timeout 300 bash -c \"$cmd\"" \
            >"$log" 2>&1; then
        end=$(date +%s%N)
        if [ "${VERBOSE:-0}" = 1 ]; then cat "$log"; fi
        echo "test $name ... ok ($(((end - start) / 1000000)) ms)"
        passed=$((passed + 1))
    else
        cat "$log"
        echo "test $name ... FAILED"
        failed=$((failed + 1))
        status=1
    fi
}

python_cmd="/usr/bin/python3 regstack_example.py"
node_cmd="node regstack_example.js"
java_cmd="mkdir -p classes && javac -d classes -cp $jdbc_jar RegstackExample.java && java -cp classes:$jdbc_jar RegstackExample"

passed=0 failed=0
t0=$(date +%s)
run_example examples_python $pg_port python "$python_cmd"
run_example examples_node $pg_port node "$node_cmd"
run_example examples_java $pg_port java "$java_cmd"
# Without Citus every call stays on the first connection (test/citus/
# smoke.sh runs it on a cluster).
run_example examples_python_citus_routing $pg_port python "/usr/bin/python3 citus_routing.py"
run_example examples_python_pgbouncer $bouncer_port python "$python_cmd"
run_example examples_node_pgbouncer $bouncer_port node "$node_cmd"
run_example examples_java_pgbouncer $bouncer_port java "$java_cmd"
echo "examples: $passed passed, $failed failed ($(($(date +%s) - t0)) s)"
exit $status
