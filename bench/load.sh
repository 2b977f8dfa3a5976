#!/usr/bin/env bash
# The benchmarks: the audited gate check against a bare axum baseline, on SQLite and on
# PostgreSQL (one replica, then two on one database), what a large database changes, and the pure
# core's criterion benchmarks. Every figure is printed with its goal (SPEC §22 and earlier); a
# full run exits 1 when one is missed. Method and latest figures: BENCHMARKS.md.
#
#   bench/load.sh                 full run (release build, 10 s per measurement, 1M-entry scale
#                                 run, then criterion)
#   bench/load.sh --quick         CI's smoke run (debug build, 1 s per measurement, small seed):
#                                 proves the script works; its figures mean nothing and no goal
#                                 is judged
#   bench/load.sh --only-checks   the audited checks and their goals only (no large database,
#                                 audit pages or criterion): for working on the decision path
#   bench/load.sh --postgres URL  also PostgreSQL (a fresh schema in URL's database);
#                                 DEPLOY_SAFETY_BENCH_POSTGRES_URL does the same
#
# Every measurement is wrk with 64 connections and 2 threads on this machine, after a warm-up;
# client and server share the CPUs. Figures are compared as ratios within one run.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
ONLY_CHECKS=0
POSTGRES_URL="${DEPLOY_SAFETY_BENCH_POSTGRES_URL:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only-checks) ONLY_CHECKS=1 ;;
    --postgres) [ $# -ge 2 ] || { echo "usage: --postgres URL" >&2; exit 2; }; POSTGRES_URL="$2"; shift ;;
    *) echo "usage: bench/load.sh [--quick] [--only-checks] [--postgres URL]" >&2; exit 2 ;;
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
PG_SCHEMAS=()
cleanup() {
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for schema in ${PG_SCHEMAS[@]+"${PG_SCHEMAS[@]}"}; do
    PGOPTIONS="-c client_min_messages=warning" psql -q "$POSTGRES_URL" \
      -c "DROP SCHEMA IF EXISTS $schema CASCADE" || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The check load (bench/check.lua: an allowed staging rollback and a production canary start
# denied for want of an override, alternately, both audited) and the report every wrk run ends
# with (bench/report.lua).
cat bench/check.lua bench/report.lua > "$WORK/check.lua"
cp bench/report.lua "$WORK/get.lua"

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

# measure_pair NAME URL_A URL_B SCRIPT TOKEN: as measure, against two servers at once with half
# the connections each (the same 64 in all); records the summed rate, the mean p50 and the worse
# p99.
measure_pair() {
  local name=$1 url_a=$2 url_b=$3 script=$4 token=$5 half=$((CONNECTIONS / 2))
  local auth=(-H "Authorization: Bearer $token")
  wrk -t1 -c"$half" -d"$WARMUP" -s "$script" "${auth[@]}" "$url_a" >/dev/null &
  local warm_a=$!
  wrk -t1 -c"$half" -d"$WARMUP" -s "$script" "${auth[@]}" "$url_b" >/dev/null
  wait "$warm_a"
  wrk -t1 -c"$half" -d"$DURATION" -s "$script" "${auth[@]}" "$url_a" >"$WORK/$name.a" &
  local run_a=$!
  wrk -t1 -c"$half" -d"$DURATION" -s "$script" "${auth[@]}" "$url_b" >"$WORK/$name.b"
  wait "$run_a"
  local a b
  a=$(grep '^RESULT' "$WORK/$name.a")
  b=$(grep '^RESULT' "$WORK/$name.b")
  read -r _ rps_a p50_a p99_a errors_a total_a <<<"$a"
  read -r _ rps_b p50_b p99_b errors_b total_b <<<"$b"
  if [ "$errors_a" -ne 0 ] || [ "$errors_b" -ne 0 ]; then
    echo "error: $name: $errors_a of $total_a and $errors_b of $total_b requests failed" >&2
    exit 1
  fi
  local rps p50 p99
  rps=$(awk -v a="$rps_a" -v b="$rps_b" 'BEGIN { printf "%.0f", a + b }')
  p50=$(awk -v a="$p50_a" -v b="$p50_b" 'BEGIN { printf "%.3f", (a + b) / 2 }')
  p99=$(awk -v a="$p99_a" -v b="$p99_b" 'BEGIN { printf "%.3f", (a > b) ? a : b }')
  echo "$rps $p50 $p99" > "$WORK/$name"
  printf '%-34s %10s req/s   p50 %7s ms   p99 %7s ms   (%s + %s req/s)\n' \
    "$name" "$rps" "$p50" "$p99" "$rps_a" "$rps_b"
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
  if [ "$ONLY_CHECKS" -eq 1 ]; then
    stop_server
    return
  fi
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
if [ "$ONLY_CHECKS" -eq 0 ]; then
  echo "seeding $SEED_ENTRIES audit entries and $SEED_OVERRIDES overrides ($SEED_ACTIVE active)..."
  seed_begin=$(date +%s)
  RUST_BACKTRACE=0 "$BIN/ds-bench-seed" --database-url "sqlite://$WORK/large.db" \
    --audit-entries "$SEED_ENTRIES" --overrides "$SEED_OVERRIDES" --active-overrides "$SEED_ACTIVE" 2>&1 \
    | tail -1
  echo "seeded in $(( $(date +%s) - seed_begin )) s; database $(du -m "$WORK/large.db" | cut -f1) MiB"
  run_server_suite "sqlite large" "sqlite://$WORK/large.db"
fi

# fresh_schema NAME: a new schema in POSTGRES_URL's database (dropped on exit); sets SCHEMA_URL.
fresh_schema() {
  PGOPTIONS="-c client_min_messages=warning" psql -q "$POSTGRES_URL" \
    -c "DROP SCHEMA IF EXISTS $1 CASCADE; CREATE SCHEMA $1"
  PG_SCHEMAS+=("$1")
  local separator='?'
  case "$POSTGRES_URL" in *\?*) separator='&' ;; esac
  SCHEMA_URL="$POSTGRES_URL${separator}options=-c%20search_path%3D$1"
}

# (d) PostgreSQL, when asked: one replica, then two on one (fresh) database
if [ -n "$POSTGRES_URL" ]; then
  echo "postgresql $(psql -Atq "$POSTGRES_URL" -c 'SHOW server_version'): synchronous_commit=$(psql -Atq "$POSTGRES_URL" -c 'SHOW synchronous_commit'), fsync=$(psql -Atq "$POSTGRES_URL" -c 'SHOW fsync')"
  fresh_schema "ds_bench_$$_one"
  ANALYZE_URL="$SCHEMA_URL" run_server_suite "postgres empty" "$SCHEMA_URL"

  fresh_schema "ds_bench_$$_two"
  token=$(token_for "$SCHEMA_URL")
  start_server "postgres replica a" "$SCHEMA_URL"
  replica_a_url=$SERVER_URL replica_a_pid=$SERVER_PID
  start_server "postgres replica b" "$SCHEMA_URL"
  replica_b_url=$SERVER_URL
  measure_pair "postgres two replicas check" "$replica_a_url$API/security-gate/check" \
    "$replica_b_url$API/security-gate/check" "$WORK/check.lua" "$token"
  stop_server
  SERVER_PID=$replica_a_pid
  stop_server
fi

# The pure core's criterion benchmarks, so one command gives every figure in BENCHMARKS.md.
if [ "$QUICK" -eq 0 ] && [ "$ONLY_CHECKS" -eq 0 ]; then
  echo
  echo "== criterion: the pure core (medians)"
  cargo bench -q --locked -p deploy-safety-core --bench core >"$WORK/criterion.log" 2>&1 \
    || { cat "$WORK/criterion.log" >&2; exit 1; }
  bench/medians.sh
fi

MISSED=0
# goal LABEL VALUE OP TARGET [UNIT]: prints a figure beside its goal; counts a miss (a full run
# exits 1 if any). The quick run judges nothing: its figures mean nothing.
goal() {
  local label=$1 value=$2 op=$3 target=$4 unit=${5:-} verdict
  if [ "$QUICK" -eq 1 ]; then
    verdict="not judged (--quick)"
  elif awk -v v="$value" -v t="$target" -v op="$op" \
      'BEGIN { exit !((op == ">=" && v >= t) || (op == "<=" && v <= t) || (op == "<" && v < t)) }'; then
    verdict="met"
  else
    verdict="MISSED"
    MISSED=$((MISSED + 1))
  fi
  printf '%-58s %10s %-4s  goal %2s %s %-4s  %s\n' "$label" "$value" "$unit" "$op" "$target" "$unit" "$verdict"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
field() { cut -d' ' -f"$2" "$WORK/$1"; }
# median NAME: a criterion benchmark's median in ns, from the run above.
median() {
  python3 -c 'import json, sys; print("%.1f" % json.load(open(sys.argv[1]))["median"]["point_estimate"])' \
    "$CARGO_TARGET_DIR/criterion/$1/new/estimates.json"
}

echo
echo "== goals (ratios within this run)"
goal "SQLite: audited check / bare endpoint, req/s" \
  "$(ratio "$(field 'sqlite empty check' 1)" "$(field 'baseline (bare axum)' 1)")" ">=" 0.5
goal "SQLite: audited check p99" "$(field 'sqlite empty check' 3)" "<=" 5 ms
if [ -n "$POSTGRES_URL" ]; then
  goal "PostgreSQL: audited check / SQLite's, req/s" \
    "$(ratio "$(field 'postgres empty check' 1)" "$(field 'sqlite empty check' 1)")" ">=" 0.5
  goal "PostgreSQL: audited check p99" "$(field 'postgres empty check' 3)" "<=" 10 ms
  goal "PostgreSQL: two replicas / one, req/s" \
    "$(ratio "$(field 'postgres two replicas check' 1)" "$(field 'postgres empty check' 1)")" ">=" 1.0
  goal "PostgreSQL: two replicas' audited check p99" "$(field 'postgres two replicas check' 3)" "<=" 10 ms
fi
if [ "$ONLY_CHECKS" -eq 0 ]; then
  for what in "check" "audit first page" "audit filtered page"; do
    goal "large / empty database, $what p99" \
      "$(ratio "$(field "sqlite large $what" 3)" "$(field "sqlite empty $what" 3)")" "<=" 1.2
    goal "empty / large database, $what req/s" \
      "$(ratio "$(field "sqlite empty $what" 1)" "$(field "sqlite large $what" 1)")" "<=" 1.2
  done
  for label in "sqlite empty" "sqlite large"; do
    goal "$label: start-up" "$(cat "$WORK/$label.startup")" "<" 1000 ms
    goal "$label: RSS idle" "$(( $(cat "$WORK/$label.rss_idle") / 1024 ))" "<" 64 MiB
    goal "$label: RSS peak under load" "$(( $(cat "$WORK/$label.rss_peak") / 1024 ))" "<" 256 MiB
  done
fi
if [ "$QUICK" -eq 0 ] && [ "$ONLY_CHECKS" -eq 0 ]; then
  for bench in active_overrides/0 active_overrides/1 active_overrides/10000 \
      service_no_freezes/10000_overrides freezes_1000_soft_lifted/10000_overrides \
      freezes_1000_hard_denied/10000_overrides all_features/0_overrides \
      all_features/10000_overrides; do
    goal "gate decision, $bench" "$(median "gate_decision/$bench")" "<" 1000 ns
  done
  # Flat: 10,000 active overrides cost what one does; with every part-two input, what none do.
  goal "gate decision, 10000 / 1 active overrides" \
    "$(ratio "$(median gate_decision/active_overrides/10000)" "$(median gate_decision/active_overrides/1)")" "<=" 1.5
  goal "gate decision, every input: 10000 / 0 overrides" \
    "$(ratio "$(median gate_decision/all_features/10000_overrides)" "$(median gate_decision/all_features/0_overrides)")" "<=" 1.5
fi
if [ "$MISSED" -gt 0 ]; then
  echo "$MISSED goal(s) missed" >&2
  exit 1
fi
