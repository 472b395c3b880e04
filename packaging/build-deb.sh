#!/usr/bin/env bash
# Builds rportd_<version>_<arch>.deb and rport_<version>_<arch>.deb with plain dpkg-deb.
#
#   bash packaging/build-deb.sh [--profile release|debug] [--out DIR] [--no-build]
#
#   --profile  release (default: cargo build --release) or debug (cargo build, target/debug)
#   --out      where the .deb files go (default: target/debian)
#   --no-build package the binaries already in the target dir, do not run cargo
#
# Needs cargo (unless --no-build), dpkg-deb and dpkg; strip is used when present.
# CARGO_TARGET_DIR is honoured.
set -euo pipefail

usage() {
    sed -n '2,11s/^# \{0,1\}//p' "$0"
}

die() {
    echo "build-deb: $*" >&2
    exit 1
}

profile=release
out=
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --profile)
            [ $# -ge 2 ] || die "--profile needs a value (release or debug)"
            profile=$2
            shift 2
            ;;
        --profile=*) profile=${1#*=}; shift ;;
        --out)
            [ $# -ge 2 ] || die "--out needs a directory"
            out=$2
            shift 2
            ;;
        --out=*) out=${1#*=}; shift ;;
        --no-build) build=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
case "$profile" in
    release | debug) ;;
    *) die "--profile must be release or debug, not '$profile'" ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir=$root/$target_dir ;; esac
out=${out:-$target_dir/debian}

command -v dpkg-deb >/dev/null || die "dpkg-deb not found (install dpkg)"
command -v dpkg >/dev/null || die "dpkg not found"

# [workspace.package] version = "X.Y.Z" in the workspace Cargo.toml.
version=$(awk '
    /^[[:space:]]*\[/ { section = $0; gsub(/[[:space:]]/, "", section); next }
    section == "[workspace.package]" && /^[[:space:]]*version[[:space:]]*=/ {
        sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print; exit
    }' "$root/Cargo.toml")
[ -n "$version" ] || die "no [workspace.package] version in $root/Cargo.toml"
# A Cargo pre-release (1.0.0-rc.1) sorts before the release in Debian only as 1.0.0~rc.1;
# a "-" would also be read as a Debian revision.
deb_version=${version//-/\~}
arch=$(dpkg --print-architecture)

if [ "$build" = 1 ]; then
    command -v cargo >/dev/null || die "cargo not found (or use --no-build)"
    if [ "$profile" = release ]; then
        (cd "$root" && cargo build --release -p rport-cli -p rportcli)
    else
        (cd "$root" && cargo build -p rport-cli -p rportcli)
    fi
fi
bin_dir=$target_dir/$profile
for bin in rportd rport rportcli; do
    [ -x "$bin_dir/$bin" ] || die "$bin_dir/$bin not found; build it or drop --no-build"
done

umask 022
stage=$(mktemp -d "${TMPDIR:-/tmp}/rport-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The example config with data_dir set: its commented `#data_dir = "..."` line becomes
# `data_dir = "<dir>"`, keeping the indentation. Fails if the example has no such line.
config_with_data_dir() { # example, data dir, destination
    sed "s|^\([[:space:]]*\)#[[:space:]]*data_dir[[:space:]]*=.*\$|\1data_dir = \"$2\"|" "$1" >"$3"
    [ "$(grep -c "^[[:space:]]*data_dir = \"$2\"\$" "$3")" = 1 ] ||
        die "$1: expected exactly one commented data_dir line to set to $2"
    chmod 0640 "$3"
}

# build_package NAME SUMMARY LONG_DESCRIPTION
build_package() {
    local name=$1 summary=$2 long=$3
    local pkg=$stage/$name
    local example=$root/$name.example.conf
    local data_dir=/var/lib/$name
    local unit=$root/packaging/$name.service
    [ -f "$example" ] || die "$example not found"
    [ -f "$unit" ] || die "$unit not found"

    install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" \
        "$pkg/etc/rport" "$pkg/usr/share/doc/$name"
    local bins=("$name")
    # The operators' command-line client comes with the server.
    [ "$name" = rportd ] && bins+=(rportcli)
    local bin
    for bin in "${bins[@]}"; do
        install -m 0755 "$bin_dir/$bin" "$pkg/usr/bin/$bin"
        if command -v strip >/dev/null; then
            strip --strip-unneeded "$pkg/usr/bin/$bin"
        else
            echo "build-deb: strip not found; $bin is packaged unstripped" >&2
        fi
    done
    install -m 0644 "$unit" "$pkg/lib/systemd/system/$name.service"
    config_with_data_dir "$example" "$data_dir" "$pkg/etc/rport/$name.conf"
    install -m 0644 "$root/README.md" "$pkg/usr/share/doc/$name/README.md"
    install -m 0644 "$example" "$pkg/usr/share/doc/$name/$name.example.conf"

    local installed_size
    installed_size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
    {
        echo "Package: $name"
        echo "Version: $deb_version"
        echo "Architecture: $arch"
        echo "Maintainer: rport developers <rport@localhost>"
        echo "Installed-Size: $installed_size"
        echo "Depends: adduser | passwd"
        echo "Section: net"
        echo "Priority: optional"
        echo "Description: $summary"
        printf '%s\n' "$long" | sed 's/^$/./; s/^/ /'
    } >"$pkg/DEBIAN/control"
    echo "/etc/rport/$name.conf" >"$pkg/DEBIAN/conffiles"
    chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles"
    maintainer_scripts "$name" "$pkg/DEBIAN"

    local deb=$out/${name}_${deb_version}_${arch}.deb
    dpkg-deb --root-owner-group --build "$pkg" "$deb" >/dev/null
    debs+=("$deb")
}

# maintainer_scripts NAME DEBIAN_DIR: postinst, prerm, postrm.
maintainer_scripts() {
    local name=$1 dir=$2
    local data_dir=/var/lib/$name conf=/etc/rport/$name.conf
    local first_start
    if [ "$name" = rportd ]; then
        first_start="On its first start rportd prints the generated API user and agent credential
(shown only once) and its fingerprint on stdout; under systemd: journalctl -u rportd"
    else
        first_start="Set [client] server and auth (and preferably fingerprint) in $conf first."
    fi

    cat >"$dir/postinst" <<EOF
#!/bin/sh
set -e

case "\$1" in
configure)
    # System user and group $name: no login shell, home $data_dir.
    if ! getent passwd $name >/dev/null; then
        if command -v adduser >/dev/null; then
            if getent group $name >/dev/null; then
                adduser --quiet --system --ingroup $name --home $data_dir \\
                    --no-create-home --shell /usr/sbin/nologin $name
            else
                adduser --quiet --system --group --home $data_dir \\
                    --no-create-home --shell /usr/sbin/nologin $name
            fi
        else
            if getent group $name >/dev/null; then
                useradd --system --gid $name --home-dir $data_dir --no-create-home \\
                    --shell /usr/sbin/nologin $name
            else
                useradd --system --user-group --home-dir $data_dir --no-create-home \\
                    --shell /usr/sbin/nologin $name
            fi
        fi
    fi

    # data_dir: readable by $name only.
    mkdir -p $data_dir
    chown $name:$name $data_dir
    chmod 0700 $data_dir

    # The configuration may hold secrets (credentials, jwt_secret).
    if [ -f $conf ]; then
        chown root:$name $conf
        chmod 0640 $conf
    fi

    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        if [ -z "\$2" ]; then
            # First installation: enabled, but not started until the configuration is edited.
            systemctl enable $name.service || true
        else
            # Upgrade: a running service moves to the new binary.
            systemctl try-restart $name.service || true
        fi
    fi

    if [ -z "\$2" ]; then
        echo "$name: installed, not started. Edit $conf, then start it:"
        if [ -d /run/systemd/system ]; then
            echo "    systemctl start $name"
        else
            echo "    runuser -u $name -- /usr/bin/$name -c $conf"
        fi
        cat <<'MSG'
$first_start
MSG
    fi
    ;;
esac

exit 0
EOF

    cat >"$dir/prerm" <<EOF
#!/bin/sh
set -e

case "\$1" in
remove | deconfigure)
    if [ -d /run/systemd/system ]; then
        systemctl stop $name.service || true
    fi
    ;;
esac

exit 0
EOF

    cat >"$dir/postrm" <<EOF
#!/bin/sh
set -e

case "\$1" in
purge)
    # The data dir holds the database and the key agents pin: never deleted by a package
    # tool; the operator deletes it deliberately.
    if [ -d $data_dir ]; then
        echo "$name: purge: keeping $data_dir (database and keys); delete it yourself if you mean to"
    fi
    # The enablement left behind by "systemctl enable".
    rm -f /etc/systemd/system/multi-user.target.wants/$name.service
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
    ;;
remove)
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
    ;;
esac

exit 0
EOF
    chmod 0755 "$dir/postinst" "$dir/prerm" "$dir/postrm"
}

debs=()
build_package rportd "self-hosted remote access server" \
"rportd is the server of rport: devices running the rport agent connect out to
it over TLS 1.3, and operators open on-demand TCP, UDP and HTTP proxy tunnels to
those devices through its REST API (compatible with RPort's API and configuration).
It comes with rportcli, the command-line client RPort's users know.

The package installs a hardened systemd unit, enabled but not started, and a
configuration in /etc/rport/rportd.conf keeping its state in /var/lib/rportd."

build_package rport "self-hosted remote access agent" \
"rport is the device agent of rport: it connects out to an rportd server over
TLS 1.3 (no open ports on the device), pins the server's key, reports what the
device is and carries the tunnels the server opens, reconnecting by itself.

The package installs a hardened systemd unit, enabled but not started, and a
configuration in /etc/rport/rport.conf keeping its state in /var/lib/rport."

echo "build-deb: built ($profile binaries):"
printf '%s\n' "${debs[@]}"
