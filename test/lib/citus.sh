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
# stops it when the calling shell exits.
#
# Environment:
#   REGSTACK_VENDOR         directory holding citus-<version>.tar.gz
#                           (default: shared/vendor next to the repository)
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

# The vendor directory: $REGSTACK_VENDOR, else shared/vendor beside the
# repository that holds this file.
regstack_citus_vendor() {
    if [ -n "${REGSTACK_VENDOR:-}" ]; then
        echo "$REGSTACK_VENDOR"
    else
        echo "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/../shared/vendor"
    fi
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
        libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev
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
