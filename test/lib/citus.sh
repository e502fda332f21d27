# test/lib/citus.sh: shell functions to run regstack's tests on Citus.
# Source it after test/lib/common.sh; it defines functions only.
#
# Citus is not in Debian's archive.  regstack_citus_install builds it from
# the release tarball in the vendor directory (see its README.md) against a
# private PostgreSQL copy (regstack_private_postgres) and installs it into
# that copy only, never into system directories.  The built install files
# are cached per (Citus version, PostgreSQL major.minor) under
# $REGSTACK_CITUS_CACHE, so that later runs on the same machine only copy
# them in.  regstack_citus_start starts a throwaway cluster from that copy
# (a coordinator and two workers on 127.0.0.1, run by the test user) and
# stops it when the calling shell exits; regstack_citus_add_node adds a
# worker to it.
#
# Environment:
#   REGSTACK_VENDOR         directory holding citus-<version>.tar.gz
#                           (default: shared/vendor next to the repository
#                           or a parent of it, else /work/shared/vendor)
#   REGSTACK_CITUS_VERSION  Citus release to use (default: 13.2.2 for
#                           PostgreSQL 15 to 17, 14.0.1 for 18)
#   REGSTACK_CITUS_CACHE    cache of built install files
#                           (default: /var/cache/regstack/citus)
#   REGSTACK_CITUS_PRELOAD  shared_preload_libraries of every node
#                           (default: citus,regstack)
#   REGSTACK_CITUS_DB       database created on every node (default:
#                           regstack_citus)
#   REGSTACK_CITUS_CONF     extra postgresql.conf lines for every node

# Bumped whenever the build steps below change what gets installed, so
# that caches made by older steps are rebuilt rather than reused.
REGSTACK_CITUS_RECIPE=1

# The vendor directory: $REGSTACK_VENDOR; else the first shared/vendor
# holding a Citus tarball beside the repository that holds this file or
# beside one of its parent directories (a clone may sit deeper than the
# working copy, e.g. under /tmp); else /work/shared/vendor, where this
# project's machines keep it.  Prints the repository's neighbour when none
# is found, for the error message.
regstack_citus_vendor() {
    local repo dir
    if [ -n "${REGSTACK_VENDOR:-}" ]; then
        echo "$REGSTACK_VENDOR"
        return
    fi
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    dir=$repo
    while [ "$dir" != / ]; do
        dir=$(dirname "$dir")
        if compgen -G "$dir/shared/vendor/citus-*.tar.gz" >/dev/null; then
            echo "$dir/shared/vendor"
            return
        fi
    done
    if compgen -G "/work/shared/vendor/citus-*.tar.gz" >/dev/null; then
        echo /work/shared/vendor
        return
    fi
    echo "$(dirname "$repo")/shared/vendor"
}

# The Citus version to build for the PostgreSQL of pg_config $1.
regstack_citus_version() {
    local major
    major=$("$1" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
    if [ -n "${REGSTACK_CITUS_VERSION:-}" ]; then
        echo "$REGSTACK_CITUS_VERSION"
    elif [ "$major" -ge 18 ]; then
        echo 14.0.1
    else
        echo 13.2.2
    fi
}

# Install the Debian packages Citus's build needs (root only), for the
# PostgreSQL major version of pg_config $1.
regstack_citus_install_deps() {
    local major
    major=$("$1" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
    regstack_install_packages postgresql-server-dev-"$major" make gcc \
        libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libicu-dev
}

# Build Citus $2 from the vendor tarball against pg_config $1, as the test
# user, and put its install files into the new directory $3, relocatable:
# $3/lib holds what goes into pg_config --pkglibdir, $3/share what goes into
# --sharedir.  Also writes $3/build-tree.diff (our change to the sources,
# if any) and $3/build.log.  On failure, prints the log's tail.
regstack_citus_build() {
    local pg_config=$1 version=$2 out=$3 tarball bdir tree server_inc jobs
    tarball="$(regstack_citus_vendor)/citus-$version.tar.gz"
    if [ ! -f "$tarball" ]; then
        echo "Citus $version release tarball not found: $tarball" >&2
        echo "(set REGSTACK_VENDOR to the directory holding citus-$version.tar.gz;" \
            "see shared/vendor/README.md)" >&2
        return 1
    fi
    bdir=$(mktemp -d /tmp/regstack-citus-build.XXXXXX)
    chmod 755 "$bdir"
    tar -C "$bdir" -xzf "$tarball"
    tree="$bdir/citus-$version"
    [ -d "$tree" ] || { echo "$tarball has no citus-$version/ directory" >&2; return 1; }
    mkdir -p "$out"
    : >"$out/build-tree.diff"

    # PostgreSQL 15.x minor releases from 15.14 on export
    # have_createdb_privilege() from commands/dbcommands.h (backported from
    # 16), while Citus 13.2.2's src/include/pg_version_compat.h still defines
    # its own "static inline bool have_createdb_privilege(void)" for
    # PostgreSQL < 16, which no longer compiles ("static declaration of
    # 'have_createdb_privilege' follows non-static declaration").  When the
    # server headers declare the function, replace Citus's copy (the whole
    # static inline definition) by an include of the header that declares
    # PostgreSQL's own, which does the same check.  Only the build tree in
    # /tmp is changed; the diff is kept in the cache as build-tree.diff.
    server_inc=$("$pg_config" --includedir-server)
    if grep -q 'have_createdb_privilege' "$server_inc/commands/dbcommands.h" 2>/dev/null \
            && grep -q '^have_createdb_privilege(void)' "$tree/src/include/pg_version_compat.h"; then
        cp "$tree/src/include/pg_version_compat.h" "$bdir/pg_version_compat.h.orig"
        perl -0pi -e 's/static inline bool\nhave_createdb_privilege\(void\)\n\{.*?\n\}\n/#include "commands\/dbcommands.h"  \/* regstack tests: PostgreSQL exports have_createdb_privilege() *\/\n/s' \
            "$tree/src/include/pg_version_compat.h"
        if grep -q '^have_createdb_privilege(void)' "$tree/src/include/pg_version_compat.h"; then
            echo "could not remove Citus's have_createdb_privilege() from pg_version_compat.h" >&2
            return 1
        fi
        (cd "$bdir" && diff -u --label "a/src/include/pg_version_compat.h" \
            --label "b/src/include/pg_version_compat.h" \
            pg_version_compat.h.orig "$tree/src/include/pg_version_compat.h") \
            >"$out/build-tree.diff" || true
    fi

    # with_llvm=no: no JIT bitcode for Citus (halves the build; Citus's
    # functions are then not inlined by JIT, which tests do not need).
    # install-extension, not install: the latter also copies Citus's headers
    # into --includedir-server, which in the private copy is /usr/include.
    jobs=$(nproc 2>/dev/null || echo 2)
    regstack_chown_test_user "$bdir"
    if ! regstack_as_test_user "cd '$tree' && ./configure PG_CONFIG='$pg_config' \
            && make -j$jobs with_llvm=no \
            && make with_llvm=no DESTDIR='$bdir/stage' install-extension" \
            >"$bdir/build.log" 2>&1; then
        cp "$bdir/build.log" "$out/build.log" 2>/dev/null || true
        tail -n 40 "$bdir/build.log" >&2
        echo "Citus $version build failed (log: $bdir/build.log)" >&2
        return 1
    fi
    cp "$bdir/build.log" "$out/build.log"
    mkdir -p "$out/lib" "$out/share"
    cp -a "$bdir/stage$("$pg_config" --pkglibdir)/." "$out/lib/"
    cp -a "$bdir/stage$("$pg_config" --sharedir)/." "$out/share/"
    rm -rf "$bdir/stage$("$pg_config" --pkglibdir)" "$bdir/stage$("$pg_config" --sharedir)"
    if [ -n "$(find "$bdir/stage" -type f)" ]; then
        echo "Citus installed files outside pkglibdir and sharedir:" >&2
        find "$bdir/stage" -type f >&2
        return 1
    fi
    [ -f "$out/lib/citus.so" ] || { echo "Citus build installed no citus.so" >&2; return 1; }
    rm -rf "$bdir"
}

# Install Citus into the private PostgreSQL of pg_config $1, from the cache
# when a complete build for this Citus and PostgreSQL minor is there, else
# by building it (and filling the cache).  Prints the Citus version.
regstack_citus_install() {
    local pg_config=$1 version pgver key root entry stamp tarball want tmp lockfd
    version=$(regstack_citus_version "$pg_config")
    pgver=$("$pg_config" --version | awk '{print $2}')
    key="$version-pg$pgver"
    root=${REGSTACK_CITUS_CACHE:-/var/cache/regstack/citus}
    entry="$root/$key"
    stamp="$entry/.complete"
    tarball="$(regstack_citus_vendor)/citus-$version.tar.gz"
    if [ -f "$tarball" ]; then
        want="recipe=$REGSTACK_CITUS_RECIPE tarball_sha256=$(sha256sum "$tarball" | cut -d' ' -f1)"
    else
        # Without the tarball, a complete entry made by these steps will do.
        want=$(grep -s "^recipe=$REGSTACK_CITUS_RECIPE " "$stamp" || echo "no tarball")
    fi

    if ! mkdir -p "$root" 2>/dev/null || [ ! -w "$root" ]; then
        # No writable cache (not root): build into a throwaway directory.
        echo "Citus cache $root is not writable: building Citus $version without caching" >&2
        regstack_citus_install_deps "$pg_config" || return 1
        tmp=$(mktemp -d /tmp/regstack-citus-files.XXXXXX)
        regstack_citus_build "$pg_config" "$version" "$tmp" || return 1
        _regstack_citus_copy_in "$pg_config" "$tmp"
        rm -rf "$tmp"
        echo "$version"
        return 0
    fi

    # One builder per cache entry at a time; others wait for its result.
    exec {lockfd}>"$root/.lock-$key"
    flock "$lockfd"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "Citus $version for PostgreSQL $pgver: from cache $entry" >&2
    else
        if [ -e "$entry" ]; then
            echo "Citus cache $entry is incomplete or stale: rebuilding" >&2
            rm -rf "$entry"
        fi
        # A cache entry without its stamp file (the last step) is half-made.
        if [ ! -f "$tarball" ]; then
            echo "Citus $version release tarball not found: $tarball" >&2
            echo "(set REGSTACK_VENDOR to the directory holding citus-$version.tar.gz)" >&2
            exec {lockfd}>&-
            return 1
        fi
        echo "building Citus $version for PostgreSQL $pgver (a few minutes) ..." >&2
        regstack_citus_install_deps "$pg_config" || { exec {lockfd}>&-; return 1; }
        rm -rf "$entry.tmp"
        if ! regstack_citus_build "$pg_config" "$version" "$entry.tmp"; then
            exec {lockfd}>&-
            return 1
        fi
        mv "$entry.tmp" "$entry"
        echo "$want" >"$stamp"
        echo "Citus $version cached in $entry" >&2
    fi
    _regstack_citus_copy_in "$pg_config" "$entry"
    exec {lockfd}>&-
    echo "$version"
}

# Copy a cache entry's lib/ and share/ ($2) into the private copy of $1.
_regstack_citus_copy_in() {
    local pg_config=$1 from=$2 lib share
    lib=$("$pg_config" --pkglibdir)
    share=$("$pg_config" --sharedir)
    case "$lib$share" in
        /usr/*) echo "refusing to install Citus into $lib (a system directory)" >&2
                return 1 ;;
    esac
    cp -R "$from/lib/." "$lib/"
    cp -R "$from/share/." "$share/"
    regstack_chown_test_user "$lib"
    regstack_chown_test_user "$share"
}

# Print a TCP port on 127.0.0.1 that nothing listens on (random start, so
# that concurrent test runs rarely pick the same one).
regstack_citus_free_port() {
    local port=$((20000 + RANDOM % 20000))
    while (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; do
        port=$((port + 1))
    done
    echo "$port"
}

# Start a throwaway Citus cluster from the private PostgreSQL of pg_config
# $1 in directory $2 (created if missing; given to the test user): nodes
# $2/node0 (coordinator), node1 and node2 (workers), sockets in $2, logs
# $2/nodeN.log.  Sets REGSTACK_CITUS_DIR, REGSTACK_CITUS_BIN (bindir),
# REGSTACK_CITUS_PORTS (an array, coordinator first) and REGSTACK_CITUS_DB,
# writes them to $2/cluster.env (bash syntax),
# and stops the cluster when this shell exits.  Call it directly, not in
# $(...): a subshell would stop the cluster as soon as it returns.
regstack_citus_start() {
    local pg_config=$1 dir=$2 bin n
    bin=$("$pg_config" --bindir)
    mkdir -p "$dir"
    chmod 755 "$dir"
    regstack_chown_test_user "$dir"
    REGSTACK_CITUS_DIR=$dir
    REGSTACK_CITUS_BIN=$bin
    REGSTACK_CITUS_DB=${REGSTACK_CITUS_DB:-regstack_citus}
    REGSTACK_CITUS_PORTS=()
    echo "$bin" >"$dir/bindir"
    _regstack_citus_on_exit "$dir"

    # One initdb, the template of every node (regstack_citus_add_node too).
    regstack_as_test_user "'$bin/initdb' -D '$dir/template' -A trust -U postgres \
        >'$dir/initdb.log' 2>&1" || { cat "$dir/initdb.log" >&2; return 1; }
    cat >>"$dir/template/postgresql.conf" <<EOF
# regstack test cluster (test/lib/citus.sh)
shared_preload_libraries = '${REGSTACK_CITUS_PRELOAD:-citus,regstack}'
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
wal_level = logical
max_worker_processes = 32
max_replication_slots = 16
max_wal_senders = 16
shared_buffers = 64MB
fsync = off
citus.enable_statistics_collection = off
${REGSTACK_CITUS_CONF:-}
EOF
    for n in 0 1 2; do
        _regstack_citus_start_node "$n" || return 1
    done

    for n in 0 1 2; do
        _regstack_citus_create_db "$n" || return 1
    done
    regstack_citus_psql 0 "$REGSTACK_CITUS_DB" -q >/dev/null <<EOF || return 1
SELECT citus_set_coordinator_host('127.0.0.1', ${REGSTACK_CITUS_PORTS[0]});
SELECT citus_add_node('127.0.0.1', ${REGSTACK_CITUS_PORTS[1]});
SELECT citus_add_node('127.0.0.1', ${REGSTACK_CITUS_PORTS[2]});
EOF
    _regstack_citus_write_env
}

# Start one more node, node$N with N the next number, from the same
# template, create the database and Citus there, and add it to the
# cluster (citus_add_node on the coordinator, which creates there the
# extensions and objects Citus propagates).  Its port is appended to
# REGSTACK_CITUS_PORTS and cluster.env.  Call it directly, not in $(...).
regstack_citus_add_node() {
    local n=${#REGSTACK_CITUS_PORTS[@]}
    _regstack_citus_start_node "$n" && _regstack_citus_create_db "$n" || return 1
    regstack_citus_psql 0 "$REGSTACK_CITUS_DB" -q -c \
        "SELECT citus_add_node('127.0.0.1', ${REGSTACK_CITUS_PORTS[$n]})" >/dev/null || return 1
    _regstack_citus_write_env
}

# Start node$1 of the cluster being built, a copy of $REGSTACK_CITUS_DIR/
# template, on a free port appended to REGSTACK_CITUS_PORTS.
_regstack_citus_start_node() {
    local n=$1 dir=$REGSTACK_CITUS_DIR bin=$REGSTACK_CITUS_BIN port tries
    regstack_as_test_user "cp -a '$dir/template' '$dir/node$n'" || return 1
    # A port free when picked may be taken before the server binds it
    # (other test runs): then pick another.
    for tries in 1 2 3 4 5; do
        port=$(regstack_citus_free_port)
        echo "port = $port" >"$dir/node$n/port.conf"
        grep -q "^include_if_exists = 'port.conf'" "$dir/node$n/postgresql.conf" \
            || echo "include_if_exists = 'port.conf'" >>"$dir/node$n/postgresql.conf"
        regstack_chown_test_user "$dir/node$n"
        if regstack_as_test_user "'$bin/pg_ctl' -D '$dir/node$n' -l '$dir/node$n.log' \
                -w -t 60 start" >/dev/null 2>&1; then
            break
        fi
        if [ "$tries" = 5 ] || ! grep -q 'could not bind\|could not create any TCP' "$dir/node$n.log"; then
            tail -n 20 "$dir/node$n.log" >&2
            echo "node$n did not start" >&2
            return 1
        fi
    done
    REGSTACK_CITUS_PORTS+=("$port")
}

# The test database, with Citus, on node $1.
_regstack_citus_create_db() {
    regstack_citus_psql "$1" postgres -q -c "CREATE DATABASE $REGSTACK_CITUS_DB" >/dev/null \
        && regstack_citus_psql "$1" "$REGSTACK_CITUS_DB" -q -c "CREATE EXTENSION citus" >/dev/null
}

# cluster.env: the variables above, in bash syntax, for other shells.
_regstack_citus_write_env() {
    cat >"$REGSTACK_CITUS_DIR/cluster.env" <<EOF
REGSTACK_CITUS_DIR='$REGSTACK_CITUS_DIR'
REGSTACK_CITUS_BIN='$REGSTACK_CITUS_BIN'
REGSTACK_CITUS_DB='$REGSTACK_CITUS_DB'
REGSTACK_CITUS_PORTS=(${REGSTACK_CITUS_PORTS[*]})
EOF
}

# psql as superuser "postgres" on node $1 (0 coordinator, 1 and 2 workers)
# of the cluster started last, database $2, further psql arguments after.
regstack_citus_psql() {
    local n=$1 db=$2
    shift 2
    "$REGSTACK_CITUS_BIN/psql" -X -v ON_ERROR_STOP=1 \
        -h "$REGSTACK_CITUS_DIR" -p "${REGSTACK_CITUS_PORTS[$n]}" -U postgres -d "$db" "$@"
}

# Restart node $1 (0 coordinator, 1 and 2 workers) of the cluster started
# last (fast shutdown; same port and data).
regstack_citus_restart() {
    regstack_as_test_user "'$REGSTACK_CITUS_BIN/pg_ctl' -D '$REGSTACK_CITUS_DIR/node$1' \
        -l '$REGSTACK_CITUS_DIR/node$1.log' -m fast -w -t 60 restart" >/dev/null
}

# Stop every node of the cluster in directory $1 (fast, then immediate
# shutdown if a node does not stop within 60 seconds).  Idempotent.
regstack_citus_stop() {
    local dir=$1 node bin
    bin=$(cat "$dir/bindir" 2>/dev/null) || return 0
    for node in "$dir"/node[0-9]; do
        [ -f "$node/postmaster.pid" ] || continue
        regstack_as_test_user "'$bin/pg_ctl' -D '$node' -m fast -w -t 60 stop" >/dev/null 2>&1 \
            || regstack_as_test_user "'$bin/pg_ctl' -D '$node' -m immediate -w stop" >/dev/null 2>&1 \
            || echo "could not stop $node" >&2
    done
}

# Make the calling shell stop the cluster in directory $1 when it exits
# (also on INT and TERM), keeping any EXIT trap it already has.
_regstack_citus_on_exit() {
    local prev=""
    _REGSTACK_CITUS_DIRS+=("$1")
    [ -n "${_REGSTACK_CITUS_TRAPPED:-}" ] && return 0
    _REGSTACK_CITUS_TRAPPED=1
    if [ -n "$(trap -p EXIT)" ]; then
        eval "set -- $(trap -p EXIT)"    # trap -- 'command' EXIT
        prev=$3
    fi
    # shellcheck disable=SC2064
    trap "_regstack_citus_stop_all; $prev" EXIT
    [ -n "$(trap -p INT)" ] || trap 'exit 130' INT
    [ -n "$(trap -p TERM)" ] || trap 'exit 143' TERM
}

# Stop every cluster this shell started (the EXIT trap).
_regstack_citus_stop_all() {
    local dir
    for dir in "${_REGSTACK_CITUS_DIRS[@]}"; do
        regstack_citus_stop "$dir"
    done
}
