# test/lib/chroot.sh: the PostgreSQL versions Debian 12 does not ship, each
# in a minimal Debian chroot: 17 from trixie, 18 from forky.  Source it
# after common.sh; it defines functions only.  Root only.
#
# A chroot is built with debootstrap (--variant=minbase) from the Debian
# mirror the host's apt already uses, without touching the host's apt
# sources, and gets from the chroot's own apt the server, its headers and
# what the suites need (regstack_chroot_packages).  Chroots are cached
# under /var/cache/regstack/chroots/ (REGSTACK_CHROOT_CACHE overrides):
#
#   pg17-trixie/                     the chroot
#   pg17-trixie/etc/regstack-chroot.stamp
#                                    written last: the recipe and package
#                                    list it was built with.  A chroot
#                                    without it is the leftover of an
#                                    interrupted build and is rebuilt; one
#                                    whose package list changed gets the
#                                    missing packages.
#   pg17-trixie.lock                 held (flock) while checking or building
#
# REGSTACK_CHROOT_REBUILD=1 rebuilds the chroots from nothing.
#
# Commands run in a chroot through regstack_chroot_run, in a mount
# namespace of their own: /proc, /dev and /dev/pts, a private /dev/shm
# (PostgreSQL's POSIX shared memory), a private /tmp and the work directory
# (at the same path as on the host) are mounted for the command and
# unmounted when it ends (trap); the namespace guarantees that nothing stays
# mounted even if the run is killed, and that concurrent runs do not share
# mounts.  Inside, the scripts run as on the host: common.sh's functions see
# the chroot's own PostgreSQL and its own "postgres" user (REGSTACK_CHROOT
# is set).

# The Debian suite whose PostgreSQL is version $1 (17 and 18; 15 is the host's).
regstack_chroot_suite() {
    case $1 in
        17) echo trixie ;;
        18) echo forky ;;
        *) echo "PostgreSQL $1 has no chroot (supported: $(regstack_supported_pgversions))" >&2
           return 1 ;;
    esac
}

# The cache directory of the chroots.
regstack_chroot_cache() {
    echo "${REGSTACK_CHROOT_CACHE:-/var/cache/regstack/chroots}"
}

# The root directory of version $1's chroot.
regstack_chroot_root() {
    local suite
    suite=$(regstack_chroot_suite "$1") || return 1
    echo "$(regstack_chroot_cache)/pg$1-$suite"
}

# The packages version $1's chroot gets: the server and its headers (PGXS),
# a compiler, what the TAP, bench and randomized tests use; "?name" only
# where the suite has it: sqlsmith, pg_cron, and the JIT provider, which
# Debian splits out of the server from 18 on (a Recommends, and
# recommends are not installed).  pgbench comes with postgresql-NN.
regstack_chroot_packages() {
    echo "postgresql-$1 postgresql-server-dev-$1 make gcc libc6-dev libipc-run-perl" \
         "python3 python3-psycopg pgbouncer redis-server libhiredis-dev" \
         "?sqlsmith ?postgresql-$1-cron ?postgresql-$1-jit"
}

# Bump when the way a chroot is built changes: cached chroots are rebuilt.
regstack_chroot_recipe() {
    echo 1
}

# The Debian mirror the host's apt uses for its own release (deb822 .sources
# or one-line sources.list), or REGSTACK_DEBIAN_MIRROR.
regstack_chroot_mirror() {
    local codename uri
    if [ -n "${REGSTACK_DEBIAN_MIRROR:-}" ]; then
        echo "$REGSTACK_DEBIAN_MIRROR"
        return 0
    fi
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v want="$codename" '
        function flush() {
            if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ") && uris != "" && !done) {
                split(uris, u, " "); print u[1]; done = 1
            }
            types = suites = uris = ""
        }
        /^[ \t]*$/ { flush(); next }
        /^Types:/  { sub(/^Types:[ \t]*/, ""); types = $0 }
        /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
        /^URIs:/   { sub(/^URIs:[ \t]*/, ""); uris = $0 }
        END { flush() }')
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk -v want="$codename" '$1 == "deb" {
                i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == want) { print $i; exit } }')
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# Unmount whatever is mounted at or under directory $1 (deepest first):
# leftovers of a run killed outside a namespace, e.g. debootstrap's own.
regstack_chroot_unmount_under() {
    local dir mnt
    dir=$(readlink -f "$1")
    awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r mnt; do
            umount "$mnt" 2>/dev/null || umount -l "$mnt"
        done
    ! awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' \
        /proc/self/mountinfo
}

# Remove directory tree $1, never crossing into a mount.
regstack_chroot_remove() {
    [ -e "$1" ] || return 0
    regstack_chroot_unmount_under "$1" || { echo "cannot unmount everything under $1" >&2; return 1; }
    rm -rf --one-file-system "$1"
}

# The stamp a complete chroot of version $1 carries.
regstack_chroot_stamp_text() {
    printf 'recipe %s\npackages %s\n' "$(regstack_chroot_recipe)" "$(regstack_chroot_packages "$1")"
}

# Install the packages of version $1 (the "?name" ones only where the suite
# has them) into the chroot at $2, with its own apt.
regstack_chroot_install() {
    local ver=$1 root=$2 pkg want=()
    regstack_chroot_exec "$root" "$ver" "" "apt-get update -qq" || return 1
    for pkg in $(regstack_chroot_packages "$ver"); do
        if [[ $pkg == \?* ]]; then
            pkg=${pkg#\?}
            if ! regstack_chroot_exec "$root" "$ver" "" \
                    "apt-cache show '$pkg' 2>/dev/null | grep -q '^Package:'"; then
                echo "$(regstack_chroot_suite "$ver") has no package $pkg: skipped" >&2
                continue
            fi
        fi
        want+=("$pkg")
    done
    regstack_chroot_exec "$root" "$ver" "" \
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${want[*]} && apt-get clean"
}

# Build version $1's chroot at $2 from nothing: debootstrap, the apt and
# dpkg settings below, the packages; the stamp last.
regstack_chroot_build() {
    local ver=$1 root=$2 suite mirror
    suite=$(regstack_chroot_suite "$ver") || return 1
    mirror=$(regstack_chroot_mirror)
    regstack_chroot_remove "$root" || return 1
    mkdir -p "$root"
    echo "debootstrap --variant=minbase $suite from $mirror into $root" >&2
    # The "sid" script serves every current suite, also those this host's
    # debootstrap is older than (forky).
    # In a mount namespace of its own: what it mounts in the target goes
    # with it, even if it is killed.
    unshare --mount --propagation private -- debootstrap --variant=minbase \
            "$suite" "$root" "$mirror" /usr/share/debootstrap/scripts/sid >&2 || {
        regstack_chroot_unmount_under "$root"
        echo "debootstrap of $suite failed" >&2
        return 1
    }
    # No service starts in the chroot (policy-rc.d), no "main" cluster is
    # created by postgresql-common, no documentation is unpacked.  A
    # testing suite's Release file is valid for a week only, and the mirror
    # may be a dated snapshot: its signature is still checked.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    mkdir -p "$root/etc/postgresql-common"
    echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf"
    printf '%s\n' 'Acquire::Check-Valid-Until "false";' 'Acquire::Retries "3";' \
        'APT::Install-Recommends "false";' >"$root/etc/apt/apt.conf.d/99regstack"
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-exclude /usr/share/man/*' \
        'path-exclude /usr/share/info/*' >"$root/etc/dpkg/dpkg.cfg.d/99regstack"
    regstack_chroot_install "$ver" "$root" >&2 || {
        echo "installing PostgreSQL $ver's packages into $root failed" >&2
        return 1
    }
    regstack_chroot_stamp_text "$ver" >"$root/etc/regstack-chroot.stamp"
}

# Make sure version $1's chroot is complete and current, building it if
# needed (under a lock, so that concurrent runs build it once); print its root.
regstack_chroot_ensure() {
    local ver=$1 root cache stamp
    root=$(regstack_chroot_root "$ver") || return 1
    cache=$(regstack_chroot_cache)
    stamp=$root/etc/regstack-chroot.stamp
    if [ "$(id -u)" -ne 0 ]; then
        echo "PostgreSQL $ver runs in a chroot: run as root" >&2
        return 1
    fi
    regstack_install_packages debootstrap util-linux >&2 || return 1
    mkdir -p "$cache"
    (
        flock 9
        if [ "${REGSTACK_CHROOT_REBUILD:-0}" = 1 ] || [ ! -f "$stamp" ] ||
                [ "$(sed -n 1p "$stamp")" != "$(regstack_chroot_stamp_text "$ver" | sed -n 1p)" ] ||
                [ ! -x "$root/usr/lib/postgresql/$ver/bin/postgres" ]; then
            [ -e "$root" ] && echo "rebuilding $root (incomplete, outdated or asked for)" >&2
            regstack_chroot_build "$ver" "$root" || exit 1
        elif [ "$(cat "$stamp")" != "$(regstack_chroot_stamp_text "$ver")" ]; then
            echo "adding packages to $root" >&2
            regstack_chroot_install "$ver" "$root" >&2 || exit 1
            regstack_chroot_stamp_text "$ver" >"$stamp"
        fi
    ) 9>"$root.lock" || return 1
    echo "$root"
}

# The body of regstack_chroot_exec, in the new mount namespace: mount, run
# shell command $4 as root in the chroot at $1, with the environment words
# of REGSTACK_CHROOT_ENV (one a line), and unmount, unless $3 is 1 (then a
# server the command started outlives it and keeps the namespace, and so
# the mounts, until it stops).  $2: the work directory, mounted at its own
# path ("" for none; under /tmp, which is the chroot's private tmpfs).
regstack_chroot_namespace_main() {
    local root=$1 work=$2 keep=$3 cmd=$4 mounted=() envs=()
    # Undo the mounts, newest first.
    regstack_chroot_unmount_own() {
        local i
        for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
            umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}"
        done
        mounted=()
    }
    mapfile -t envs <<<"$REGSTACK_CHROOT_ENV"
    [ "$keep" = 1 ] || trap regstack_chroot_unmount_own EXIT
    set -e
    mount -t proc proc "$root/proc"; mounted+=("$root/proc")
    mount --bind /dev "$root/dev"; mounted+=("$root/dev")
    if [ -e /dev/pts/ptmx ]; then      # only apt's log needs it
        mount --bind /dev/pts "$root/dev/pts"; mounted+=("$root/dev/pts")
    fi
    mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"; mounted+=("$root/dev/shm")
    mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$root/tmp"; mounted+=("$root/tmp")
    if [ -n "$work" ]; then
        mkdir -p "$root$work"
        mount --bind "$work" "$root$work"; mounted+=("$root$work")
    fi
    set +e
    chroot "$root" /usr/bin/env -i "${envs[@]}" /bin/bash -c "$cmd"
}

# Run shell command $4 as root in the chroot at $1 for PostgreSQL $2, in a
# mount namespace of its own (see regstack_chroot_namespace_main; $3 is the
# work directory, or ""); pass --keep first to leave the mounts to a server
# the command starts.  Variables that tune the scripts (SUITES, KEEP, CI,
# PORT, PGVERSION, BENCH_*, REGSTACK_*) are passed on.
regstack_chroot_exec() {
    local keep=0 name env_words
    if [ "$1" = --keep ]; then keep=1; shift; fi
    env_words="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HOME=/root
LANG=C.UTF-8
REGSTACK_CHROOT=$2
PGVERSION=$2"
    for name in $(compgen -e); do
        case $name in
            REGSTACK_CHROOT|REGSTACK_CHROOT_ENV|PGVERSION) ;;
            SUITES|KEEP|CI|PORT|BENCH_*|REGSTACK_*) env_words+=$'\n'"$name=${!name}" ;;
        esac
    done
    REGSTACK_CHROOT_ENV=$env_words unshare --mount --propagation private -- /bin/bash -c \
        "$(declare -f regstack_chroot_namespace_main); regstack_chroot_namespace_main \"\$@\"" \
        regstack-chroot "$1" "$3" "$keep" "$4"
}

# Run shell command $3 as root in version $1's chroot (built and current:
# regstack_chroot_ensure), with work directory $2 mounted at its own path;
# --keep first as for regstack_chroot_exec.
regstack_chroot_run() {
    local keep=() root
    if [ "$1" = --keep ]; then keep=(--keep); shift; fi
    root=$(regstack_chroot_root "$1") || return 1
    regstack_chroot_exec "${keep[@]}" "$root" "$1" "$2" "$3"
}
