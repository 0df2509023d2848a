"""Full TLS 1.3 handshakes with rustls' client (`bench/tlsconn`), for the key
exchange groups OpenSSL 3.0's client (`benchtool tlsconn`) cannot offer.

Two workloads, each like `tls_new` (a new connection per `GET /`, no session
offered, read to EOF) but with the client offering one group only:

- `tls_new_pq`: X25519MLKEM768, the hybrid post-quantum group edge accepts by
  default (Chromium and Firefox offer it first). Only edge is measured:
  HAProxy and nginx link OpenSSL 3.0, which has no ML-KEM, and edge-base may
  be a build without it.
- `tls_new_x25519`: X25519, with the same client, for every proxy.

The difference between the two on edge is what the post-quantum key exchange
costs the server per handshake (ML-KEM-768 encapsulation, and a ServerHello
about 1.1 KB larger).
"""

from __future__ import annotations

import json
from pathlib import Path

WORKLOADS = ["tls_new_pq", "tls_new_x25519"]
GROUPS = {"tls_new_pq": "x25519mlkem768", "tls_new_x25519": "x25519"}


def tlsconn_rs(run, client: Path, group: str, secs: int, threads: int, host: str, port: int, name: str,
               ca: Path) -> dict:
    out = run([str(client), host, str(port), name, group, str(secs), str(threads), str(ca)], timeout=secs + 30)
    return json.loads(out.strip().splitlines()[-1])


def workloads(proxy, a, measured, run, host: str, port: int, name: str) -> dict:
    """The load runs of the two workloads for `proxy` (none without the client)."""
    if not a.rustls_client:
        return {}
    out = {}
    for wl, group in GROUPS.items():
        if wl == "tls_new_pq" and proxy.name != "edge":
            continue
        out[wl] = lambda group=group: measured(proxy, lambda: tlsconn_rs(
            run, Path(a.rustls_client), group, a.seconds, a.tls_procs, host, port, name, Path(a.cert)))
    return out


def _conn_s(r: dict) -> float:
    return r["ok"] / r["elapsed"]


def _cpu_us(r: dict) -> float:
    return r["cpu_s"] * 1e6 / r["ok"] if r.get("ok") else float("nan")


# (label, workload, extractor, unit, higher_is_better), as bench.METRICS.
METRICS = [
    ("New TLS 1.3 conn, full, rustls client, X25519MLKEM768: conn/s", "tls_new_pq", _conn_s, "conn/s", True),
    ("New TLS 1.3 conn, full, rustls client, X25519MLKEM768: proxy CPU per conn", "tls_new_pq", _cpu_us,
     "µs", False),
    ("New TLS 1.3 conn, full, rustls client, X25519: conn/s", "tls_new_x25519", _conn_s, "conn/s", True),
    ("New TLS 1.3 conn, full, rustls client, X25519: proxy CPU per conn", "tls_new_x25519", _cpu_us,
     "µs", False),
]


def setup_line(a) -> str:
    return (f"- (2b) `bench/tlsconn` ({a.tls_procs} client threads, Rust + rustls with aws-lc-rs): as (2) "
            "`new`, but offering one key exchange group only: X25519MLKEM768 (edge only: OpenSSL 3.0 "
            "has no ML-KEM) or X25519 (every proxy); the chain is verified and a connection counts only "
            "when that group was negotiated.")
