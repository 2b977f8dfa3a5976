#!/usr/bin/env bash
# Where a PostgreSQL-backed check spends its time: N replicas (1 or 2) on a fresh schema under
# 64 connections of the check load (split between them) for 8 s, while `perf record -a` samples
# every process for 5 s and one psql session reads `pg_stat_activity` every 0.1 s (what the busy
# backends wait on). Needs root for `perf -a` (Debian's linux-perf).
#
#   bench/pg-profile.sh BINARY REPLICAS [POSTGRES_URL]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/pg-profile.sh BINARY REPLICAS [POSTGRES_URL]" >&2; exit 2; }
binary=$1 replicas=$2 pg=${3:-postgres://postgres@127.0.0.1:5432/test}
for tool in wrk perf psql; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing" >&2; exit 1; }
done
schema=ds_profile_$$
WORK=$(mktemp -d)
SERVERS=()
cleanup() {
  for pid in ${SERVERS[@]+"${SERVERS[@]}"}; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PGOPTIONS="-c client_min_messages=warning" psql -q "$pg" -c "DROP SCHEMA IF EXISTS $schema CASCADE" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
PGOPTIONS="-c client_min_messages=warning" psql -q "$pg" -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema"
url="$pg?options=-c%20search_path%3D$schema"
cat bench/check.lua bench/report.lua > "$WORK/check.lua"
token=$("$binary" token create --name profile --role security-team --database-url "$url" 2>/dev/null)
urls=()
for i in $(seq 1 "$replicas"); do
  DEPLOY_SAFETY_LOG=warn "$binary" serve --listen 127.0.0.1:0 --database-url "$url" >"$WORK/out$i" 2>"$WORK/err$i" &
  SERVERS+=($!)
  for _ in $(seq 1 500); do grep -q '^deploy-safety listening on ' "$WORK/out$i" && break; sleep 0.01; done
  urls+=("$(sed -n 's/^deploy-safety listening on //p' "$WORK/out$i")/api/deploy-safety/security-gate/check")
done
connections=$((64 / replicas))
auth="Authorization: Bearer $token"
loads=()
for u in "${urls[@]}"; do wrk -t1 -c"$connections" -d2s -s "$WORK/check.lua" -H "$auth" "$u" >/dev/null & loads+=($!); done
wait "${loads[@]}"
loads=()
for i in "${!urls[@]}"; do
  wrk -t1 -c"$connections" -d8s -s "$WORK/check.lua" -H "$auth" "${urls[$i]}" >"$WORK/result$i" & loads+=($!)
done
sleep 1
printf '%s\n' "SELECT coalesce(wait_event_type, 'cpu') || ':' || coalesce(wait_event, '-') || ' ' || state FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND state <> 'idle' \\watch 0.1" \
  | { timeout 5 psql -Atq "$pg" || true; } >"$WORK/waits" &
sampler=$!
perf record -a -F 499 -o "$WORK/perf.data" -- sleep 5 >/dev/null 2>&1
wait "${loads[@]}" "$sampler"
echo "-- wrk (RESULT requests/s p50_ms p99_ms errors requests), one line per replica:"
grep -h '^RESULT' "$WORK"/result*
echo "-- busy backends' states, samples over 5 s:"
sort "$WORK/waits" | uniq -c | sort -rn | head -12
echo "-- CPU by process name, share of all samples on $(nproc) CPUs (swapper: idle):"
perf report -i "$WORK/perf.data" --sort comm --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
