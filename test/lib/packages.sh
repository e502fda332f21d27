# test/lib/packages.sh: shell functions shared by regstack's scripts
# (check.sh, demo.sh, bench).  Source it; it defines functions only.

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

# Copy the installed PostgreSQL 15 into $1/pg (it is relocatable) and print
# the path of the copy's pg_config.  regstack is installed into the copy,
# never into the system directories.
regstack_private_postgres() {
    local root=$1/pg
    mkdir -p "$root/usr/lib/postgresql" "$root/usr/share/postgresql"
    cp -a /usr/lib/postgresql/15 "$root/usr/lib/postgresql/"
    cp -a /usr/share/postgresql/15 "$root/usr/share/postgresql/"
    ln -s /usr/include "$root/usr/include"
    echo "$root/usr/lib/postgresql/15/bin/pg_config"
}
