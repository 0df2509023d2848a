"""New connections as wrk makes them: `wrk -H 'Connection: close'` over
TLS 1.2, 16 connections, each reopened as soon as its answer is read, with
the session of the connection before (wrk keeps it in its `SSL` object).

wrk links the system OpenSSL (3.0 on Debian 12), which speaks TLS 1.3; an
`OPENSSL_CONF` with `MaxProtocol = TLSv1.2` caps it at TLS 1.2, as the wrk
builds on OpenSSL 1.0 speak, so the handshakes are TLS 1.2 (ECDHE-ECDSA
with AES-128-GCM on every proxy, session tickets).

The share of resumed handshakes is read from each proxy itself:
edge from `edge_tls_handshakes_total{resumed="true"}` on its management
listener, nginx from `$ssl_session_reused` and HAProxy from
`%[ssl_fc_is_resumed]` in an access log written only for this workload's
requests (path `/newconn`; the keep-alive workloads log nothing).
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

WORKLOADS = ["wrk_close", "tls12_new"]
CONNS = 16
METRICS_PORT = 18090  # edge's [management] listener in conf/edge.toml
# The marker of HAProxy's and nginx's log lines (conf/haproxy.cfg, conf/nginx.conf).
MARK = "newconn"

TLS12_CNF = """openssl_conf = init
[init]
ssl_conf = ssl
[ssl]
system_default = tls
[tls]
MaxProtocol = TLSv1.2
"""


def _edge_handshakes() -> dict[tuple[str, str], float]:
    """(version, resumed) -> handshakes so far, from edge's metrics."""
    out: dict[tuple[str, str], float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return out
    for m in re.finditer(r'^edge_tls_handshakes_total\{([^}]*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        key = (labels.get("version", "?"), labels.get("resumed", "?"))
        out[key] = out.get(key, 0.0) + float(m.group(2))
    return out


def _log_marks(path: Path, offset: int) -> tuple[int, int]:
    """(resumed, total) of the marked log lines after byte `offset`."""
    if not path.exists():
        return 0, 0
    with open(path, "rb") as f:
        f.seek(offset)
        lines = [l for l in f.read().decode(errors="replace").splitlines() if l.startswith(MARK + " ")]
    # "newconn RESUMED PROTOCOL CIPHER": nginx writes r or ., HAProxy 1 or 0.
    resumed = sum(1 for l in lines if l.split()[1:2] in (["r"], ["1"]))
    return resumed, len(lines)


def _log_path(proxy) -> Path | None:
    return {"nginx": proxy.work / "nginx-newconn.log", "haproxy": proxy.work / f"{proxy.name}.log"}.get(proxy.name)


def run_wrk(proxy, run, url: str, secs: int, work: Path) -> dict:
    cnf = work / "openssl-tls12.cnf"
    cnf.write_text(TLS12_CNF)
    log = _log_path(proxy)
    offset = log.stat().st_size if log and log.exists() else 0
    before = _edge_handshakes() if proxy.name.startswith("edge") else {}
    out = run(
        ["env", f"OPENSSL_CONF={cnf}", "wrk", "-t1", f"-c{CONNS}", f"-d{secs}s", "-H", "Connection: close",
         "--timeout", "5s", url],
        timeout=secs + 30,
    )
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res = dict(
        requests=reqs,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        sock_errors=sum(int(x) for x in err.groups()) if err else 0,
        non2xx=int(bad.group(1)) if bad else 0,
    )
    if proxy.name.startswith("edge"):
        after = _edge_handshakes()
        d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        res["handshakes"] = sum(d.values())
        res["resumed"] = sum(v for (_, r), v in d.items() if r == "true")
        res["tls12"] = sum(v for (ver, _), v in d.items() if ver == "1.2")
    elif log:
        res["resumed"], res["handshakes"] = _log_marks(log, offset)
    return res


def s_time_new(run, host: str, port: int, secs: int) -> dict:
    """`openssl s_time -new -tls1_2`: full TLS 1.2 handshakes, one at a time,
    no request (the issue's measurement of a full TLS 1.2 handshake)."""
    out = run(["openssl", "s_time", "-connect", f"{host}:{port}", "-new", "-tls1_2", "-time", str(secs)],
              timeout=secs + 30)
    m = re.search(r"(\d+) connections in (\d+) real seconds", out)
    return dict(ok=int(m.group(1)), elapsed=float(m.group(2)), resumed=0, errors=0)


def workloads(proxy, a, measured, run, url: str, host: str, port: int) -> dict:
    url = url.rstrip("/") + "/newconn"
    return {
        "wrk_close": lambda: measured(proxy, lambda: run_wrk(proxy, run, url, a.seconds, proxy.work)),
        "tls12_new": lambda: measured(proxy, lambda: s_time_new(run, host, port, a.seconds)),
    }


def _share(r: dict) -> float:
    return 100.0 * r["resumed"] / r["handshakes"] if r.get("handshakes") else float("nan")


# (label, workload, extractor, unit, higher_is_better), as bench.METRICS.
METRICS = [
    ("New conn as wrk makes them (TLS 1.2, Connection: close): conn/s", "wrk_close", lambda r: r["rps"],
     "conn/s", True),
    ("New conn as wrk makes them (TLS 1.2, Connection: close): proxy CPU per conn", "wrk_close",
     lambda r: r["cpu_s"] * 1e6 / r["requests"] if r.get("requests") else float("nan"), "µs", False),
    ("New conn as wrk makes them (TLS 1.2, Connection: close): share resumed", "wrk_close", _share, "%", True),
    ("Full TLS 1.2 handshake, `openssl s_time -new -tls1_2`: proxy CPU per conn", "tls12_new",
     lambda r: r["cpu_s"] * 1e6 / r["ok"] if r.get("ok") else float("nan"), "µs", False),
]


def goal(g, verdict, le, ratio) -> str:
    """Issue 14's goal for workload 6, as bench.goals() writes the others."""
    label = METRICS[1][0]
    e, n = g(label, "edge"), g(label, "nginx")
    return f"- New connections as wrk makes them, CPU/conn ≤ 0.8× nginx: {verdict(le(e, n, 0.8))} (ratio {ratio(e, n)})"


def setup_line(a) -> str:
    return (f"- (6) `wrk -t1 -c{CONNS} -H 'Connection: close'` capped at TLS 1.2 (`OPENSSL_CONF` with "
            "`MaxProtocol = TLSv1.2`): one request per connection, each reopened at once offering the "
            "session of the one before (wrk keeps it in its `SSL` object). Share resumed: edge "
            "`edge_tls_handshakes_total{resumed}`, nginx `$ssl_session_reused`, HAProxy "
            "`%[ssl_fc_is_resumed]` (the peers log only this workload's requests, path `/newconn`, to a file). "
            "(6b) `openssl s_time -new -tls1_2`: full TLS 1.2 handshakes one at a time, no request.")
