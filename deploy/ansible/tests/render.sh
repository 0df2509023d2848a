#!/usr/bin/env bash
# Renders the edge role's edge.toml for both inventory hosts with Ansible
# (the role's own tasks, `validate: edge check -c %s` included) and checks the
# result three ways:
#   1. every rendered file passes `edge check -c` (the real binary);
#   2. the files parse as TOML and carry each host's VRRP priority, unicast
#      source and peers, the shared VRID/VIPs, and listeners on the VIP;
#   3. a broken variable (a route to a pool that does not exist) makes the
#      play fail at `validate:` and leaves no config file behind.
#
# Needs ansible-playbook on PATH (.ci/deploy-lint puts its venv there) and
# openssl. The edge binary: $EDGE_BIN, else `cargo build -p edge-bin` into
# $CARGO_TARGET_DIR (default: the workspace's target/).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ansible_dir="$(dirname "$here")"
repo="$(cd "$ansible_dir/../.." && pwd)"

if [ -z "${EDGE_BIN:-}" ]; then
    target="${CARGO_TARGET_DIR:-$repo/target}"
    (cd "$repo" && cargo build --quiet -p edge-bin)
    EDGE_BIN="$target/debug/edge"
fi
[ -x "$EDGE_BIN" ] || { echo "render: no edge binary at $EDGE_BIN" >&2; exit 1; }

work="$(mktemp -d)"
[ -n "${RENDER_KEEP:-}" ] && echo "render: keeping $work" >&2 || trap 'rm -rf "$work"' EXIT

# The example's certificates (the inventory expects them in files/tls/).
mkdir -p "$work/tls"
for name in www.example.com api.example.com; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=$name" -addext "subjectAltName=DNS:$name" \
        -keyout "$work/tls/$name.key" -out "$work/tls/$name.crt" 2>/dev/null
done
# www's certificate covers the apex too.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=www.example.com" -addext "subjectAltName=DNS:www.example.com,DNS:example.com" \
    -keyout "$work/tls/www.example.com.key" -out "$work/tls/www.example.com.crt" 2>/dev/null

# The pair's peer link credentials (group_vars: edge_peer_credentials_src).
"$EDGE_BIN" peer-key -o "$work/tls/peer.pem" >/dev/null

# Does this edge-bin accept [[vrrp]] yet? (VRRP config lands in edge-bin
# after the data path; until then the files are checked without it and the
# gap is printed.)
printf '[[vrrp]]\ninterface = "lo"\n' >"$work/probe.toml"
vrrp=true
probe_out="$("$EDGE_BIN" check -c "$work/probe.toml" 2>&1 || true)"
if grep -q 'unknown field `vrrp`' <<<"$probe_out"; then
    vrrp=false
    echo "render: GAP: edge-bin does not know [[vrrp]] yet; edge check runs on the files without it" >&2
fi

# Does it have an [acme] section? (The example turns ACME on; an older
# edge-bin checks the files without it.)
acme_vars='{}'
printf '[acme]\n' >"$work/probe.toml"
probe_out="$("$EDGE_BIN" check -c "$work/probe.toml" 2>&1 || true)"
if grep -q 'unknown field `acme`' <<<"$probe_out"; then
    echo "render: GAP: edge-bin does not know [acme] yet; rendered without it" >&2
    acme_vars='{"edge_acme": {}}'
fi

play() { # play OUT_DIR EXTRA_ARGS...
    local out="$1"
    shift
    ANSIBLE_CONFIG="$ansible_dir/ansible.cfg" ANSIBLE_PIPELINING=1 ansible-playbook \
        -i "$ansible_dir/inventory/hosts.yml" "$here/render.yml" \
        -e "edge_render_dir=$out" -e "edge_test_binary=$EDGE_BIN" -e "edge_test_tls=$work/tls" \
        -e "{\"edge_test_vrrp\": $vrrp}" -e "edge_test_user=$(id -un)" -e "edge_test_group=$(id -gn)" -e "$acme_vars" "$@"
}

# 1. Render through the role with validation by the real binary.
echo "render: rendering and validating with $EDGE_BIN" >&2
play "$work/out" >"$work/play1.log" 2>&1 ||
    { cat "$work/play1.log"; echo "render: FAILED: the role's template did not render/validate" >&2; exit 1; }
for host in edge-a edge-b; do
    "$EDGE_BIN" check -c "$work/out/$host/edge.toml" ||
        { cat -n "$work/out/$host/edge.toml"; echo "render: FAILED: edge check on $host" >&2; exit 1; }
    mode="$(stat -c %a "$work/out/$host/tls/peer.pem")"
    [ "$mode" = 600 ] || { echo "render: FAILED: $host's peer.pem has mode $mode, not 600" >&2; exit 1; }
    if [ "$vrrp" = true ]; then
        cmp "$work/out/$host/edge.toml" "$work/out/$host/full.toml" ||
            { echo "render: FAILED: the validated file is not the complete one" >&2; exit 1; }
    fi
done

# 2. The complete files (with [[vrrp]]) carry each host's values.
"$(dirname "$(command -v ansible-playbook)")/python3" "$here/check_rendered.py" "$work/out" \
    "$ansible_dir/inventory/hosts.yml" "$acme_vars"

# 3. A config that edge check rejects is never installed.
if play "$work/bad" --limit edge-a \
    -e '{"edge_routes": [{"host": ["www.example.com"], "pool": "no-such-pool"}]}' >"$work/play3.log" 2>&1; then
    cat "$work/play3.log"
    echo "render: FAILED: a route to a missing pool passed validate:" >&2
    exit 1
fi
grep -q 'no-such-pool' "$work/play3.log" ||
    { cat "$work/play3.log"; echo "render: FAILED: the validation error does not name the bad pool" >&2; exit 1; }
[ ! -e "$work/bad/edge-a/edge.toml" ] ||
    { echo "render: FAILED: edge-a got a config that edge check rejected" >&2; exit 1; }
echo "render: ok (edge-a, edge-b rendered and checked; a bad config was refused)" >&2

# 4. The fleet (fleet.yml's roles): edge.toml with [[anycast]] and no VRRP,
# FRR's or BIRD's config (validated by vtysh --dryrun / bird -p in the role),
# the etcd member settings.
echo "render: rendering the fleet" >&2
ANSIBLE_CONFIG="$ansible_dir/ansible.cfg" ANSIBLE_PIPELINING=1 ansible-playbook \
    -i "$ansible_dir/inventory/hosts.yml" "$here/render_fleet.yml" \
    -e "edge_render_dir=$work/fleet" -e "edge_test_binary=$EDGE_BIN" -e "edge_test_tls=$work/tls" \
    -e "edge_test_user=$(id -un)" -e "edge_test_group=$(id -gn)" >"$work/play4.log" 2>&1 ||
    { cat "$work/play4.log"; echo "render: FAILED: the fleet's roles did not render/validate" >&2; exit 1; }
"$(dirname "$(command -v ansible-playbook)")/python3" "$here/check_fleet.py" "$work/fleet" \
    "$ansible_dir/inventory/hosts.yml" "$EDGE_BIN"
echo "render: ok (fleet-1..3: edge.toml, routing daemon and etcd settings rendered and checked)" >&2
