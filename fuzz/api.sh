#!/usr/bin/env bash
# Fuzzes rportd's API against its own OpenAPI document with schemathesis (from PyPI,
# installed into target/schemathesis-venv): no 5xx, no request slower than 5 s (no hang),
# every error in the JSON envelope. Loopback only; the server and agent are started here
# and stopped at the end.
#   bash fuzz/api.sh          # 60 s
#   bash fuzz/api.sh 600      # longer
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
venv=target/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
        echo "python3 -m venv failed; installing python3-venv" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    # Pinned: the version the checks below were written and tried against.
    "$venv/bin/pip" install -q 'schemathesis==4.32.5'
fi
cargo build -q -p rport-cli --bin rportd --bin rport

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/rportd.conf" <<CONF
[server]
address = "127.0.0.1:0"
data_dir = "$work/data"
auth = "agent1:agent-password-1"
used_ports = ["40000-40999"]
[api]
address = "127.0.0.1:0"
auth = "admin:admin-password-1"
# Bans would turn the rest of the run into 429s: the fuzzer sends bad tokens on purpose.
max_failed_login = 0
CONF
./target/debug/rportd -c "$work/rportd.conf" >"$work/rportd.out" 2>"$work/rportd.err" &
pids+=($!)
for _ in $(seq 100); do
    grep -q "API listening on" "$work/rportd.out" 2>/dev/null && break
    sleep 0.1
done
api=$(grep -o 'http://[0-9.:]*' "$work/rportd.out" | head -1)
agents=$(sed -n 's/^rportd: agents connect to //p' "$work/rportd.out")
fingerprint=$(sed -n 's/^rportd: fingerprint //p' "$work/rportd.out")
[ -n "$api" ] && [ -n "$agents" ] || { cat "$work/rportd.err" >&2; echo "rportd did not start" >&2; exit 1; }
# One agent, so client and tunnel endpoints have something to find.
./target/debug/rport --id fuzz-client --auth agent1:agent-password-1 --fingerprint "$fingerprint" \
    --data-dir "$work/agent" "$agents" >"$work/rport.log" 2>&1 &
pids+=($!)

# A bearer token works on both faces (API v2 takes nothing else); logout is left out, as it
# would revoke the token in the middle of the run, and so are `PUT /me`, whose `username`
# renames the caller and ends its tokens (as in RPort), and ending a user's sessions, which
# the fuzzer does to `admin` itself (its audit log showed it), also through
# `/me/sessions/{session_id}` (a small number is the run's own session). The event stream
# (`/events`, server-sent events) never ends by design; its own tests cover it.
token=$(python3 - "$api" <<'PY'
import base64, json, sys, urllib.request
request = urllib.request.Request(sys.argv[1] + "/api/v1/login?token-lifetime=3600")
request.add_header("Authorization", "Basic " + base64.b64encode(b"admin:admin-password-1").decode())
print(json.load(urllib.request.urlopen(request))["data"]["token"])
PY
)
# One worker: with several, hypothesis parses lambda sources from threads at once, which
# CPython 3.11's ast module does not survive ("AST constructor recursion depth mismatch").
echo "== schemathesis against $api for ${seconds}s"
export PYTHONPATH="$PWD/fuzz/api" SCHEMATHESIS_HOOKS=checks
status=0
"$venv/bin/schemathesis" run "$api/api/v1/openapi.json" \
    -H "Authorization: Bearer $token" \
    --exclude-path /api/v1/logout \
    --exclude-path /api/v1/events \
    --exclude-name "PUT /api/v1/me" \
    --exclude-name "DELETE /api/v1/users/{username}/sessions" \
    --exclude-name "DELETE /api/v1/users/{username}/sessions/{session_id}" \
    --exclude-name "DELETE /api/v1/me/sessions/{session_id}" \
    --checks not_a_server_error,error_envelope \
    --max-time "$seconds" \
    --max-response-time 5 \
    --request-timeout 10 \
    --workers 1 \
    --generation-database none \
    || status=$?
if grep -E 'panicked|ERROR' "$work/rportd.err" >&2; then
    echo "rportd logged a panic or an error during the run" >&2
    status=1
fi
exit "$status"
