#!/usr/bin/env python3
"""Scale benchmark: many agents on one rportd (issue #3, "Scale").

For each fleet size N it starts a fresh rportd (auth_file with one credential per agent,
everything on 127.0.0.1, free ports) and `rport-loadgen` with N real agent sessions, then
measures:

- rportd RSS and CPU seconds once all N are connected, and its idle CPU use;
- p50/p99 of `GET /api/v1/clients?page[limit]=100`;
- p50/p99 of creating and of deleting tunnels (each one to a TCP echo listener this script
  runs, checked with a round trip through the tunnel), and RSS with them open;
- after SIGKILL and a restart of rportd with the same config and data dir: the time until
  all N are connected again, the peak RSS and the CPU seconds of that reconnection.

With `--cluster K` (issue #16) it starts a throwaway PostgreSQL (initdb in a temp dir, a free
loopback port, as `nobody` when run as root), K rportd nodes on it and K rport-loadgen
processes (loadgen k's agents start on node k, the other nodes their fallback servers), and
measures each node's RSS at rest, `GET clients` p50/p99 on every node, tunnel creation on
the agent's own node and through another node (forwarded), the time until a SIGKILLed
node's agents are all connected elsewhere, and PostgreSQL's CPU and connections at rest.

It builds nothing: run `cargo build --release -p rport-cli -p rport-loadgen` first.
Python 3 standard library only. Every wait is bounded; only processes this script started
are signalled, by their PID.

    python3 bench/scale.py --agents 1000,5000,10000 --markdown-out docs/scale.md
    python3 bench/scale.py --cluster 3 --agents 10000 --markdown-out docs/scale.md
"""

import argparse
import base64
import datetime
import http.client
import json
import math
import os
import platform
import resource
import secrets
import shlex
import shutil
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
RESULTS_START = "<!-- scale.py results: start -->"
RESULTS_END = "<!-- scale.py results: end -->"
CLUSTER_START = "<!-- scale.py cluster results: start -->"
CLUSTER_END = "<!-- scale.py cluster results: end -->"

TARGET_RSS_MIB = 300
TARGET_LIST_P99_MS = 100
TARGET_TUNNEL_P50_MS = 10
TARGET_RECONNECT_S = 60


def log(message):
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- processes and /proc


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def proc_status(pid):
    """VmRSS and VmHWM in bytes (0 if the process is gone)."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return values


def rss(pid):
    return proc_status(pid)["VmRSS"]


def cpu_seconds(pid):
    """utime + stime of the process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return 0.0


def stop(proc, name, grace=10.0):
    """SIGTERM, bounded wait, then SIGKILL; only the process we started, by its PID."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {proc.pid}) did not stop in {grace}s; killing it")
        proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log(f"{name} (pid {proc.pid}) still alive after SIGKILL")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_check(sock, message, what):
    """Sends `message` through a tunnel to the echo listener and checks it comes back."""
    sock.sendall(message)
    received = b""
    while len(received) < len(message):
        chunk = sock.recv(len(message) - len(received))
        if not chunk:
            break
        received += chunk
    if received != message:
        raise RuntimeError(f"{what} did not echo: {received!r}")


def port_is_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def tunnel_port_range(count):
    """A port range for tunnels below the ephemeral range, so that the agents' own
    connections cannot take its ports."""
    low = 32768
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    size = max(1000, 2 * count)
    start = 20000 if 20000 + size < low else 1025
    return start, start + size - 1


# ---------------------------------------------------------------- HTTP


class Api:
    def __init__(self, port, user, password):
        self.port = port
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}
        self.conn = None

    def _connection(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return self.conn

    def request(self, method, path, fresh=False, timeout=30):
        """(status, parsed JSON or None, seconds). Reuses one keep-alive connection."""
        if fresh:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        else:
            conn = self._connection()
        started = time.perf_counter()
        try:
            conn.request(method, path, headers=self.headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
        except (OSError, http.client.HTTPException):
            conn.close()
            if not fresh:
                self.conn = None
            raise
        finally:
            if fresh:
                conn.close()
        parsed = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        return response.status, parsed, elapsed

    def connected(self):
        """clients_connected from /api/v1/status, or None when the API does not answer."""
        try:
            status, body, elapsed = self.request("GET", "/api/v1/status", fresh=True, timeout=5)
        except (OSError, http.client.HTTPException):
            return None, None
        if status != 200 or not body:
            return None, elapsed
        return body.get("data", {}).get("clients_connected"), elapsed

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    # Nearest rank: the smallest value with at least p% of the values at or below it.
    index = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


# ---------------------------------------------------------------- echo target


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(60)
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                self.request.sendall(data)
        except OSError:
            return


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


# ---------------------------------------------------------------- one fleet size


class Run:
    def __init__(self, args, count, tmp):
        self.args = args
        self.count = count
        self.tmp = tmp
        self.bin = Path(args.bin_dir)
        self.rportd = None
        self.loadgen = None
        self.api = None
        self.results = {"agents": count}
        self.data_dir = tmp / "data"
        self.config = tmp / "rportd.toml"
        self.auth_file = tmp / "auth.json"
        self.log_files = []

    def open_log(self, name):
        handle = open(self.tmp / name, "ab")
        self.log_files.append(handle)
        return handle

    def write_config(self):
        self.agent_port = free_port()
        self.api_port = free_port()
        self.api_password = secrets.token_hex(12)
        self.tunnel_range = tunnel_port_range(self.args.tunnels)
        lines = [
            "[server]",
            f'address = "127.0.0.1:{self.agent_port}"',
            f'data_dir = "{self.data_dir}"',
            f'auth_file = "{self.auth_file}"',
            f'used_ports = ["{self.tunnel_range[0]}-{self.tunnel_range[1]}"]',
        ]
        if self.args.max_concurrent_handshakes:
            lines.append(f"max_concurrent_handshakes = {self.args.max_concurrent_handshakes}")
        lines += [
            "",
            "[api]",
            f'address = "127.0.0.1:{self.api_port}"',
            f'auth = "admin:{self.api_password}"',
            "",
            "[logging]",
            'log_level = "warn"',
            f'log_file = "{self.tmp / "rportd.log"}"',
            "",
        ]
        self.config.write_text("\n".join(lines))

    def start_rportd(self):
        out = self.open_log("rportd.out")
        self.rportd = subprocess.Popen(
            [str(self.bin / "rportd"), "-c", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=raise_nofile,
        )
        self.api = Api(self.api_port, "admin", self.api_password)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.rportd.poll() is not None:
                raise RuntimeError(f"rportd exited with {self.rportd.returncode}; see {self.tmp}/rportd.out")
            connected, _ = self.api.connected()
            if connected is not None:
                return
            time.sleep(0.1)
        raise RuntimeError("rportd's API did not answer within 30 s")

    def fingerprint(self):
        return (self.data_dir / "rportd-fingerprint.txt").read_text().strip()

    def start_loadgen(self):
        out = self.open_log("loadgen.out")
        err = self.open_log("loadgen.log")
        self.loadgen_command = [
            str(self.bin / "rport-loadgen"),
            "--server", f"127.0.0.1:{self.agent_port}",
            "--fingerprint", self.fingerprint(),
            "--count", str(self.count),
            "--ramp", str(self.args.ramp),
            "--keep-alive", self.args.keep_alive,
            "--max-retry-interval", self.args.max_retry_interval,
            "--log-level", "error",
            "--status-interval", "1s",
        ]
        self.loadgen = subprocess.Popen(
            self.loadgen_command,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=raise_nofile,
        )

    def wait_all_connected(self, timeout, sample_rss=False):
        """Seconds until /status reports all agents connected, plus the slowest /status
        answer and the peak RSS seen meanwhile."""
        started = time.monotonic()
        deadline = started + timeout
        slowest = 0.0
        peak = 0
        last_report = started
        connected = None
        while time.monotonic() < deadline:
            if self.rportd.poll() is not None:
                raise RuntimeError(f"rportd died (exit {self.rportd.returncode}); see {self.tmp}")
            if self.loadgen.poll() is not None:
                raise RuntimeError(f"rport-loadgen died (exit {self.loadgen.returncode}); see {self.tmp}")
            connected, elapsed = self.api.connected()
            if elapsed is not None:
                slowest = max(slowest, elapsed)
            if sample_rss:
                peak = max(peak, rss(self.rportd.pid))
            if connected == self.count:
                return time.monotonic() - started, slowest, peak, connected
            now = time.monotonic()
            if now - last_report >= 5:
                log(f"  {connected} of {self.count} connected after {now - started:.0f}s")
                last_report = now
            time.sleep(0.2)
        return None, slowest, peak, connected

    def measure_rest(self):
        time.sleep(self.args.settle)
        pid = self.rportd.pid
        cpu_before = cpu_seconds(pid)
        window = self.args.idle_window
        time.sleep(window)
        cpu_after = cpu_seconds(pid)
        status = proc_status(pid)
        r = self.results
        r["rss_rest"] = status["VmRSS"]
        r["hwm_connect"] = status["VmHWM"]
        r["idle_cpu_pct"] = 100 * (cpu_after - cpu_before) / window
        r["loadgen_rss"] = rss(self.loadgen.pid)

    def measure_list(self):
        path = "/api/v1/clients?page%5Blimit%5D=100"
        times = []
        cpu_before = cpu_seconds(self.rportd.pid)
        for _ in range(self.args.api_requests):
            status, body, elapsed = self.api.request("GET", path)
            if status != 200 or not body or len(body.get("data", [])) != 100:
                raise RuntimeError(f"GET clients: HTTP {status}, {str(body)[:200]}")
            times.append(elapsed)
        r = self.results
        r["list_p50"] = percentile(times, 50)
        r["list_p99"] = percentile(times, 99)
        r["list_cpu_ms"] = 1000 * (cpu_seconds(self.rportd.pid) - cpu_before) / len(times)

    def measure_tunnels(self):
        echo = EchoServer(("127.0.0.1", 0), EchoHandler)
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        echo_port = echo.server_address[1]
        wanted = self.args.tunnels
        ports = [p for p in range(self.tunnel_range[0], self.tunnel_range[1] + 1) if port_is_free(p)]
        if len(ports) < wanted:
            raise RuntimeError(f"only {len(ports)} free ports in {self.tunnel_range}")
        pid = self.rportd.pid
        clients = [f"load-{n:05d}" for n in range(1, wanted + 1)]
        created = []
        create_times = []
        time.sleep(1)
        rss_before = rss(pid)
        cpu_before = cpu_seconds(pid)
        try:
            for client, port in zip(clients, ports):
                path = (f"/api/v1/clients/{client}/tunnels"
                        f"?remote=127.0.0.1:{echo_port}&local=127.0.0.1:{port}")
                status, body, elapsed = self.api.request("PUT", path)
                if status != 200 or not body or "data" not in body:
                    raise RuntimeError(f"PUT tunnel for {client}: HTTP {status}, {str(body)[:200]}")
                create_times.append(elapsed)
                created.append((client, body["data"]["id"], int(body["data"]["lport"])))
            time.sleep(1)
            r = self.results
            r["rss_tunnels"] = rss(pid)
            r["cpu_per_tunnel_ms"] = 1000 * (cpu_seconds(pid) - cpu_before) / len(created)
            # One live connection through every tunnel: the agent must answer the stream
            # open by connecting to the echo listener.
            sockets = []
            try:
                for i, (_, _, lport) in enumerate(created):
                    s = socket.create_connection(("127.0.0.1", lport), timeout=15)
                    sockets.append(s)
                    echo_check(s, f"hello through tunnel {i}\n".encode(), f"tunnel {i} on port {lport}")
                time.sleep(1)
                r["rss_tunnel_conns"] = rss(pid)
                window = self.args.idle_window / 2
                cpu_idle_before = cpu_seconds(pid)
                time.sleep(window)
                r["idle_cpu_tunnels_pct"] = 100 * (cpu_seconds(pid) - cpu_idle_before) / window
            finally:
                for s in sockets:
                    s.close()
            time.sleep(1)
            delete_times = []
            while created:
                client, tunnel_id, _ = created.pop()
                status, body, elapsed = self.api.request(
                    "DELETE", f"/api/v1/clients/{client}/tunnels/{tunnel_id}")
                if status != 204:
                    raise RuntimeError(f"DELETE tunnel {tunnel_id}: HTTP {status}, {str(body)[:200]}")
                delete_times.append(elapsed)
            r["create_p50"] = percentile(create_times, 50)
            r["create_p99"] = percentile(create_times, 99)
            r["delete_p50"] = percentile(delete_times, 50)
            r["delete_p99"] = percentile(delete_times, 99)
            r["tunnel_count"] = len(create_times)
            r["rss_before_tunnels"] = rss_before
            r["rss_conn_per"] = (r["rss_tunnel_conns"] - r["rss_tunnels"]) / len(create_times)
        finally:
            for client, tunnel_id, _ in created:
                try:
                    self.api.request("DELETE", f"/api/v1/clients/{client}/tunnels/{tunnel_id}")
                except (OSError, http.client.HTTPException):
                    pass
            echo.shutdown()
            echo.server_close()

    def kill_and_restart(self):
        self.api.close()
        counts = self.loadgen_counts()
        if counts:
            self.results["sessions_before_kill"] = counts["sessions"]
            self.results["failed_before_kill"] = counts["failed_attempts"]
        log(f"  SIGKILL rportd (pid {self.rportd.pid})")
        self.rportd.kill()
        self.rportd.wait(timeout=10)
        killed_at = time.monotonic()
        # Agents notice at once (the kernel resets their connections) and back off.
        time.sleep(self.args.down_time)
        self.start_rportd()
        restarted_at = time.monotonic()
        took, slowest, peak, connected = self.wait_all_connected(
            self.args.reconnect_timeout, sample_rss=True)
        pid = self.rportd.pid
        status = proc_status(pid)
        r = self.results
        r["reconnect_s"] = took
        r["reconnect_connected"] = connected
        r["reconnect_from_kill_s"] = None if took is None else restarted_at - killed_at + took
        r["reconnect_peak_rss"] = max(peak, status["VmHWM"])
        r["reconnect_cpu"] = cpu_seconds(pid)
        r["reconnect_status_max"] = slowest
        time.sleep(self.args.settle)
        r["rss_after_reconnect"] = rss(pid)
        counts = self.loadgen_counts()
        if counts and "sessions_before_kill" in r:
            r["reconnect_failed_attempts"] = counts["failed_attempts"] - r["failed_before_kill"]
            r["reconnect_sessions"] = counts["sessions"] - r["sessions_before_kill"]

    def loadgen_counts(self):
        return last_loadgen_counts(self.tmp / "loadgen.out")

    def execute(self):
        args = self.args
        subprocess.run(
            [str(self.bin / "rport-loadgen"), "--count", str(self.count),
             "--write-auth-file", str(self.auth_file)],
            check=True, stdout=subprocess.DEVNULL, timeout=60)
        self.write_config()
        self.start_rportd()
        r = self.results
        r["rss_empty"] = rss(self.rportd.pid)
        log(f"  rportd pid {self.rportd.pid}, agents on 127.0.0.1:{self.agent_port}, "
            f"API on 127.0.0.1:{self.api_port}; RSS without agents {r['rss_empty'] / MIB:.1f} MiB")
        self.start_loadgen()
        bound = self.count / max(args.ramp, 1) + 60
        took, _, _, connected = self.wait_all_connected(bound)
        if took is None:
            raise RuntimeError(f"only {connected} of {self.count} agents connected within {bound:.0f}s")
        r["connect_s"] = took
        r["cpu_connect"] = cpu_seconds(self.rportd.pid)
        r["loadgen_cpu"] = cpu_seconds(self.loadgen.pid)
        log(f"  all {self.count} connected after {took:.1f}s")
        self.measure_rest()
        log(f"  at rest: RSS {r['rss_rest'] / MIB:.1f} MiB, idle CPU {r['idle_cpu_pct']:.1f}%")
        self.measure_list()
        log(f"  GET clients p50 {r['list_p50'] * 1000:.2f} ms, p99 {r['list_p99'] * 1000:.2f} ms")
        self.measure_tunnels()
        log(f"  tunnels: create p50 {r['create_p50'] * 1000:.2f} ms, "
            f"delete p50 {r['delete_p50'] * 1000:.2f} ms, RSS with {r['tunnel_count']} open "
            f"{r['rss_tunnels'] / MIB:.1f} MiB")
        self.kill_and_restart()
        if r["reconnect_s"] is None:
            log(f"  only {r['reconnect_connected']} of {self.count} back within "
                f"{args.reconnect_timeout}s")
        else:
            log(f"  all back {r['reconnect_s']:.1f}s after the restart, peak RSS "
                f"{r['reconnect_peak_rss'] / MIB:.1f} MiB")
        return r

    def cleanup(self):
        if self.api is not None:
            self.api.close()
        stop(self.loadgen, "rport-loadgen")
        stop(self.rportd, "rportd")
        for handle in self.log_files:
            handle.close()


# ---------------------------------------------------------------- throwaway PostgreSQL

# Kills the postmaster ($1) and removes its dir ($2) once its standard input closes, that is
# when this script has ended however it ended (as crates/test-postgres does).
PG_WATCHDOG = r"""trap '' INT TERM HUP
read -r _ || true
kill -KILL "$1" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
rm -rf -- "$2"
"""


def newest_postgres_bin():
    """Debian's newest /usr/lib/postgresql/<major>/bin with initdb and postgres."""
    found = []
    for entry in Path("/usr/lib/postgresql").glob("*/bin"):
        if entry.parent.name.isdigit() and all((entry / p).is_file() for p in ("initdb", "postgres")):
            found.append((int(entry.parent.name), entry))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): "
                           "apt-get install postgresql")
    return max(found)[1]


class TempPostgres:
    """initdb into a fresh temp dir and a postmaster on a free loopback port, as `nobody`
    when this runs as root (initdb refuses root). Never the machine's own cluster."""

    SUPERUSER = "postgres"
    ROLE = "rport"

    def __init__(self, keep=False):
        self.bin = newest_postgres_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="rport-scale-postgres-"))
        self.keep = keep
        self.unprivileged = os.geteuid() == 0
        self.superuser_password = secrets.token_hex(16)
        self.password = secrets.token_hex(16)
        self.postmaster = None
        self.watchdog = None
        self.port = 0
        self.psql_bin = self.bin / "psql" if (self.bin / "psql").is_file() else Path("psql")

    def command(self, program, *args):
        command = [str(self.bin / program), *map(str, args)]
        if self.unprivileged:
            command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"] + command
        return command

    def log(self):
        return open(self.dir / "postgres.log", "ab")

    def start(self):
        (self.dir / "socket").mkdir()
        password_file = self.dir / "superuser-password"
        password_file.write_text(self.superuser_password)
        if self.unprivileged:
            subprocess.run(["chown", "-R", "nobody:nogroup", str(self.dir)], check=True, timeout=30)
        env = dict(os.environ, LC_ALL="C")
        env.pop("PGDATA", None)
        with self.log() as log_file:
            done = subprocess.run(
                self.command("initdb", "-D", self.dir / "data", "-U", self.SUPERUSER,
                             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                             "--locale=C", f"--pwfile={password_file}", "--no-sync"),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                timeout=120)
        password_file.unlink(missing_ok=True)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}); see {self.dir}/postgres.log")
        for _ in range(5):
            self.port = free_port()
            if self.launch(env):
                break
        else:
            raise RuntimeError("PostgreSQL found no free port in 5 attempts")
        self.sql(f"CREATE ROLE {self.ROLE} LOGIN PASSWORD '{self.password}'")
        self.sql(f"CREATE DATABASE {self.ROLE} OWNER {self.ROLE}")

    def launch(self, env):
        """Starts the postmaster; False when another process took the port first."""
        log_start = (self.dir / "postgres.log").stat().st_size
        with self.log() as log_file:
            # PostgreSQL's defaults otherwise (shared_buffers 128MB, max_connections 100),
            # fsync and synchronous_commit on: what a deployment would have.
            self.postmaster = subprocess.Popen(
                self.command("postgres", "-D", self.dir / "data", "-h", "127.0.0.1",
                             "-p", self.port, "-k", self.dir / "socket"),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        self.watchdog = subprocess.Popen(
            ["sh", "-c", PG_WATCHDOG, "rport-scale-postgres-watchdog", str(self.postmaster.pid),
             "/nonexistent" if self.keep else str(self.dir)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.postmaster.poll() is not None:
                self.end_watchdog()
                with open(self.dir / "postgres.log", "rb") as f:
                    f.seek(log_start)
                    text = f.read().decode(errors="replace")
                if "could not bind" in text or "Address already in use" in text:
                    return False
                raise RuntimeError(f"postgres exited at start; see {self.dir}/postgres.log")
            try:
                self.sql("SELECT 1", timeout=5)
                return True
            except RuntimeError:
                time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not accept connections within 60 s")

    def sql(self, statement, timeout=30):
        """One statement as the superuser through psql, over TCP; its output, unaligned."""
        env = dict(os.environ, PGPASSWORD=self.superuser_password, PGCONNECT_TIMEOUT="5")
        try:
            done = subprocess.run(
                [str(self.psql_bin), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                 "-h", "127.0.0.1", "-p", str(self.port), "-U", self.SUPERUSER, "-d", "postgres",
                 "-c", statement],
                capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"psql timed out after {timeout}s") from err
        if done.returncode != 0:
            # Not the statement: it may hold a password.
            raise RuntimeError(f"psql failed: {done.stderr.strip()[:300]}")
        return done.stdout.strip()

    def url(self):
        return f"postgres://{self.ROLE}:{self.password}@127.0.0.1:{self.port}/{self.ROLE}"

    def pids(self):
        """The postmaster and its children (the backends and background workers)."""
        if self.postmaster is None or self.postmaster.poll() is not None:
            return []
        pids = [self.postmaster.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(self.postmaster.pid):
                pids.append(int(stat.parent.name))
        return pids

    def cpu_seconds(self):
        """CPU seconds of every PostgreSQL process so far: the live ones, and through the
        postmaster's cutime/cstime the backends that have exited."""
        total = 0.0
        for pid in self.pids():
            total += cpu_seconds(pid)
        if self.postmaster is not None:
            try:
                fields = Path(f"/proc/{self.postmaster.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[13]) + int(fields[14])) / CLK_TCK
            except (OSError, IndexError, ValueError):
                pass
        return total

    def pss(self):
        """Proportional set size summed over its processes: shared buffers counted once."""
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
            except (OSError, ValueError, IndexError):
                pass
        return total

    def connections(self):
        """(client backends other than this query's, every row of pg_stat_activity)."""
        row = self.sql("SELECT count(*) FILTER (WHERE backend_type = 'client backend' "
                       "AND pid <> pg_backend_pid()), count(*) FROM pg_stat_activity")
        clients, everything = row.split("|")
        return int(clients), int(everything)

    def end_watchdog(self):
        if self.watchdog is not None and self.watchdog.poll() is None:
            self.watchdog.kill()
            try:
                self.watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.watchdog = None

    def stop(self, keep=False):
        """Fast shutdown (SIGINT), bounded; the watchdog first, so that it never signals a
        PID that may have been reused. Its dir (data and log) stays with `keep`."""
        self.end_watchdog()
        if self.postmaster is not None and self.postmaster.poll() is None:
            self.postmaster.send_signal(signal.SIGINT)
            try:
                self.postmaster.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log(f"postgres (pid {self.postmaster.pid}) did not stop in 60 s; killing it")
                self.postmaster.kill()
                self.postmaster.wait(timeout=10)
        if keep or self.keep:
            log(f"  kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- a cluster on one PostgreSQL


class ClusterRun:
    """`--cluster K`: K rportd nodes on one throwaway PostgreSQL, N agents spread over them
    by K rport-loadgen processes (loadgen k's agents, load<k>-NNNNN, start on node k and
    have the other nodes as fallback servers)."""

    def __init__(self, args, count, tmp):
        self.args = args
        self.count = count
        self.size = args.cluster
        self.tmp = tmp
        self.bin = Path(args.bin_dir)
        self.postgres = None
        self.nodes = []
        self.loadgens = []
        self.log_files = []
        self.shares = [count // self.size + (1 if k < count % self.size else 0) for k in range(self.size)]
        self.results = {"agents": count, "nodes": self.size, "shares": self.shares}
        self.auth_file = tmp / "auth.json"

    def open_log(self, name):
        handle = open(self.tmp / name, "ab")
        self.log_files.append(handle)
        return handle

    def prefix(self, k):
        return f"load{k}-"

    def agent_id(self, k, n):
        return f"{self.prefix(k)}{n:05d}"

    def write_auth_file(self):
        merged = {}
        for k, share in enumerate(self.shares):
            part = self.tmp / f"auth-{k}.json"
            subprocess.run(
                [str(self.bin / "rport-loadgen"), "--count", str(share), "--id-prefix", self.prefix(k),
                 "--write-auth-file", str(part)],
                check=True, stdout=subprocess.DEVNULL, timeout=60)
            merged.update(json.loads(part.read_text()))
            part.unlink()
        fd = os.open(self.auth_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(merged, f)

    def start_nodes(self):
        low, high = tunnel_port_range(self.args.tunnels)
        width = (high - low + 1)
        ranges = [(low + k * width, low + (k + 1) * width - 1) for k in range(self.size)]
        ephemeral = 32768
        try:
            ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        if ranges[-1][1] >= ephemeral and low > 1024:
            raise RuntimeError(f"the nodes' tunnel ports {ranges} reach the ephemeral range")
        password = secrets.token_hex(12)
        for k in range(self.size):
            node = {"index": k, "agent_port": free_port(), "api_port": free_port(),
                    "peer_port": free_port(), "range": ranges[k], "data_dir": self.tmp / f"node{k}"}
            node["data_dir"].mkdir()
            config = self.tmp / f"node{k}.toml"
            lines = [
                "[server]",
                f'address = "127.0.0.1:{node["agent_port"]}"',
                f'url = "http://127.0.0.1:{node["agent_port"]}"',
                f'data_dir = "{node["data_dir"]}"',
                f'auth_file = "{self.auth_file}"',
                f'used_ports = ["{ranges[k][0]}-{ranges[k][1]}"]',
            ]
            if self.args.max_concurrent_handshakes:
                lines.append(f"max_concurrent_handshakes = {self.args.max_concurrent_handshakes}")
            lines += [
                "", "[api]", f'address = "127.0.0.1:{node["api_port"]}"', f'auth = "admin:{password}"',
                "", "[database]", f'url = "{self.postgres.url()}"',
                "", "[cluster]", f'peer_address = "127.0.0.1:{node["peer_port"]}"',
                "", "[logging]", f'log_level = "{self.args.log_level}"', f'log_file = "{self.tmp / f"node{k}.log"}"', "",
            ]
            config.write_text("\n".join(lines))
            config.chmod(0o600)
            out = self.open_log(f"node{k}.out")
            # One after another: the first makes the cluster's key pair in the database.
            node["proc"] = subprocess.Popen(
                [str(self.bin / "rportd"), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=raise_nofile)
            node["api"] = Api(node["api_port"], "admin", password)
            self.nodes.append(node)
            deadline = time.monotonic() + 60
            while True:
                if node["proc"].poll() is not None:
                    raise RuntimeError(f"node {k} exited with {node['proc'].returncode}; see {self.tmp}/node{k}.out")
                if node["api"].connected()[0] is not None:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {k}'s API did not answer within 60 s")
                time.sleep(0.1)
            node["rss_empty"] = rss(node["proc"].pid)
        fingerprints = {(n["data_dir"] / "rportd-fingerprint.txt").read_text().strip() for n in self.nodes}
        if len(fingerprints) != 1:
            raise RuntimeError(f"the nodes pin different keys: {fingerprints}")
        self.fingerprint = fingerprints.pop()
        # Forwarding needs every node to know the others alive and reachable.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(self.sees_all_alive(n) for n in self.nodes):
                return
            time.sleep(0.25)
        raise RuntimeError("the nodes did not see each other alive and reachable within 60 s")

    def cluster_status(self, node):
        try:
            status, body, _ = node["api"].request("GET", "/api/v1/status", fresh=True, timeout=5)
        except (OSError, http.client.HTTPException):
            return None
        if status != 200 or not body:
            return None
        return body.get("data", {})

    def sees_all_alive(self, node):
        data = self.cluster_status(node) or {}
        nodes = (data.get("cluster") or {}).get("nodes") or []
        return len(nodes) == self.size and all(n.get("alive") and n.get("reachable") for n in nodes)

    def start_loadgens(self):
        ramp = max(1, self.args.ramp // self.size)
        for k, share in enumerate(self.shares):
            fallbacks = []
            for other in range(self.size):
                if other != k:
                    fallbacks += ["--fallback-server", f"127.0.0.1:{self.nodes[other]['agent_port']}"]
            command = [
                str(self.bin / "rport-loadgen"),
                "--server", f"127.0.0.1:{self.nodes[k]['agent_port']}", *fallbacks,
                "--fingerprint", self.fingerprint,
                "--count", str(share), "--id-prefix", self.prefix(k),
                "--ramp", str(ramp),
                "--keep-alive", self.args.keep_alive,
                "--max-retry-interval", self.args.max_retry_interval,
                "--log-level", "error", "--status-interval", "1s",
            ]
            self.loadgens.append(subprocess.Popen(
                command, stdout=self.open_log(f"loadgen{k}.out"), stderr=self.open_log(f"loadgen{k}.log"),
                stdin=subprocess.DEVNULL, preexec_fn=raise_nofile))

    def loadgen_counts(self, k):
        return last_loadgen_counts(self.tmp / f"loadgen{k}.out")

    def check_alive(self, skip=None):
        for node in self.nodes:
            if node["index"] != skip and node["proc"].poll() is not None:
                raise RuntimeError(f"node {node['index']} died (exit {node['proc'].returncode}); see {self.tmp}")
        for k, loadgen in enumerate(self.loadgens):
            if loadgen.poll() is not None:
                raise RuntimeError(f"loadgen {k} died (exit {loadgen.returncode}); see {self.tmp}")
        if self.postgres.postmaster.poll() is not None:
            raise RuntimeError(f"PostgreSQL died; see {self.postgres.dir}/postgres.log")

    def wait_all_connected(self, timeout):
        """Until every node's /status counts all N connected and every loadgen has all its
        sessions up."""
        started = time.monotonic()
        last_report = started
        while time.monotonic() < started + timeout:
            self.check_alive()
            seen = [n["api"].connected()[0] for n in self.nodes]
            counts = [self.loadgen_counts(k) or {} for k in range(self.size)]
            up = [c.get("connected", 0) for c in counts]
            if all(s == self.count for s in seen) and up == self.shares:
                return time.monotonic() - started
            if time.monotonic() - last_report >= 5:
                log(f"  nodes see {seen} connected, loadgens hold {up}, after {time.monotonic() - started:.0f}s")
                last_report = time.monotonic()
            time.sleep(0.25)
        return None

    def measure_rest(self):
        r = self.results
        time.sleep(self.args.settle)
        window = self.args.idle_window
        before = [cpu_seconds(n["proc"].pid) for n in self.nodes]
        pg_before = self.postgres.cpu_seconds()
        time.sleep(window)
        r["node_idle_cpu_pct"] = [100 * (cpu_seconds(n["proc"].pid) - b) / window
                                  for n, b in zip(self.nodes, before)]
        pg_after = self.postgres.cpu_seconds()
        r["pg_idle_cpu_pct"] = 100 * (pg_after - pg_before) / window
        r["pg_cpu_total"] = pg_after
        r["pg_connections"], r["pg_activity_rows"] = self.postgres.connections()
        r["pg_processes"] = len(self.postgres.pids())
        r["pg_pss"] = self.postgres.pss()
        r["node_rss"] = [rss(n["proc"].pid) for n in self.nodes]
        r["node_rss_empty"] = [n["rss_empty"] for n in self.nodes]
        r["node_cpu_connect"] = before
        r["loadgen_rss"] = [rss(p.pid) for p in self.loadgens]

    def measure_list(self):
        path = "/api/v1/clients?page%5Blimit%5D=100"
        p50, p99 = [], []
        for node in self.nodes:
            times = []
            for _ in range(self.args.api_requests):
                status, body, elapsed = node["api"].request("GET", path)
                if status != 200 or not body or len(body.get("data", [])) != 100:
                    raise RuntimeError(f"GET clients on node {node['index']}: HTTP {status}, {str(body)[:200]}")
                times.append(elapsed)
            p50.append(percentile(times, 50))
            p99.append(percentile(times, 99))
        self.results["list_p50"] = p50
        self.results["list_p99"] = p99

    def holder_of(self, port):
        for node in self.nodes:
            if node["range"][0] <= port <= node["range"][1]:
                return node["index"]
        return None

    def measure_tunnels(self):
        """`--tunnels` tunnels created on the holder node itself (the baseline) and as many
        created through another node (forwarded), interleaved; each checked with an echo
        round trip, then deleted through the node that created it."""
        echo = EchoServer(("127.0.0.1", 0), EchoHandler)
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        echo_port = echo.server_address[1]
        wanted = self.args.tunnels
        per_node = -(-wanted // self.size)
        if 2 * per_node > min(self.shares):
            raise RuntimeError(f"{wanted} tunnels of each kind need {2 * per_node} agents per node")
        times = {"local": [], "cross": []}
        deletes = {"local": [], "cross": []}
        created = []
        try:
            for i in range(wanted):
                holder = i % self.size
                for kind in ("local", "cross"):
                    number = 1 + i // self.size + (per_node if kind == "cross" else 0)
                    agent = self.agent_id(holder, number)
                    via = holder if kind == "local" else (holder + 1 + (i // self.size) % (self.size - 1)) % self.size
                    api = self.nodes[via]["api"]
                    status, body, elapsed = api.request(
                        "PUT", f"/api/v1/clients/{agent}/tunnels?remote=127.0.0.1:{echo_port}")
                    if status != 200 or not body or "data" not in body:
                        raise RuntimeError(f"PUT tunnel for {agent} via node {via}: HTTP {status}, {str(body)[:200]}")
                    lport = int(body["data"]["lport"])
                    created.append((via, agent, body["data"]["id"], kind))
                    if self.holder_of(lport) != holder:
                        raise RuntimeError(f"tunnel for {agent} (node {holder}) opened on port {lport}, "
                                           f"node {self.holder_of(lport)}'s range")
                    times[kind].append(elapsed)
                    with socket.create_connection(("127.0.0.1", lport), timeout=15) as s:
                        echo_check(s, f"{kind} tunnel {i} via node {via}\n".encode(),
                                   f"tunnel for {agent} on port {lport}")
            while created:
                via, agent, tunnel_id, kind = created.pop()
                status, body, elapsed = self.nodes[via]["api"].request(
                    "DELETE", f"/api/v1/clients/{agent}/tunnels/{tunnel_id}")
                if status != 204:
                    raise RuntimeError(f"DELETE tunnel {tunnel_id} via node {via}: HTTP {status}, {str(body)[:200]}")
                deletes[kind].append(elapsed)
        finally:
            for via, agent, tunnel_id, _ in created:
                try:
                    self.nodes[via]["api"].request("DELETE", f"/api/v1/clients/{agent}/tunnels/{tunnel_id}")
                except (OSError, http.client.HTTPException):
                    pass
            echo.shutdown()
            echo.server_close()
        r = self.results
        for kind in ("local", "cross"):
            r[f"{kind}_create_p50"] = percentile(times[kind], 50)
            r[f"{kind}_create_p99"] = percentile(times[kind], 99)
            r[f"{kind}_delete_p50"] = percentile(deletes[kind], 50)
            r[f"{kind}_delete_p99"] = percentile(deletes[kind], 99)
        r["tunnel_count"] = wanted

    def back_elsewhere(self, survivor, victim, since):
        """How many of the victim's agents the survivor lists connected since `since` (a
        session begun after the kill can only be on a surviving node)."""
        back = 0
        offset = 0
        while True:
            path = (f"/api/v1/clients?filter%5Bid%5D={self.prefix(victim)}*"
                    f"&filter%5Bconnection_state%5D=connected&fields%5Bclients%5D=id,connected_at"
                    f"&page%5Blimit%5D=500&page%5Boffset%5D={offset}")
            status, body, _ = survivor["api"].request("GET", path, timeout=10)
            if status != 200 or not body:
                raise RuntimeError(f"GET clients on node {survivor['index']}: HTTP {status}")
            page = body.get("data", [])
            for client in page:
                at = client.get("connected_at")
                if at and parse_time(at) >= since:
                    back += 1
            offset += len(page)
            if not page or offset >= body.get("meta", {}).get("count", 0):
                return back

    def kill_one_node(self):
        r = self.results
        victim = self.size - 1
        node = self.nodes[victim]
        survivor = self.nodes[0]
        share = self.shares[victim]
        before = self.loadgen_counts(victim) or {}
        log(f"  SIGKILL node {victim} (pid {node['proc'].pid}), holding {share} agents")
        killed_wall = time.time()
        killed_at = time.monotonic()
        node["proc"].kill()
        node["proc"].wait(timeout=10)
        deadline = killed_at + self.args.reconnect_timeout
        r["failover_dead_seen_s"] = None
        r["failover_agents_s"] = None
        r["failover_s"] = None
        peak = [0] * self.size
        back = 0
        last_report = killed_at
        while time.monotonic() < deadline:
            self.check_alive(skip=victim)
            now = time.monotonic() - killed_at
            for k, n in enumerate(self.nodes):
                if k != victim:
                    peak[k] = max(peak[k], rss(n["proc"].pid))
            if r["failover_dead_seen_s"] is None:
                nodes = ((self.cluster_status(survivor) or {}).get("cluster") or {}).get("nodes") or []
                if any(not n.get("alive") for n in nodes):
                    r["failover_dead_seen_s"] = now
            counts = self.loadgen_counts(victim) or {}
            if r["failover_agents_s"] is None and counts.get("connected") == share \
                    and counts.get("sessions", 0) - before.get("sessions", 0) >= share:
                r["failover_agents_s"] = now
            if r["failover_s"] is None:
                back = self.back_elsewhere(survivor, victim, killed_wall)
                if back == share:
                    r["failover_s"] = time.monotonic() - killed_at
            # The loadgen prints its count once a second: wait for that too, a little.
            if r["failover_s"] is not None and (r["failover_agents_s"] is not None
                                                or now > r["failover_s"] + 5):
                break
            if time.monotonic() - last_report >= 5:
                log(f"  {back} of {share} back on other nodes after {now:.0f}s "
                    f"(loadgen: {counts.get('connected')} connected)")
                last_report = time.monotonic()
            time.sleep(0.5)
        r["failover_back"] = back
        counts = self.loadgen_counts(victim) or {}
        r["failover_failed_attempts"] = counts.get("failed_attempts", 0) - before.get("failed_attempts", 0)
        r["failover_peak_rss"] = [p if k != victim else None for k, p in enumerate(peak)]
        time.sleep(self.args.settle)
        r["rss_after_failover"] = [rss(n["proc"].pid) if k != victim else None
                                   for k, n in enumerate(self.nodes)]
        r["connected_after_failover"] = [n["api"].connected()[0] if k != victim else None
                                         for k, n in enumerate(self.nodes)]

    def execute(self):
        args = self.args
        self.write_auth_file()
        self.postgres = TempPostgres(keep=args.keep_tmp)
        self.postgres.start()
        log(f"  PostgreSQL ({self.postgres.bin.parent.name}) pid {self.postgres.postmaster.pid} "
            f"on 127.0.0.1:{self.postgres.port}, dir {self.postgres.dir}")
        self.start_nodes()
        for n in self.nodes:
            log(f"  node {n['index']}: pid {n['proc'].pid}, agents 127.0.0.1:{n['agent_port']}, "
                f"API 127.0.0.1:{n['api_port']}, peer 127.0.0.1:{n['peer_port']}, ports {n['range']}")
        r = self.results
        r["pg_cpu_start"] = self.postgres.cpu_seconds()
        self.start_loadgens()
        bound = self.count / max(args.ramp, 1) + 120
        took = self.wait_all_connected(bound)
        if took is None:
            raise RuntimeError(f"not all {self.count} agents connected within {bound:.0f}s")
        r["connect_s"] = took
        r["pg_cpu_connect"] = self.postgres.cpu_seconds() - r["pg_cpu_start"]
        log(f"  all {self.count} connected after {took:.1f}s ({self.shares} per node)")
        self.measure_rest()
        log(f"  at rest: node RSS {[round(v / MIB, 1) for v in r['node_rss']]} MiB; PostgreSQL "
            f"{r['pg_connections']} connections, {r['pg_idle_cpu_pct']:.1f}% CPU idle, "
            f"{r['pg_cpu_total']:.1f} CPU s so far")
        self.measure_list()
        log(f"  GET clients p50 {[round(v * 1000, 2) for v in r['list_p50']]} ms, "
            f"p99 {[round(v * 1000, 2) for v in r['list_p99']]} ms")
        self.measure_tunnels()
        log(f"  tunnel create on the holder p50/p99 {r['local_create_p50'] * 1000:.2f}/"
            f"{r['local_create_p99'] * 1000:.2f} ms, through another node "
            f"{r['cross_create_p50'] * 1000:.2f}/{r['cross_create_p99'] * 1000:.2f} ms")
        self.kill_one_node()
        if r["failover_s"] is None:
            log(f"  only {r['failover_back']} of {self.shares[-1]} back within {args.reconnect_timeout}s")
        else:
            log(f"  all {self.shares[-1]} back on the other nodes {r['failover_s']:.1f}s after the kill")
        return r

    def cleanup(self):
        for node in self.nodes:
            node["api"].close()
        for k, loadgen in enumerate(self.loadgens):
            stop(loadgen, f"rport-loadgen {k}")
        for node in self.nodes:
            stop(node["proc"], f"rportd node {node['index']}")
        if self.postgres is not None:
            self.postgres.stop(keep="error" in self.results)
        for handle in self.log_files:
            handle.close()


def parse_time(text):
    """Seconds since the epoch of an RFC 3339 time as the API writes it."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def last_loadgen_counts(path):
    """A loadgen's last status line as numbers (started, connected, sessions, ...)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if " connected=" in line:
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            try:
                return {k: int(v) for k, v in fields.items() if k != "t"}
            except ValueError:
                return None
    return None


# ---------------------------------------------------------------- reporting


def fmt_ms(seconds):
    return "–" if seconds is None else f"{seconds * 1000:.2f}"


def fmt_s(seconds):
    return "not reached" if seconds is None else f"{seconds:.1f}"


def fmt_mib(value):
    return "–" if value is None else f"{value / MIB:.1f}"


def fmt_kib(value):
    return "–" if value is None else f"{value / 1024:.1f}"


ROWS = [
    # (label, formatter, target text, pass check or None)
    ("time until all connected (ramp), s", lambda r: fmt_s(r.get("connect_s")), "", None),
    ("rportd RSS, no agents, MiB", lambda r: fmt_mib(r.get("rss_empty")), "", None),
    ("rportd RSS, all connected, at rest, MiB", lambda r: fmt_mib(r.get("rss_rest")),
     f"≤ {TARGET_RSS_MIB}", lambda r: r["rss_rest"] <= TARGET_RSS_MIB * MIB),
    ("rportd RSS per agent, KiB", lambda r: fmt_kib((r["rss_rest"] - r["rss_empty"]) / r["agents"]), "", None),
    ("rportd peak RSS while connecting (VmHWM), MiB", lambda r: fmt_mib(r.get("hwm_connect")), "", None),
    ("rportd CPU to connect all, s", lambda r: f"{r['cpu_connect']:.1f}", "", None),
    ("rportd CPU at rest, % of one core", lambda r: f"{r['idle_cpu_pct']:.1f}", "", None),
    ("GET clients?page[limit]=100 p50, ms", lambda r: fmt_ms(r.get("list_p50")), "", None),
    ("GET clients?page[limit]=100 p99, ms", lambda r: fmt_ms(r.get("list_p99")),
     f"< {TARGET_LIST_P99_MS}", lambda r: r["list_p99"] * 1000 < TARGET_LIST_P99_MS),
    ("rportd CPU per GET clients, ms", lambda r: f"{r['list_cpu_ms']:.2f}", "", None),
    ("create tunnel p50, ms", lambda r: fmt_ms(r.get("create_p50")),
     f"< {TARGET_TUNNEL_P50_MS}", lambda r: r["create_p50"] * 1000 < TARGET_TUNNEL_P50_MS),
    ("create tunnel p99, ms", lambda r: fmt_ms(r.get("create_p99")), "", None),
    ("delete tunnel p50, ms", lambda r: fmt_ms(r.get("delete_p50")),
     f"< {TARGET_TUNNEL_P50_MS}", lambda r: r["delete_p50"] * 1000 < TARGET_TUNNEL_P50_MS),
    ("delete tunnel p99, ms", lambda r: fmt_ms(r.get("delete_p99")), "", None),
    ("rportd RSS with the tunnels open, MiB", lambda r: fmt_mib(r.get("rss_tunnels")), "", None),
    ("  … change from opening the tunnels, MiB",
     lambda r: fmt_mib(r["rss_tunnels"] - r["rss_before_tunnels"]), "", None),
    ("  … with one connection through each, MiB", lambda r: fmt_mib(r.get("rss_tunnel_conns")), "", None),
    ("rportd RSS per tunnel connection, KiB", lambda r: fmt_kib(r.get("rss_conn_per")), "", None),
    ("rportd CPU at rest with them open, % of one core",
     lambda r: f"{r['idle_cpu_tunnels_pct']:.1f}", "", None),
    ("rportd CPU per tunnel create, ms", lambda r: f"{r['cpu_per_tunnel_ms']:.2f}", "", None),
    ("after SIGKILL + restart: all back after, s", lambda r: fmt_s(r.get("reconnect_s")),
     f"≤ {TARGET_RECONNECT_S}",
     lambda r: r["reconnect_s"] is not None and r["reconnect_s"] <= TARGET_RECONNECT_S),
    ("  … counted from the kill, s", lambda r: fmt_s(r.get("reconnect_from_kill_s")), "", None),
    ("  … peak RSS during reconnection, MiB", lambda r: fmt_mib(r.get("reconnect_peak_rss")), "", None),
    ("  … rportd CPU for the reconnection, s", lambda r: f"{r['reconnect_cpu']:.1f}", "", None),
    ("  … agent attempts that failed (server down, queue full), count",
     lambda r: str(r["reconnect_failed_attempts"]), "", None),
    ("  … sessions established, count", lambda r: str(r["reconnect_sessions"]), "", None),
    ("  … slowest GET /status meanwhile, ms", lambda r: fmt_ms(r.get("reconnect_status_max")), "", None),
    ("  … RSS once settled, MiB", lambda r: fmt_mib(r.get("rss_after_reconnect")), "", None),
    ("rport-loadgen RSS, MiB", lambda r: fmt_mib(r.get("loadgen_rss")), "", None),
    ("rport-loadgen CPU to connect all, s", lambda r: f"{r['loadgen_cpu']:.1f}", "", None),
]


def cell(row, result):
    _, formatter, _, check = row
    if "error" in result and result.get("rss_rest") is None:
        return "failed"
    try:
        text = formatter(result)
    except (KeyError, TypeError, ZeroDivisionError):
        return "–"
    if check is not None:
        try:
            text += " ✓" if check(result) else " ✗"
        except (KeyError, TypeError):
            pass
    return text


def table(results, markdown):
    header = ["metric"] + [f"{r['agents']:,} agents" for r in results] + ["target"]
    body = [[row[0]] + [cell(row, r) for r in results] + [row[2]] for row in ROWS]
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["--:"] * len(results) + [":-:"]) + "|"]
        lines += ["| " + " | ".join(line) + " |" for line in body]
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    out = []
    for line in [header] + body:
        out.append("  ".join(
            text.ljust(widths[i]) if i == 0 else text.rjust(widths[i]) for i, text in enumerate(line)))
    return "\n".join(out)



def per_node(values, formatter, victim=None):
    cells = []
    for k, value in enumerate(values or []):
        if value is None:
            cells.append("killed" if k == victim else "–")
        else:
            cells.append(formatter(value))
    return cells


def cluster_tables(r, markdown):
    """Two tables for one cluster run: per node, and for the cluster as a whole."""
    size = r["nodes"]
    victim = size - 1
    node_rows = [
        ("agents started on it (its loadgen's)", [f"{v:,}" for v in r["shares"]]),
        ("RSS, no agents, MiB", per_node(r.get("node_rss_empty"), fmt_mib)),
        ("RSS, all connected, at rest, MiB", per_node(r.get("node_rss"), fmt_mib)),
        ("CPU at rest, % of one core", per_node(r.get("node_idle_cpu_pct"), lambda v: f"{v:.1f}")),
        ("CPU to connect all, s", per_node(r.get("node_cpu_connect"), lambda v: f"{v:.1f}")),
        ("GET clients?page[limit]=100 p50, ms", per_node(r.get("list_p50"), fmt_ms)),
        ("GET clients?page[limit]=100 p99, ms", per_node(r.get("list_p99"), fmt_ms)),
        (f"after node {victim} was killed: peak RSS, MiB", per_node(r.get("failover_peak_rss"), fmt_mib, victim)),
        ("  … RSS once settled, MiB", per_node(r.get("rss_after_failover"), fmt_mib, victim)),
        ("  … connected agents it counts", per_node(r.get("connected_after_failover"), lambda v: f"{v:,}", victim)),
        ("rport-loadgen RSS, MiB", per_node(r.get("loadgen_rss"), fmt_mib)),
    ]
    n = r.get("tunnel_count", "?")
    whole_rows = [
        ("time until all connected (ramp), s", fmt_s(r.get("connect_s"))),
        (f"create tunnel on the holder node p50 / p99, ms ({n})",
         f"{fmt_ms(r.get('local_create_p50'))} / {fmt_ms(r.get('local_create_p99'))}"),
        (f"create tunnel through another node p50 / p99, ms ({n})",
         f"{fmt_ms(r.get('cross_create_p50'))} / {fmt_ms(r.get('cross_create_p99'))}"),
        ("delete tunnel on the holder node p50 / p99, ms",
         f"{fmt_ms(r.get('local_delete_p50'))} / {fmt_ms(r.get('local_delete_p99'))}"),
        ("delete tunnel through another node p50 / p99, ms",
         f"{fmt_ms(r.get('cross_delete_p50'))} / {fmt_ms(r.get('cross_delete_p99'))}"),
        (f"SIGKILL node {victim}: a survivor shows it dead after, s", fmt_s(r.get("failover_dead_seen_s"))),
        ("  … its agents all connected again (loadgen's count) after, s", fmt_s(r.get("failover_agents_s"))),
        ("  … all listed connected since the kill by node 0's API after, s", fmt_s(r.get("failover_s"))),
        ("  … agent attempts that failed meanwhile", str(r.get("failover_failed_attempts", "–"))),
        ("PostgreSQL client connections at rest", str(r.get("pg_connections", "–"))),
        ("  … rows in pg_stat_activity / processes", f"{r.get('pg_activity_rows', '–')} / {r.get('pg_processes', '–')}"),
        ("PostgreSQL CPU at rest, % of one core",
         "–" if r.get("pg_idle_cpu_pct") is None else f"{r['pg_idle_cpu_pct']:.1f}"),
        ("PostgreSQL CPU to connect all agents, s",
         "–" if r.get("pg_cpu_connect") is None else f"{r['pg_cpu_connect']:.1f}"),
        ("PostgreSQL CPU from its start until at rest, s",
         "–" if r.get("pg_cpu_total") is None else f"{r['pg_cpu_total']:.1f}"),
        ("PostgreSQL memory at rest (PSS summed over its processes), MiB", fmt_mib(r.get("pg_pss"))),
    ]
    header = ["metric"] + [f"node {k}" for k in range(size)]
    first = [header] + [[label] + cells for label, cells in node_rows]
    second = [["metric", f"{r['agents']:,} agents, {size} nodes"]] + [[a, b] for a, b in whole_rows]
    return render(first, markdown) + "\n\n" + render(second, markdown)


def render(rows, markdown):
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(["---"] + ["--:"] * (len(rows[0]) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(text.ljust(widths[i]) if i == 0 else text.rjust(widths[i])
                               for i, text in enumerate(row)) for row in rows)


def cluster_markdown_section(results, args, facts, command, postgres_version):
    lines = [
        CLUSTER_START,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"- Machine: {facts['cpu']}, {facts['memory']} RAM, {facts['kernel']}; PostgreSQL, "
        f"the {args.cluster} rportd nodes and the {args.cluster} rport-loadgen processes all share it.",
        f"- Build: {facts['rustc']}, release profile, from {facts['commit']}.",
        f"- PostgreSQL: {postgres_version}, a throwaway server (initdb in a temp dir, run as "
        f"nobody when root, a free port on 127.0.0.1), its defaults (fsync and synchronous_commit "
        f"on, shared_buffers 128MB).",
        f"- Open files: {facts['nofile']}.",
        f"- Agents: loadgen k starts its share on node k at {max(1, args.ramp // args.cluster)}/s with the "
        f"other nodes as fallback servers; keep_alive {args.keep_alive}, max_retry_interval "
        f"{args.max_retry_interval}, plain passwords in one auth_file all nodes read.",
        f"- {args.api_requests} sequential GETs per node on one keep-alive connection. {args.tunnels} "
        f"tunnels created on the node holding the agent (the baseline) and {args.tunnels} through "
        f"another node (forwarded over the peer channel), interleaved, one agent each, each checked "
        f"with an echo round trip; the server picks the port.",
        f"- The last node is SIGKILLed; its agents count as back once node 0's API lists them "
        f"connected with `connected_at` after the kill (bounded by {args.reconnect_timeout:g} s).",
        "",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"- {r['agents']} agents: run failed: {r['error']}")
            lines.append("")
        lines += [cluster_tables(r, markdown=True), ""]
    lines += [CLUSTER_END]
    return "\n".join(lines)


def machine_facts():
    def first(path, key):
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    def run(command):
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=10,
                                  cwd=REPO).stdout.strip() or "?"
        except (OSError, subprocess.SubprocessError):
            return "?"

    mem_kib = first("/proc/meminfo", "MemTotal").split()[0]
    return {
        "cpu": f"{os.cpu_count()} × {first('/proc/cpuinfo', 'model name')}",
        "memory": f"{int(mem_kib) // 1024:,} MiB" if mem_kib.isdigit() else "?",
        "kernel": f"{platform.system()} {platform.release()}",
        "rustc": run(["rustc", "--version"]),
        "commit": "commit {} (git describe --always --dirty)".format(
            run(["git", "describe", "--always", "--dirty"])),
        "nofile": "soft {} / hard {}".format(*resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


def markdown_section(results, args, facts, command):
    failures = [r for r in results if "error" in r]
    lines = [
        RESULTS_START,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"- Machine: {facts['cpu']}, {facts['memory']} RAM, {facts['kernel']}; "
        f"rportd and rport-loadgen share it.",
        f"- Build: {facts['rustc']}, release profile, from {facts['commit']}.",
        f"- Open files: {facts['nofile']}.",
        f"- Agents: ramp {args.ramp}/s, keep_alive {args.keep_alive}, max_retry_interval "
        f"{args.max_retry_interval} (the backoff cap), plain passwords in auth_file; "
        f"rportd: max_concurrent_handshakes "
        f"{args.max_concurrent_handshakes or '64 (default)'}, log_level warn.",
        f"- {args.api_requests} sequential GETs on one keep-alive connection; {args.tunnels} tunnels, "
        f"one per agent, each checked with an echo round trip; rportd down "
        f"{args.down_time:g} s between SIGKILL and restart.",
        "",
        table(results, markdown=True),
        "",
    ]
    for r in failures:
        lines.append(f"- {r['agents']} agents: run failed: {r['error']}")
    lines += ["", RESULTS_END]
    return "\n".join(lines)


def write_markdown(path, section, start=RESULTS_START, end=RESULTS_END):
    """Replaces the text between the markers; without them, appends the section."""
    path = Path(path)
    if path.exists():
        text = path.read_text()
        if start in text and end in text:
            before = text.split(start, 1)[0]
            after = text.split(end, 1)[1]
            path.write_text(before + section + after)
            return
        path.write_text(text.rstrip("\n") + "\n\n" + section + "\n")
        return
    path.write_text("# Scale: many agents on one rportd\n\n" + section + "\n")


# ---------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default="1000,5000,10000",
                        help="comma-separated fleet sizes, run one after another (default %(default)s)")
    parser.add_argument("--tunnels", type=int, default=100, help="tunnels to create and delete")
    parser.add_argument("--api-requests", type=int, default=200, help="GET clients requests to time")
    parser.add_argument("--ramp", type=int, default=500, help="agent sessions started per second")
    parser.add_argument("--keep-alive", default="60s", help="agents' keep_alive")
    parser.add_argument("--max-retry-interval", default="5s", help="cap of the agents' backoff")
    parser.add_argument("--max-concurrent-handshakes", type=int, default=0,
                        help="rportd's max_concurrent_handshakes (0: its default)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait before measuring at rest")
    parser.add_argument("--idle-window", type=float, default=10.0, help="seconds over which idle CPU is measured")
    parser.add_argument("--down-time", type=float, default=2.0, help="seconds rportd stays down after SIGKILL")
    parser.add_argument("--reconnect-timeout", type=float, default=120.0, help="bound on waiting for all to come back")
    parser.add_argument("--log-level", default="warn", help="the cluster nodes' log_level")
    parser.add_argument("--cluster", type=int, default=0,
                        help="run K rportd nodes on one throwaway PostgreSQL instead of one rportd "
                             "(0: single node, the default)")
    parser.add_argument("--bin-dir", default=str(REPO / "target" / "release"))
    parser.add_argument("--markdown-out", help="write the results (with machine facts and command) here")
    parser.add_argument("--source",
                        help="what the binaries were built from, for the report "
                             "(default: git describe --always --dirty of this checkout)")
    parser.add_argument("--json-out", help="write the raw results as JSON here")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dirs (configs, logs)")
    args = parser.parse_args()

    for binary in ("rportd", "rport-loadgen"):
        if not (Path(args.bin_dir) / binary).is_file():
            sys.exit(f"{args.bin_dir}/{binary} is missing: run "
                     "cargo build --release -p rport-cli -p rport-loadgen")
    counts = [int(c) for c in args.agents.split(",") if c.strip()]
    soft, hard = raise_nofile()
    need = max(counts) + args.tunnels * 4 + 512
    if soft < need:
        sys.exit(f"open-file limit {soft} (hard {hard}) is below the {need} the largest run needs")
    if max(counts) > 99999:
        sys.exit("the loadgen's ids have 5 digits: at most 99,999 agents")
    if args.cluster == 1 or args.cluster < 0:
        sys.exit("--cluster needs at least 2 nodes (0 runs the single-node benchmark)")

    command = "python3 bench/scale.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    # Run copies, so that a rebuild of target/release during the run changes nothing.
    snapshot = Path(tempfile.mkdtemp(prefix="rport-scale-bin-"))
    for binary in ("rportd", "rport-loadgen"):
        shutil.copy2(Path(args.bin_dir) / binary, snapshot / binary)
    args.bin_dir = str(snapshot)
    results = []
    try:
        run_all(args, counts, results)
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)

    print()
    if args.cluster:
        for r in results:
            print(cluster_tables(r, markdown=False) + "\n")
            if "error" in r:
                print(f"run failed: {r['error']}\n")
    else:
        print(table(results, markdown=False))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown_out:
        facts = machine_facts()
        if args.source:
            facts["commit"] = args.source
        if args.cluster:
            section = cluster_markdown_section(results, args, facts, command, postgres_version())
            write_markdown(args.markdown_out, section, CLUSTER_START, CLUSTER_END)
        else:
            section = markdown_section(results, args, facts, command)
            write_markdown(args.markdown_out, section)
        log(f"wrote {args.markdown_out}")
    return 1 if any("error" in r for r in results) else 0


def postgres_version():
    try:
        return subprocess.run([str(newest_postgres_bin() / "postgres"), "--version"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "?"
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return "?"


def run_all(args, counts, results):
    for count in counts:
        tmp = Path(tempfile.mkdtemp(prefix=f"rport-scale-{count}-"))
        log(f"{count} agents{f' on {args.cluster} nodes' if args.cluster else ''} (work dir {tmp})")
        run = ClusterRun(args, count, tmp) if args.cluster else Run(args, count, tmp)
        try:
            results.append(run.execute())
        except (RuntimeError, OSError, subprocess.SubprocessError, http.client.HTTPException) as err:
            log(f"  failed: {err}")
            run.results["error"] = str(err)
            results.append(run.results)
        finally:
            run.cleanup()
            if args.keep_tmp or "error" in run.results:
                log(f"  kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
