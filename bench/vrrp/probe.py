#!/usr/bin/env python3
"""ICMP echo every millisecond to one address; prints the wall-clock time
of every reply, one per line. Unlike `ping -i`, the send schedule does not
stretch after lost replies (ping's does, by ~10 ms, right when a VIP
moves), so the first reply after a takeover is seen within ~1 ms.

Usage (as root, in the client's namespace): probe.py ADDRESS
"""

import os
import select
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main():
    dst = sys.argv[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    ident = os.getpid() & 0xFFFF
    seq = 0
    next_send = time.monotonic()
    out = sys.stdout
    while True:
        now = time.monotonic()
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            body = struct.pack("!d", time.time())
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            packet = struct.pack("!BBHHH", 8, 0, checksum(header + body), ident, seq) + body
            try:
                sock.sendto(packet, (dst, 0))
            except OSError:
                pass
            next_send += 0.001
            if next_send < now:
                next_send = now + 0.001
        ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        if ready:
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                ihl = (data[0] & 0x0F) * 4
                icmp = data[ihl:ihl + 8]
                if len(icmp) == 8:
                    kind, _, _, rid, _ = struct.unpack("!BBHHH", icmp)
                    if kind == 0 and rid == ident:
                        out.write(f"{time.time():.6f}\n")
                        out.flush()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
