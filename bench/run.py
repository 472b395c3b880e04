#!/usr/bin/env python3
"""Side-by-side tunnel benchmark: rport against direct loopback, rathole (tls and tcp), bore and ssh -R.

One run measures, on one machine and only on 127.0.0.1, for every setup and on the same
targets (one iperf3 server, one nginx serving a 1-byte file):

  tcp1   iperf3 single stream, client -> target, and tcp1r the same with -R (target -> client)
  tcp4   iperf3 -P 4
  rps    wrk -t2 -c64, keep-alive: requests/s
  lat    wrk -t1 -c1 --latency: p50 and p99
  cps    wrk -t2 -c16 -H 'Connection: close': requests/s = new connections/s
  mem    RSS (VmRSS) of the tunnel's server and agent process trees while 1,000 tunneled
         connections are held open end to end (each one did a request to nginx)
  idle   RSS of each agent when connected and idle: after start and after the whole run
  hl     single stream through delay-relay (a userspace relay adding 10 ms each way, 20 ms
         round trip): raw iperf3 through the relay, and rport with its agent connected to
         rportd through the relay (rathole tls and ssh -R through the relay for comparison)
  CPU    with every iperf3 and wrk measurement: CPU time of the tunnel's processes per GB,
         request or connection, and of iperf3's client and server per GB

iperf3 runs that take far longer than asked (a stalled transfer) are listed under the table.

Every measurement is repeated --rounds times; within a round the setups are interleaved
per metric (direct, rport, rathole-tls, ... then the next metric) so that background noise
hits all of them alike. Medians are reported, and the ratio of rport to each peer is taken
per round and its median reported. The targets of issue #3 are checked against those.

Every child process is started by this script on free ports and killed by its PID at the
end; all files live in one temp dir. Python 3 standard library only.
Tools: bash bench/setup.sh installs them. rport's binaries and delay-relay are built with
cargo (release) at the start unless --no-build.
"""

import argparse
import base64
import datetime
import json
import os
import platform
import random
import re
import resource
import selectors
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
DOC = os.path.join(REPO, "docs", "benchmarks.md")
MARK_BEGIN = "<!-- bench:results:begin (written by bench/run.py) -->"
MARK_END = "<!-- bench:results:end -->"

ORDER = ["direct", "rport", "before", "rathole-tls", "rathole-tcp", "bore", "ssh"]
LABELS = {
    "direct": "direct",
    "rport": "rport",
    "before": "rport before",
    "rathole-tls": "rathole tls",
    "rathole-tcp": "rathole tcp",
    "bore": "bore",
    "ssh": "ssh -R",
}
PEERS = ["before", "rathole-tls", "rathole-tcp", "bore", "ssh"]

# Metric groups for --metrics, in the order they run within a round.
GROUPS = ["tcp1", "tcp4", "rps", "lat", "cps", "mem", "idle", "hl"]

# key: (label, unit, higher is better)
METRICS = {
    "tcp1": ("1 stream, client → target", "Gbit/s", True),
    "tcp1r": ("1 stream, target → client (-R)", "Gbit/s", True),
    "tcp4": ("4 streams (-P 4)", "Gbit/s", True),
    "rps": ("keep-alive req/s (wrk -c64)", "req/s", True),
    "p50": ("latency p50 (wrk -c1)", "µs", False),
    "p99": ("latency p99 (wrk -c1)", "µs", False),
    "cps": ("new connections/s (wrk -c16, Connection: close)", "conn/s", True),
    "rss_srv": ("server RSS, 1,000 open connections", "MiB", False),
    "rss_agent": ("agent RSS, 1,000 open connections", "MiB", False),
    "idle_srv": ("server RSS at rest, after start", "MiB", False),
    "idle": ("agent RSS at rest, after start", "MiB", False),
    "idle_after": ("agent RSS at rest, after the run", "MiB", False),
    # CPU time used by the tunnel's processes (server + agent) per unit of work
    "cpu_tcp1": ("tunnel CPU, 1 stream, client → target", "CPU-s/GB", False),
    "cpu_tcp1r": ("tunnel CPU, 1 stream, target → client", "CPU-s/GB", False),
    "cpu_tcp4": ("tunnel CPU, 4 streams", "CPU-s/GB", False),
    # the same for iperf3 itself (client + server): the work every setup shares
    "cpu_ends_tcp1": ("iperf3 CPU (client + server), 1 stream, client → target", "CPU-s/GB", False),
    "cpu_ends_tcp1r": ("iperf3 CPU (client + server), 1 stream, target → client", "CPU-s/GB", False),
    "cpu_ends_tcp4": ("iperf3 CPU (client + server), 4 streams", "CPU-s/GB", False),
    "cpu_rps": ("tunnel CPU per keep-alive request", "CPU-µs/req", False),
    "cpu_lat": ("tunnel CPU per request at -c1", "CPU-µs/req", False),
    "cpu_cps": ("tunnel CPU per new connection", "CPU-µs/conn", False),
}
DISPLAY = list(METRICS)
GROUP_METRICS = {
    "tcp1": ["tcp1", "tcp1r", "cpu_tcp1", "cpu_tcp1r", "cpu_ends_tcp1", "cpu_ends_tcp1r"],
    "tcp4": ["tcp4", "cpu_tcp4", "cpu_ends_tcp4"],
    "rps": ["rps", "cpu_rps"], "lat": ["p50", "p99", "cpu_lat"], "cps": ["cps", "cpu_cps"],
    "mem": ["rss_srv", "rss_agent"], "idle": ["idle_srv", "idle", "idle_after"],
}

# Which started processes are a setup's server and agent (their process trees are summed).
ROLES = {
    "rport": (["rportd"], ["rport-agent"]),
    "before": (["befored"], ["before-agent"]),
    "rathole-tls": (["rathole-tls-server"], ["rathole-tls-client"]),
    "rathole-tcp": (["rathole-tcp-server"], ["rathole-tcp-client"]),
    "bore": (["bore-server"], ["bore-local-http"]),
    "ssh": (["ssh-sshd"], ["ssh-client"]),
}

BORE_CONTROL_PORT = 7835  # fixed in bore

API_USER, API_PASS = "admin", "adminpass"
AGENT_AUTH = "bench:benchpass"

INDEX_BODY = b"<!doctype html><title>bench</title><p>" + b"x" * 512 + b"</p>\n"
SMALL_PATH, SMALL_BODY = "/1b", b"x"  # the 1-byte file wrk asks for

HL_LABELS = {
    "hl-raw": "raw TCP: iperf3 straight through the relay",
    "hl-rport": "rport: agent ↔ rportd through the relay",
    "hl-rathole-tls": "rathole tls: client ↔ server through the relay",
    "hl-ssh": "ssh -R: ssh ↔ sshd through the relay",
}

HOLD_CONNECTIONS = 1000
HL_DELAY_MS = 10  # one way; 20 ms round trip
AGENT_IDLE_LIMIT_MIB = 8.0


STARTED = time.monotonic()


def log(msg):
    print(f"[bench {time.monotonic() - STARTED:4.0f}s] {msg}", file=sys.stderr, flush=True)


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


def ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_range(size, attempts=200):
    """A run of `size` consecutive ports that are all free on 127.0.0.1 and 0.0.0.0, outside
    the kernel's ephemeral range (so that outgoing connections do not take them, and their
    TIME_WAITs, which block a bind, do not sit on them)."""
    eph_lo, eph_hi = ephemeral_range()
    spans = [(lo, hi) for lo, hi in ((10000, eph_lo - 1), (eph_hi + 1, 65535)) if hi - lo > size * 4]
    if not spans:
        spans = [(10000, 65535)]
    rng = random.Random()
    for _ in range(attempts):
        lo, hi = rng.choice(spans)
        base = rng.randrange(lo, hi - size)
        if all(port_is_free(p) and port_is_free(p, "0.0.0.0") for p in range(base, base + size)):
            return base, base + size - 1
    raise RuntimeError(f"no run of {size} free ports found in {spans}")


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
    """Every child this script starts, so that all of them die at the end (by PID)."""

    def __init__(self, tmpdir):
        self.tmpdir = tmpdir
        self.items = []  # (name, Popen, logpath)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")  # same log level for rathole and bore
        self.env = env

    def start(self, name, argv, cwd=None, stdout_pipe=False):
        logpath = os.path.join(self.tmpdir, f"{name}.log")
        fh = open(logpath, "ab")
        try:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else fh,
                stderr=fh if stdout_pipe else subprocess.STDOUT,
                cwd=cwd or self.tmpdir,
                env=self.env,
            )
        finally:
            fh.close()
        self.items.append((name, p, logpath))
        log(f"started {name} (pid {p.pid}): {' '.join(argv)}")
        return p

    def pid(self, name):
        for n, p, _ in self.items:
            if n == name:
                return p.pid
        return None

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

    def stop_prefix(self, prefix):
        keep = []
        for item in self.items:
            if item[0].startswith(prefix):
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


def tool_output(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return ((out.stdout or "") + (out.stderr or "")).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


# --------------------------------------------------------------------------
# /proc


def proc_children():
    """{ppid: [pid, ...]} for every process now."""
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(pids):
    """The given processes and all their descendants, each once."""
    kids = proc_children()
    seen, todo = [], [p for p in pids if p]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(kids.get(pid, []))
    return seen


def tree_rss_mib(pids):
    """VmRSS summed over the given processes and all their descendants, in MiB."""
    tree = process_tree(pids)
    return sum(rss_kib(pid) for pid in tree) / 1024.0 if tree else None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pids):
    """user + system CPU time of the processes, their descendants and reaped children."""
    ticks = 0
    for pid in process_tree(pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            fields = stat[stat.rfind(")") + 2:].split()
            ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        except (OSError, ValueError, IndexError):
            pass
    return ticks / CLK_TCK


def children_cpu():
    """CPU time of this script's reaped children (the iperf3 and wrk clients)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def setup_pids(procs, setup):
    """Every process of a tunnel setup (server and agents), none for direct."""
    return [p.pid for n, p, _ in procs.items if setup != "direct" and n.startswith(setup + "-")
            or n == {"rport": "rportd", "before": "befored"}.get(setup)]


def role_rss(procs, setup, role):
    names = ROLES[setup][0 if role == "server" else 1]
    pids = [procs.pid(n) for n in names]
    if not all(pids):
        return None
    return tree_rss_mib(pids)


# --------------------------------------------------------------------------
# target servers


def start_iperf(procs, iperf3, name):
    """One iperf3 server per setup: a test through one tunnel may end at the server a moment
    after the client is done, and must not find the server still busy for the next setup."""
    port = free_port()
    procs.start(name, [iperf3, "-s", "-p", str(port), "-B", "127.0.0.1"])
    # (the probe connection makes iperf3 log a harmless warning)
    if not wait_port(port):
        raise RuntimeError("iperf3 server did not start:\n" + procs.log_tail(name))
    return port


def start_nginx(procs, nginx, tmpdir):
    port = free_port()
    root = os.path.join(tmpdir, "www")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "index.html"), "wb") as f:
        f.write(INDEX_BODY)
    with open(os.path.join(root, SMALL_PATH.lstrip("/")), "wb") as f:
        f.write(SMALL_BODY)
    # nginx workers run as an unprivileged user when started as root: they must be
    # able to read the files.
    for d in (tmpdir, root):
        os.chmod(d, 0o755)
    for fn in os.listdir(root):
        os.chmod(os.path.join(root, fn), 0o644)
    ngx = os.path.join(tmpdir, "nginx")
    os.makedirs(ngx, exist_ok=True)
    os.chmod(ngx, 0o777)
    conf = os.path.join(ngx, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 16384;
pid {ngx}/nginx.pid;
error_log {ngx}/error.log warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 300;
    client_body_temp_path {ngx}/body;
    proxy_temp_path {ngx}/proxy;
    fastcgi_temp_path {ngx}/fastcgi;
    uwsgi_temp_path {ngx}/uwsgi;
    scgi_temp_path {ngx}/scgi;
    default_type text/html;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        index index.html;
    }}
}}
""")
    argv = [nginx, "-p", ngx, "-c", conf]
    # -e (nginx >= 1.19.5) keeps nginx from opening the compiled-in error log.
    if "-e filename" in tool_output([nginx, "-h"]):
        argv += ["-e", os.path.join(ngx, "error.log")]
    procs.start("nginx", argv)
    if not wait_port(port):
        raise RuntimeError("nginx did not start:\n" + procs.log_tail("nginx") + read_text(os.path.join(ngx, "error.log")))
    if not http_ok(port):
        raise RuntimeError("nginx does not serve index.html:\n" + read_text(os.path.join(ngx, "error.log")))
    return port


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


def run_iperf(iperf3, port, seconds, extra=()):
    """(bits/s received, error). A test that failed before any data stream was connected
    (the server still busy with the end of the previous test, which a tunnel may pass on a
    moment late) is tried again, up to 3 more times; each retry is counted in RETRIES."""
    argv = [iperf3, "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J",
            "--connect-timeout", "5000", *extra]
    err = None
    for attempt in range(4):
        if attempt:
            time.sleep(1.0)
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            return None, "iperf3 timed out"
        try:
            data = json.loads(out.stdout)
        except ValueError:
            return None, f"iperf3 output not JSON (rc {out.returncode}): {out.stdout[-300:]} {out.stderr[-300:]}"
        if "error" in data:
            err = f"iperf3: {data['error']}"
            connected = (data.get("start") or {}).get("connected") or []
            if "busy" in data["error"] or not connected:
                RETRIES.append((time.monotonic(), data["error"]))
                log(f"iperf3 to port {port} failed before any data ({data['error']}); trying again")
                continue
            return None, err
        try:
            bps = float(data["end"]["sum_received"]["bits_per_second"])
            nbytes = float(data["end"]["sum_received"]["bytes"])
        except (KeyError, TypeError, ValueError):
            return None, "iperf3: no end.sum_received.bits_per_second"
        if bps <= 0:
            return None, "iperf3: zero throughput"
        LAST_BYTES[0] = nbytes
        return bps, None
    return None, err


RETRIES = []  # (time, error) of iperf3 runs tried again


def retried_since(t):
    return any(when >= t for when, _ in RETRIES)

LAST_BYTES = [0.0]  # bytes received by the last successful run_iperf

WRK_RPS = re.compile(r"Requests/sec:\s*([0-9.]+)")
WRK_TOTAL = re.compile(r"(\d+) requests in")
WRK_SOCKERR = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
WRK_PCT = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([0-9.]+)(us|ms|s)\s*$", re.M)
UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def run_wrk(wrk, port, seconds, threads, conns, close=False, latency=False):
    """(result dict, error, error count). result: rps, and p50/p99 in µs with latency."""
    argv = [wrk, f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s"]
    if close:
        argv += ["-H", "Connection: close"]
    if latency:
        argv.append("--latency")
    argv.append(f"http://127.0.0.1:{port}{SMALL_PATH}")
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        return None, "wrk timed out", 0
    m = WRK_RPS.search(out.stdout)
    if out.returncode != 0 or not m:
        return None, f"wrk failed (rc {out.returncode}): {out.stdout[-300:]} {out.stderr[-300:]}", 0
    res = {"rps": float(m.group(1))}
    total = WRK_TOTAL.search(out.stdout)
    res["requests"] = int(total.group(1)) if total else 0
    if latency:
        for pct, val, unit in WRK_PCT.findall(out.stdout):
            res[f"p{pct}"] = float(val) * UNIT_US[unit]
        if "p50" not in res or "p99" not in res:
            return None, f"wrk: no latency distribution in output: {out.stdout[-300:]}", 0
    errors = 0
    se = WRK_SOCKERR.search(out.stdout)
    if se:
        errors += sum(int(x) for x in se.groups())
    n2 = WRK_NON2XX.search(out.stdout)
    if n2:
        errors += int(n2.group(1))
    return res, None, errors


def hold_connections(port, count, timeout=60.0, batch=100):
    """Open `count` connections to `port`, do one keep-alive GET of the 1-byte file on each
    (so each is established end to end, through the tunnel to nginx), and keep them open.
    Returns (sockets, error); the caller closes the sockets."""
    req = f"GET {SMALL_PATH} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    socks = []
    deadline = time.monotonic() + timeout
    done = 0
    try:
        for start in range(0, count, batch):
            pending = {}
            for _ in range(min(batch, count - start)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                socks.append(s)
                rc = s.connect_ex(("127.0.0.1", port))
                if rc not in (0, 115):  # EINPROGRESS
                    return socks, f"connect failed: {os.strerror(rc)} after {done} connections"
                pending[s] = bytearray()
                sel.register(s, selectors.EVENT_WRITE)
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return socks, f"only {done} of {count} connections answered within {timeout:.0f}s"
                for key, ev in sel.select(timeout=min(left, 1.0)):
                    s = key.fileobj
                    if ev & selectors.EVENT_WRITE:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            return socks, f"connect failed: {os.strerror(err)} after {done} connections"
                        s.sendall(req)  # small: fits the empty send buffer
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    try:
                        chunk = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        return socks, f"recv failed: {e} after {done} connections"
                    if not chunk:
                        return socks, f"connection closed before the response, after {done} connections"
                    buf = pending[s]
                    buf += chunk
                    head, sep, body = bytes(buf).partition(b"\r\n\r\n")
                    if sep and len(body) >= len(SMALL_BODY):
                        if b" 200 " not in head.split(b"\r\n", 1)[0]:
                            return socks, f"bad response: {head[:80]!r}"
                        sel.unregister(s)
                        del pending[s]
                        done += 1
        return socks, None
    finally:
        sel.close()


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


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
        if http_port is not None and not http_done:
            http_done = http_ok(http_port)
            last = "HTTP GET through the tunnel failed"
        else:
            http_done = True
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


def start_rport(procs, tmpdir, rportd, rport, targets, name="rport", agent_via=None):
    """Start rportd + one agent, open one tunnel per target. Returns {kind: public port}.

    agent_via(agent_port) -> port: where the agent connects instead of rportd's agent
    port (the high-latency case puts delay-relay there)."""
    agent_port = free_port()
    api_port = free_port()
    lo, hi = free_range(16)
    d = os.path.join(tmpdir, name)
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
    srv = f"{name}d"
    agent = f"{name}-agent"
    agent_id = f"bench-{name}"
    procs.start(srv, [rportd, "-c", conf])

    # Fingerprint: the stdout line, else the file in the data dir.
    fp = None
    deadline = time.monotonic() + 30
    fp_file = os.path.join(data_dir, "rportd-fingerprint.txt")
    while time.monotonic() < deadline and fp is None:
        procs.check_alive(srv)
        m = re.search(r"rportd: fingerprint (\S+)", procs.log_tail(srv, 200))
        if m:
            fp = m.group(1)
        elif os.path.exists(fp_file):
            text = read_text(fp_file).strip()
            if text:
                fp = text.split()[0]
        if fp is None:
            time.sleep(0.1)
    if fp is None:
        raise RuntimeError("rportd printed no fingerprint:\n" + procs.log_tail(srv))
    if not wait_port(api_port, 30) or not wait_port(agent_port, 30):
        raise RuntimeError("rportd is not listening:\n" + procs.log_tail(srv))

    connect_port = agent_via(agent_port) if agent_via else agent_port
    procs.start(agent, [rport, "--id", agent_id, "--auth", AGENT_AUTH,
                        "--fingerprint", fp, "--data-dir", os.path.join(d, "agent"),
                        "--log-level", "error",
                        f"127.0.0.1:{connect_port}"])

    deadline = time.monotonic() + 30
    connected = False
    while time.monotonic() < deadline and not connected:
        procs.check_alive(srv)
        procs.check_alive(agent)
        try:
            _, body = api_request(api_port, "GET", "/api/v1/clients")
            for c in (body or {}).get("data") or []:
                if c.get("id") == agent_id and c.get("connection_state") == "connected":
                    connected = True
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if not connected:
            time.sleep(0.2)
    if not connected:
        raise RuntimeError("agent did not connect:\n" + procs.log_tail(agent) + procs.log_tail(srv))

    ports = {}
    candidates = list(range(lo, hi + 1))
    for kind, target in targets.items():
        lport = candidates.pop(0)
        path = (f"/api/v1/clients/{agent_id}/tunnels"
                f"?local=127.0.0.1:{lport}&remote=127.0.0.1:{target}")
        try:
            status, body = api_request(api_port, "PUT", path)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"opening rport tunnel failed: HTTP {e.code} {e.read()[:500]!r}")
        data = (body or {}).get("data") or {}
        got = int(data.get("lport", lport))
        ports[kind] = got
        log(f"{name} tunnel {data.get('id')} 127.0.0.1:{got} -> 127.0.0.1:{target} ({kind})")
    return ports


# --------------------------------------------------------------------------
# rathole


def make_tls_identity(openssl, d):
    """A CA and a server certificate for `localhost` signed by it (ECDSA P-256), the
    server's key and chain as a PKCS#12 archive. Returns (pfx path, password, CA path)."""
    password = "benchpass"

    def run(*argv):
        out = subprocess.run([openssl, *argv], capture_output=True, text=True, timeout=30, cwd=d)
        if out.returncode != 0:
            raise RuntimeError(f"openssl {argv[0]} failed: {out.stderr.strip()[-500:]}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=rport-bench CA")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext")
    run("pkcs12", "-export", "-out", "identity.pfx", "-inkey", "server.key", "-in", "server.crt",
        "-certfile", "ca.crt", "-passout", f"pass:{password}")
    return os.path.join(d, "identity.pfx"), password, os.path.join(d, "ca.crt")


def start_rathole(procs, tmpdir, rathole, targets, name, transport, openssl=None, server_via=None):
    """rathole server + client with the given transport ("tls" or "tcp"). server_via(port)
    -> port: where the client connects instead of the server's port."""
    d = os.path.join(tmpdir, name)
    os.makedirs(d, exist_ok=True)
    ctl = free_port()
    public = {kind: free_port() for kind in targets}
    srv = [f'[server]\nbind_addr = "127.0.0.1:{ctl}"\n']
    cli = [None]  # the client's [client] table, once the server listens
    if transport == "tls":
        if not openssl:
            raise SkipSetup("openssl not installed (bash bench/setup.sh)")
        pfx, password, ca = make_tls_identity(openssl, d)
        srv.append(f'\n[server.transport]\ntype = "tls"\n\n[server.transport.tls]\n'
                   f'pkcs12 = "{pfx}"\npkcs12_password = "{password}"\n')
        cli.append(f'\n[client.transport]\ntype = "tls"\n\n[client.transport.tls]\n'
                   f'trusted_root = "{ca}"\nhostname = "localhost"\n')
    for kind, target in targets.items():
        srv.append(f'\n[server.services.{kind}]\ntoken = "t-{kind}"\nbind_addr = "127.0.0.1:{public[kind]}"\n')
        cli.append(f'\n[client.services.{kind}]\ntoken = "t-{kind}"\nlocal_addr = "127.0.0.1:{target}"\n')
    sconf, cconf = os.path.join(d, "server.toml"), os.path.join(d, "client.toml")
    with open(sconf, "w") as f:
        f.write("".join(srv))
    procs.start(f"{name}-server", [rathole, "-s", sconf])
    if not wait_port(ctl, 15):
        procs.check_alive(f"{name}-server")
        raise RuntimeError("rathole server is not listening:\n" + procs.log_tail(f"{name}-server"))
    remote = server_via(ctl) if server_via else ctl
    cli[0] = f'[client]\nremote_addr = "127.0.0.1:{remote}"\n'
    with open(cconf, "w") as f:
        f.write("".join(cli))
    procs.start(f"{name}-client", [rathole, "-c", cconf])
    return public


# --------------------------------------------------------------------------
# bore


def start_bore(procs, tmpdir, bore, targets):
    for host in ("127.0.0.1", "0.0.0.0"):
        if not port_is_free(BORE_CONTROL_PORT, host):
            raise SkipSetup(f"bore's fixed control port {BORE_CONTROL_PORT} is busy")
    lo, hi = free_range(16)
    help_text = tool_output([bore, "server", "--help"])
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


# --------------------------------------------------------------------------
# ssh -N -R


SSH_CIPHER = "aes128-gcm@openssh.com"


def start_ssh(procs, tmpdir, sshd, ssh, ssh_keygen, targets, name="ssh", server_via=None):
    """A private sshd on a free loopback port (own config, host key and authorized_keys;
    the system's sshd is not touched) and one `ssh -N -R` carrying all tunnels.
    server_via(port) -> port: where ssh connects instead of sshd's port."""
    d = os.path.join(tmpdir, name)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o700)
    host_key, client_key = os.path.join(d, "host_ed25519"), os.path.join(d, "client_ed25519")
    for key in (host_key, client_key):
        out = subprocess.run([ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", "rport-bench", "-f", key],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"ssh-keygen failed: {out.stderr.strip()}")
    authorized = os.path.join(d, "authorized_keys")
    shutil.copyfile(client_key + ".pub", authorized)
    os.chmod(authorized, 0o600)
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        # sshd's privilege separation directory (the package creates it at boot).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    port = free_port()
    conf = os.path.join(d, "sshd_config")
    with open(conf, "w") as f:
        f.write(f"""ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
PidFile {d}/sshd.pid
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding remote
GatewayPorts no
X11Forwarding no
PermitTTY no
Ciphers {SSH_CIPHER}
LogLevel ERROR
""")
    procs.start(f"{name}-sshd", [sshd, "-D", "-e", "-f", conf])
    if not wait_port(port, 15):
        procs.check_alive(f"{name}-sshd")
        raise RuntimeError("sshd is not listening:\n" + procs.log_tail(f"{name}-sshd"))
    public = {kind: free_port() for kind in targets}
    user = os.environ.get("USER") or ("root" if os.geteuid() == 0 else str(os.geteuid()))
    try:
        import pwd
        user = pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        pass
    argv = [ssh, "-N", "-T", "-F", "/dev/null", "-i", client_key,
            "-p", str(server_via(port) if server_via else port),
            "-c", SSH_CIPHER,
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={d}/known_hosts",
            "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR",
            "-o", "Compression=no", "-o", "IdentitiesOnly=yes"]
    for kind, target in targets.items():
        argv += ["-R", f"127.0.0.1:{public[kind]}:127.0.0.1:{target}"]
    argv.append(f"{user}@127.0.0.1")
    procs.start(f"{name}-client", argv)
    return public


class SkipSetup(Exception):
    pass


# --------------------------------------------------------------------------
# high-latency case


def start_relay(procs, relay, name, target_port, delay_ms):
    p = procs.start(name, [relay, "127.0.0.1:0", f"127.0.0.1:{target_port}", str(delay_ms)],
                    stdout_pipe=True)
    line = p.stdout.readline().decode().strip()  # the bound port (the relay prints it at once)
    if not line.isdigit():
        procs.check_alive(name)
        raise RuntimeError(f"{name} printed no port: {line!r}")
    return int(line)


def relay_rtt_ms(port, n=5):
    """Median time from sending a request through a relay to nginx to the first byte of the
    answer: one round trip through the relay (the relay itself accepts at once and reaches
    nginx over plain loopback). In ms."""
    vals = []
    for _ in range(n):
        t0 = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(5)
                s.sendall(f"GET {SMALL_PATH} HTTP/1.0\r\n\r\n".encode())
                s.recv(1)
        except OSError:
            return None
        vals.append((time.monotonic() - t0) * 1e3)
    return statistics.median(vals)


# --------------------------------------------------------------------------
# reporting


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


def os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "?"


def mem_total_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0


def fmt(metric, v):
    if v is None:
        return "–"
    unit = METRICS[metric][1] if metric in METRICS else "Gbit/s"
    if unit == "Gbit/s":
        return f"{v / 1e9:.2f}"
    if unit in ("req/s", "conn/s"):
        return f"{v:.0f}"
    if unit == "µs" or unit.startswith("CPU-µs"):
        return f"{v:.0f}" if v >= 100 else f"{v:.1f}"
    if unit == "CPU-s/GB":
        return f"{v:.2f}"
    return f"{v:.1f}"


def per_round_ratios(a, b):
    return [x / y for x, y in zip(a, b) if x is not None and y]


class Target:
    def __init__(self, text, metric, peer, op, bound):
        self.text, self.metric, self.peer, self.op, self.bound = text, metric, peer, op, bound


TARGETS = [
    Target("1 stream client → target ≥ 1.5× rathole tls", "tcp1", "rathole-tls", ">=", 1.5),
    Target("1 stream target → client ≥ 1.5× rathole tls", "tcp1r", "rathole-tls", ">=", 1.5),
    Target("1 stream client → target ≥ 1.0× ssh -R", "tcp1", "ssh", ">=", 1.0),
    Target("1 stream target → client ≥ 1.0× ssh -R", "tcp1r", "ssh", ">=", 1.0),
    Target("4 streams ≥ 1.5× rathole tls", "tcp4", "rathole-tls", ">=", 1.5),
    Target("keep-alive req/s (wrk -c64) ≥ 1.0× rathole tcp", "rps", "rathole-tcp", ">=", 1.0),
    Target("latency p50 (wrk -c1) ≤ rathole tls", "p50", "rathole-tls", "<=", 1.0),
    Target("latency p99 (wrk -c1) ≤ rathole tls", "p99", "rathole-tls", "<=", 1.0),
    Target("new connections/s ≥ 10× rathole tls", "cps", "rathole-tls", ">=", 10.0),
    Target("new connections/s ≥ 1.0× bore", "cps", "bore", ">=", 1.0),
    Target("server RSS with 1,000 connections ≤ rathole tls server", "rss_srv", "rathole-tls", "<=", 1.0),
    Target(f"agent RSS at rest ≤ {AGENT_IDLE_LIMIT_MIB:.0f} MiB (after start / after the run)", "idle", None, "<=",
           AGENT_IDLE_LIMIT_MIB),
    Target("20 ms RTT: 1 stream ≥ 0.8× raw TCP through the same relay", "hl", "hl-raw", ">=", 0.8),
]


def judge(value, op, bound):
    if value is None:
        return "n/a"
    ok = value >= bound if op == ">=" else value <= bound
    return "met" if ok else "**not met**"


def render(ctx):
    """The markdown results section: context, medians, ratios, high-latency, targets."""
    res, setups, args = ctx["results"], ctx["setups"], ctx["args"]
    chosen = {m for g in ctx["groups"] for m in GROUP_METRICS.get(g, [])}
    metrics = [m for m in DISPLAY if m in chosen]
    rport_in = "rport" in setups
    peers = [p for p in PEERS if p in setups]
    L = []
    now = datetime.datetime.now(datetime.timezone.utc)
    L.append(f"Run {now.strftime('%Y-%m-%d %H:%M UTC')}, `{ctx['command']}`, "
             f"{ctx['elapsed'] / 60:.1f} minutes.")
    L.append("")
    L.append(f"Machine: {cpu_model()}, {os.cpu_count()} CPUs (nproc), {mem_total_gib():.0f} GiB; "
             f"Linux {platform.release()}; {os_name()}; load average (1 min) before the run "
             f"{ctx['load'][0]:.1f}.")
    L.append("")
    L.append("Versions: " + "; ".join(ctx["versions"]) + ".")
    L.append("")
    L.append(f"{args.seconds} s per measurement, {args.rounds} rounds, setups interleaved per metric. "
             f"Each cell is the median over the rounds (↑ higher is better, ↓ lower is better); "
             f"the ratios are rport / peer taken within each round, median over the rounds.")
    L.append("")

    # medians
    L.append("| metric | unit | " + " | ".join(LABELS[s] for s in setups) + " |")
    L.append("|---|---|" + "---:|" * len(setups))
    for m in metrics:
        label, unit, better = METRICS[m]
        cells = []
        for s in setups:
            vals = res.get(s, {}).get(m)
            cells.append("" if not vals else fmt(m, median(vals)))
        if not any(cells):
            continue
        arrow = "↑" if better else "↓"
        L.append(f"| {label} | {unit} {arrow} | " + " | ".join(c or "n/a" for c in cells) + " |")
    L.append("")

    # ratios
    if rport_in and (peers or "direct" in setups):
        cols = (["direct"] if "direct" in setups else []) + peers
        L.append("| rport / … | better | " + " | ".join(LABELS[c] for c in cols) + " |")
        L.append("|---|---|" + "---:|" * len(cols))
        for m in metrics:
            cells = []
            for c in cols:
                rs = per_round_ratios(res.get("rport", {}).get(m, []), res.get(c, {}).get(m, []))
                cells.append(f"{median(rs):.2f}" if rs else "")
            if any(cells):
                L.append(f"| {METRICS[m][0]} | {'> 1' if METRICS[m][2] else '< 1'} | "
                         + " | ".join(c or "n/a" for c in cells) + " |")
        L.append("")

    # high latency
    hl = ctx.get("hl")
    if hl:
        L.append(f"High-latency link: delay-relay adds {HL_DELAY_MS} ms each way "
                 f"(measured round trip through it: {hl['rtt']}); 1 stream, client → target.")
        L.append("")
        L.append("| through the relay | Gbit/s (median) | every round | / raw TCP (median of rounds) |")
        L.append("|---|---:|---|---:|")
        raw = hl["results"].get("hl-raw", [])
        for key, label in HL_LABELS.items():
            if key not in hl["results"]:
                continue
            vals = hl["results"][key]
            rs = per_round_ratios(vals, raw)
            L.append(f"| {label} | {fmt('tcp1', median(vals))} | "
                     + ", ".join(fmt("tcp1", v) for v in vals)
                     + f" | {'' if key == 'hl-raw' else (f'{median(rs):.2f}' if rs else 'n/a')} |")
        L.append("")

    # targets
    if rport_in:
        L.append("| target (issue #3) | measured | |")
        L.append("|---|---|---|")
        for t in TARGETS:
            if t.metric == "idle":
                if "idle" not in ctx["groups"]:
                    continue
                a = median(res.get("rport", {}).get("idle", []))
                b = median(res.get("rport", {}).get("idle_after", []))
                ja, jb = judge(a, t.op, t.bound), judge(b, t.op, t.bound)
                status = ja if ja == jb else f"{ja} after start, {jb} after the run"
                meas = f"{fmt('idle', a)} / {fmt('idle', b)} MiB"
                L.append(f"| {t.text} | {meas} | {status} |")
                continue
            if t.metric == "hl":
                if not hl:
                    continue
                rs = per_round_ratios(hl["results"].get("hl-rport", []), hl["results"].get("hl-raw", []))
                r = median(rs) if rs else None
                L.append(f"| {t.text} | {'n/a' if r is None else f'{r:.2f}×'} | {judge(r, t.op, t.bound)} |")
                continue
            if t.metric not in metrics:
                continue
            if t.peer not in setups:
                L.append(f"| {t.text} | {LABELS[t.peer]} not measured | n/a |")
                continue
            rs = per_round_ratios(res.get("rport", {}).get(t.metric, []), res.get(t.peer, {}).get(t.metric, []))
            r = median(rs) if rs else None
            a, b = median(res["rport"].get(t.metric, [])), median(res[t.peer].get(t.metric, []))
            unit = METRICS[t.metric][1]
            meas = ("n/a" if r is None else
                    f"{r:.2f}× ({fmt(t.metric, a)} vs {fmt(t.metric, b)} {unit})")
            L.append(f"| {t.text} | {meas} | {judge(r, t.op, t.bound)} |")
        L.append("")

    notes = []
    for s, why in ctx["skipped"].items():
        notes.append(f"{LABELS.get(s, s)} skipped: {why}")
    for s, fails in ctx["failures"].items():
        if fails:
            notes.append(f"{LABELS.get(s, s)}: {len(fails)} failed measurement(s), first: {fails[0]}")
    for s, n in ctx["wrk_errors"].items():
        if n:
            notes.append(f"{LABELS.get(s, s)}: wrk reported {n} socket errors / non-2xx responses in total")
    if ctx["retries"]:
        notes.append(f"iperf3 tests tried again because they failed before any data moved: "
                     f"{len(ctx['retries'])} (first: {ctx['retries'][0][1]})")
    for s, items in ctx["slow"].items():
        notes.append(f"{LABELS.get(s, s)}: iperf3 took far longer than asked (the transfer stalled): "
                     + "; ".join(items))
    if notes:
        L.extend(f"- {n}" for n in notes)
        L.append("")

    # every round
    L.append("<details><summary>Every round</summary>")
    L.append("")
    L.append("| metric | setup | rounds |")
    L.append("|---|---|---|")
    for m in metrics:
        for s in setups:
            vals = res.get(s, {}).get(m)
            if vals:
                L.append(f"| {METRICS[m][0]} | {LABELS[s]} | " + ", ".join(fmt(m, v) for v in vals) + " |")
    L.append("")
    L.append("</details>")
    return "\n".join(L) + "\n"


def write_markdown(path, section):
    """Replace the text between the markers in `path`, or write `section` as the whole file
    when the file does not have them."""
    block = f"{MARK_BEGIN}\n{section}{MARK_END}\n"
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        text = ""
    i, j = text.find(MARK_BEGIN), text.find(MARK_END)
    if i >= 0 and j > i:
        rest = text[j + len(MARK_END):].lstrip("\n")
        text = text[:i] + block + ("\n" + rest if rest else "")
    else:
        text = block
    with open(path, "w") as f:
        f.write(text)


# --------------------------------------------------------------------------
# main


def build(args):
    """cargo build --release the binaries this run uses (a no-op when up to date)."""
    bins = ["delay-relay"]
    if args.rportd == default_bin("rportd"):
        bins.append("rportd")
    if args.rport == default_bin("rport"):
        bins.append("rport")
    argv = ["cargo", "build", "--release", "-q"]
    for b in bins:
        argv += ["--bin", b]
    log("building: " + " ".join(argv))
    try:
        out = subprocess.run(argv, cwd=REPO, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        sys.exit(f"build failed: {e}")
    if out.returncode != 0:
        sys.exit("build failed (use --no-build to run with the binaries already in target/release)")


def collect_versions(args, tools):
    """One clean "name version" string per tool."""
    def first(argv, pattern=None):
        text = tool_output(argv)
        if pattern:
            m = re.search(pattern, text)
            return m.group(1) if m else "?"
        return text.splitlines()[0] if text else "?"

    if args.rportd == default_bin("rportd") and args.rport == default_bin("rport"):
        git = first(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
        if tool_output(["git", "-C", REPO, "status", "--porcelain", "--", "crates", "Cargo.toml", "Cargo.lock"]):
            git += " with uncommitted changes in crates/"
        built = f"release build of git {git}"
    else:
        built = f"binaries {args.rportd}, {args.rport}"
    out = [f"{first([args.rportd, '--version'])} and {first([args.rport, '--version'])} ({built})",
           first(["rustc", "--version"])]
    if args.rport_before:
        out.insert(1, f"rport before: binaries in {args.rport_before}")
    if tools["rathole"]:
        out.append("rathole " + first([tools["rathole"], "--version"], r"Build Version:\s*(\S+)"))
    if tools["bore"]:
        out.append(first([tools["bore"], "--version"]).replace("bore-cli", "bore"))
    if tools["ssh"]:
        out.append(first([tools["ssh"], "-V"]).split(",")[0])
    if tools["openssl"]:
        out.append(first([tools["openssl"], "version"]).split(" (")[0])
    out.append("iperf " + first([tools["iperf3"], "--version"], r"iperf (\S+)"))
    out.append("wrk " + first([tools["wrk"], "-v"], r"wrk (\S+)"))
    out.append("nginx " + first([tools["nginx"], "-v"], r"nginx/(\S+)"))
    out.append("Python " + platform.python_version())
    return out


def default_bin(name):
    return os.path.join(REPO, "target", "release", name)


def raise_nofile():
    """Enough file descriptors for 1,000 held connections, here and in every child."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=3, help="length of each measurement (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--only", metavar="SETUPS",
                    help=f"comma-separated subset of {','.join(ORDER)} (rport is always included)")
    ap.add_argument("--metrics", metavar="GROUPS", help=f"comma-separated subset of {','.join(GROUPS)}")
    ap.add_argument("--rportd", default=default_bin("rportd"))
    ap.add_argument("--rport", default=default_bin("rport"))
    ap.add_argument("--relay", default=default_bin("delay-relay"))
    ap.add_argument("--rport-before", metavar="DIR",
                    help="also run setup `before`: the rportd and rport binaries in DIR (an earlier "
                         "release build), for the ratio of this build to that one")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build first")
    ap.add_argument("--markdown-out", metavar="FILE",
                    help="write the results there, between the markers if the file has them "
                         "(default: docs/benchmarks.md on a run of every setup and metric)")
    ap.add_argument("--no-markdown", action="store_true", help="write no file, only print")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs) after the run")
    args = ap.parse_args()
    if not 1 <= args.seconds <= 600:
        ap.error("--seconds must be 1..600")
    if not 1 <= args.rounds <= 50:
        ap.error("--rounds must be 1..50")
    wanted = ORDER
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        bad = [s for s in wanted if s not in ORDER]
        if bad:
            ap.error(f"--only: unknown setup(s) {bad}; choose from {ORDER}")
        wanted = [s for s in ORDER if s in wanted or s == "rport"]
    if args.rport_before and "before" not in wanted:
        wanted = [s for s in ORDER if s in wanted or s == "before"]
    if not args.rport_before:
        wanted = [s for s in wanted if s != "before"]
    groups = GROUPS
    if args.metrics:
        groups = [g.strip() for g in args.metrics.split(",") if g.strip()]
        bad = [g for g in groups if g not in GROUPS]
        if bad:
            ap.error(f"--metrics: unknown group(s) {bad}; choose from {GROUPS}")
        groups = [g for g in GROUPS if g in groups]
    markdown_out = args.markdown_out
    if markdown_out is None and not args.only and not args.metrics:
        markdown_out = DOC
    if args.no_markdown:
        markdown_out = None

    started = time.monotonic()
    load_start = os.getloadavg()[0]
    if not args.no_build:
        build(args)
    nofile = raise_nofile()
    if nofile < HOLD_CONNECTIONS * 3 and "mem" in groups:
        log(f"warning: only {nofile} file descriptors; the 1,000-connection test may fail")

    tools = {n: find_tool(n) for n in ("iperf3", "wrk", "nginx", "openssl", "rathole", "bore",
                                       "ssh", "sshd", "ssh-keygen")}
    missing = [n for n in ("iperf3", "wrk", "nginx") if not tools[n]]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)} (run bash bench/setup.sh)")
    bins = [args.rportd, args.rport] + ([args.relay] if "hl" in groups else [])
    if args.rport_before:
        bins += [os.path.join(args.rport_before, b) for b in ("rportd", "rport")]
    for b in bins:
        if not (os.path.isfile(b) and os.access(b, os.X_OK)):
            sys.exit(f"binary not found: {b} (cargo build --release --bin rportd --bin rport --bin delay-relay)")

    skipped = {}
    need = {"rathole-tls": ["rathole", "openssl"], "rathole-tcp": ["rathole"], "bore": ["bore"],
            "ssh": ["ssh", "sshd", "ssh-keygen"]}
    for s, names in need.items():
        if s in wanted:
            lacking = [n for n in names if not tools[n]]
            if lacking:
                skipped[s] = f"{', '.join(lacking)} not installed (bash bench/setup.sh)"

    versions = collect_versions(args, tools)

    tmpdir = tempfile.mkdtemp(prefix="rport-bench-")
    procs = Procs(tmpdir)
    ok = False
    try:
        http_port = start_nginx(procs, tools["nginx"], tmpdir)

        def targets_for(s):
            return {"tcp": start_iperf(procs, tools["iperf3"], f"iperf3-for-{s}"), "http": http_port}

        endpoints = {}
        results = {}
        failures = {}
        wrk_errors = {}

        def record(setup, metric, value, err=None):
            results.setdefault(setup, {}).setdefault(metric, []).append(value)
            if err:
                failures.setdefault(setup, []).append(f"{metric}: {err}")

        starters = {
            "direct": lambda t: dict(t),
            "rport": lambda t: start_rport(procs, tmpdir, args.rportd, args.rport, t),
            "before": lambda t: start_rport(procs, tmpdir, os.path.join(args.rport_before, "rportd"),
                                            os.path.join(args.rport_before, "rport"), t, name="before"),
            "rathole-tls": lambda t: start_rathole(procs, tmpdir, tools["rathole"], t, "rathole-tls", "tls",
                                                   tools["openssl"]),
            "rathole-tcp": lambda t: start_rathole(procs, tmpdir, tools["rathole"], t, "rathole-tcp", "tcp"),
            "bore": lambda t: start_bore(procs, tmpdir, tools["bore"], t),
            "ssh": lambda t: start_ssh(procs, tmpdir, tools["sshd"], tools["ssh"], tools["ssh-keygen"], t),
        }
        for s in wanted:
            if s in skipped:
                continue
            try:
                endpoints[s] = starters[s](targets_for(s))
                if s != "direct" and "idle" in groups:
                    time.sleep(1.5)  # connected, no traffic yet
                    for name in ROLES[s][0] + ROLES[s][1]:
                        procs.check_alive(name)
                    record(s, "idle", role_rss(procs, s, "agent"))
                    record(s, "idle_srv", role_rss(procs, s, "server"))
                wait_forwarding(s, tools["iperf3"], endpoints[s]["tcp"], endpoints[s]["http"])
            except (SkipSetup, RuntimeError, OSError) as e:
                if s in ("direct", "rport"):
                    raise
                log(f"{s}: skipped: {e}")
                skipped[s] = str(e).splitlines()[0]
                endpoints.pop(s, None)
                results.pop(s, None)
                procs.stop_prefix(s)
        setups = [s for s in ORDER if s in endpoints]

        hl = None
        if "hl" in groups:
            hl = {"results": {}, "rtt": "?"}
            raw_port = start_relay(procs, args.relay, "hl-raw-relay",
                                   start_iperf(procs, tools["iperf3"], "iperf3-for-hl-raw"), HL_DELAY_MS)
            http_relay = start_relay(procs, args.relay, "hl-relay-http", http_port, HL_DELAY_MS)
            rtt = relay_rtt_ms(http_relay)
            hl["rtt"] = "n/a" if rtt is None else f"{rtt:.1f} ms"
            procs.stop_prefix("hl-relay-http")
            hl_endpoints = {"hl-raw": raw_port}

            def hl_targets(name):
                return {"tcp": start_iperf(procs, tools["iperf3"], f"iperf3-for-{name}")}

            def via(name):
                return lambda port: start_relay(procs, args.relay, f"{name}-relay", port, HL_DELAY_MS)

            hl_starters = {
                "hl-rport": lambda: start_rport(procs, tmpdir, args.rportd, args.rport, hl_targets("hl-rport"),
                                                name="hl-rport", agent_via=via("hl-rport")),
                # the peers whose tunnels are encrypted, for comparison (bore's control port
                # is fixed and taken by the bore setup above)
                "hl-rathole-tls": lambda: start_rathole(procs, tmpdir, tools["rathole"], hl_targets("hl-rathole-tls"),
                                                        "hl-rathole-tls", "tls", tools["openssl"],
                                                        server_via=via("hl-rathole-tls")),
                "hl-ssh": lambda: start_ssh(procs, tmpdir, tools["sshd"], tools["ssh"], tools["ssh-keygen"],
                                            hl_targets("hl-ssh"), name="hl-ssh", server_via=via("hl-ssh")),
            }
            for k, starter in hl_starters.items():
                if k[3:] not in setups:
                    continue
                try:
                    hl_endpoints[k] = starter()["tcp"]
                except (SkipSetup, RuntimeError, OSError) as e:
                    if k == "hl-rport":
                        raise
                    log(f"{k}: skipped: {e}")
                    skipped[k] = str(e).splitlines()[0]
                    procs.stop_prefix(k)
            for k, port in list(hl_endpoints.items()):
                try:
                    wait_forwarding(k, tools["iperf3"], port, None)
                except RuntimeError as e:
                    if k in ("hl-raw", "hl-rport"):
                        raise
                    log(f"{k}: skipped: {e}")
                    skipped[k] = str(e).splitlines()[0]
                    hl_endpoints.pop(k)
                    procs.stop_prefix(k)

        per_meas = {"tcp1": 2 * (args.seconds + 1), "tcp4": args.seconds + 1, "rps": args.seconds + 0.3,
                    "lat": args.seconds + 0.3, "cps": args.seconds + 1.5, "mem": 6, "idle": 0}
        est = args.rounds * sum(per_meas.get(g, 0) * (len(setups) - (g == "mem")) for g in groups)
        if hl:
            est += args.rounds * len(hl_endpoints) * (args.seconds + 1.5)
        log(f"setups: {', '.join(setups)}; metrics: {', '.join(groups)}; "
            f"measuring for about {est / 60:.1f} minutes")

        wrk = tools["wrk"]
        RETRIES.clear()
        slow = {}  # iperf3 runs that took far longer than asked: the transfer stalled
        for r in range(args.rounds):
            log(f"--- round {r + 1} of {args.rounds}")
            for g in groups:
                if g == "idle":
                    continue
                if g == "hl":
                    for k, port in hl_endpoints.items():
                        t0 = time.monotonic()
                        bps, err = run_iperf(tools["iperf3"], port, args.seconds)
                        took = time.monotonic() - t0
                        if took > args.seconds + 3 and not retried_since(t0):
                            slow.setdefault(k, []).append(f"round {r + 1}: {took:.0f} s for a {args.seconds} s test"
                                                          + (f", {bps / 1e9:.2f} Gbit/s" if bps else ""))
                        hl["results"].setdefault(k, []).append(bps)
                        if err:
                            failures.setdefault(k, []).append(f"hl: {err}")
                        log(f"round {r + 1} {k:12s} hl    " + (f"{bps / 1e9:.2f} Gbit/s" if bps else f"FAILED: {err}"))
                    continue
                for s in setups:
                    ep = endpoints[s]
                    pids = setup_pids(procs, s)
                    if g in ("tcp1", "tcp4"):
                        runs = ((("tcp1", ()), ("tcp1r", ("-R",))) if g == "tcp1" else (("tcp4", ("-P", "4")),))
                        for m, extra in runs:
                            ends = [procs.pid(f"iperf3-for-{s}")]
                            cpu0, ends0, kids0 = tree_cpu_seconds(pids), tree_cpu_seconds(ends), children_cpu()
                            t0 = time.monotonic()
                            bps, err = run_iperf(tools["iperf3"], ep["tcp"], args.seconds, extra)
                            took = time.monotonic() - t0
                            if took > args.seconds + 3 and not retried_since(t0):
                                slow.setdefault(s, []).append(f"round {r + 1} {m}: {took:.0f} s for a {args.seconds} s test"
                                                              + (f", {bps / 1e9:.2f} Gbit/s" if bps else ""))
                            cpu = tree_cpu_seconds(pids) - cpu0
                            ends_cpu = tree_cpu_seconds(ends) - ends0 + children_cpu() - kids0
                            record(s, m, bps, err)
                            gb = LAST_BYTES[0] / 1e9
                            per_gb = cpu / gb if bps and pids else None
                            if s != "direct":
                                record(s, f"cpu_{m}", per_gb)
                            record(s, f"cpu_ends_{m}", ends_cpu / gb if bps else None)
                            log(f"round {r + 1} {s:12s} {m:5s} "
                                + (f"{bps / 1e9:.2f} Gbit/s" if bps else f"FAILED: {err}")
                                + (f", tunnel CPU {per_gb:.2f} s/GB" if per_gb is not None else ""))
                    elif g in ("rps", "lat", "cps"):
                        kw = {"rps": dict(threads=2, conns=64), "lat": dict(threads=1, conns=1, latency=True),
                              "cps": dict(threads=2, conns=16, close=True)}[g]
                        cpu0 = tree_cpu_seconds(pids)
                        out, err, errs = run_wrk(wrk, ep["http"], args.seconds, **kw)
                        cpu = tree_cpu_seconds(pids) - cpu0
                        per_req = cpu * 1e6 / out["requests"] if out and out["requests"] and pids else None
                        wrk_errors[s] = wrk_errors.get(s, 0) + errs
                        if g == "lat":
                            record(s, "p50", out and out["p50"], err)
                            record(s, "p99", out and out["p99"])
                            msg = f"p50 {out['p50']:.0f} µs, p99 {out['p99']:.0f} µs" if out else f"FAILED: {err}"
                        else:
                            record(s, g, out and out["rps"], err)
                            msg = f"{out['rps']:.0f}/s" if out else f"FAILED: {err}"
                        if s != "direct":
                            record(s, f"cpu_{g}", per_req)
                        if per_req is not None:
                            msg += f", tunnel CPU {per_req:.1f} µs each"
                        log(f"round {r + 1} {s:12s} {g:5s} {msg}" + (f" ({errs} errors)" if errs else ""))
                    elif g == "mem":
                        if s == "direct":
                            continue
                        socks, err = hold_connections(ep["http"], HOLD_CONNECTIONS)
                        try:
                            if err:
                                record(s, "rss_srv", None, err)
                                record(s, "rss_agent", None)
                                log(f"round {r + 1} {s:12s} mem   FAILED: {err}")
                            else:
                                time.sleep(1.0)
                                srv, agent = role_rss(procs, s, "server"), role_rss(procs, s, "agent")
                                record(s, "rss_srv", srv)
                                record(s, "rss_agent", agent)
                                log(f"round {r + 1} {s:12s} mem   server {srv:.1f} MiB, agent {agent:.1f} MiB "
                                    f"({HOLD_CONNECTIONS} connections open)")
                        finally:
                            close_all(socks)
                        time.sleep(1.0)  # let the tunnel close them before the next one
            # a forwarder that died mid-run makes its numbers meaningless: say so
            for name, p, _ in procs.items:
                if p.poll() is not None:
                    log(f"warning: {name} exited with {p.returncode} during the run")

        if "idle" in groups:
            time.sleep(2.0)
            for s in setups:
                if s != "direct":
                    record(s, "idle_after", role_rss(procs, s, "agent"))

        ctx = {
            "results": results, "setups": setups, "args": args, "groups": groups, "hl": hl,
            "skipped": {s: skipped[s] for s in ORDER if s in skipped}, "failures": failures,
            "wrk_errors": wrk_errors, "versions": versions, "retries": list(RETRIES), "slow": slow,
            "command": "python3 bench/run.py" + "".join(f" {a}" for a in sys.argv[1:]),
            "elapsed": time.monotonic() - started,
            "load": (load_start, os.getloadavg()[0]),
        }
        section = render(ctx)
        print(section, end="")
        if markdown_out:
            write_markdown(markdown_out, section)
            log(f"wrote {markdown_out}")
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
