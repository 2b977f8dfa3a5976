#!/usr/bin/env bash
# The benchmarks: the audited gate check against a bare axum baseline, what a large database
# changes, and the pure core's criterion benchmarks. Method and latest figures: BENCHMARKS.md.
#
#   bench/load.sh                 full run (release build, 10 s per measurement, 1M-entry scale
#                                 run, then criterion)
#   bench/load.sh --quick         CI's smoke run (debug build, 1 s per measurement, small seed):
#                                 proves the script works; its figures mean nothing
#   bench/load.sh --postgres URL  also the check and audit reads on PostgreSQL (a fresh schema in URL's
#                                 database); DEPLOY_SAFETY_BENCH_POSTGRES_URL does the same
#
# Every measurement is wrk with 64 connections and 2 threads on this machine, after a 2 s warm-up;
# client and server share the CPUs. Figures are compared as ratios within one run.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
POSTGRES_URL="${DEPLOY_SAFETY_BENCH_POSTGRES_URL:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --postgres) POSTGRES_URL="$2"; shift ;;
    *) echo "usage: bench/load.sh [--quick] [--postgres URL]" >&2; exit 2 ;;
  esac
  shift
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deploy-safety/target}"
if [ "$QUICK" -eq 1 ]; then
  PROFILE=debug; DURATION=1s; WARMUP=1s; CONNECTIONS=16
  SEED_ENTRIES=20000; SEED_OVERRIDES=500; SEED_ACTIVE=20
  cargo build -q --locked -p deploy-safety -p deploy-safety-bench
else
  PROFILE=release; DURATION=10s; WARMUP=2s; CONNECTIONS=64
  SEED_ENTRIES=1000000; SEED_OVERRIDES=10000; SEED_ACTIVE=100
  cargo build -q --locked --release -p deploy-safety -p deploy-safety-bench
fi
BIN="$CARGO_TARGET_DIR/$PROFILE"

if ! command -v wrk >/dev/null 2>&1; then
  echo "Installing wrk (Debian package)" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi

WORK=$(mktemp -d)
PIDS=()
PG_SCHEMA=""
cleanup() {
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$PG_SCHEMA" ]; then
    PGOPTIONS="-c client_min_messages=warning" psql -q "$POSTGRES_URL" \
      -c "DROP SCHEMA IF EXISTS $PG_SCHEMA CASCADE" || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The check bodies: an allowed staging rollback and a production canary start that is denied
# for want of an override, alternately (both audited).
cat > "$WORK/check.lua" <<'LUA'
local bodies = {
  '{"action": "deploy.rollback", "environment": "staging", "releaseId": "v1.2.3-build.20261126.1842+sha.9f0c2ab4e1d7"}',
  '{"action": "deploy.canary.start", "environment": "production", "releaseId": "v1.2.3-build.20261126.1842+sha.9f0c2ab4e1d7"}',
}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])
end
LUA
cat > "$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.0f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout, summary.requests))
end
LUA
cat "$WORK/report.lua" >> "$WORK/check.lua"
cp "$WORK/report.lua" "$WORK/get.lua"

# measure NAME URL SCRIPT [TOKEN]: a warm-up, then the measured run; prints one table row and
# records "rps p50 p99" in $WORK/NAME.
measure() {
  local name=$1 url=$2 script=$3 token=${4:-}
  local auth=()
  [ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
  wrk -t2 -c"$CONNECTIONS" -d"$WARMUP" -s "$script" ${auth[@]+"${auth[@]}"} "$url" >/dev/null
  local out
  out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$script" ${auth[@]+"${auth[@]}"} "$url" | grep '^RESULT')
  read -r _ rps p50 p99 errors total <<<"$out"
  if [ "$errors" -ne 0 ]; then
    echo "error: $name: $errors of $total requests failed (non-2xx or socket errors)" >&2
    exit 1
  fi
  echo "$rps $p50 $p99" > "$WORK/$name"
  printf '%-34s %10s req/s   p50 %7s ms   p99 %7s ms\n' "$name" "$rps" "$p50" "$p99"
}

# rss_kib PID [peak]: resident memory now, or its peak.
rss_kib() {
  local field=VmRSS
  [ "${2:-}" = peak ] && field=VmHWM
  awk -v f="$field:" '$1 == f {print $2}' "/proc/$1/status"
}

# start_server NAME DATABASE_URL: starts the server, waits for its address; sets SERVER_URL,
# SERVER_PID, STARTUP_MS.
start_server() {
  local name=$1 url=$2
  local log="$WORK/$name.out"
  local begin end
  begin=$(date +%s%N)
  DEPLOY_SAFETY_LOG=warn "$BIN/deploy-safety" serve --listen 127.0.0.1:0 --database-url "$url" \
    >"$log" 2>"$WORK/$name.err" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 1 600); do
    if grep -q '^deploy-safety listening on ' "$log"; then break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$WORK/$name.err" >&2; exit 1; fi
    sleep 0.01
  done
  end=$(date +%s%N)
  SERVER_URL=$(sed -n 's/^deploy-safety listening on //p' "$log")
  [ -n "$SERVER_URL" ] || { echo "error: $name did not start" >&2; exit 1; }
  STARTUP_MS=$(( (end - begin) / 1000000 ))
}

stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || true
  # Forget it, so the cleanup never signals a reused process id.
  local remaining=()
  for pid in "${PIDS[@]}"; do [ "$pid" = "$SERVER_PID" ] || remaining+=("$pid"); done
  PIDS=(${remaining[@]+"${remaining[@]}"})
}

token_for() {
  "$BIN/deploy-safety" token create --name "bench-load" --role security-team --database-url "$1"
}

API=/api/deploy-safety
FILTER="environment=production&decision=denied"

# run_server_suite LABEL DATABASE_URL: startup, idle memory, the audited check, two audit
# pages, peak memory.
run_server_suite() {
  local label=$1 url=$2 token
  token=$(token_for "$url")
  start_server "$label" "$url"
  sleep 1
  local idle
  idle=$(rss_kib "$SERVER_PID")
  echo "$STARTUP_MS" > "$WORK/$label.startup"
  echo "$idle" > "$WORK/$label.rss_idle"
  measure "$label check" "$SERVER_URL$API/security-gate/check" "$WORK/check.lua" "$token"
  if [ -n "${ANALYZE_URL:-}" ]; then
    # PostgreSQL plans the audit filters well only with statistics of the rows the check load
    # just wrote; autovacuum would gather them within a minute.
    psql -q "$ANALYZE_URL" -c "ANALYZE audit_log"
  fi
  measure "$label audit first page" "$SERVER_URL$API/audit" "$WORK/get.lua" "$token"
  measure "$label audit filtered page" "$SERVER_URL$API/audit?$FILTER" "$WORK/get.lua" "$token"
  local peak
  peak=$(rss_kib "$SERVER_PID" peak)
  echo "$peak" > "$WORK/$label.rss_peak"
  printf '%-34s start-up %s ms, RSS idle %s MiB, peak under load %s MiB\n' \
    "$label" "$STARTUP_MS" "$((idle / 1024))" "$((peak / 1024))"
  stop_server
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
field() { cut -d' ' -f"$2" "$WORK/$1"; }

echo "== deploy-safety load benchmark ($PROFILE build, wrk -t2 -c$CONNECTIONS -d$DURATION)"
echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"

# (a) the baseline
"$BIN/ds-bench-baseline" >"$WORK/baseline.out" &
PIDS+=($!)
for _ in $(seq 1 200); do grep -q '^listening on ' "$WORK/baseline.out" && break; sleep 0.01; done
BASELINE_URL=$(sed -n 's/^listening on //p' "$WORK/baseline.out")
measure "baseline (bare axum)" "$BASELINE_URL/check" "$WORK/check.lua"

# (b) the audited check on a fresh SQLite database (WAL, synchronous=FULL)
run_server_suite "sqlite empty" "sqlite://$WORK/empty.db"

# (c) the same on a database with SEED_ENTRIES audit entries and SEED_OVERRIDES overrides
echo "seeding $SEED_ENTRIES audit entries and $SEED_OVERRIDES overrides ($SEED_ACTIVE active)..."
seed_begin=$(date +%s)
RUST_BACKTRACE=0 "$BIN/ds-bench-seed" --database-url "sqlite://$WORK/large.db" \
  --audit-entries "$SEED_ENTRIES" --overrides "$SEED_OVERRIDES" --active-overrides "$SEED_ACTIVE" 2>&1 \
  | tail -1
echo "seeded in $(( $(date +%s) - seed_begin )) s; database $(du -m "$WORK/large.db" | cut -f1) MiB"
run_server_suite "sqlite large" "sqlite://$WORK/large.db"

# (d) PostgreSQL, when asked
if [ -n "$POSTGRES_URL" ]; then
  schema="ds_bench_$$"
  PG_SCHEMA=$schema
  PGOPTIONS="-c client_min_messages=warning" psql -q "$POSTGRES_URL" \
    -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema"
  separator='?'; case "$POSTGRES_URL" in *\?*) separator='&' ;; esac
  echo "postgresql: synchronous_commit=$(psql -Atq "$POSTGRES_URL" -c 'SHOW synchronous_commit'), fsync=$(psql -Atq "$POSTGRES_URL" -c 'SHOW fsync')"
  ANALYZE_URL="$POSTGRES_URL${separator}options=-c%20search_path%3D$schema" \
    run_server_suite "postgres empty" "$POSTGRES_URL${separator}options=-c%20search_path%3D$schema"
  PGOPTIONS="-c client_min_messages=warning" psql -q "$POSTGRES_URL" -c "DROP SCHEMA $schema CASCADE"
  PG_SCHEMA=""
fi

echo
echo "== ratios (same run)"
printf '%-60s %s\n' "audited check / baseline, req/s (target >= 0.5):" \
  "$(ratio "$(field 'sqlite empty check' 1)" "$(field 'baseline (bare axum)' 1)")"
printf '%-60s %s ms\n' "audited check p99 on SQLite (target < 5 ms):" "$(field 'sqlite empty check' 3)"
if [ -n "$POSTGRES_URL" ]; then
  printf '%-60s %s\n' "audited check on PostgreSQL / baseline, req/s:" \
    "$(ratio "$(field 'postgres empty check' 1)" "$(field 'baseline (bare axum)' 1)")"
fi
for what in "check" "audit first page" "audit filtered page"; do
  printf '%-60s %s\n' "large / empty database, $what p99 (target <= 1.2):" \
    "$(ratio "$(field "sqlite large $what" 3)" "$(field "sqlite empty $what" 3)")"
  printf '%-60s %s\n' "empty / large database, $what req/s (target <= 1.2):" \
    "$(ratio "$(field "sqlite empty $what" 1)" "$(field "sqlite large $what" 1)")"
done
printf '%-60s %s / %s ms\n' "start-up, empty / large database (target < 1000 ms):" \
  "$(cat "$WORK/sqlite empty.startup")" "$(cat "$WORK/sqlite large.startup")"
printf '%-60s %s / %s MiB\n' "RSS idle, empty / large (target < 64 MiB):" \
  "$(( $(cat "$WORK/sqlite empty.rss_idle") / 1024 ))" "$(( $(cat "$WORK/sqlite large.rss_idle") / 1024 ))"
printf '%-60s %s / %s MiB\n' "RSS peak under load, empty / large (target < 256 MiB):" \
  "$(( $(cat "$WORK/sqlite empty.rss_peak") / 1024 ))" "$(( $(cat "$WORK/sqlite large.rss_peak") / 1024 ))"

# The pure core's criterion benchmarks, so one command gives every figure in BENCHMARKS.md.
if [ "$QUICK" -eq 0 ]; then
  echo
  echo "== criterion: the pure core (medians)"
  cargo bench -q --locked -p deploy-safety-core --bench core >"$WORK/criterion.log" 2>&1 \
    || { cat "$WORK/criterion.log" >&2; exit 1; }
  bench/medians.sh
fi
