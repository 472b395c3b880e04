#!/usr/bin/env python3
"""Side-by-side tunnel benchmark: direct loopback vs rport vs rathole vs bore.

Measures, in one run and on one machine, for each setup:
  * single-stream TCP throughput: iperf3 -c 127.0.0.1 -p PORT -t SECONDS -J
    (end.sum_received.bits_per_second)
  * HTTP requests/s: wrk -t2 -c32 -d SECONDS against a local nginx serving a
    small static file.

Every measurement is repeated --rounds times, interleaving the setups
(a, b, c, d, a, b, c, d, ...), and the median is reported together with the
ratio to direct loopback and the ratios rport/rathole and rport/bore.

All traffic stays on 127.0.0.1. Every child process is started by this script
and killed (by its own PID) at the end; all files live in one temp dir.

Python 3 standard library only. Tools needed: iperf3, wrk, nginx (bench/setup.sh
installs them, plus rathole and bore).
"""

import argparse
import base64
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETUP_LABELS = {
    "direct": "direct loopback",
    "rport": "rport tunnel",
    "rathole": "rathole",
    "bore": "bore",
}
ORDER = ["direct", "rport", "rathole", "bore"]

BORE_CONTROL_PORT = 7835  # fixed in bore

API_USER, API_PASS = "admin", "adminpass"
AGENT_AUTH = "bench:benchpass"
AGENT_ID = "bench-1"

INDEX_BODY = b"<!doctype html><title>bench</title><p>" + b"x" * 512 + b"</p>\n"


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# ports


def free_port():
    """A port that was free a moment ago: bind 127.0.0.1:0, read it, close."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port, host="127.0.0.1"):
    """True if a listener could bind the port now. SO_REUSEADDR, as the servers use it:
    connections left in TIME_WAIT by an earlier run do not make a port busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_range(size, lo=40000, hi=60000, attempts=100):
    """A run of `size` consecutive ports that are all free on 127.0.0.1 and 0.0.0.0."""
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(lo, hi - size)
        if all(port_is_free(p) and port_is_free(p, "0.0.0.0") for p in range(base, base + size)):
            return base, base + size - 1
    raise RuntimeError(f"no run of {size} free ports found in {lo}-{hi}")


def wait_port(port, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


# --------------------------------------------------------------------------
# processes


class Procs:
    """Every child this script starts, so that all of them die at the end."""

    def __init__(self, tmpdir):
        self.tmpdir = tmpdir
        self.items = []  # (name, Popen, logpath)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")  # same log level for rathole and bore
        self.env = env

    def start(self, name, argv, cwd=None):
        logpath = os.path.join(self.tmpdir, f"{name}.log")
        fh = open(logpath, "ab")
        try:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=cwd or self.tmpdir,
                env=self.env,
            )
        finally:
            fh.close()
        self.items.append((name, p, logpath))
        log(f"started {name} (pid {p.pid}): {' '.join(argv)}")
        return p

    def log_tail(self, name, lines=20):
        for n, _, path in self.items:
            if n == name:
                try:
                    with open(path, "r", errors="replace") as f:
                        return "".join(f.readlines()[-lines:])
                except OSError:
                    return ""
        return ""

    def check_alive(self, name):
        for n, p, _ in self.items:
            if n == name and p.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {p.returncode}:\n{self.log_tail(name)}")

    def stop(self, name):
        keep = []
        for item in self.items:
            if item[0] == name:
                self._kill(item)
            else:
                keep.append(item)
        self.items = keep

    @staticmethod
    def _kill(item):
        name, p, _ = item
        if p.poll() is not None:
            return
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log(f"could not reap {name} (pid {p.pid})")
        except OSError:
            pass

    def stop_all(self):
        for item in reversed(self.items):
            self._kill(item)
        self.items = []


def find_tool(name, extra_dirs=()):
    path = shutil.which(name)
    if path:
        return path
    for d in list(extra_dirs) + [os.path.expanduser("~/.cargo/bin"), "/usr/sbin", "/sbin"]:
        cand = os.path.join(d, name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def tool_version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (out.stdout or "") + (out.stderr or "")
        m = re.search(r"Build Version:\s*(\S+)", text)  # rathole's multi-line --version
        if m:
            return f"rathole {m.group(1)}"
        return text.strip().splitlines()[0] if text.strip() else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# --------------------------------------------------------------------------
# target servers


def start_iperf(procs, iperf3):
    port = free_port()
    procs.start("iperf3-server", [iperf3, "-s", "-p", str(port), "-B", "127.0.0.1"])
    # (the probe connection makes iperf3 log a harmless warning)
    if not wait_port(port):
        raise RuntimeError("iperf3 server did not start:\n" + procs.log_tail("iperf3-server"))
    return port


def start_nginx(procs, nginx, tmpdir):
    port = free_port()
    root = os.path.join(tmpdir, "www")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "index.html"), "wb") as f:
        f.write(INDEX_BODY)
    # nginx workers run as an unprivileged user when started as root: they must be
    # able to read the files.
    for d in (tmpdir, root):
        os.chmod(d, 0o755)
    os.chmod(os.path.join(root, "index.html"), 0o644)
    ngx = os.path.join(tmpdir, "nginx")
    os.makedirs(ngx, exist_ok=True)
    os.chmod(ngx, 0o777)
    conf = os.path.join(ngx, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
master_process on;
worker_processes 1;
pid {ngx}/nginx.pid;
error_log {ngx}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path {ngx}/body;
    proxy_temp_path {ngx}/proxy;
    fastcgi_temp_path {ngx}/fastcgi;
    uwsgi_temp_path {ngx}/uwsgi;
    scgi_temp_path {ngx}/scgi;
    default_type text/html;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
    }}
}}
""")
    argv = [nginx, "-p", ngx, "-c", conf]
    # -e (nginx >= 1.19.5) keeps nginx from opening the compiled-in error log.
    if "-e filename" in tool_help([nginx, "-h"]):
        argv += ["-e", os.path.join(ngx, "error.log")]
    procs.start("nginx", argv)
    if not wait_port(port):
        raise RuntimeError("nginx did not start:\n" + procs.log_tail("nginx") + read_text(os.path.join(ngx, "error.log")))
    if not http_ok(port):
        raise RuntimeError("nginx does not serve index.html:\n" + read_text(os.path.join(ngx, "error.log")))
    return port


def tool_help(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or "") + (out.stderr or "")
    except (OSError, subprocess.TimeoutExpired):
        return ""


def read_text(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()[-4000:]
    except OSError:
        return ""


def http_ok(port, timeout=3.0):
    """One GET / over a fresh connection; True on a 200 with our body."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while len(data) < 65536:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0] and INDEX_BODY in data
    except OSError:
        return False


# --------------------------------------------------------------------------
# measurements


def run_iperf(iperf3, port, seconds):
    argv = [iperf3, "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J",
            "--connect-timeout", "5000"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        return None, "iperf3 timed out"
    try:
        data = json.loads(out.stdout)
    except ValueError:
        return None, f"iperf3 output not JSON (rc {out.returncode}): {out.stdout[-300:]} {out.stderr[-300:]}"
    if "error" in data:
        return None, f"iperf3: {data['error']}"
    try:
        bps = float(data["end"]["sum_received"]["bits_per_second"])
    except (KeyError, TypeError, ValueError):
        return None, "iperf3: no end.sum_received.bits_per_second"
    if bps <= 0:
        return None, "iperf3: zero throughput"
    return bps, None


WRK_RPS = re.compile(r"Requests/sec:\s*([0-9.]+)")
WRK_SOCKERR = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")


def run_wrk(wrk, port, seconds):
    argv = [wrk, "-t2", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        return None, "wrk timed out", 0
    m = WRK_RPS.search(out.stdout)
    if out.returncode != 0 or not m:
        return None, f"wrk failed (rc {out.returncode}): {out.stdout[-300:]} {out.stderr[-300:]}", 0
    errors = 0
    se = WRK_SOCKERR.search(out.stdout)
    if se:
        errors += sum(int(x) for x in se.groups())
    n2 = WRK_NON2XX.search(out.stdout)
    if n2:
        errors += int(n2.group(1))
    return float(m.group(1)), None, errors


def wait_forwarding(name, iperf3, iperf_port, http_port, timeout=60.0):
    """Bounded retries until both paths of a setup forward real traffic.

    HTTP: a GET must return our file. TCP: a 1-second iperf3 run must move data
    (this also warms the path up). Raises on time-out.
    """
    deadline = time.monotonic() + timeout
    http_done = tcp_done = False
    last = ""
    attempt = 0
    while time.monotonic() < deadline and attempt < 60:
        attempt += 1
        if not http_done:
            http_done = http_ok(http_port)
            last = "HTTP GET through the tunnel failed"
        if http_done and not tcp_done:
            bps, err = run_iperf(iperf3, iperf_port, 1)
            tcp_done = bps is not None
            last = err or ""
        if http_done and tcp_done:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{name}: not forwarding after {timeout:.0f}s ({last})")


# --------------------------------------------------------------------------
# rport


def api_request(api_port, method, path, timeout=10):
    url = f"http://127.0.0.1:{api_port}{path}"
    req = urllib.request.Request(url, method=method)
    token = base64.b64encode(f"{API_USER}:{API_PASS}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = resp.read()
        return resp.status, (json.loads(body) if body.strip() else None)


def start_rport(procs, tmpdir, rportd, rport, targets):
    """Start rportd + one agent, open one tunnel per target. Returns {kind: public port}."""
    agent_port = free_port()
    api_port = free_port()
    lo, hi = free_range(16)
    d = os.path.join(tmpdir, "rport")
    os.makedirs(d, exist_ok=True)
    data_dir = os.path.join(d, "rportd-data")
    conf = os.path.join(d, "rportd.toml")
    with open(conf, "w") as f:
        f.write(f"""[server]
address = "127.0.0.1:{agent_port}"
data_dir = "{data_dir}"
auth = "{AGENT_AUTH}"
used_ports = ["{lo}-{hi}"]
excluded_ports = []

[api]
address = "127.0.0.1:{api_port}"
auth = "{API_USER}:{API_PASS}"

[logging]
log_level = "error"
""")
    procs.start("rportd", [rportd, "-c", conf])

    # Fingerprint: the stdout line, else the file in the data dir.
    fp = None
    deadline = time.monotonic() + 30
    fp_file = os.path.join(data_dir, "rportd-fingerprint.txt")
    while time.monotonic() < deadline and fp is None:
        procs.check_alive("rportd")
        m = re.search(r"rportd: fingerprint (\S+)", procs.log_tail("rportd", 200))
        if m:
            fp = m.group(1)
        elif os.path.exists(fp_file):
            text = read_text(fp_file).strip()
            if text:
                fp = text.split()[0]
        if fp is None:
            time.sleep(0.1)
    if fp is None:
        raise RuntimeError("rportd printed no fingerprint:\n" + procs.log_tail("rportd"))
    if not wait_port(api_port, 30) or not wait_port(agent_port, 30):
        raise RuntimeError("rportd is not listening:\n" + procs.log_tail("rportd"))

    procs.start("rport-agent", [rport, "--id", AGENT_ID, "--auth", AGENT_AUTH,
                                "--fingerprint", fp, "--data-dir", os.path.join(d, "agent"),
                                "--log-level", "error",
                                f"127.0.0.1:{agent_port}"])

    deadline = time.monotonic() + 30
    connected = False
    while time.monotonic() < deadline and not connected:
        procs.check_alive("rportd")
        procs.check_alive("rport-agent")
        try:
            _, body = api_request(api_port, "GET", "/api/v1/clients")
            for c in (body or {}).get("data") or []:
                if c.get("id") == AGENT_ID and c.get("connection_state") == "connected":
                    connected = True
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if not connected:
            time.sleep(0.2)
    if not connected:
        raise RuntimeError("agent did not connect:\n" + procs.log_tail("rport-agent") + procs.log_tail("rportd"))

    ports = {}
    candidates = list(range(lo, hi + 1))
    for kind, target in targets.items():
        lport = candidates.pop(0)
        path = (f"/api/v1/clients/{AGENT_ID}/tunnels"
                f"?local=127.0.0.1:{lport}&remote=127.0.0.1:{target}")
        try:
            status, body = api_request(api_port, "PUT", path)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"opening rport tunnel failed: HTTP {e.code} {e.read()[:500]!r}")
        data = (body or {}).get("data") or {}
        got = int(data.get("lport", lport))
        ports[kind] = got
        log(f"rport tunnel {data.get('id')} 127.0.0.1:{got} -> 127.0.0.1:{target} ({kind})")
    return ports


# --------------------------------------------------------------------------
# rathole


def start_rathole(procs, tmpdir, rathole, targets):
    d = os.path.join(tmpdir, "rathole")
    os.makedirs(d, exist_ok=True)
    ctl = free_port()
    public = {kind: free_port() for kind in targets}
    srv = [f'[server]\nbind_addr = "127.0.0.1:{ctl}"\n']
    cli = [f'[client]\nremote_addr = "127.0.0.1:{ctl}"\n']
    for kind, target in targets.items():
        srv.append(f'\n[server.services.{kind}]\ntoken = "t-{kind}"\nbind_addr = "127.0.0.1:{public[kind]}"\n')
        cli.append(f'\n[client.services.{kind}]\ntoken = "t-{kind}"\nlocal_addr = "127.0.0.1:{target}"\n')
    sconf, cconf = os.path.join(d, "server.toml"), os.path.join(d, "client.toml")
    with open(sconf, "w") as f:
        f.write("".join(srv))
    with open(cconf, "w") as f:
        f.write("".join(cli))
    procs.start("rathole-server", [rathole, "-s", sconf])
    if not wait_port(ctl, 15):
        procs.check_alive("rathole-server")
        raise RuntimeError("rathole server is not listening:\n" + procs.log_tail("rathole-server"))
    procs.start("rathole-client", [rathole, "-c", cconf])
    return public


# --------------------------------------------------------------------------
# bore


def start_bore(procs, tmpdir, bore, targets):
    for host in ("127.0.0.1", "0.0.0.0"):
        if not port_is_free(BORE_CONTROL_PORT, host):
            raise SkipSetup(f"bore's fixed control port {BORE_CONTROL_PORT} is busy")
    lo, hi = free_range(16)
    help_text = tool_help([bore, "server", "--help"])
    argv = [bore, "server", "--min-port", str(lo), "--max-port", str(hi)]
    if "--bind-addr" in help_text:
        argv += ["--bind-addr", "127.0.0.1"]
    if "--bind-tunnels" in help_text:
        argv += ["--bind-tunnels", "127.0.0.1"]
    procs.start("bore-server", argv)
    if not wait_port(BORE_CONTROL_PORT, 15):
        procs.check_alive("bore-server")
        raise RuntimeError("bore server is not listening:\n" + procs.log_tail("bore-server"))
    public = {}
    for i, (kind, target) in enumerate(targets.items()):
        public[kind] = lo + i
        procs.start(f"bore-local-{kind}", [bore, "local", str(target), "--local-host", "127.0.0.1",
                                           "--to", "127.0.0.1", "--port", str(public[kind])])
    return public


class SkipSetup(Exception):
    pass


# --------------------------------------------------------------------------
# reporting


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def median(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def render(results, setups, skipped, args, versions, wrk_errors):
    tcp = {s: median(results[s]["tcp"]) for s in setups}
    http = {s: median(results[s]["http"]) for s in setups}
    lines = []
    now = datetime.datetime.now(datetime.timezone.utc)
    lines.append(f"Run: {now.strftime('%Y-%m-%d %H:%M UTC')}; {os.cpu_count()} CPUs "
                 f"(nproc), {cpu_model()}; Linux {platform.release()}; "
                 f"{args.seconds} s per measurement, {args.rounds} rounds, setups interleaved; "
                 f"median shown, all rounds in brackets.")
    lines.append("")
    lines.append("| setup | TCP throughput, 1 stream (Gbit/s) | vs direct | HTTP, wrk -t2 -c32 (req/s) | vs direct |")
    lines.append("|---|---:|---:|---:|---:|")
    for s in setups:
        t_rounds = ", ".join("-" if v is None else f"{v / 1e9:.2f}" for v in results[s]["tcp"])
        h_rounds = ", ".join("-" if v is None else f"{v:.0f}" for v in results[s]["http"])
        t = "n/a" if tcp[s] is None else f"{tcp[s] / 1e9:.2f} [{t_rounds}]"
        h = "n/a" if http[s] is None else f"{http[s]:.0f} [{h_rounds}]"
        lines.append(f"| {SETUP_LABELS[s]} | {t} | {fmt_ratio(tcp[s], tcp.get('direct'))} "
                     f"| {h} | {fmt_ratio(http[s], http.get('direct'))} |")
    for s, why in skipped.items():
        lines.append(f"| {SETUP_LABELS[s]} | skipped | | skipped | |")
    peer_rows = [p for p in ("rathole", "bore") if p in setups and "rport" in setups]
    if peer_rows:
        lines.append("")
        lines.append("| ratio | TCP throughput | HTTP req/s |")
        lines.append("|---|---:|---:|")
        for p in peer_rows:
            lines.append(f"| rport / {p} | {fmt_ratio(tcp['rport'], tcp[p])} | {fmt_ratio(http['rport'], http[p])} |")
    notes = []
    for s, why in skipped.items():
        notes.append(f"{SETUP_LABELS[s]} skipped: {why}")
    for s in setups:
        fails = results[s]["fail"]
        if fails:
            notes.append(f"{SETUP_LABELS[s]}: {len(fails)} failed measurement(s): {fails[0]}")
        if wrk_errors.get(s):
            notes.append(f"{SETUP_LABELS[s]}: wrk reported {wrk_errors[s]} socket errors / non-2xx responses in total")
    if notes:
        lines.append("")
        for n in notes:
            lines.append(f"- {n}")
    lines.append("")
    lines.append("Versions: " + "; ".join(f"{k}: {v}" for k, v in versions.items()))
    return "\n".join(lines) + "\n", tcp, http


# --------------------------------------------------------------------------
# main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=5, help="length of each measurement (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per measurement (default 3)")
    ap.add_argument("--rportd", default=os.path.join(REPO, "target", "release", "rportd"))
    ap.add_argument("--rport", default=os.path.join(REPO, "target", "release", "rport"))
    ap.add_argument("--skip-peers", action="store_true", help="only direct and rport (no rathole, bore)")
    ap.add_argument("--markdown-out", metavar="FILE", help="also write the markdown table to FILE")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs) after the run")
    args = ap.parse_args()
    if not 1 <= args.seconds <= 600:
        ap.error("--seconds must be 1..600")
    if not 1 <= args.rounds <= 50:
        ap.error("--rounds must be 1..50")

    iperf3, wrk, nginx = find_tool("iperf3"), find_tool("wrk"), find_tool("nginx")
    missing = [n for n, p in (("iperf3", iperf3), ("wrk", wrk), ("nginx", nginx)) if not p]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)} (run bash bench/setup.sh)")
    for b in (args.rportd, args.rport):
        if not (os.path.isfile(b) and os.access(b, os.X_OK)):
            sys.exit(f"rport binary not found: {b} (cargo build --release --bin rportd --bin rport)")

    skipped = {}
    rathole = bore = None
    if not args.skip_peers:
        rathole, bore = find_tool("rathole"), find_tool("bore")
        if not rathole:
            skipped["rathole"] = "rathole not installed (bash bench/setup.sh)"
        if not bore:
            skipped["bore"] = "bore not installed (bash bench/setup.sh)"

    versions = {
        "rportd": tool_version([args.rportd, "--version"]),
        "iperf3": tool_version([iperf3, "--version"]),
        "wrk": tool_version([wrk, "-v"]).split(" Copyright")[0],
        "nginx": tool_version([nginx, "-v"]),
    }
    if rathole:
        versions["rathole"] = tool_version([rathole, "--version"])
    if bore:
        versions["bore"] = tool_version([bore, "--version"])

    tmpdir = tempfile.mkdtemp(prefix="rport-bench-")
    procs = Procs(tmpdir)
    ok = False
    try:
        iperf_port = start_iperf(procs, iperf3)
        http_port = start_nginx(procs, nginx, tmpdir)
        targets = {"tcp": iperf_port, "http": http_port}
        endpoints = {"direct": dict(targets)}
        wait_forwarding("direct", iperf3, iperf_port, http_port)

        endpoints["rport"] = start_rport(procs, tmpdir, args.rportd, args.rport, targets)
        wait_forwarding("rport", iperf3, endpoints["rport"]["tcp"], endpoints["rport"]["http"])

        for name, starter, binary in (("rathole", start_rathole, rathole), ("bore", start_bore, bore)):
            if args.skip_peers or not binary:
                continue
            try:
                endpoints[name] = starter(procs, tmpdir, binary, targets)
                wait_forwarding(name, iperf3, endpoints[name]["tcp"], endpoints[name]["http"])
            except (SkipSetup, RuntimeError) as e:
                log(f"{name}: skipped: {e}")
                skipped[name] = str(e).splitlines()[0]
                endpoints.pop(name, None)
                for n, _, _ in list(procs.items):
                    if n.startswith(name):
                        procs.stop(n)

        setups = [s for s in ORDER if s in endpoints]
        results = {s: {"tcp": [], "http": [], "fail": []} for s in setups}
        wrk_errors = {s: 0 for s in setups}
        total = args.rounds * len(setups) * 2
        n = 0
        for r in range(args.rounds):
            for s in setups:
                n += 1
                bps, err = run_iperf(iperf3, endpoints[s]["tcp"], args.seconds)
                results[s]["tcp"].append(bps)
                if err:
                    results[s]["fail"].append(err)
                log(f"[{n}/{total}] round {r + 1} {s:8s} TCP  "
                    + (f"{bps / 1e9:.2f} Gbit/s" if bps else f"FAILED: {err}"))
            for s in setups:
                n += 1
                rps, err, errs = run_wrk(wrk, endpoints[s]["http"], args.seconds)
                results[s]["http"].append(rps)
                wrk_errors[s] += errs
                if err:
                    results[s]["fail"].append(err)
                log(f"[{n}/{total}] round {r + 1} {s:8s} HTTP "
                    + (f"{rps:.0f} req/s" if rps else f"FAILED: {err}")
                    + (f" ({errs} errors)" if errs else ""))
            # a forwarder that died mid-run makes its numbers meaningless: say so
            for name, p, _ in procs.items:
                if p.poll() is not None:
                    log(f"warning: {name} exited with {p.returncode} during the run")

        table, tcp, http = render(results, setups, {s: skipped[s] for s in ORDER if s in skipped},
                                  args, versions, wrk_errors)
        print(table, end="")
        if args.markdown_out:
            with open(args.markdown_out, "w") as f:
                f.write(table)
            log(f"wrote {args.markdown_out}")
        for p in ("rathole", "bore"):
            if p in tcp and tcp.get("rport") and tcp[p]:
                for metric, vals in (("TCP throughput", tcp), ("HTTP req/s", http)):
                    if vals.get("rport") and vals.get(p) and vals["rport"] / vals[p] < 0.8:
                        log(f"NOTE: rport {metric} is {vals['rport'] / vals[p]:.2f} of {p}'s")
        ok = True
    finally:
        if not ok:
            for name, _, _ in procs.items:
                tail = procs.log_tail(name, 10).strip()
                if tail:
                    log(f"--- last lines of {name}'s output:\n{tail}")
        procs.stop_all()
        if args.keep_tmp:
            log(f"temp dir kept: {tmpdir}")
        else:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
