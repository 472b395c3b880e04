#!/usr/bin/env bash
# Builds the rportd and rport .deb packages from debug binaries and checks them.
#
#   bash packaging/test-deb.sh [--no-build]
#
# Always: the packages' control data, maintainer scripts, file lists, modes and configs.
# As root with dpkg: install both, check users, modes, units and that rportd opens its
# database as user rportd, reinstall (the upgrade path), remove, purge, check what is
# left. Refuses to install on a machine where rportd or rport is already installed or
# /var/lib/rportd, /var/lib/rport or /etc/rport exist, since the purge would delete them.
# System users it created (rportd, rport) are deleted again at the end.
#
# --no-build packages the debug binaries already in the target dir without running cargo.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_args=(--profile debug)
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build_args+=(--no-build); shift ;;
        -h | --help) sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "test-deb: unknown argument: $1" >&2; exit 2 ;;
    esac
done

step() { echo "test-deb: $*"; }
fail() {
    echo "test-deb: FAIL: $*" >&2
    exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/rport-deb-test.XXXXXX")
installed=0
created_users=()
cleanup() {
    local status=$?
    if [ "$installed" = 1 ]; then
        echo "test-deb: cleaning up: purging rportd and rport" >&2
        dpkg --purge rportd rport >/dev/null 2>&1 || true
    fi
    for user in "${created_users[@]}"; do
        if getent passwd "$user" >/dev/null; then
            userdel "$user" >/dev/null 2>&1 || true
        fi
        if getent group "$user" >/dev/null; then
            groupdel "$user" >/dev/null 2>&1 || true
        fi
    done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

version=$(awk '
    /^[[:space:]]*\[/ { section = $0; gsub(/[[:space:]]/, "", section); next }
    section == "[workspace.package]" && /^[[:space:]]*version[[:space:]]*=/ {
        sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print; exit
    }' "$root/Cargo.toml")
[ -n "$version" ] || fail "no [workspace.package] version in Cargo.toml"
deb_version=${version//-/\~}
arch=$(dpkg --print-architecture)

# --- Build --------------------------------------------------------------------------
step "building the packages (${build_args[*]})"
bash "$root/packaging/build-deb.sh" "${build_args[@]}" --out "$work/out" >"$work/build.log" 2>&1 ||
    { cat "$work/build.log" >&2; fail "build-deb.sh failed"; }
tail -n 3 "$work/build.log"

# --- Package contents ---------------------------------------------------------------
check_package() {
    local name=$1
    local deb=$work/out/${name}_${deb_version}_${arch}.deb
    [ -f "$deb" ] || fail "$deb was not built"
    step "checking $(basename "$deb")"

    local info contents
    info=$(dpkg-deb --info "$deb") || fail "$name: dpkg-deb --info failed"
    for field in "Package: $name" "Version: $deb_version" "Architecture: $arch" \
        "Maintainer: rport developers <rport@localhost>" "Section: net" \
        "Priority: optional" "Depends: adduser" "Description: "; do
        grep -qF " $field" <<<"$info" || fail "$name: control lacks '$field'"
    done
    grep -q '^  [^ ]' <<<"$info" || fail "$name: control has no indented long description"
    for script in postinst prerm postrm conffiles; do
        grep -Eq "^ +[0-9]+ bytes, +[0-9]+ lines +[*]? +$script( |\$)" <<<"$info" ||
            fail "$name: control archive lacks $script"
    done
    [ "$(dpkg-deb --info "$deb" conffiles)" = "/etc/rport/$name.conf" ] ||
        fail "$name: conffiles is not exactly /etc/rport/$name.conf"

    contents=$(dpkg-deb --contents "$deb") || fail "$name: dpkg-deb --contents failed"
    # "MODE OWNER/GROUP SIZE DATE TIME PATH": the path must be there with this mode.
    expect_file() { # mode path
        awk -v mode="$1" -v path=".$2" '$1 == mode && $2 == "root/root" && $6 == path { found = 1 }
            END { exit !found }' <<<"$contents" ||
            fail "$name: package lacks $2 with mode $1 owned by root/root"
    }
    expect_file -rwxr-xr-x "/usr/bin/$name"
    expect_file -rw-r--r-- "/lib/systemd/system/$name.service"
    expect_file -rw-r----- "/etc/rport/$name.conf"
    expect_file -rw-r--r-- "/usr/share/doc/$name/README.md"
    expect_file -rw-r--r-- "/usr/share/doc/$name/$name.example.conf"
    if awk '{ print $2 }' <<<"$contents" | grep -qv '^root/root$'; then
        fail "$name: files not owned by root/root"
    fi

    local x=$work/x-$name
    dpkg-deb --raw-extract "$deb" "$x" || fail "$name: cannot extract"
    for script in postinst prerm postrm; do
        [ "$(stat -c %a "$x/DEBIAN/$script")" = 755 ] || fail "$name: $script is not mode 0755"
        [ "$(head -n 1 "$x/DEBIAN/$script")" = "#!/bin/sh" ] || fail "$name: $script is not #!/bin/sh"
        grep -qx 'set -e' "$x/DEBIAN/$script" || fail "$name: $script lacks set -e"
        sh -n "$x/DEBIAN/$script" || fail "$name: $script has a syntax error"
    done
    grep -qx "[[:space:]]*data_dir = \"/var/lib/$name\"" "$x/etc/rport/$name.conf" ||
        fail "$name: packaged config does not set data_dir = \"/var/lib/$name\""
    cmp -s "$root/$name.example.conf" "$x/usr/share/doc/$name/$name.example.conf" ||
        fail "$name: the documented example config differs from $name.example.conf"
    grep -qx "ExecStart=/usr/bin/$name -c /etc/rport/$name.conf" "$x/lib/systemd/system/$name.service" ||
        fail "$name: unit has an unexpected ExecStart"
    "$x/usr/bin/$name" --version | grep -qx "$name $version" ||
        fail "$name: packaged binary does not report version $version"
    if [ "$name" = rportd ]; then
        expect_file -rwxr-xr-x /usr/bin/rportcli
        "$x/usr/bin/rportcli" --version | grep -qx "rportcli $version" ||
            fail "rportd: packaged rportcli does not report version $version"
    fi
    if command -v readelf >/dev/null && readelf -S "$x/usr/bin/$name" | grep -q '\.debug_info'; then
        fail "$name: packaged binary is not stripped"
    fi

    if command -v systemd-analyze >/dev/null; then
        # Before installation the only complaint may be the missing /usr/bin/$name
        # ("Command /usr/bin/$name is not executable: No such file or directory"); that is
        # expected here, the installed unit is verified without exceptions further down.
        local verify
        verify=$(systemd-analyze verify "$x/lib/systemd/system/$name.service" 2>&1) || true
        verify=$(grep -v "Command /usr/bin/$name is not executable: No such file or directory" <<<"$verify" || true)
        [ -z "$verify" ] || fail "$name: systemd-analyze verify: $verify"
    fi
}
check_package rportd
check_package rport
step "package contents: OK"

# --- Installation -------------------------------------------------------------------
if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null; then
    step "not root or no dpkg: skipping the installation checks (package contents checked only)"
    step "PASS (contents only)"
    exit 0
fi

for name in rportd rport; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$name" 2>/dev/null || true)
    case "$status" in
        "" | not-installed) ;;
        *) fail "package $name is already on this machine ($status); not installing over it (its purge would delete its data)" ;;
    esac
    [ ! -e "/var/lib/$name" ] || fail "/var/lib/$name exists; not installing (the purge would delete it)"
done
[ ! -e /etc/rport ] || fail "/etc/rport exists; not installing over it"
for name in rportd rport; do
    getent passwd "$name" >/dev/null || created_users+=("$name")
done

check_mode() { # path mode owner:group
    local got
    got=$(stat -c '%a %U:%G' "$1" 2>/dev/null) || fail "$1 does not exist"
    [ "$got" = "$2 $3" ] || fail "$1 is '$got', expected '$2 $3'"
}

check_installed() {
    for name in rportd rport; do
        /usr/bin/$name --version >/dev/null || fail "/usr/bin/$name --version failed"
        getent passwd "$name" >/dev/null || fail "user $name does not exist"
        getent group "$name" >/dev/null || fail "group $name does not exist"
        case "$(getent passwd "$name" | cut -d: -f7)" in
            */nologin | */false) ;;
            *) fail "user $name has a login shell" ;;
        esac
        [ "$(getent passwd "$name" | cut -d: -f6)" = "/var/lib/$name" ] ||
            fail "user $name's home is not /var/lib/$name"
        check_mode "/var/lib/$name" 700 "$name:$name"
        check_mode "/etc/rport/$name.conf" 640 "root:$name"
        [ -f "/lib/systemd/system/$name.service" ] || fail "/lib/systemd/system/$name.service missing"
    done
    if command -v systemd-analyze >/dev/null; then
        systemd-analyze verify /lib/systemd/system/rportd.service /lib/systemd/system/rport.service ||
            fail "systemd-analyze verify of the installed units failed"
    fi
}

step "installing both packages"
installed=1
dpkg -i "$work/out/rportd_${deb_version}_${arch}.deb" "$work/out/rport_${deb_version}_${arch}.deb" ||
    fail "dpkg -i failed"
check_installed

step "rportd opens its database as user rportd"
# Not `rportd -c ...` itself: the packaged config binds fixed ports and would run forever.
runuser -u rportd -- /usr/bin/rportd user list -c /etc/rport/rportd.conf ||
    fail "rportd user list as user rportd failed"
[ "$(stat -c %U /var/lib/rportd/rportd.db 2>/dev/null)" = rportd ] ||
    fail "/var/lib/rportd/rportd.db missing or not owned by rportd"

step "rport reads its config and keeps its id in /var/lib/rport as user rport"
# The packaged config points at rport.example.com; the agent retries forever, so it gets
# SIGTERM after 3 s. 124: still running then and stopped by SIGTERM, as it should;
# 137: it ignored SIGTERM for 2 s; anything else: it exited by itself (a config error).
# timeout runs inside runuser: runuser itself lingers 2 s after a signal before exiting.
agent_status=0
runuser -u rport -- timeout -k 2 3 /usr/bin/rport -c /etc/rport/rport.conf \
    >"$work/agent.log" 2>&1 || agent_status=$?
case "$agent_status" in
    124) ;;
    137) cat "$work/agent.log" >&2; fail "rport did not stop within 2 s of SIGTERM" ;;
    *) cat "$work/agent.log" >&2; fail "rport exited by itself (status $agent_status)" ;;
esac
[ "$(stat -c %U /var/lib/rport/client-id 2>/dev/null)" = rport ] ||
    { cat "$work/agent.log" >&2; fail "/var/lib/rport/client-id missing or not owned by rport"; }

step "reinstalling (the upgrade path): data kept, modes kept"
dpkg -i "$work/out/rportd_${deb_version}_${arch}.deb" "$work/out/rport_${deb_version}_${arch}.deb" ||
    fail "reinstalling failed"
check_installed
[ -f /var/lib/rportd/rportd.db ] || fail "the reinstall lost /var/lib/rportd/rportd.db"
[ -f /var/lib/rport/client-id ] || fail "the reinstall lost /var/lib/rport/client-id"

step "removing: binaries gone, data and configs kept"
dpkg --remove rportd rport || fail "dpkg --remove failed"
for name in rportd rport; do
    [ ! -e "/usr/bin/$name" ] || fail "/usr/bin/$name still there after remove"
    [ ! -e "/lib/systemd/system/$name.service" ] || fail "$name.service still there after remove"
    [ -d "/var/lib/$name" ] || fail "remove deleted /var/lib/$name (only purge may)"
    [ -f "/etc/rport/$name.conf" ] || fail "remove deleted /etc/rport/$name.conf (only purge may)"
done

step "purging: everything gone but the data dirs"
dpkg --purge rportd rport || fail "dpkg --purge failed"
installed=0
for name in rportd rport; do
    [ ! -e "/usr/bin/$name" ] || fail "/usr/bin/$name still there after purge"
    [ -d "/var/lib/$name" ] || fail "purge deleted /var/lib/$name (the database and keys)"
    rm -rf "/var/lib/$name" # this test's own, made by its install
    [ ! -e "/etc/rport/$name.conf" ] || fail "/etc/rport/$name.conf still there after purge"
    status=$(dpkg-query -W -f='${db:Status-Status}' "$name" 2>/dev/null || true)
    case "$status" in
        "" | not-installed) ;;
        *) fail "package $name is still known to dpkg after purge ($status)" ;;
    esac
done
[ ! -e /etc/rport ] || fail "/etc/rport still there after purge"

step "PASS"
