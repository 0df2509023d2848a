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
import threading
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
        out = sh("ip", "-n", self.nodes[i], "-o", "addr", "show", check=False)
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
        self.log = log.name
        self.p = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, stdout=log, stderr=log)

    def became_master_after(self, t0):
        """Wall time of the edge router's last JSON `master` line after t0."""
        if self.kind == "keepalived":
            return None
        times = [int(m.group(1)) / 1000 for m in
                 re.finditer(r'"state":"master","unix_ms":(\d+)', open(self.log).read())]
        times = [t for t in times if t >= t0 - 0.001]
        return times[-1] if times else None

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
    """probe.py in the client: an ICMP echo every millisecond; reply times."""

    def __init__(self, lab):
        probe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py")
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", lab.client, sys.executable, probe, VIP],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        os.set_blocking(self.p.stdout.fileno(), False)
        self.early = []

    def wait_ready(self, timeout=10):
        """Waits for the first reply (python starts slowly on a loaded box)."""
        end = time.time() + timeout
        while time.time() < end and not self.early:
            line = self.p.stdout.readline()
            if line:
                self.early.append(line)
            else:
                time.sleep(0.005)
        if not self.early:
            raise RuntimeError("the probe got no reply")

    def outage(self, t0, moved, until):
        """The longest gap between consecutive replies from just before t0
        until a second after the VIP moved (reading until `until`): what a
        client of the VIP goes without; and the longest gap in the second
        before t0 (the probe's own noise on this machine)."""
        times = []
        while time.time() < until:
            line = self.early.pop(0) if self.early else self.p.stdout.readline()
            if not line:
                time.sleep(0.002)
                continue
            try:
                t = float(line)
            except ValueError:
                continue
            if t >= t0 - 1.1:
                times.append(t)
            if t > moved + 1.0:
                break
        pairs = list(zip(times, times[1:]))
        gaps = [b - a for a, b in pairs if b > t0 - 0.005]
        noise = max((b - a for a, b in pairs if b < t0 - 0.05), default=0.0)
        # Invalid unless the probe ran for the whole window.
        if not times or times[0] > t0 - 1.0 or times[-1] < moved:
            return None, noise
        return max(gaps, default=0.0), noise

    def close(self):
        self.p.kill()
        self.p.wait()


class AddressMonitor:
    """`ip monitor address` in a router's namespace: the wall time at which
    the VIP was added, from the kernel's event (no polling)."""

    def __init__(self, lab, i):
        self.added = []
        self.p = subprocess.Popen(["ip", "-n", lab.nodes[i], "monitor", "address"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            if f" {VIP}/" in line and not line.startswith("Deleted"):
                self.added.append(time.time())

    def wait_added(self, after, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            hits = [t for t in self.added if t > after]
            if hits:
                return hits[0]
            time.sleep(0.001)
        raise RuntimeError("the backup never took the VIP")

    def close(self):
        self.p.kill()
        self.p.wait()


class NeighbourMonitor:
    """`ip monitor neigh` in the client: when its entry for the VIP took
    which MAC (the GARP / unsolicited NA it followed)."""

    def __init__(self, lab):
        self.changes = []
        self.p = subprocess.Popen(["ip", "-n", lab.client, "monitor", "neigh"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            words = line.split()
            if words and words[0] == VIP and "lladdr" in words:
                self.changes.append((time.time(), words[words.index("lladdr") + 1]))

    def followed(self, mac, after):
        hits = [t for t, m in self.changes if t > after and m == mac]
        return hits[0] if hits else None

    def close(self):
        self.p.kill()
        self.p.wait()


def mac_of(lab, i):
    return sh("ip", "-n", lab.nodes[i], "-br", "link", "show", "dev", "eth0").split()[2]


def wait_holder(lab, i, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if lab.holds(i):
            return time.time()
        time.sleep(0.005)
    raise RuntimeError(f"router {i} never took the VIP")


def measure(kind, interval, reps, binary, tag):
    lab = Lab(tag)
    results = {k: [] for k in ("crash_moved", "crash_follow", "crash_reach", "crash_noise",
                                "planned_moved", "planned_follow", "planned_reach", "planned_noise")}
    n = 0
    try:
        backup = Router(lab, 1, kind, 100, interval, binary, 0)
        monitor = AddressMonitor(lab, 1)
        neighbours = NeighbourMonitor(lab)
        backup_mac = mac_of(lab, 1)
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
                pinger.wait_ready()
                time.sleep(1.2)
                t0 = time.time()
                if mode == "crash":
                    master.crash()
                    lab.link(0, False)
                else:
                    master.stop()
                moved = monitor.wait_added(t0)
                reach, noise = pinger.outage(t0, moved, moved + 5)
                follow = neighbours.followed(backup_mac, t0)
                if follow is not None:
                    results[f"{mode}_follow"].append(follow - t0)
                results[f"{mode}_noise"].append(noise)
                pinger.close()
                transition = backup.became_master_after(t0)
                results[f"{mode}_moved"].append(moved - t0)
                if reach is not None:
                    results[f"{mode}_reach"].append(reach)
                if mode == "crash":
                    lab.link(0, True)
                else:
                    master.wait()
                # The next master run cleans up what the crash left behind.
                print(f"  {kind} {interval}s rep {rep} {mode}: moved {moved - t0:.3f}s"
                      f" client follows {follow - t0 if follow else float('nan'):.3f}s"
                      f" client outage {reach if reach is not None else float('nan'):.3f}s"
                      f" (probe noise {noise:.3f}s)"
                      f" backup's transition {transition - t0 if transition else float('nan'):.3f}s",
                      file=sys.stderr)
        backup.crash()
        monitor.close()
        neighbours.close()
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
    ap.add_argument("--kinds", default="keepalived,edge,edge-two-node")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "../../target/release/examples/vrrp"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("failover.py needs root (network namespaces)")
    rows = []
    tag = 0
    for interval in [float(x) for x in args.intervals.split(",")]:
        for kind in args.kinds.split(","):
            tag += 1
            r = measure(kind, interval, args.reps, args.bin, tag)
            rows.append((kind, interval, r))
    print("| pair | advert | crash: VIP moved | crash: client follows | crash: client outage "
          "| planned: VIP moved | planned: client follows | planned: client outage | probe noise |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, interval, r in rows:
        print(f"| {kind} | {interval:g} s | {fmt(r['crash_moved'])} | {fmt(r['crash_follow'])} | "
              f"{fmt(r['crash_reach'])} | {fmt(r['planned_moved'])} | {fmt(r['planned_follow'])} | "
              f"{fmt(r['planned_reach'])} | "
              f"{fmt(r['crash_noise'] + r['planned_noise'])} |")
    print()
    for interval in sorted({i for _, i, _ in rows}, reverse=True):
        k = next((r for kind, i, r in rows if kind == "keepalived" and i == interval), None)
        e = next((r for kind, i, r in rows if kind == "edge" and i == interval), None)
        if k is None or e is None:
            continue
        for key in ("crash_moved", "crash_follow", "planned_moved", "planned_follow"):
            if k[key] and e[key]:
                print(f"ratio edge/keepalived {key} at {interval:g} s: "
                      f"{statistics.median(e[key]) / statistics.median(k[key]):.2f}")


if __name__ == "__main__":
    main()
