#!/usr/bin/env bash
# Install the tools used by bench/run.py. Idempotent: re-running only installs
# what is missing.
#   apt: iperf3 wrk nginx-light (falls back to nginx)
#   cargo: rathole, bore-cli (into ~/.cargo/bin)
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "setup.sh: not root and no sudo; apt installs may fail" >&2
  fi
fi

export PATH="$HOME/.cargo/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v iperf3 >/dev/null 2>&1 || need_apt+=(iperf3)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
# rathole's default features link OpenSSL (native-tls).
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
nginx_missing=0
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  nginx_missing=1
fi

if [ "${#need_apt[@]}" -gt 0 ] || [ "$nginx_missing" -eq 1 ]; then
  $SUDO apt-get update -q
  if [ "${#need_apt[@]}" -gt 0 ]; then
    $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
  fi
  if [ "$nginx_missing" -eq 1 ]; then
    if apt-cache show nginx-light >/dev/null 2>&1 && \
       $SUDO apt-get install -y -q --no-install-recommends nginx-light; then
      :
    else
      echo "setup.sh: nginx-light unavailable, installing nginx" >&2
      $SUDO apt-get install -y -q --no-install-recommends nginx
    fi
  fi
  # The packaged nginx service may have been started by the install; the
  # benchmark runs its own instance with a private config, so stop the system
  # one if it is running (ignore errors: no init system in containers).
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    $SUDO systemctl stop nginx || true
  fi
else
  echo "setup.sh: iperf3, wrk, nginx already installed"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: cargo not found; cannot install rathole/bore" >&2
  exit 1
fi

# cargo install --locked first (the versions the authors tested). rathole 0.5.0's
# lockfile pins time 0.3.29, which no longer compiles on Rust >= 1.80 (E0282 in
# format_description); in that case retry without --locked so cargo resolves
# semver-compatible newer dependencies.
cargo_install() {
  local crate="$1" bin="$2"
  if command -v "$bin" >/dev/null 2>&1; then
    echo "setup.sh: $bin already installed ($(command -v "$bin"))"
    return 0
  fi
  if nice -n 10 cargo install --locked "$crate"; then
    return 0
  fi
  echo "setup.sh: 'cargo install --locked $crate' failed; retrying without --locked" >&2
  nice -n 10 cargo install "$crate"
}

cargo_install rathole rathole
cargo_install bore-cli bore

echo "setup.sh: done"
for t in iperf3 wrk nginx rathole bore; do
  printf '  %-8s %s\n' "$t" "$(command -v "$t" 2>/dev/null || ls /usr/sbin/$t 2>/dev/null || echo MISSING)"
done
