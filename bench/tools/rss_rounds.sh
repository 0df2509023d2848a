#!/usr/bin/env bash
# Memory after load: starts edge on the built-in quickstart config, then
# ROUNDS times opens 10,000 idle TLS connections (idle_conns.py), closes
# them, and prints edge's RSS at baseline, under load, 3 s and 13 s after
# the close. Loopback only; bounded (60 s per round at most).
#
#   bench/tools/rss_rounds.sh target/release/edge 5
set -euo pipefail
BIN="$1"
ROUNDS="${2:-5}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ulimit -n 65536 2>/dev/null || true
LOG="$(mktemp)"
"$BIN" run -c "$REPO/examples/quickstart.toml" >"$LOG.edge" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -f "$LOG" "$LOG.edge"' EXIT
sleep 2
rss() { awk '/VmRSS/{print $2}' "/proc/$PID/status"; }
echo "baseline_kb $(rss)"
for i in $(seq "$ROUNDS"); do
    (sleep 3; echo) | python3 "$REPO/bench/tools/idle_conns.py" 127.0.0.1 8443 localhost 10000 3 60 >"$LOG" 2>&1 &
    CP=$!
    for _ in $(seq 60); do grep -q '"open"' "$LOG" && break; sleep 1; done
    under=$(rss)
    wait $CP || true
    sleep 3
    after3=$(rss)
    sleep 10
    echo "round $i: $(tail -1 "$LOG" | cut -c1-28) under_kb $under after3s_kb $after3 after13s_kb $(rss)"
done
