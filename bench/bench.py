#!/usr/bin/env python3
"""The edge benchmark driver (issue 9). Run it through `bench/run`.

Starts a fixed-response backend (nginx, one worker) and a bulk backend on
core 1, then edge, HAProxy and nginx in turn on core 0 with equivalent
configs, drives the five workloads from core 1, and writes
`bench/results/<date>.md` (medians over rounds, ratios edge / peer).

Everything listens on 127.0.0.1 only. Every child is started in its own
process group and killed on exit, whatever happens.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

import handshake
import newconn

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PROXY_CPU = "0"
LOAD_CPU = "1"
HOST = "127.0.0.1"
NAME = "localhost"  # SNI / Host of the terminated routes (resolves to 127.0.0.1)
PASS_NAME = "pass.localhost"  # SNI of the passthrough route
PORT_TLS = 18443  # terminated HTTPS (edge also routes passthrough SNI here)
PORT_PASS = 18444  # HAProxy / nginx passthrough listener (mode tcp / stream)
PORT_PLAIN = 18080  # plain HTTP
PORT_BACKEND = 19080  # fixed-response backend (nginx return 200)
PORT_BULK = 19443  # passthrough bulk backend (benchtool bulk-server)
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The cipher suites every proxy is set to prefer, in this order (edge's own
# order on a CPU with AES instructions, edge-bin/src/tls_tuning.rs;
# conf/haproxy.cfg and conf/nginx.conf set the same with server preference).
SUITES = ("TLS 1.3 TLS_AES_128_GCM_SHA256, then TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256; "
          "TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256, then ECDHE-ECDSA-AES256-GCM-SHA384, "
          "ECDHE-ECDSA-CHACHA20-POLY1305")
# Proxies, backends and load generators run at nice BENCH_NICE (default -20,
# root only), in one session whose autogroup gets the same nice: with
# CONFIG_SCHED_AUTOGROUP a plain `nice` only counts inside the session, so
# both are needed for other work on a shared machine to disturb the run less.
NICE = int(os.environ.get("BENCH_NICE", "-20")) if os.geteuid() == 0 else 0
PRIO = ["nice", "-n", str(NICE)] if NICE else []
PAGE = os.sysconf("SC_PAGE_SIZE")

# ---------------------------------------------------------------- processes

_children: list[subprocess.Popen] = []


def start(name: str, argv: list[str], cpu: str, work: Path, **kw) -> subprocess.Popen:
    """Start argv pinned to `cpu` in its own process group, logging to work/name.log."""
    log = open(work / f"{name}.log", "ab")
    p = subprocess.Popen(
        [*PRIO, "taskset", "-c", cpu, *argv],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        process_group=0,
        **kw,
    )
    _children.append(p)
    return p


def stop(p: subprocess.Popen, timeout: float = 5.0) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # Whatever the leader did, nothing of the group may survive.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if p.poll() is None:
        p.wait(5)
    if p in _children:
        _children.remove(p)


def stop_all() -> None:
    for p in list(_children):
        stop(p, timeout=2.0)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {timeout}s")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def run(argv: list[str], timeout: float, cpu: str = LOAD_CPU, **kw) -> str:
    """Run a load generator pinned to `cpu`, bounded in time; return stdout."""
    r = subprocess.run(
        [*PRIO, "taskset", "-c", cpu, *argv],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        **kw,
    )
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return r.stdout


# ---------------------------------------------------------------- /proc


def tree(pid: int) -> list[int]:
    """pid and all its descendants (nginx master + worker)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def per_process_sum(pids: list[int], read) -> int:
    """Sum read(pid) over processes, skipping those that have gone."""
    total = 0
    for p in pids:
        try:
            total += read(p)
        except OSError:
            pass
    return total


def _ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (all threads)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds."""
    return per_process_sum(pids, _ticks) / CLK_TCK


def rss_bytes(pids: list[int]) -> int:
    return per_process_sum(pids, _rss)


def threads(pids: list[int]) -> int:
    return per_process_sum(pids, lambda p: len(os.listdir(f"/proc/{p}/task")))


def core_busy_seconds(core: str) -> float:
    """Non-idle time of one CPU (all processes), from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK  # minus idle, iowait
    return 0.0


# ---------------------------------------------------------------- proxies


class Proxy:
    name = "?"
    pass_port = PORT_PASS
    has_plain_proxy = True
    plain_note = ""

    def __init__(self, work: Path, cert: Path, key: Path):
        self.work, self.cert, self.key = work, cert, key
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def pids(self) -> list[int]:
        return tree(self.proc.pid) if self.proc else []

    def start(self) -> None:
        self.proc = start(self.name, self.argv(), PROXY_CPU, self.work)
        for port in (PORT_TLS, PORT_PLAIN, self.pass_port):
            wait_port(port, self.proc)
        time.sleep(0.3)  # let the worker settle (nginx forks after listening)

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)
            self.proc = None


class HAProxy(Proxy):
    name = "haproxy"
    maxconn = 10100  # set from the idle-connection count in main()

    def argv(self):
        pem = self.work / "haproxy.pem"
        pem.write_text(self.cert.read_text() + self.key.read_text())
        cfg = render("haproxy.cfg", self.work, PEM=pem, CERT=self.cert, KEY=self.key, MAXCONN=self.maxconn)
        return ["haproxy", "-db", "-f", str(cfg)]

    def version(self):
        return subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.splitlines()[0]


class Nginx(Proxy):
    name = "nginx"

    def argv(self):
        cfg = render("nginx.conf", self.work, CERT=self.cert, KEY=self.key, STREAM_MODULE=stream_module())
        return ["nginx", "-p", str(self.work), "-c", str(cfg)]

    def version(self):
        return subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()


class Edge(Proxy):
    name = "edge"
    pass_port = PORT_TLS  # one :443 for termination and passthrough

    def __init__(self, work, cert, key, binary: Path, rev: str = ""):
        super().__init__(work, cert, key)
        self.binary = binary
        self.rev = rev
        self.has_plain_proxy = False
        self.plain_note = (
            "edge has no plain-HTTP proxy listener (port 80 is ACME + redirect only, "
            "issue 7); all three proxies answer a plain-HTTP redirect to HTTPS instead"
        )

    def argv(self):
        cfg = render("edge.toml", self.work, CERT=self.cert, KEY=self.key)
        return [str(self.binary), "run", "-c", str(cfg)]

    def check(self) -> str:
        """'' when this edge build accepts the bench config, else why not."""
        if not self.binary.exists():
            return f"{self.binary} does not exist"
        cfg = render("edge.toml", self.work, CERT=self.cert, KEY=self.key)
        r = subprocess.run([str(self.binary), "check", "-c", str(cfg)], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            msg = " ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
            return f"`edge check` rejects bench/conf/edge.toml at this commit (exit {r.returncode}): {msg}"
        return ""

    def version(self):
        r = subprocess.run([str(self.binary), "--version"], capture_output=True, text=True)
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", self.rev or "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        if self.rev:
            return f"{r.stdout.strip()} (git {rev}; release profile)"
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "edge-bin", "edge-sni", "edge-balance",
             "edge-health", "edge-acme", "Cargo.toml", "Cargo.lock"],
            capture_output=True, text=True,
        ).stdout.strip()
        state = ", built from a working tree with uncommitted changes" if dirty else ""
        return f"{r.stdout.strip()} (git {rev}{state}; release profile)"


def render(template: str, work: Path, **extra) -> Path:
    """Fill bench/conf/<template>'s @KEY@ placeholders; write it to work/."""
    values = dict(
        WORK=work,
        NAME=NAME,
        PASS_NAME=PASS_NAME,
        PORT_TLS=PORT_TLS,
        PORT_PASS=PORT_PASS,
        PORT_PLAIN=PORT_PLAIN,
        PORT_BACKEND=PORT_BACKEND,
        PORT_BULK=PORT_BULK,
        **extra,
    )
    text = (BENCH / "conf" / template).read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise RuntimeError(f"{template}: unfilled placeholders {sorted(set(left))}")
    out = work / template
    out.write_text(text)
    return out


def stream_module() -> str:
    for p in ("/usr/lib/nginx/modules/ngx_stream_module.so",):
        if os.path.exists(p):
            return f"load_module {p};"
    return ""  # built in


# ---------------------------------------------------------------- workloads


def unit_to_us(v: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
    if not m:
        raise ValueError(v)
    x, u = float(m.group(1)), m.group(2)
    return x * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[u]


def wrk(url: str, secs: int, conns: int) -> dict:
    out = run(
        ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "5s", url],
        timeout=secs + 30,
    )
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return dict(
        requests=reqs,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_us=unit_to_us(lat["50"]),
        p99_us=unit_to_us(lat["99"]),
        non2xx=int(bad.group(1)) if bad else 0,
        sock_errors=sum(int(x) for x in err.groups()) if err else 0,
    )


def h2load(url: str, secs: int, conns: int, streams: int, work: Path) -> dict:
    log = work / "h2load.log"
    log.unlink(missing_ok=True)
    out = run(
        ["h2load", "-t1", f"-c{conns}", f"-m{streams}", f"-D{secs}", f"--log-file={log}", url],
        timeout=secs + 30,
    )
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    if "h2" not in (re.search(r"Application protocol: (\S+)", out) or [None, ""])[1]:
        raise RuntimeError("h2load did not negotiate h2")
    durations = []
    with open(log) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                durations.append(int(parts[2]))
    durations.sort()

    def pct(q):
        return float(durations[min(len(durations) - 1, int(q * len(durations)))]) if durations else 0.0

    return dict(
        requests=int(r.group(4)),
        rps=float(m.group(2)),
        p50_us=pct(0.50),
        p99_us=pct(0.99),
        failed=int(r.group(5)),
    )


def tlsconn(tool: Path, mode: str, secs: int, procs: int) -> dict:
    out = run([str(tool), "tlsconn", HOST, str(PORT_TLS), NAME, mode, str(secs), str(procs)], timeout=secs + 30)
    return json.loads(out.strip().splitlines()[-1])


def bulk(tool: Path, hello: Path, port: int, secs: int, conns: int) -> dict:
    out = run([str(tool), "bulk-client", HOST, str(port), str(hello), str(secs), str(conns)], timeout=secs + 30)
    return json.loads(out.strip().splitlines()[-1])


def idle(proxy: Proxy, count: int, open_timeout: int) -> dict:
    script = BENCH / "tools" / "idle_conns.py"
    # Warm-up: a few connections so lazy initialisation is not counted.
    run([sys.executable, str(script), HOST, str(PORT_TLS), NAME, "20", "0", "20"], timeout=60)
    time.sleep(0.5)
    pids = proxy.pids()
    base = rss_bytes(pids)
    p = subprocess.Popen(
        [*PRIO, "taskset", "-c", LOAD_CPU, sys.executable, str(script), HOST, str(PORT_TLS), NAME,
         str(count), str(open_timeout + 30), str(open_timeout)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        process_group=0,
    )
    _children.append(p)
    try:
        line = p.stdout.readline()
        info = json.loads(line) if line else {"open": 0, "failed": count, "first_error": "no output"}
        time.sleep(1.0)
        loaded = rss_bytes(proxy.pids())
        p.stdin.close()
        p.wait(30)
    finally:
        stop(p)
    opened = info.get("open", 0)
    return dict(
        open=opened,
        failed=info.get("failed"),
        first_error=info.get("first_error"),
        open_seconds=info.get("seconds"),
        rss_base=base,
        rss_loaded=loaded,
        bytes_per_conn=(loaded - base) / opened if opened else None,
    )


def tls_params() -> str:
    """Protocol, cipher and key exchange the proxy negotiates with OpenSSL's client."""
    try:
        r = subprocess.run(
            ["openssl", "s_client", "-brief", "-connect", f"{HOST}:{PORT_TLS}", "-servername", NAME,
             "-alpn", "h2,http/1.1"],
            input="", capture_output=True, text=True, errors="replace", timeout=10,
        )
    except subprocess.TimeoutExpired:
        return "?"
    keep = ("Protocol version", "Ciphersuite", "Peer signature type", "Server Temp Key",
            "Negotiated TLS1.3 group", "ALPN protocol")
    return "; ".join(line.strip() for line in r.stderr.splitlines() if line.startswith(keep))


def measured(proxy: Proxy, fn):
    pids = proxy.pids()
    b0, c0, t0 = core_busy_seconds(PROXY_CPU), cpu_seconds(pids), time.monotonic()
    out = fn()
    c1, t1, b1 = cpu_seconds(proxy.pids()), time.monotonic(), core_busy_seconds(PROXY_CPU)
    out["cpu_s"] = c1 - c0
    out["wall_s"] = t1 - t0
    # Time other processes took on the proxy's core (other builds on a shared
    # machine make the run noisy: this says how much).
    out["core0_other_s"] = max(0.0, (b1 - b0) - (c1 - c0))
    out["loadavg"] = os.getloadavg()[0]
    return out


def workloads(proxy: Proxy, a, tool: Path, hello: Path) -> dict:
    """The load runs of workloads 1, 2, 3 and 5, each measured (4 is `idle`)."""
    secs = a.seconds
    tls_url = f"https://{NAME}:{PORT_TLS}/"
    plain_url = f"http://{HOST}:{PORT_PLAIN}/" + ("" if proxy.has_plain_proxy and not a.plain_redirect else "redirect")
    return {
        "h1": lambda: measured(proxy, lambda: wrk(tls_url, secs, a.conns)),
        "h2": lambda: measured(proxy, lambda: h2load(tls_url, secs, a.h2_conns, a.h2_streams, proxy.work)),
        "plain": lambda: measured(proxy, lambda: wrk(plain_url, secs, a.conns)),
        "tls_new": lambda: measured(proxy, lambda: tlsconn(tool, "new", secs, a.tls_procs)),
        "tls_reuse": lambda: measured(proxy, lambda: tlsconn(tool, "reuse", secs, a.tls_procs)),
        "pass": lambda: measured(proxy, lambda: bulk(tool, hello, proxy.pass_port, secs, a.bulk_conns)),
        **handshake.workloads(proxy, a, measured, run, HOST, PORT_TLS, NAME),
        **newconn.workloads(proxy, a, measured, run, tls_url, HOST, PORT_TLS),
    }


ALL_WORKLOADS = ["idle", "h1", "h2", "plain", "tls_new", "tls_reuse", "pass", *handshake.WORKLOADS,
                 *newconn.WORKLOADS]


def one_round(proxy: Proxy, a, tool: Path, hello: Path) -> dict:
    """All five workloads against a freshly started proxy."""
    res: dict = {}
    proxy.start()
    try:
        res["threads"] = threads(proxy.pids())
        res["tls"] = tls_params()
        if "idle" in a.workloads:
            guard(res, "idle", lambda: idle(proxy, a.idle_conns, a.idle_timeout))
        for key, fn in workloads(proxy, a, tool, hello).items():
            if key in a.workloads:
                guard(res, key, fn)
        res["rss_end"] = rss_bytes(proxy.pids())
        if proxy.proc.poll() is not None:
            res["died"] = f"exited with {proxy.proc.returncode}"
    finally:
        proxy.stop()
    return res


SYSCALLS = ["read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
            "epoll_wait", "epoll_ctl", "accept4", "close", "futex", "sched_yield", "getrandom",
            "mmap", "munmap", "madvise", "brk", "splice"]


def profile(proxy: Proxy, a, tool: Path, hello: Path) -> None:
    """One workload under `perf record` (cpu-clock sampling, works without
    hardware counters); prints the hottest symbols."""
    wl = a.perf
    data = proxy.work / f"perf-{proxy.name}-{wl}.data"
    proxy.start()
    try:
        pids = ",".join(str(p) for p in proxy.pids())
        rec = subprocess.Popen(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-o", str(data), "-p", pids],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0,
        )
        events = ",".join(["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{c}" for c in SYSCALLS])
        stat = subprocess.Popen(
            ["perf", "stat", "-x", ",", "-e", events, "-p", pids],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, process_group=0,
        )
        _children.extend([rec, stat])
        time.sleep(0.5)
        res: dict = {}
        guard(res, wl, workloads(proxy, a, tool, hello)[wl])
        for p in (rec, stat):
            p.send_signal(signal.SIGINT)
        rec.wait(30)
        counts = stat.communicate(timeout=30)[1]
        for p in (rec, stat):
            _children.remove(p)
    finally:
        proxy.stop()
    r = res.get(wl, {})
    per = r.get("requests") or r.get("ok") or (r.get("bytes", 0) / 1e6) or 0
    unit = "request" if ("requests" in r or "ok" in r) else "MB"
    syscalls = []
    for line in counts.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].strip().isdigit() and per:
            syscalls.append(f"{f[2].split(':')[-1].replace('sys_enter_', ''):>16} {int(f[0]) / per:8.2f} per {unit}")
    out = ["syscalls (perf stat):", *syscalls, ""]
    for sort in ("dso", "dso,sym"):
        rep = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--stdio", "--sort", sort],
                             capture_output=True, text=True, timeout=120)
        out += [line for line in rep.stdout.splitlines() if line.strip() and not line.startswith("#")][:a.perf_top]
        out.append("")
    text = "\n".join(out)
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    Path(a.results_dir).mkdir(parents=True, exist_ok=True)
    dest = Path(a.results_dir) / f"{today}-profile-{wl}-{proxy.name}.txt"
    dest.write_text(f"# {proxy.name}, workload {wl}: {summary(wl, r) if 'error' not in r else r}\n{text}\n")
    print(f"--- {proxy.name} {wl}: where the proxy's CPU time goes ---\n{text}", flush=True)


def guard(res: dict, key: str, fn) -> None:
    try:
        res[key] = fn()
    except Exception as exc:  # noqa: BLE001 - a failed workload is reported, not fatal
        res[key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(f"    {key}: FAILED {res[key]['error']}", flush=True)
        return
    print(f"    {key}: {summary(key, res[key])}", flush=True)


def summary(key: str, r: dict) -> str:
    if key in ("h1", "h2", "plain"):
        extra = f" non2xx={r.get('non2xx', 0)}" if r.get("non2xx") else ""
        return (f"{r['rps']:.0f} req/s, {cpu_us(r, 'requests'):.1f} cpu-us/req, "
                f"p50 {r['p50_us']:.0f}us p99 {r['p99_us']:.0f}us{extra}")
    if key.startswith("tls"):
        return (f"{r['ok'] / r['elapsed']:.0f} conn/s, {cpu_us(r, 'ok'):.1f} cpu-us/conn, "
                f"resumed {r['resumed']}/{r['ok']}, errors {r['errors']}")
    if key == "pass":
        return f"{r['bytes'] / r['elapsed'] / 1e6:.0f} MB/s, {cpu_per_gb(r):.3f} cpu-s/GB"
    if key == "idle":
        bpc = r["bytes_per_conn"]
        return (f"{r['open']} open ({r['failed']} failed) in {r['open_seconds']}s, "
                f"{bpc / 1024 if bpc is not None else float('nan'):.1f} KiB/conn")
    return str(r)


def cpu_us(r: dict, count_key: str) -> float:
    n = r.get(count_key) or 0
    return r["cpu_s"] * 1e6 / n if n else float("nan")


def cpu_per_gb(r: dict) -> float:
    return r["cpu_s"] / (r["bytes"] / 1e9) if r.get("bytes") else float("nan")


# ---------------------------------------------------------------- report

# (label, workload, extractor, unit, higher_is_better)
METRICS = [
    ("HTTPS h1 keep-alive: req/s", "h1", lambda r: r["rps"], "req/s", True),
    ("HTTPS h1 keep-alive: proxy CPU per request", "h1", lambda r: cpu_us(r, "requests"), "µs", False),
    ("HTTPS h1 keep-alive: p50 latency", "h1", lambda r: r["p50_us"], "µs", False),
    ("HTTPS h1 keep-alive: p99 latency", "h1", lambda r: r["p99_us"], "µs", False),
    ("HTTPS h2 keep-alive: req/s", "h2", lambda r: r["rps"], "req/s", True),
    ("HTTPS h2 keep-alive: proxy CPU per request", "h2", lambda r: cpu_us(r, "requests"), "µs", False),
    ("HTTPS h2 keep-alive: p50 latency", "h2", lambda r: r["p50_us"], "µs", False),
    ("HTTPS h2 keep-alive: p99 latency", "h2", lambda r: r["p99_us"], "µs", False),
    ("New TLS 1.3 conn, full handshake: conn/s", "tls_new", lambda r: r["ok"] / r["elapsed"], "conn/s", True),
    ("New TLS 1.3 conn, full handshake: proxy CPU per conn", "tls_new", lambda r: cpu_us(r, "ok"), "µs", False),
    ("New TLS 1.3 conn, resumed: conn/s", "tls_reuse", lambda r: r["ok"] / r["elapsed"], "conn/s", True),
    ("New TLS 1.3 conn, resumed: proxy CPU per conn", "tls_reuse", lambda r: cpu_us(r, "ok"), "µs", False),
    ("New TLS 1.3 conn, resumed: share actually resumed", "tls_reuse",
     lambda r: 100.0 * r["resumed"] / r["ok"] if r["ok"] else float("nan"), "%", True),
    ("SNI passthrough bulk: throughput", "pass", lambda r: r["bytes"] / r["elapsed"] / 1e6, "MB/s", True),
    ("SNI passthrough bulk: proxy CPU per GB", "pass", cpu_per_gb, "CPU-s/GB", False),
    ("10k idle TLS keep-alive conns: RSS per conn", "idle",
     lambda r: r["bytes_per_conn"] / 1024 if r.get("bytes_per_conn") is not None else float("nan"), "KiB", False),
    ("10k idle TLS keep-alive conns: RSS total", "idle", lambda r: r["rss_loaded"] / 2**20, "MiB", False),
    ("Plain HTTP keep-alive: req/s", "plain", lambda r: r["rps"], "req/s", True),
    ("Plain HTTP keep-alive: proxy CPU per request", "plain", lambda r: cpu_us(r, "requests"), "µs", False),
    ("Plain HTTP keep-alive: p99 latency", "plain", lambda r: r["p99_us"], "µs", False),
    *handshake.METRICS,
    *newconn.METRICS,
]


def median_of(rounds: list[dict], wl: str, fn) -> float | None:
    vals = []
    for r in rounds:
        x = r.get(wl)
        if not x or "error" in x:
            continue
        try:
            v = fn(x)
        except (KeyError, TypeError, ZeroDivisionError):
            continue
        if v == v:  # not NaN
            vals.append(v)
    return statistics.median(vals) if vals else None


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}"


def table(results: dict, names: list[str]) -> tuple[str, dict]:
    med = {}
    peers = [n for n in names if n != "edge"]
    head = "| workload | unit | better | " + " | ".join(names)
    if "edge" in names:
        head += " | " + " | ".join(f"edge/{p}" for p in peers)
    head += " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, wl, fn, unit, hib in METRICS:
        row = {n: median_of(results.get(n, []), wl, fn) for n in names}
        med[label] = row
        if all(v is None for v in row.values()):
            continue  # a workload left out of a partial run
        cells = [fmt(row[n]) for n in names]
        if "edge" in names:
            cells += [ratio(row["edge"], row[p]) for p in peers]
        lines.append(f"| {label} | {unit} | {'higher' if hib else 'lower'} | " + " | ".join(cells) + " |")
    return "\n".join(lines), med


def goals(med: dict, names: list[str]) -> list[str]:
    if "edge" not in names:
        return ["- edge was not measured in this run: no goal can be checked."]

    def g(label, n):
        return med.get(label, {}).get(n)

    out = []

    def verdict(ok):
        return "unknown (missing data)" if ok is None else ("**met**" if ok else "**missed**")

    def le(a, b, f):
        return None if a is None or b is None else a <= f * b

    cpu = "HTTPS h1 keep-alive: proxy CPU per request"
    p99 = "HTTPS h1 keep-alive: p99 latency"
    e, h, n = g(cpu, "edge"), g(cpu, "haproxy"), g(cpu, "nginx")
    ok1 = [le(e, h, 0.8), le(e, n, 0.8), le(g(p99, "edge"), g(p99, "haproxy"), 1.0), le(g(p99, "edge"), g(p99, "nginx"), 1.0)]
    ok = None if None in ok1 else all(ok1)
    out.append(f"- HTTPS keep-alive CPU/request ≤ 0.8× HAProxy and nginx, p99 no worse: {verdict(ok)} "
               f"(CPU ratio {ratio(e, h)} vs HAProxy, {ratio(e, n)} vs nginx; p99 ratio "
               f"{ratio(g(p99, 'edge'), g(p99, 'haproxy'))} / {ratio(g(p99, 'edge'), g(p99, 'nginx'))})")
    for kind, label in (("full", "New TLS 1.3 conn, full handshake: proxy CPU per conn"),
                        ("resumed", "New TLS 1.3 conn, resumed: proxy CPU per conn")):
        e, n = g(label, "edge"), g(label, "nginx")
        out.append(f"- New TLS connections ({kind}) CPU/conn ≤ 0.7× nginx: {verdict(le(e, n, 0.7))} "
                   f"(ratio {ratio(e, n)})")
    lbl = "SNI passthrough bulk: proxy CPU per GB"
    e, h = g(lbl, "edge"), g(lbl, "haproxy")
    out.append(f"- Passthrough throughput per CPU ≥ HAProxy (CPU/GB ≤ HAProxy's): {verdict(le(e, h, 1.0))} "
               f"(CPU/GB ratio {ratio(e, h)})")
    lbl = "10k idle TLS keep-alive conns: RSS per conn"
    e, h = g(lbl, "edge"), g(lbl, "haproxy")
    out.append(f"- Idle connections memory ≤ 0.5× HAProxy's: {verdict(le(e, h, 0.5))} (ratio {ratio(e, h)})")
    out.append(newconn.goal(g, verdict, le, ratio))
    return out


def machine(proxies: list[Proxy]) -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def ver(argv, stream="stdout"):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (getattr(r, stream) or r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    mem = os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30
    rows = [
        f"- nproc: {os.cpu_count()}; CPU: {cpu}; RAM: {mem:.1f} GiB",
        f"- kernel: {platform.release()} ({platform.machine()})",
    ]
    rows += [f"- {p.name}: {p.version()}" for p in proxies]
    rows += [
        f"- backend: {ver(['nginx', '-v'], 'stderr')} (`return 200`, 1 worker, core {LOAD_CPU})",
        f"- wrk: {ver(['wrk', '-v'])}",
        f"- h2load: {ver(['h2load', '--version'])}",
        f"- openssl (clients, HAProxy and nginx): {ver(['openssl', 'version'])}",
        f"- rustc: {ver(['rustc', '--version'])}",
        f"- python: {platform.python_version()}",
    ]
    return "\n".join(rows)


def negotiated(proxy_names: list[str]) -> str:
    return ""


def noise(results: dict, names: list[str]) -> list[str]:
    out = []
    for n in names:
        shares, loads, tls = [], [], ""
        for r in results.get(n, []):
            tls = tls or r.get("tls", "")
            for wl in ("h1", "h2", "plain", "tls_new", "tls_reuse", "pass", *newconn.WORKLOADS):
                x = r.get(wl) or {}
                if "core0_other_s" in x and x.get("wall_s"):
                    shares.append(100 * x["core0_other_s"] / x["wall_s"])
                    loads.append(x["loadavg"])
        if shares:
            out.append(f"- {n}: other processes took a median {statistics.median(shares):.0f}% "
                       f"(max {max(shares):.0f}%) of the proxy core during the load runs; "
                       f"median load average {statistics.median(loads):.1f}. TLS: {tls or '?'}")
    return out


def profiles(out_dir: Path, today: str) -> list[str]:
    """Links to the `PERF=<workload> bench/run` profiles taken the same day, if any."""
    files = sorted(out_dir.glob(f"{today}-profile-*.txt"))
    if not files:
        return []
    out = ["", "## Profiles (`PERF=<workload> bench/run`)", ""]
    for f in files:
        first = f.read_text().splitlines()[0].lstrip("# ")
        out.append(f"- [{f.name}]({f.name}): {first}")
    return out


def write_report(a, results: dict, proxies: list[Proxy], notes: list[str], started: float) -> Path:
    names = [p.name for p in proxies]
    tbl, med = table(results, names)
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out_dir = Path(a.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{today}.md"
    plain_notes = [p.plain_note for p in proxies if p.plain_note]
    body = [
        f"# edge vs HAProxy vs nginx — {today}",
        "",
        f"Produced by `bench/run` in {(time.monotonic() - started) / 60:.1f} min "
        f"({a.rounds} rounds × {a.seconds} s per workload, medians over rounds; "
        "ratios are edge / peer, so < 1 is better for CPU, memory and latency and "
        "> 1 is better for rates)."
        + ("" if sorted(a.workloads) == sorted(ALL_WORKLOADS)
           else f" Partial run: workloads {', '.join(a.workloads)} only."),
        "",
        "## Machine",
        "",
        machine(proxies),
        "",
        "## Setup",
        "",
        f"- Proxy pinned to core {PROXY_CPU} (`taskset -c {PROXY_CPU}`), one worker thread: "
        "edge `worker_threads = 1`, HAProxy `nbthread 1`, nginx `worker_processes 1`. "
        f"Load generators and backends pinned to core {LOAD_CPU}.",
        f"- Backend: nginx `return 200` (19-byte body), one worker on core {LOAD_CPU}; "
        "every proxy keeps HTTP/1.1 keep-alive connections to it and adds "
        "X-Forwarded-For/-Proto/-Host and X-Request-Id.",
        "- One ECDSA P-256 certificate (self-signed, SAN localhost), TLS 1.2+1.3, ALPN h2 + http/1.1.",
        f"- Cipher suites: every proxy prefers its own order, the same on all three: {SUITES}.",
        "- CPU = utime+stime of every process and thread of the proxy (`/proc/<pid>/stat`), "
        "read just before and after each load run; RSS from `/proc/<pid>/statm` (sum over "
        "nginx master + worker).",
        f"- (1) `wrk -t1 -c{a.conns} --latency` on HTTPS/1.1 keep-alive; "
        f"`h2load -t1 -c{a.h2_conns} -m{a.h2_streams}` for HTTP/2 (p50/p99 from its per-request log).",
        f"- (2) `bench/tools/benchtool tlsconn` ({a.tls_procs} client processes, C + OpenSSL): one "
        "TLS 1.3 connection per request (`GET /`, `Connection: close`, read to EOF). "
        "`new` never offers a session (every handshake full, x25519 + ECDSA P-256); "
        "`reuse` always offers the newest ticket (PSK with (EC)DHE resumption); "
        "the share actually resumed is in the table.",
        handshake.setup_line(a),
        f"- (3) `benchtool bulk-client` ({a.bulk_conns} connection(s)) sends a real ClientHello "
        f"with SNI `{PASS_NAME}`, then the backend (`benchtool bulk-server`) streams zeros; "
        "the proxy routes on SNI and relays. HAProxy `mode tcp` + `req.ssl_sni`, nginx "
        f"`stream` + `ssl_preread` on a dedicated port ({PORT_PASS}); edge on its single "
        f"TLS port ({PORT_TLS}), where the same listener also terminates.",
        f"- (4) `bench/tools/idle_conns.py` opens {a.idle_conns:,} TLS 1.3 connections, "
        "one keep-alive `GET /` on each, then holds them idle; RSS delta over a warmed-up "
        "baseline, divided by the connections held. nginx preallocates its connection "
        "array for `worker_connections` at start (in the baseline).",
        "- (5) plain HTTP/1.1 keep-alive, `wrk` as in (1).",
        newconn.setup_line(a),
    ]
    body += [f"- {n}" for n in plain_notes + notes]
    body += [
        "",
        "## Results (medians)",
        "",
        tbl,
        "",
        "## Noise and TLS parameters",
        "",
        "This machine may be shared with other work (builds of other engineers). "
        "Everything the harness starts runs at nice -20, but the rates and latencies "
        "below still move with the load; CPU per request/connection/GB is the "
        "proxy's own CPU time and is the steadier figure.",
        "",
        *noise(results, names),
        "",
        "## Goals of issue 9",
        "",
        *goals(med, names),
        *profiles(out_dir, today),
        "",
        "## Per-round raw data",
        "",
        "<details><summary>JSON</summary>",
        "",
        "```json",
        json.dumps(results, indent=1, sort_keys=True),
        "```",
        "",
        "</details>",
        "",
    ]
    path.write_text("\n".join(body))
    if sorted(a.workloads) != sorted(ALL_WORKLOADS):
        return path  # a partial run does not replace the README's table
    update_readme(tbl, goals(med, names) + [""] + [f"Note: {n}" for n in plain_notes + notes], today)
    return path


def update_readme(tbl: str, goal_lines: list[str], today: str) -> None:
    readme = BENCH / "README.md"
    if not readme.exists():
        return
    text = readme.read_text()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if begin not in text or end not in text:
        return
    block = "\n".join([begin, "", f"Latest run: [{today}](results/{today}.md)", "", tbl, "", *goal_lines, "", end])
    pre, rest = text.split(begin, 1)
    post = rest.split(end, 1)[1]
    readme.write_text(pre + block + post)


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", required=True, help="scratch directory (configs, logs, certs)")
    ap.add_argument("--tool", required=True, help="benchtool binary")
    ap.add_argument("--rustls-client", default="", help="bench/tlsconn binary ('' to skip its workloads)")
    ap.add_argument("--hello", required=True, help="captured ClientHello for the passthrough SNI")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--edge", default="", help="edge binary ('' to skip edge)")
    ap.add_argument("--edge-note", default="", help="why edge is missing, for the report")
    ap.add_argument("--edge-rev", default="", help="git revision edge was built from ('' = working tree)")
    ap.add_argument("--edge-base", default="",
                    help="a second edge binary, measured as the peer 'edge-base' (an A/B of two builds)")
    ap.add_argument("--edge-base-rev", default="", help="git revision the --edge-base binary was built from")
    ap.add_argument("--proxies", default="edge,haproxy,nginx")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--h2-conns", type=int, default=10)
    ap.add_argument("--h2-streams", type=int, default=10)
    ap.add_argument("--tls-procs", type=int, default=4)
    ap.add_argument("--bulk-conns", type=int, default=1)
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--idle-timeout", type=int, default=60)
    ap.add_argument("--plain-redirect", action="store_true",
                    help="plain-HTTP workload answers a redirect on every proxy (set when edge has no plain proxy)")
    ap.add_argument("--results-dir", default=str(BENCH / "results"))
    ap.add_argument("--perf", default="", choices=["", "h1", "h2", "plain", "tls_new", "tls_reuse", "pass", *newconn.WORKLOADS],
                    help="profile this one workload with perf instead of benchmarking")
    ap.add_argument("--perf-top", type=int, default=60)
    ap.add_argument("--workloads", default=",".join(ALL_WORKLOADS),
                    help="comma-separated subset of " + ",".join(ALL_WORKLOADS))
    a = ap.parse_args()
    a.workloads = [w for w in a.workloads.split(",") if w]
    unknown = [w for w in a.workloads if w not in ALL_WORKLOADS]
    if unknown:
        ap.error(f"unknown workloads: {','.join(unknown)}")

    started = time.monotonic()
    if NICE:
        try:
            os.setsid()  # own autogroup, inherited by every child
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(NICE))
            os.nice(NICE)
        except OSError as exc:
            print(f"could not raise priority: {exc}", file=sys.stderr)
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)

    work = Path(a.work)
    cert, key = Path(a.cert), Path(a.key)
    tool, hello = Path(a.tool), Path(a.hello)
    notes = []
    if a.edge_note:
        notes.append(a.edge_note)

    for port in (PORT_TLS, PORT_PASS, PORT_PLAIN, PORT_BACKEND, PORT_BULK):
        if not port_free(port):
            print(f"port {HOST}:{port} is in use; stop whatever holds it", file=sys.stderr)
            return 1

    proxies: list[Proxy] = []
    for n in a.proxies.split(","):
        if n == "edge":
            if a.edge:
                edge = Edge(work, cert, key, Path(a.edge), a.edge_rev)
                problem = edge.check()
                if problem:
                    notes.append(f"edge not measured: {problem}")
                    print(f"edge not measured: {problem}", file=sys.stderr)
                else:
                    proxies.append(edge)
        elif n == "edge-base":
            base = Edge(work, cert, key, Path(a.edge_base), a.edge_base_rev)
            base.name = "edge-base"
            problem = base.check() if a.edge_base else "no --edge-base binary"
            if problem:
                notes.append(f"edge-base not measured: {problem}")
                print(f"edge-base not measured: {problem}", file=sys.stderr)
            else:
                proxies.append(base)
        elif n == "haproxy":
            proxies.append(HAProxy(work, cert, key))
        elif n == "nginx":
            proxies.append(Nginx(work, cert, key))
    # HAProxy reserves two descriptors per connection (client + server side)
    # and refuses to start when maxconn does not fit the open-files limit.
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    cap = (nofile - 400) // 2 // 100 * 100
    if a.idle_conns > cap:
        notes.append(
            f"idle connections: {a.idle_conns} asked, {cap} held: the open-files limit here is {nofile} "
            "and cannot be raised (no CAP_SYS_RESOURCE), and HAProxy reserves two descriptors per "
            "connection; all three proxies get the same count"
        )
        a.idle_conns = cap
    HAProxy.maxconn = a.idle_conns + 100
    if any(p.name == "edge" and not p.has_plain_proxy for p in proxies):
        a.plain_redirect = True

    # Backends on the load core.
    (work / "backend").mkdir(exist_ok=True)
    bcfg = render("backend.conf", work)
    backend = start("backend", ["nginx", "-p", str(work / "backend"), "-c", str(bcfg)], LOAD_CPU, work)
    wait_port(PORT_BACKEND, backend)
    bulkd = start("bulk-server", [str(tool), "bulk-server", str(PORT_BULK)], LOAD_CPU, work)
    wait_port(PORT_BULK, bulkd)

    if a.perf:
        for p in proxies:
            profile(p, a, tool, hello)
        return 0

    results: dict = {p.name: [] for p in proxies}
    for rnd in range(1, a.rounds + 1):
        for p in proxies:
            print(f"round {rnd}/{a.rounds}: {p.name}", flush=True)
            try:
                results[p.name].append(one_round(p, a, tool, hello))
            except Exception as exc:  # noqa: BLE001 - reported
                msg = f"{type(exc).__name__}: {exc}"
                print(f"    {p.name} failed to run: {msg}", flush=True)
                tail = ""
                log = work / f"{p.name}.log"
                if log.exists():
                    tail = log.read_text(errors="replace")[-800:]
                    print(tail, flush=True)
                results[p.name].append({"error": msg, "log_tail": tail[-300:]})
    stop_all()
    path = write_report(a, results, proxies, notes, started)
    print(f"results written to {path}")
    print(Path(path).read_text().split("## Results (medians)")[1].split("## Per-round raw data")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
