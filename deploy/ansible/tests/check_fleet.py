#!/usr/bin/env python3
"""Checks the fleet files rendered by tests/render_fleet.yml against the inventory.

usage: check_fleet.py RENDER_DIR INVENTORY_HOSTS_YML EDGE_BIN

For every host of edge_fleet: edge.toml passes `edge check -c`, has no
[[vrrp]], announces group_vars' [[anycast]] addresses and listens on them;
[etcd] names all three members and this node; the routing daemon the host names has its config (FRR: frr.conf and the
daemons file with bgpd and bfdd on; BIRD: bird.conf), accepted by the daemon
itself (vtysh --dryrun, bird -p), with every router as a BGP neighbour and
BFD on; the etcd settings name this member and all three members at their
addresses.
"""

import os
import subprocess
import sys
import tomllib

import yaml

from check_rendered import expect, fail


def run(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(args)} exited {r.returncode}: {r.stdout}{r.stderr}")


def main():
    render_dir, hosts_yml, edge_bin = sys.argv[1:4]
    with open(hosts_yml) as f:
        inventory = yaml.safe_load(f)
    hosts = inventory["all"]["children"]["edge_fleet"]["hosts"]
    gv_path = os.path.join(os.path.dirname(hosts_yml), "group_vars", "edge_fleet.yml")
    with open(gv_path) as f:
        gv = yaml.safe_load(f)
    if len(hosts) != 3:
        fail(f"the example fleet should have three hosts, has {len(hosts)}")
    addresses = [a for t in gv["edge_anycast"] for a in t["addresses"]]
    members = ",".join(f"{h}=http://{v['ansible_host']}:2380" for h, v in hosts.items())

    for host, hv in hosts.items():
        d = os.path.join(render_dir, host)
        run([edge_bin, "check", "-c", os.path.join(d, "edge.toml")])
        with open(os.path.join(d, "edge.toml"), "rb") as f:
            cfg = tomllib.load(f)
        expect(f"{host}: [[vrrp]]", cfg.get("vrrp"), None)
        expect(f"{host}: [[anycast]]", cfg.get("anycast"), gv["edge_anycast"])
        want_etcd = [f"http://{v['ansible_host']}:2379" for v in hosts.values()]
        expect(f"{host}: [etcd] endpoints", cfg["etcd"]["endpoints"], want_etcd)
        expect(f"{host}: [etcd] node_name", cfg["etcd"]["node_name"], host)
        if "storage" in cfg.get("acme", {}):
            fail(f"{host}: with [etcd], [acme] storage is etcd: no storage directory")
        if "peer" in cfg:
            fail(f"{host}: a fleet node got a [peer] section")
        want = [a.split("/")[0] + ":443" for a in addresses]
        expect(f"{host}: [https] listen", cfg["https"]["listen"], want)

        daemon = hv.get("routing_daemon", gv["routing_daemon"])
        frr, bird = os.path.join(d, "frr.conf"), os.path.join(d, "bird.conf")
        if daemon == "frr":
            if os.path.exists(bird):
                fail(f"{host}: runs FRR but got a bird.conf")
            run(["vtysh", "--dryrun", "--inputfile", frr])
            with open(frr) as f:
                text = f.read()
            with open(os.path.join(d, "daemons")) as f:
                daemons = f.read().split()
            for want in ("bgpd=yes", "bfdd=yes"):
                if want not in daemons:
                    fail(f"{host}: daemons file lacks {want}")
            for n in gv["routing_neighbors"]:
                for line in (f"neighbor {n['address']} remote-as {n['asn']}",
                             f"neighbor {n['address']} bfd"):
                    if line not in text:
                        fail(f"{host}: frr.conf lacks '{line}'")
            for p in gv["routing_anycast_prefixes"]:
                if f"permit {p} ge 32" not in text:
                    fail(f"{host}: frr.conf does not limit exports to {p}")
        else:
            if os.path.exists(frr):
                fail(f"{host}: runs BIRD but got a frr.conf")
            run(["bird", "-p", "-c", bird])
            with open(bird) as f:
                text = f.read()
            for n in gv["routing_neighbors"]:
                if f"neighbor {n['address']} as {n['asn']};" not in text:
                    fail(f"{host}: bird.conf lacks neighbour {n['address']}")
            if "bfd on;" not in text or 'interface "edge-anycast0"' not in text:
                fail(f"{host}: bird.conf lacks BFD or the anycast interface")

        env = {}
        with open(os.path.join(d, "etcd.env")) as f:
            for line in f:
                if "=" in line and not line.startswith("#"):
                    k, v = line.strip().split("=", 1)
                    env[k] = v.strip('"')
        expect(f"{host}: ETCD_NAME", env.get("ETCD_NAME"), host)
        expect(f"{host}: ETCD_INITIAL_CLUSTER", env.get("ETCD_INITIAL_CLUSTER"), members)
        expect(f"{host}: ETCD_LISTEN_PEER_URLS", env.get("ETCD_LISTEN_PEER_URLS"),
               f"http://{hv['ansible_host']}:2380")
    print(f"check_fleet: ok ({', '.join(hosts)})", file=sys.stderr)


if __name__ == "__main__":
    main()
