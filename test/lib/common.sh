# test/lib/common.sh: shell functions shared by regstack's scripts
# (check.sh, demo.sh, bench).  Source it; it defines functions only.
#
# PostgreSQL 15 is this Debian 12 host's own; 17 and 18 run in Debian
# chroots (test/lib/chroot.sh), where the same scripts run again and these
# functions see that chroot's PostgreSQL and "postgres" user.

# The PostgreSQL major versions the scripts run on.
regstack_supported_pgversions() {
    echo "15 17 18"
}

# The version the host itself ships (the others run in chroots).
regstack_host_pgversion() {
    echo 15
}

# The version a script works on: $1 if given, else PGVERSION, else the
# host's; fails on an unsupported one.
regstack_pgversion() {
    local ver=${1:-${PGVERSION:-$(regstack_host_pgversion)}}
    case " $(regstack_supported_pgversions) " in
        *" $ver "*) echo "$ver" ;;
        *) echo "unsupported PostgreSQL version '$ver' (supported: $(regstack_supported_pgversions))" >&2
           return 1 ;;
    esac
}

# Whether version $1 runs in a chroot from here (not the host's version,
# and not already inside that chroot).
regstack_needs_chroot() {
    [ "$1" != "$(regstack_host_pgversion)" ] && [ "${REGSTACK_CHROOT:-}" != "$1" ]
}

# Install the Debian packages given that are missing (root only).
regstack_install_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages: ${missing[*]} (run as root to install them)" >&2
        return 1
    fi
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# The unprivileged user tests and servers run as.
regstack_test_user() {
    if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# Run a shell command as the test user.
regstack_as_test_user() {
    if [ "$(id -u)" -eq 0 ]; then
        su postgres -s /bin/bash -c "$1"
    else
        bash -c "$1"
    fi
}

# Give a directory tree to the test user.
regstack_chown_test_user() {
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$1"; fi
}

# Copy the installed PostgreSQL $2 (default 15) into $1/pg (it is
# relocatable) and print the path of the copy's pg_config.  regstack is
# installed into the copy, never into the system directories.
regstack_private_postgres() {
    local root=$1/pg ver=${2:-15}
    mkdir -p "$root/usr/lib/postgresql" "$root/usr/share/postgresql"
    cp -a "/usr/lib/postgresql/$ver" "$root/usr/lib/postgresql/"
    cp -a "/usr/share/postgresql/$ver" "$root/usr/share/postgresql/"
    ln -s /usr/include "$root/usr/include"
    echo "$root/usr/lib/postgresql/$ver/bin/pg_config"
}

# Copy the source tree $1 into directory $2, without git data, build
# products or test output.
regstack_copy_source() {
    mkdir -p "$2"
    tar -C "$1" --exclude=.git --exclude='*.o' --exclude='*.bc' --exclude='*.so' \
        --exclude=results --exclude=output_iso --exclude=tmp_check --exclude=tmp_check_iso \
        -cf - . | tar -C "$2" -xf -
}

# Copy the source tree $1 into $2/src, build and install regstack into a
# private PostgreSQL $3 (default 15) under $2 as the test user; print that
# pg_config.  Build output goes to $2/build.log; on failure it is printed.
# Warnings are errors (WERROR=1); REGSTACK_MAKE_FLAGS adds make variables
# (e.g. COPT for sanitizers).
regstack_build_private() {
    local src=$1 work=$2 pg_config
    pg_config=$(regstack_private_postgres "$work" "${3:-15}")
    regstack_copy_source "$src" "$work/src"
    regstack_chown_test_user "$work"
    if ! regstack_as_test_user "cd '$work/src' && make -s PG_CONFIG='$pg_config' WERROR=1 ${REGSTACK_MAKE_FLAGS:-} && make -s PG_CONFIG='$pg_config' WERROR=1 ${REGSTACK_MAKE_FLAGS:-} install" \
        >"$work/build.log" 2>&1; then
        cat "$work/build.log" >&2
        echo "build failed" >&2
        return 1
    fi
    echo "$pg_config"
}
