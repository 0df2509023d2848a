#!/usr/bin/env python3
"""Open N keep-alive TLS connections to a proxy and hold them idle.

Each connection completes a TLS 1.3 handshake (SNI given), sends one
HTTP/1.1 keep-alive GET and reads the whole response, then stays open and
silent. When all are open the script prints one JSON line
``{"open": n, "failed": m, "seconds": t}`` and holds them until stdin is
closed or HOLD seconds pass; then it closes them all and exits.

Bounded in time: opening stops after OPEN_TIMEOUT seconds whatever happened.
"""

import asyncio
import json
import resource
import ssl
import sys
import time


async def open_one(host, port, sni, ctx, sem, conns, failures):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx, server_hostname=sni), 20
            )
            writer.write(
                b"GET / HTTP/1.1\r\nHost: " + sni.encode() + b"\r\nUser-Agent: idle_conns\r\n\r\n"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:40])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await asyncio.wait_for(reader.readexactly(length), 20)
            conns.append((reader, writer))
        except Exception as exc:  # noqa: BLE001 - counted and reported
            failures.append(repr(exc))


async def main():
    host, port, sni = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    count, hold, open_timeout = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    sem = asyncio.Semaphore(100)
    conns, failures = [], []
    start = time.monotonic()
    tasks = [
        asyncio.ensure_future(open_one(host, port, sni, ctx, sem, conns, failures))
        for _ in range(count)
    ]
    done, pending = await asyncio.wait(tasks, timeout=open_timeout)
    for t in pending:
        t.cancel()
    print(
        json.dumps(
            {
                "open": len(conns),
                "failed": len(failures) + len(pending),
                "seconds": round(time.monotonic() - start, 2),
                "first_error": failures[0] if failures else None,
            }
        ),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), hold)
    except asyncio.TimeoutError:
        pass
    for _, writer in conns:
        writer.transport.abort()
    await asyncio.sleep(0.2)
    sys.stdout.flush()
    # Executor thread may still be blocked on stdin: exit without joining it.
    import os

    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
