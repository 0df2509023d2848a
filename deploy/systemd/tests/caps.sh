#!/usr/bin/env bash
# Does edge serve as an unprivileged user with exactly the capabilities that
# edge.service grants (AmbientCapabilities / CapabilityBoundingSet,
# NoNewPrivileges), and fail without them?
#
# In a network namespace of its own (198.18.0.0/15 only), as root:
#   1. `edge run` as user nobody with the unit's capabilities binds
#      198.18.0.10:443 and :80 and a VIP the namespace does not hold
#      (198.18.0.11:443, as on the backup), and curl gets the HTTPS answer
#      and the port-80 redirect;
#   2. the same without capabilities fails to bind, with a clear error.
# No systemd needed (setpriv applies the unit's settings). The VRRP side of
# the capabilities (raw sockets, netlink) is not covered until edge-bin runs
# [[vrrp]] instances.
#
# usage: caps.sh EDGE_BINARY
set -euo pipefail
edge="$(realpath "$1")"
unit="$(cd "$(dirname "$0")/.." && pwd)/edge.service"

if [ "$(id -u)" != 0 ]; then
    echo "caps: skipped (needs root for the namespace and setpriv)" >&2
    exit 0
fi

# The capabilities as the unit states them, e.g. "+net_bind_service,+net_raw".
caps="$(sed -n 's/^AmbientCapabilities=//p' "$unit" | tr ' ' '\n' | grep . |
    tr 'A-Z' 'a-z' | sed 's/^cap_/+/' | paste -sd, -)"
bounding="$(sed -n 's/^CapabilityBoundingSet=//p' "$unit" | tr ' ' '\n' | grep . |
    tr 'A-Z' 'a-z' | sed 's/^cap_/+/' | paste -sd, -)"
[ -n "$caps" ] && [ "$caps" = "$bounding" ] ||
    { echo "caps: FAILED: the unit's ambient ($caps) and bounding ($bounding) sets differ" >&2; exit 1; }
grep -q '^NoNewPrivileges=yes' "$unit" || { echo "caps: FAILED: NoNewPrivileges is not set" >&2; exit 1; }

ns="edgecaps$$"
work="$(mktemp -d)"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"

ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" addr add 198.18.0.10/32 dev lo
# As the example inventory does (edge_sysctl_nonlocal_bind) until edge binds
# with IP_FREEBIND: listening on a VIP this node does not hold (198.18.0.11).
ip netns exec "$ns" sysctl -q -w net.ipv4.ip_nonlocal_bind=1

cat >"$work/edge.toml" <<'EOF'
[https]
listen = ["198.18.0.10:443", "198.18.0.11:443"]
default_certificate = "www"

[http]
listen = ["198.18.0.10:80"]

[[certificate]]
name = "www"
names = ["www.example.com"]
self_signed = true

[[route]]
host = ["www.example.com"]
respond = { status = 200, body = "served without root\n" }
EOF
chmod 644 "$work/edge.toml"

# Starts edge in the namespace as nobody with capabilities CAPS ("" = none)
# in the background; its pid in $pid.
start_as_nobody() { # start_as_nobody CAPS LOG
    local c="$1" log="$2"
    local capargs=(--inh-caps=-all --bounding-set=-all)
    if [ -n "$c" ]; then
        capargs=(--inh-caps="-all,$c" --ambient-caps="-all,$c" --bounding-set="-all,$c")
    fi
    ip netns exec "$ns" setpriv --reuid=65534 --regid=65534 --clear-groups \
        "${capargs[@]}" --no-new-privs "$edge" run -c "$work/edge.toml" >"$log" 2>&1 &
    pid=$!
}

# 2. Without capabilities: binding :443 must fail, and say so.
start_as_nobody "" "$work/nocaps.log"
for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
done
if kill -0 "$pid" 2>/dev/null; then
    cat "$work/nocaps.log"
    echo "caps: FAILED: edge kept running without capabilities" >&2
    exit 1
fi
status=0
wait "$pid" || status=$?
pid=""
[ "$status" != 0 ] || { cat "$work/nocaps.log"; echo "caps: FAILED: edge exited 0 without capabilities" >&2; exit 1; }
grep -qi 'permission denied\|os error 13' "$work/nocaps.log" ||
    { cat "$work/nocaps.log"; echo "caps: FAILED: no permission error without capabilities" >&2; exit 1; }

# 1. With the unit's capabilities: it serves.
start_as_nobody "$caps" "$work/caps.log"
body=""
for _ in $(seq 1 100); do
    body="$(ip netns exec "$ns" curl -sk --max-time 2 \
        --resolve www.example.com:443:198.18.0.10 https://www.example.com/ 2>/dev/null || true)"
    [ -n "$body" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
done
[ "$body" = "served without root" ] ||
    { cat "$work/caps.log"; echo "caps: FAILED: no HTTPS answer as nobody with $caps (got: $body)" >&2; exit 1; }
code="$(ip netns exec "$ns" curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
    -H 'Host: www.example.com' http://198.18.0.10/x)"
[ "$code" = 301 ] ||
    { cat "$work/caps.log"; echo "caps: FAILED: port 80 answered $code, want 301" >&2; exit 1; }

# The serving process is nobody and holds exactly the unit's capabilities.
proc=""
for p in $(ip netns pids "$ns"); do
    [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$edge" ] && proc="$p"
done
[ -n "$proc" ] || { echo "caps: FAILED: no edge process in the namespace" >&2; exit 1; }
uid="$(awk '/^Uid:/ {print $2}' "/proc/$proc/status")"
# CapEff as names (the ones a proxy could plausibly hold; others by number).
eff="$(python3 -c '
import sys
names = {10: "net_bind_service", 11: "net_broadcast", 12: "net_admin", 13: "net_raw", 21: "sys_admin"}
mask = int(sys.argv[1], 16)
print(",".join(sorted("+" + names.get(b, str(b)) for b in range(64) if mask >> b & 1)))
' "$(awk '/^CapEff:/ {print $2}' "/proc/$proc/status")")"
want="$(tr ',' '\n' <<<"$caps" | LC_ALL=C sort | paste -sd, -)"
[ "$uid" = 65534 ] || { echo "caps: FAILED: edge runs as uid $uid" >&2; exit 1; }
[ "$eff" = "$want" ] || { echo "caps: FAILED: effective capabilities $eff, want $want" >&2; exit 1; }
echo "caps: ok (as uid $uid with $eff edge served :443 and :80; without them it did not start)" >&2
