#!/usr/bin/env python3
"""Checks the edge.toml files rendered by tests/render.yml against the inventory.

usage: check_rendered.py RENDER_DIR INVENTORY_HOSTS_YML [EXTRA_VARS_JSON]

Reads RENDER_DIR/<host>/full.toml (the complete file, [[vrrp]] included).

Each host's file must parse as TOML and hold exactly what the inventory says:
its own VRRP priority, unicast source and peers; the pair's VRID, VIPs and
version; listeners on the VIP; and the pools, routes, passthrough rules and
certificates of group_vars, key for key (the template passes them through, so
a rendering bug shows up as a difference here). Both nodes' files must be
identical apart from the VRRP instance and the node's own paths.
"""

import copy
import json
import os
import sys
import tomllib

import yaml


def fail(msg):
    print(f"check_rendered: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def expect(what, got, want):
    if got != want:
        fail(f"{what}: got {got!r}, want {want!r}")


def main():
    render_dir, hosts_yml = sys.argv[1], sys.argv[2]
    extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    with open(hosts_yml) as f:
        inventory = yaml.safe_load(f)
    group = "edge_pair"
    hosts = inventory["all"]["children"][group]["hosts"]
    gv_path = os.path.join(os.path.dirname(hosts_yml), "group_vars", f"{group}.yml")
    with open(gv_path) as f:
        gv = yaml.safe_load(f)
    gv.update(extra)  # extra vars win, as in ansible-playbook -e
    if len(hosts) != 2:
        fail(f"the example pair should have two hosts, has {len(hosts)}")

    vip_hosts = [v.split("/")[0] for v in gv["edge_vrrp_vips"]]
    rest = {}
    for host, hv in hosts.items():
        path = os.path.join(render_dir, host, "full.toml")
        with open(path, "rb") as f:
            try:
                cfg = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                fail(f"{path} is not valid TOML: {e}")

        vrrp = cfg.get("vrrp")
        if not isinstance(vrrp, list) or len(vrrp) != 1:
            fail(f"{host}: expected one [[vrrp]] instance, got {vrrp!r}")
        v = vrrp[0]
        expect(f"{host} vrrp.priority", v["priority"], hv["edge_vrrp_priority"])
        expect(f"{host} vrrp.unicast_src", v["unicast_src"], hv["edge_vrrp_unicast_src"])
        expect(f"{host} vrrp.unicast_peers", v["unicast_peers"], hv["edge_vrrp_unicast_peers"])
        if v["unicast_src"] in v["unicast_peers"]:
            fail(f"{host}: its own address is among its peers")
        expect(f"{host} vrrp.vrid", v["vrid"], gv["edge_vrrp_vrid"])
        expect(f"{host} vrrp.vips", v["vips"], gv["edge_vrrp_vips"])
        expect(f"{host} vrrp.version", v["version"], gv["edge_vrrp_version"])
        expect(f"{host} vrrp.interface", v["interface"], gv["edge_vrrp_interface"])
        expect(f"{host} vrrp.advert_interval", v["advert_interval"], gv["edge_vrrp_advert_interval"])
        expect(f"{host} vrrp.nopreempt", v["nopreempt"], gv["edge_vrrp_nopreempt"])

        expect(f"{host} https.listen", cfg["https"]["listen"], [f"{h}:443" for h in vip_hosts])
        for k, x in gv.get("edge_https", {}).items():
            expect(f"{host} https.{k}", cfg["https"][k], x)
        for k, x in gv.get("edge_http", {}).items():
            expect(f"{host} http.{k}", cfg["http"][k], x)

        node = hv["ansible_host"]
        acme = gv.get("edge_acme", {})
        http_listen = [f"{h}:80" for h in vip_hosts]
        if acme:
            a = dict(cfg.get("acme", {}))
            expect(f"{host} acme.peer", a.pop("peer", None), hv["edge_acme_peer"])
            storage = a.pop("storage", "")
            if not storage.startswith(os.path.join(render_dir, host)) or not os.path.isdir(storage):
                fail(f"{host} acme.storage: {storage!r} is not the role-created directory")
            expect(f"{host} acme", a, acme)
            # The peer fetches tokens from this node's own address.
            http_listen.append(f"{node}:80")
        elif "acme" in cfg:
            fail(f"{host}: [acme] rendered although edge_acme is empty")
        expect(f"{host} http.listen", cfg["http"]["listen"], http_listen)
        expect(f"{host} pools", cfg.get("pool", []), gv.get("edge_pools", []))
        expect(f"{host} routes", cfg.get("route", []), gv.get("edge_routes", []))
        expect(f"{host} passthrough", cfg.get("passthrough", []), gv.get("edge_passthrough", []))

        certs = cfg.get("certificate", [])
        expect(f"{host} certificate count", len(certs), len(gv["edge_certificates"]))
        for got, want in zip(certs, gv["edge_certificates"]):
            expect(f"{host} certificate name", got["name"], want["name"])
            expect(f"{host} certificate names", got["names"], want["names"])
            for key, src in (("cert", "cert_src"), ("key", "key_src")):
                p = got[key]
                if not os.path.isabs(p) or not os.path.isfile(p):
                    fail(f"{host} certificate {want['name']}.{key}: {p!r} is not an installed file")
                if not p.endswith(want["name"] + (".crt" if key == "cert" else ".key")):
                    fail(f"{host} certificate {want['name']}.{key}: unexpected path {p!r}")
                if src in got:
                    fail(f"{host}: {src} leaked into edge.toml")

        # The peer link: this node's address, the other's, the installed key.
        peer = cfg.get("peer", {})
        port = 7400
        expect(f"{host} peer.listen", peer.get("listen"), f"{node}:{port}")
        expect(f"{host} peer.address", peer.get("address"), f"{hv['edge_peer_address']}:{port}")
        if not os.path.isfile(peer.get("credentials", "")):
            fail(f"{host} peer.credentials: {peer.get('credentials')!r} is not an installed file")
        keys_file = cfg.get("tickets", {}).get("keys_file", "")
        if not keys_file.startswith(os.path.join(render_dir, host)):
            fail(f"{host} tickets.keys_file: {keys_file!r} is not under the state directory")

        # Everything but the VRRP instance must be the same on both nodes.
        other = copy.deepcopy(cfg)
        del other["vrrp"]
        del other["peer"]
        del other["tickets"]
        other.get("acme", {}).pop("peer", None)
        other.get("acme", {}).pop("storage", None)
        other["http"]["listen"] = [x for x in other["http"]["listen"] if not x.startswith(node + ":")]
        for c in other.get("certificate", []):
            c["cert"] = os.path.basename(c["cert"])
            c["key"] = os.path.basename(c["key"])
        rest[host] = other

    a, b = rest.values()
    if a != b:
        fail(f"the nodes' configs differ outside [[vrrp]]:\n{a}\n{b}")
    prios = sorted(h["edge_vrrp_priority"] for h in hosts.values())
    print(f"check_rendered: ok ({', '.join(hosts)}; priorities {prios})", file=sys.stderr)


if __name__ == "__main__":
    main()
