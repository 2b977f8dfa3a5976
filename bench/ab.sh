#!/usr/bin/env bash
# A/B comparison of server binaries on the audited gate check, for work on the request path.
#
#   bench/ab.sh [--rounds N] [--duration 8s] BINARY...
#
# Each round runs every binary in turn on a fresh SQLite database: a 2 s warm-up, then
# `wrk -t2 -c64` with the check load of bench/load.sh. Besides requests/s and latency it prints
# the server's CPU time per request (user + system, all threads, and the SQLite writer thread
# alone, from /proc): on this shared, noisy machine requests/s of the same binary moves by
# ±30 % between runs, while CPU per request moves far less, so a change is judged by CPU per
# request over alternating rounds. Build each variant with `cargo build --release` and copy the
# binary aside. Figures are comparable only within one run (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
DURATION=8s
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    -*) echo "usage: bench/ab.sh [--rounds N] [--duration 8s] BINARY..." >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: bench/ab.sh [--rounds N] [--duration 8s] BINARY..." >&2; exit 2; }
command -v wrk >/dev/null || { echo "error: wrk is missing (bench/load.sh installs it)" >&2; exit 1; }

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cat bench/check.lua bench/report.lua > "$WORK/check.lua"
TICKS=$(getconf CLK_TCK)

# cpu_ticks PID [THREAD_NAME]: user + system ticks of the process's threads (or of those named).
cpu_ticks() {
  local total=0 task fields
  for task in /proc/"$1"/task/*; do
    if [ -z "${2:-}" ] || [ "$(cat "$task/comm")" = "$2" ]; then
      read -r -a fields < <(sed 's/.*) //' "$task/stat")
      total=$((total + fields[11] + fields[12]))
    fi
  done
  echo "$total"
}

echo "round binary          req/s   p50 ms   p99 ms   CPU µs/request (writer)"
for round in $(seq 1 "$ROUNDS"); do
  for binary in "$@"; do
    name=$(basename "$binary")
    db="sqlite://$WORK/$round-$name.db"
    token=$("$binary" token create --name ab --role security-team --database-url "$db" 2>/dev/null)
    DEPLOY_SAFETY_LOG=warn "$binary" serve --listen 127.0.0.1:0 --database-url "$db" \
      >"$WORK/out" 2>"$WORK/err" &
    SERVER_PID=$!
    for _ in $(seq 1 500); do grep -q '^deploy-safety listening on ' "$WORK/out" && break; sleep 0.01; done
    url="$(sed -n 's/^deploy-safety listening on //p' "$WORK/out")/api/deploy-safety/security-gate/check"
    [ "$url" != "/api/deploy-safety/security-gate/check" ] || { cat "$WORK/err" >&2; exit 1; }
    auth="Authorization: Bearer $token"
    wrk -t2 -c64 -d2s -s "$WORK/check.lua" -H "$auth" "$url" >/dev/null
    all_before=$(cpu_ticks "$SERVER_PID"); writer_before=$(cpu_ticks "$SERVER_PID" sqlite-writer)
    result=$(wrk -t2 -c64 -d"$DURATION" -s "$WORK/check.lua" -H "$auth" "$url" | grep '^RESULT')
    all_after=$(cpu_ticks "$SERVER_PID"); writer_after=$(cpu_ticks "$SERVER_PID" sqlite-writer)
    read -r _ rps p50 p99 errors requests <<<"$result"
    [ "$errors" -eq 0 ] || { echo "error: $name: $errors of $requests requests failed" >&2; exit 1; }
    awk -v r="$round" -v b="$name" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v n="$requests" \
      -v all=$((all_after - all_before)) -v writer=$((writer_after - writer_before)) -v t="$TICKS" \
      'BEGIN { printf "%5d %-12s %8d %8.2f %8.2f   %6.1f (%5.1f)\n", r, b, rps, p50, p99,
               all / t * 1e6 / n, writer / t * 1e6 / n }'
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  done
done
