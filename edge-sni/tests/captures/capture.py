#!/usr/bin/env python3
"""Captures the first bytes real TLS clients send, as test fixtures.

Listens on 127.0.0.1, runs each client against it, records everything the
client sends up to the end of its ClientHello (joining records), then closes
the connection. Usage: capture.py [OUTDIR] [CLIENT...]  (default: here, all).
Clients that are not installed are skipped with a message.
"""
import os, shutil, socket, subprocess, sys, tempfile, time

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
ONLY = set(sys.argv[2:])

PY_CLIENT = r'''
import socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2", "http/1.1"])
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
try:
    ctx.wrap_socket(s, server_hostname="python.example")
except Exception:
    pass
'''

NODE_CLIENT = r'''
const tls = require("tls");
const s = tls.connect({host: "127.0.0.1", port: +process.argv[2], servername: "node.example",
  ALPNProtocols: ["h2", "http/1.1"], rejectUnauthorized: false});
s.on("error", () => process.exit(0));
'''


# 230 bytes: with it the hello passes 512 bytes and spans two records.
LONG_NAME = ".".join(c * 60 for c in "abc") + ".fragmented.example"


def clients(port, tmp):
    p = str(port)
    yield "openssl-tls12", ["openssl", "s_client", "-connect", f"127.0.0.1:{p}", "-servername",
                            "openssl12.example", "-tls1_2", "-alpn", "h2,http/1.1"]
    yield "openssl-tls13", ["openssl", "s_client", "-connect", f"127.0.0.1:{p}", "-servername",
                            "openssl13.example", "-tls1_3"]
    yield "openssl-nosni", ["openssl", "s_client", "-connect", f"127.0.0.1:{p}", "-noservername"]
    # A hello over 512 bytes sent in 512-byte records: a real multi-record capture.
    yield "openssl-fragmented", ["openssl", "s_client", "-connect", f"127.0.0.1:{p}", "-servername",
                                 LONG_NAME, "-max_send_frag", "512", "-cipher", "ALL:@SECLEVEL=0",
                                 "-alpn", "h2,http/1.1,spdy/3.1,h2c,http/1.0,acme-tls/1", "-no_ticket",
                                 "-sigalgs", "RSA+SHA256:RSA+SHA384:RSA+SHA512:ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512:RSA-PSS+SHA256:RSA-PSS+SHA384:RSA-PSS+SHA512:ed25519:ed448",
                                 "-curves", "X25519:P-256:P-384:P-521:X448:ffdhe2048:ffdhe3072:ffdhe4096"]
    yield "curl", ["curl", "-sk", "--max-time", "5", "--resolve", f"curl.example:{p}:127.0.0.1",
                   f"https://curl.example:{p}/"]
    yield "gnutls-cli", ["gnutls-cli", "--insecure", "-p", p, "--sni-hostname", "gnutls.example",
                         "--alpn", "h2", "--alpn", "http/1.1", "127.0.0.1"]
    yield "python-ssl", [sys.executable, "-c", PY_CLIENT, p]
    yield "node", ["node", "-e", NODE_CLIENT, "x", p]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        yield "chromium", [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp}",
                           f"--host-resolver-rules=MAP chromium.example 127.0.0.1:{p}",
                           "--timeout=5000", "--dump-dom", f"https://chromium.example:{p}/"]


def read_client_hello(conn):
    """Reads whole records until the first handshake message is complete."""
    buf = b""
    handshake = b""
    conn.settimeout(8)
    while True:
        while len(buf) < 5:
            chunk = conn.recv(65536)
            if not chunk:
                return buf
            buf += chunk
        # Read the rest of the current record.
        pos = 0
        handshake = b""
        complete = False
        while pos + 5 <= len(buf):
            length = int.from_bytes(buf[pos + 3:pos + 5], "big")
            if pos + 5 + length > len(buf):
                break
            handshake += buf[pos + 5:pos + 5 + length]
            pos += 5 + length
            if len(handshake) >= 4 and len(handshake) >= 4 + int.from_bytes(handshake[1:4], "big"):
                complete = True
                break
        if complete:
            return buf[:pos]
        chunk = conn.recv(65536)
        if not chunk:
            return buf
        buf += chunk


def main():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd in clients(port, tmp):
            if ONLY and name not in ONLY:
                continue
            if not shutil.which(cmd[0]) and not os.path.exists(cmd[0]):
                print(f"skip {name}: {cmd[0]} not installed")
                continue
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                srv.settimeout(20)
                conn, _ = srv.accept()
                data = read_client_hello(conn)
                conn.close()
            finally:
                proc.kill()
                proc.wait()
            path = os.path.join(OUT, f"{name}.bin")
            with open(path, "wb") as f:
                f.write(data)
            print(f"{name}: {len(data)} bytes -> {path}")


if __name__ == "__main__":
    main()
