#!/usr/bin/env bash
# test/package.sh: build regstack's Debian packages and test them as a DBA
# would use them, then check the PGXN metadata and distribution.
#
# For each PostgreSQL version (PGVERSIONS="15 17", default: every supported
# one; 15 on the host, 17 and 18 in the Debian chroots of
# test/lib/chroot.sh), on the machine whose server it is:
#
#   package_NN_build         pg_buildext updatecontrol and dpkg-buildpackage
#                            -us -uc -b in a copy of the tree; the package
#                            holds the library, the control file and every
#                            install and upgrade script
#   package_NN_lintian       lintian on the .changes (the .debs and the
#                            .buildinfo); any error (E:) fails
#   package_NN_install       dpkg -i postgresql-NN-regstack into the system
#                            PostgreSQL NN, as a DBA installs it
#   package_NN_installcheck  debian/tests/installcheck (the autopkgtest):
#                            make installcheck (pg_regress, isolation, TAP)
#                            with the system pg_config, as the postgres
#                            user, against the installed files
#
# after which the package is purged again (unless it was installed before
# the run), so that test/check.sh, which copies the installed server into
# a private directory, never sees it.  Then, once, on the host:
#
#   package_meta             test/validate_meta.py: its self-test, then
#                            META.json against the PGXN Meta Spec
#   package_dist             make dist in a clone of HEAD: the zip has
#                            META.json and every committed file, validates
#                            with its files, and installs with pgxn install
#                            (pgxnclient) into a private copy of the server
#
# Run as root (it installs packages).  Each test prints a "test NAME ...
# ok" or "... FAILED" line; the last line is "N passed, N failed".
# KEEP=1 keeps the work directory; REGSTACK_INSTALLCHECK_FLAGS adds make
# variables to make installcheck (e.g. "PROVE_TESTS=test/t/070_upgrade.pl"
# for a quick run; the default is the whole suite).
#
# Internally the script runs itself once per version in that version's
# chroot, with REGSTACK_PACKAGE_WORK naming the version's work directory.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)

. "$src/test/lib/common.sh"
. "$src/test/lib/chroot.sh"

# Show a log (the lines of standard input) indented, so that its own "test
# ... ok" lines (pg_regress output) are not counted as this script's.
package_show() {
    sed 's/^/  | /'
}

# Print a test's result line: name, status (0 = ok), detail.
package_result() {
    if [ "$2" -eq 0 ]; then
        echo "test $1 ... ok${3:+ ($3)}"
    else
        echo "test $1 ... FAILED${3:+ ($3)}"
    fi
}

# Build, lint, install and test the package of PostgreSQL $1, this
# machine's, in work directory $2; purge it again at the end.
package_one_version() {
    local ver=$1 work=$2 build deb changes log rc installed_before=0 expected f missing status=0
    local pkg=postgresql-$ver-regstack
    mkdir -p "$work"
    chmod 755 "$work"

    if ! regstack_install_packages build-essential debhelper postgresql-server-dev-all \
            postgresql-server-dev-"$ver" lintian libipc-run-perl sqlsmith make >"$work/apt.log" 2>&1; then
        tail -n 30 "$work/apt.log" | package_show
        package_result "package_${ver}_build" 1 "could not install the build dependencies"
        return 1
    fi
    # pg_cron's TAP test skips itself where the suite has no pg_cron.
    regstack_install_packages postgresql-"$ver"-cron >>"$work/apt.log" 2>&1 ||
        echo "note: no postgresql-$ver-cron here; its TAP test will skip"

    # Build: debian/control for the versions this machine supports, then
    # the binary packages, unsigned, in a copy (they land next to it).
    build=$work/build/regstack
    regstack_copy_source "$src" "$build"
    log=$work/build.log
    rc=0
    (cd "$build" && pg_buildext updatecontrol && dpkg-buildpackage -us -uc -b) >"$log" 2>&1 || rc=$?
    deb=$(ls "$work"/build/"$pkg"_*.deb 2>/dev/null | head -n 1 || true)
    changes=$(ls "$work"/build/regstack_*.changes 2>/dev/null | head -n 1 || true)
    if [ "$rc" -ne 0 ] || [ -z "$deb" ] || [ -z "$changes" ]; then
        tail -n 60 "$log" | package_show
        package_result "package_${ver}_build" 1 "dpkg-buildpackage exited $rc, see above"
        return 1
    fi
    # What a DBA needs from the package: the library, the control file, and
    # the install script of every version and every upgrade script.
    expected="./usr/lib/postgresql/$ver/lib/regstack.so ./usr/share/postgresql/$ver/extension/regstack.control"
    for f in $(cd "$build/sql" && ls regstack--*.sql 2>/dev/null) \
             "regstack--$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$build/regstack.control").sql"; do
        expected+=" ./usr/share/postgresql/$ver/extension/$f"
    done
    missing=""
    for f in $expected; do
        dpkg-deb -c "$deb" | awk '{ print $6 }' | grep -qxF "$f" || missing+=" ${f#.}"
    done
    if [ -n "$missing" ]; then
        dpkg-deb -c "$deb" | package_show
        package_result "package_${ver}_build" 1 "$(basename "$deb") lacks$missing"
        return 1
    fi
    package_result "package_${ver}_build" 0 "$(basename "$deb"), $(echo "$expected" | wc -w) files checked"

    # lintian, as an unprivileged user, on everything the .changes lists.
    chmod -R a+rX "$work/build"
    rc=0
    regstack_as_test_user "lintian --fail-on error --show-overrides '$changes'" >"$work/lintian.log" 2>&1 || rc=$?
    sed 's/^/lintian: /' "$work/lintian.log"
    if [ "$rc" -ne 0 ] || grep -q '^E: ' "$work/lintian.log"; then
        package_result "package_${ver}_lintian" 1 "lintian reports errors, see above"
        status=1
    else
        package_result "package_${ver}_lintian" 0 "$(grep -c '^[EW]: ' "$work/lintian.log" || true) error(s) and warning(s)"
    fi

    # Install into the system PostgreSQL $ver; purge again when done.
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        installed_before=1
        echo "note: $pkg was installed before this run: it is replaced, and left installed"
    fi
    [ "$installed_before" = 1 ] || trap "dpkg --purge '$pkg' >/dev/null 2>&1 || true" EXIT
    rc=0
    dpkg -i "$deb" >"$work/install.log" 2>&1 || rc=$?
    missing=""
    for f in $expected; do
        [ -f "${f#.}" ] || missing+=" ${f#.}"
    done
    if [ "$rc" -ne 0 ] || [ -n "$missing" ]; then
        package_show <"$work/install.log"
        package_result "package_${ver}_install" 1 "dpkg -i exited $rc${missing:+; missing:$missing}"
        return 1
    fi
    package_result "package_${ver}_install" 0 "$(dpkg-query -W -f='${Version}' "$pkg") into PostgreSQL $("/usr/lib/postgresql/$ver/bin/postgres" --version | awk '{ print $3 }')"

    # The regression suite against the installed files.
    rc=0
    (cd "$build" && REGSTACK_PGVERSIONS=$ver sh debian/tests/installcheck) \
        >"$work/installcheck.log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -n 200 "$work/installcheck.log" | package_show
        package_result "package_${ver}_installcheck" 1 "make installcheck against the package failed, see above"
        status=1
    else
        package_result "package_${ver}_installcheck" 0 "$(grep -cE '^(ok [0-9]+ +[-+] |test .* \.\.\. ok)' "$work/installcheck.log" || true) pg_regress and isolation tests, $(grep -cE '^test/t/.*\.pl \.+ ok' "$work/installcheck.log" || true) TAP scripts"
    fi

    if [ "$installed_before" = 0 ]; then
        trap - EXIT
        if ! dpkg --purge "$pkg" >>"$work/install.log" 2>&1; then
            package_show <"$work/install.log"
            package_result "package_${ver}_remove" 1 "dpkg --purge $pkg failed"
            status=1
        fi
    fi
    return $status
}

# META.json against the spec (and the validator against its own mistakes).
package_meta() {
    local rc=0
    python3 "$src/test/validate_meta.py" --self-test "$src/META.json" || rc=1
    python3 "$src/test/validate_meta.py" "$src/META.json" || rc=1
    package_result package_meta "$rc" "PGXN Meta Spec 1.0.0"
    return $rc
}

# make dist in a clone of HEAD: the zip, its contents, and a build from it.
package_dist() {
    local work=$1 clone zip dir script pg_config f problems=""
    clone=$work/dist/regstack
    if ! git -C "$src" rev-parse --verify -q HEAD >/dev/null; then
        package_result package_dist 1 "$src is not a git checkout: make dist archives HEAD"
        return 1
    fi
    mkdir -p "$work/dist"
    # (The dist is built and installed with the host's PostgreSQL, 15.)
    if ! regstack_install_packages git unzip pgxnclient postgresql-server-dev-15 make gcc \
            >"$work/dist/apt.log" 2>&1; then
        tail -n 30 "$work/dist/apt.log" | package_show
        package_result package_dist 1 "could not install git, unzip, pgxnclient"
        return 1
    fi
    git clone -q "$src" "$clone"
    if ! make -C "$clone" -s dist >"$work/dist/make.log" 2>&1; then
        package_show <"$work/dist/make.log"
        package_result package_dist 1 "make dist failed"
        return 1
    fi
    zip=$(ls "$clone"/regstack-*.zip)
    dir=$(basename "$zip" .zip)
    unzip -q "$zip" -d "$work/dist/unpacked"
    [ "$(ls "$work/dist/unpacked")" = "$dir" ] || problems+=" not everything is under $dir/;"
    [ -f "$work/dist/unpacked/$dir/META.json" ] || problems+=" no META.json;"
    # Every committed file, and nothing else but the built install script.
    script=sql/regstack--$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$clone/regstack.control").sql
    [ -f "$work/dist/unpacked/$dir/$script" ] || problems+=" no $script;"
    diff <(git -C "$clone" ls-files | sort) \
         <(cd "$work/dist/unpacked/$dir" && find . -type f | sed 's|^\./||' \
               | grep -vxF "$script" | sort) >"$work/dist/files.diff" ||
        { package_show <"$work/dist/files.diff"; problems+=" files differ from git ls-files (above);"; }
    python3 "$src/test/validate_meta.py" --dist "$work/dist/unpacked/$dir" ||
        problems+=" META.json does not hold for the zip;"
    # pgxn install of the zip (what a PGXN user runs), into a private copy
    # of the server (pgxnclient wants its libdir writable).
    pg_config=$(regstack_private_postgres "$work/dist")
    mkdir -p "$("$pg_config" --libdir)"
    regstack_chown_test_user "$work/dist"
    if ! regstack_as_test_user "cd '$work/dist' && pgxn install --pg_config '$pg_config' '$zip'" \
            >"$work/dist/pgxn.log" 2>&1; then
        tail -n 30 "$work/dist/pgxn.log" | package_show
        problems+=" pgxn install of the zip failed;"
    fi
    for f in "$("$pg_config" --pkglibdir)/regstack.so" "$("$pg_config" --sharedir)/extension/regstack.control" \
             "$("$pg_config" --sharedir)/extension/${script#sql/}"; do
        [ -f "$f" ] || problems+=" pgxn install did not install ${f#"$work/dist/pg"};"
    done
    if [ -n "$problems" ]; then
        package_result package_dist 1 "$(basename "$zip"):${problems%;}"
        return 1
    fi
    package_result package_dist 0 "$(basename "$zip"), $(unzip -Z1 "$zip" | grep -vc '/$') files, pgxn install works"
}

if [ -n "${REGSTACK_PACKAGE_WORK:-}" ]; then
    package_one_version "$(regstack_pgversion)" "$REGSTACK_PACKAGE_WORK"
    exit
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "test/package.sh installs packages: run it as root" >&2
    exit 2
fi
versions=${PGVERSIONS:-$(regstack_supported_pgversions)}
for ver in $versions; do
    regstack_pgversion "$ver" >/dev/null || exit 2
done

work=$(mktemp -d /tmp/regstack-package.XXXXXX)
chmod 755 "$work"
log=$work/package.log
status=0

for ver in $versions; do
    start=$SECONDS
    vwork=$work/pg$ver
    echo "=== PostgreSQL $ver: Debian package"
    if ! regstack_needs_chroot "$ver"; then
        (package_one_version "$ver" "$vwork") 2>&1 | tee -a "$log" || status=1
    elif ! regstack_chroot_ensure "$ver" >"$work/chroot-$ver.log" 2>&1; then
        tail -n 30 "$work/chroot-$ver.log" | package_show
        package_result "package_${ver}_build" 1 "could not build the chroot of PostgreSQL $ver" | tee -a "$log"
        status=1
    else
        [ -d "$work/tree" ] || regstack_copy_source "$src" "$work/tree"
        regstack_chroot_run "$ver" "$work" \
            "REGSTACK_PACKAGE_WORK='$vwork' bash '$work/tree/test/package.sh'" 2>&1 \
            | tee -a "$log" || status=1
    fi
    echo "=== PostgreSQL $ver: $((SECONDS - start)) s"
done

echo "=== PGXN"
package_meta 2>&1 | tee -a "$log" || status=1
package_dist "$work" 2>&1 | tee -a "$log" || status=1

passed=$(grep -c '^test .* \.\.\. ok' "$log" || true)
failed=$(grep -c '^test .* \.\.\. FAILED' "$log" || true)
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1
fi
if [ "$status" -ne 0 ] || [ "${KEEP:-0}" = 1 ]; then
    echo "work directory kept: $work"
else
    rm -rf --one-file-system "$work"
fi
echo "$passed passed, $failed failed"
exit $status
