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

It builds nothing: run `cargo build --release -p rport-cli -p rport-loadgen` first.
Python 3 standard library only. Every wait is bounded; only processes this script started
are signalled, by their PID.

    python3 bench/scale.py --agents 1000,5000,10000 --markdown-out docs/scale.md
"""

import argparse
import base64
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

TARGET_RSS_MIB = 300
TARGET_LIST_P99_MS = 100
TARGET_TUNNEL_P50_MS = 10
TARGET_RECONNECT_S = 60


def log(message):
    print(f"[scale] {message}", flush=True)


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
                    message = f"hello through tunnel {i}\n".encode()
                    s.sendall(message)
                    received = b""
                    while len(received) < len(message):
                        chunk = s.recv(len(message) - len(received))
                        if not chunk:
                            break
                        received += chunk
                    if received != message:
                        raise RuntimeError(f"tunnel {i} on port {lport} did not echo: {received!r}")
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
        """The loadgen's last status line as numbers (sessions, failed_attempts, ...)."""
        try:
            lines = (self.tmp / "loadgen.out").read_text().splitlines()
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


def write_markdown(path, section):
    path = Path(path)
    if path.exists():
        text = path.read_text()
        if RESULTS_START in text and RESULTS_END in text:
            before = text.split(RESULTS_START, 1)[0]
            after = text.split(RESULTS_END, 1)[1]
            path.write_text(before + section + after)
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
    print(table(results, markdown=False))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown_out:
        facts = machine_facts()
        if args.source:
            facts["commit"] = args.source
        section = markdown_section(results, args, facts, command)
        write_markdown(args.markdown_out, section)
        log(f"wrote {args.markdown_out}")
    return 1 if any("error" in r for r in results) else 0


def run_all(args, counts, results):
    for count in counts:
        tmp = Path(tempfile.mkdtemp(prefix=f"rport-scale-{count}-"))
        log(f"{count} agents (work dir {tmp})")
        run = Run(args, count, tmp)
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
