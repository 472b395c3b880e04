#!/usr/bin/env bash
# Install the tools used by bench/run.py. Idempotent: re-running only installs
# what is missing. Quiet: the installers' output goes to a log file, which is
# shown only when a step fails.
#   apt: iperf3 wrk nginx-light (falls back to nginx), openssh-server and
#        openssh-client (the `ssh -N -R` peer), openssl (makes rathole's TLS identity),
#        libssl-dev + pkg-config (rathole links OpenSSL)
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

LOG="$(mktemp -t rport-bench-setup.XXXXXX.log)"
# quiet STEP CMD...: run CMD with its output in $LOG; on failure show the tail
# (unless QUIET_FAIL=1: the caller has a fallback).
quiet() {
  local step="$1"
  shift
  echo "setup.sh: $step" >&2
  if ! "$@" >>"$LOG" 2>&1; then
    if [ "${QUIET_FAIL:-0}" != 1 ]; then
      echo "setup.sh: FAILED: $step (last lines of $LOG):" >&2
      tail -n 30 "$LOG" >&2
    fi
    return 1
  fi
}

has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

need_apt=()
has iperf3 || need_apt+=(iperf3)
has wrk || need_apt+=(wrk)
# rathole's default features link OpenSSL (native-tls).
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
has pkg-config || need_apt+=(pkg-config)
has openssl || need_apt+=(openssl)
has ssh || need_apt+=(openssh-client)
has ssh-keygen || need_apt+=(openssh-client)
has sshd || need_apt+=(openssh-server)
nginx_missing=0
has nginx || nginx_missing=1

if [ "${#need_apt[@]}" -gt 0 ] || [ "$nginx_missing" -eq 1 ]; then
  quiet "apt-get update" $SUDO apt-get update -q
  if [ "${#need_apt[@]}" -gt 0 ]; then
    # (sorted, de-duplicated)
    mapfile -t need_apt < <(printf '%s\n' "${need_apt[@]}" | sort -u)
    quiet "apt-get install ${need_apt[*]}" \
      $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
  fi
  if [ "$nginx_missing" -eq 1 ]; then
    if apt-cache show nginx-light >/dev/null 2>&1 && \
       quiet "apt-get install nginx-light" \
         $SUDO apt-get install -y -q --no-install-recommends nginx-light; then
      :
    else
      echo "setup.sh: nginx-light unavailable, installing nginx" >&2
      quiet "apt-get install nginx" $SUDO apt-get install -y -q --no-install-recommends nginx
    fi
  fi
  # The packaged nginx service may have been started by the install; the
  # benchmark runs its own instance with a private config, so stop the system
  # one if it is running (ignore errors: no init system in containers).
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    $SUDO systemctl stop nginx || true
  fi
  # The system sshd is left alone: bench/run.py starts its own sshd on a free
  # loopback port with a private config and keys.
else
  echo "setup.sh: iperf3, wrk, nginx, openssh, openssl already installed" >&2
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
    echo "setup.sh: $bin already installed ($(command -v "$bin"))" >&2
    return 0
  fi
  if QUIET_FAIL=1 quiet "cargo install --locked $crate (a few minutes)" nice -n 10 cargo install --locked "$crate"; then
    return 0
  fi
  echo "setup.sh: 'cargo install --locked $crate' failed; retrying without --locked" >&2
  quiet "cargo install $crate" nice -n 10 cargo install "$crate"
}

cargo_install rathole rathole
cargo_install bore-cli bore

if [ -s "$LOG" ]; then
  echo "setup.sh: done (installer output: $LOG)"
else
  rm -f "$LOG"
  echo "setup.sh: done"
fi
for t in iperf3 wrk nginx ssh sshd ssh-keygen openssl rathole bore; do
  printf '  %-10s %s\n' "$t" "$(command -v "$t" 2>/dev/null || ls "/usr/sbin/$t" 2>/dev/null || echo MISSING)"
done
