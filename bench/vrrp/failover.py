#!/usr/bin/env python3
"""Failover benchmark for edge-vrrp against keepalived (run by hand, as root).

In a namespace lab (a bridge, two routers, one client; 198.18.0.0/15 only)
it measures, in the same run and for the same advert intervals:

- crash failover: SIGKILL the master (and take its link down, as a dead
  host) -> the VIP is on the backup / answers the client's pings;
- planned handover: SIGTERM the master (priority 0) -> the same.

for an edge-vrrp pair (the `vrrp` example), an edge-vrrp pair with the
two-node option, and a keepalived pair; VRRPv3, priorities 150/100.

Usage: bench/vrrp/failover.py [--reps N] [--intervals 1,0.1] [--bin PATH]
Pin it with taskset, e.g. `taskset -c 0,1 bench/vrrp/failover.py`.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

KEEPALIVED = "/usr/sbin/keepalived"
VIP = "198.18.0.100"


def sh(*args, check=True):
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{args}: {r.stderr}")
    return r.stdout


class Lab:
    def __init__(self, tag):
        self.id = f"evb{os.getpid()}{tag}"
        self.hub = self.id + "h"
        self.nodes = [self.id + "a", self.id + "b"]
        self.client = self.id + "c"
        self.dir = tempfile.mkdtemp(prefix=self.id)
        sh("ip", "netns", "add", self.hub)
        sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        sh("ip", "-n", self.hub, "link", "set", "br0", "up")
        for i, (ns, host) in enumerate(zip(self.nodes + [self.client], [2, 3, 10])):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", self.hub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", self.hub, "link", "set", f"p{i}", "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"198.18.0.{host}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def holds(self, i):
        out = sh("ip", "-n", self.nodes[i], "-o", "addr", "show", "dev", "eth0", check=False)
        return f" {VIP}/" in out

    def link(self, i, up):
        sh("ip", "-n", self.nodes[i], "link", "set", "eth0", "up" if up else "down")

    def close(self):
        for ns in self.nodes + [self.client, self.hub]:
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                subprocess.run(["kill", "-KILL", pid])
            subprocess.run(["ip", "netns", "del", ns])
        shutil.rmtree(self.dir, ignore_errors=True)


class Router:
    def __init__(self, lab, i, kind, prio, interval, binary, n):
        self.kind = kind
        self.lab = lab
        ns = lab.nodes[i]
        log = open(os.path.join(lab.dir, f"r{i}-{n}.log"), "w")
        if kind == "keepalived":
            conf = os.path.join(lab.dir, f"r{i}-{n}.conf")
            with open(conf, "w") as f:
                f.write(
                    f"global_defs {{\n router_id r{i}\n}}\nvrrp_instance VI {{\n state BACKUP\n interface eth0\n"
                    f" virtual_router_id 51\n priority {prio}\n advert_int {interval}\n version 3\n"
                    f" virtual_ipaddress {{\n  {VIP}/24\n }}\n}}\n"
                )
            self.vrrp_pid = os.path.join(lab.dir, f"r{i}-{n}.vrrp.pid")
            cmd = [KEEPALIVED, "-n", "-l", "-D", "-f", conf, "-p", os.path.join(lab.dir, f"r{i}-{n}.pid"),
                   "-r", self.vrrp_pid]
        else:
            self.vrrp_pid = None
            cmd = [binary, "--interface", "eth0", "--vrid", "51", "--priority", str(prio),
                   "--advert-interval", str(interval), "--vip", f"{VIP}/24"]
            if kind == "edge-two-node":
                cmd.append("--two-node")
        self.p = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, stdout=log, stderr=log)

    def crash(self):
        if self.vrrp_pid:
            os.kill(self.p.pid, 19)  # SIGSTOP: its child would send priority 0 when it dies
            try:
                os.kill(int(open(self.vrrp_pid).read()), 9)
            except (OSError, ValueError):
                pass
        self.p.kill()
        self.p.wait()

    def stop(self):
        self.p.terminate()

    def wait(self):
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()


class Pinger:
    """ping -D every 2 ms from the client; reply timestamps tell reachability."""

    def __init__(self, lab):
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", lab.client, "ping", "-D", "-n", "-i", "0.002", "-W", "1", VIP],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def replies_after(self, t0, until):
        """First reply timestamp after `t0`, reading until wall time `until`."""
        os.set_blocking(self.p.stdout.fileno(), False)
        first = None
        while time.time() < until and first is None:
            line = self.p.stdout.readline()
            if not line:
                time.sleep(0.001)
                continue
            m = re.match(r"\[(\d+\.\d+)\] .*bytes from", line)
            if m and float(m.group(1)) > t0:
                first = float(m.group(1))
        return first

    def drain(self):
        os.set_blocking(self.p.stdout.fileno(), False)
        while self.p.stdout.readline():
            pass

    def close(self):
        self.p.kill()
        self.p.wait()


def wait_holder(lab, i, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if lab.holds(i):
            return time.time()
        time.sleep(0.001)
    raise RuntimeError(f"router {i} never took the VIP")


def measure(kind, interval, reps, binary, tag):
    lab = Lab(tag)
    results = {"crash_moved": [], "crash_reach": [], "planned_moved": [], "planned_reach": []}
    n = 0
    try:
        backup = Router(lab, 1, kind, 100, interval, binary, 0)
        for rep in range(reps):
            for mode in ("crash", "planned"):
                n += 1
                master = Router(lab, 0, kind, 150, interval, binary, n)
                wait_holder(lab, 0)
                # Settle: the backup has adopted the master, GARPs are out.
                time.sleep(max(1.0, interval * 5))
                if lab.holds(1):
                    raise RuntimeError("both routers hold the VIP")
                pinger = Pinger(lab)
                time.sleep(0.3)
                pinger.drain()
                t0 = time.time()
                if mode == "crash":
                    master.crash()
                    lab.link(0, False)
                else:
                    master.stop()
                moved = wait_holder(lab, 1)
                reach = pinger.replies_after(moved - 0.001, moved + 5)
                pinger.close()
                results[f"{mode}_moved"].append(moved - t0)
                if reach is not None:
                    results[f"{mode}_reach"].append(reach - t0)
                if mode == "crash":
                    lab.link(0, True)
                else:
                    master.wait()
                # The next master run cleans up what the crash left behind.
                print(f"  {kind} {interval}s rep {rep} {mode}: moved {moved - t0:.3f}s"
                      f" reachable {reach - t0 if reach else float('nan'):.3f}s", file=sys.stderr)
        backup.crash()
    finally:
        lab.close()
    return results


def fmt(xs):
    if not xs:
        return "n/a"
    return f"{statistics.median(xs) * 1000:.0f} ms ({min(xs) * 1000:.0f}-{max(xs) * 1000:.0f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--intervals", default="1,0.1")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "../../target/release/examples/vrrp"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("failover.py needs root (network namespaces)")
    rows = []
    tag = 0
    for interval in [float(x) for x in args.intervals.split(",")]:
        for kind in ("keepalived", "edge", "edge-two-node"):
            tag += 1
            r = measure(kind, interval, args.reps, args.bin, tag)
            rows.append((kind, interval, r))
    print("| pair | advert | crash: VIP moved | crash: client reaches VIP | planned: VIP moved | planned: client reaches VIP |")
    print("|---|---|---|---|---|---|")
    for kind, interval, r in rows:
        print(f"| {kind} | {interval:g} s | {fmt(r['crash_moved'])} | {fmt(r['crash_reach'])} | "
              f"{fmt(r['planned_moved'])} | {fmt(r['planned_reach'])} |")
    print()
    for interval in sorted({i for _, i, _ in rows}, reverse=True):
        k = next(r for kind, i, r in rows if kind == "keepalived" and i == interval)
        e = next(r for kind, i, r in rows if kind == "edge" and i == interval)
        for key in ("crash_moved", "planned_moved"):
            if k[key] and e[key]:
                print(f"ratio edge/keepalived {key} at {interval:g} s: "
                      f"{statistics.median(e[key]) / statistics.median(k[key]):.2f}")


if __name__ == "__main__":
    main()
