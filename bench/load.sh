#!/usr/bin/env bash
# Load test with Locust: a realistic mix of people (bench/load/locustfile.py)
# against the gateway, reported per endpoint beside seed 002's KPIs (p95 <
# 200 ms, > 1,000 requests/s per service, < 0.1 % errors), with the memory
# of every Panal process sampled throughout (a soak: DURATION=10m).
#
#   bash bench/load.sh                          # panal up, SQLite, embedded bus
#   MODE=serve bash bench/load.sh               # a process per service: PostgreSQL, NATS, Redis
#   USERS=200 DURATION=10m bash bench/load.sh   # the soak
#   USERS=40 LOAD_WAIT_MIN=0 LOAD_WAIT_MAX=0 bash bench/load.sh   # throughput: no think time
#
# Locust runs on the same machine as Panal (127.0.0.1 only): on 2 cores the
# generator takes a share of the CPU, which the report shows beside Panal's.
source "$(dirname "$0")/lib.sh"

MODE=${MODE:-up}
USERS=${USERS:-100}
SPAWN=${SPAWN:-20}
DURATION=${DURATION:-60s}
SAMPLE_SECS=${SAMPLE_SECS:-5}
LOAD_PG=${LOAD_PG:-postgres://postgres@127.0.0.1:5432}
LOAD_NATS=${LOAD_NATS:-nats://127.0.0.1:4222}
LOAD_REDIS=${LOAD_REDIS:-redis://127.0.0.1:6379}

command -v locust >/dev/null || pip install --quiet 'locust==2.47.0'
# The same statically linked release build as the container image.
triple=x86_64-unknown-linux-gnu
if [ -z "${BENCH_PANAL:-}" ]; then
  (cd "$ROOT" && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$triple" -p panal >&2)
  PANAL="$CARGO_TARGET_DIR/$triple/release/panal"
fi
mkdir -p "$WORK"
rm -rf "$WORK/data" "$WORK/load"*
PIDS=()

services=(auth users realtime chat game tournament stats ai ledger notify gateway)
with_db=(auth users chat game tournament stats ai ledger notify)
ports=(8001 8002 8003 8004 8005 8006 8007 8008 8009 8010 8000)

start_serve() {
  local secrets="$WORK/secrets" namespace="load-$$"
  # The service clients' ids and secrets, made as an operator makes them
  # (its database files go unused: this run's databases are below).
  rm -rf "$secrets"
  bash "$ROOT/deploy/compose/secrets.sh" "$secrets" >/dev/null
  for s in "${with_db[@]}"; do
    psql -q "$LOAD_PG/postgres" -c "DROP DATABASE IF EXISTS load_$s WITH (FORCE)" -c "CREATE DATABASE load_$s"
  done
  PANAL_DATABASE_URL="$LOAD_PG/load_auth" "$PANAL" auth clients provision --secrets-dir "$secrets" >/dev/null
  export PANAL_CONFIG="$ROOT/bench/panal-bench.toml" PANAL_LOG=warn PANAL_HTTP__ACCESS_LOG=false
  export PANAL_BUS_URL="$LOAD_NATS" PANAL_BUS__NAMESPACE="$namespace" PANAL_REDIS_URL="$LOAD_REDIS"
  for i in "${!services[@]}"; do
    s=${services[$i]}
    export "PANAL_${s^^}_URL=http://127.0.0.1:${ports[$i]}"
  done
  for s in "${services[@]}"; do
    env_args=(PANAL_DATA_DIR="$WORK/data/$s")
    case " ${with_db[*]} " in *" $s "*) env_args+=(PANAL_DATABASE_URL="$LOAD_PG/load_$s") ;; esac
    case "$s" in ai | game | tournament)
      env_args+=("PANAL_CLIENTS__${s^^}__ID_FILE=$secrets/$s-client-id" "PANAL_CLIENTS__${s^^}__SECRET_FILE=$secrets/$s-client-secret") ;;
    esac
    [ "$s" = game ] && env_args+=(PANAL_GAME__ADVERTISE_URL=http://127.0.0.1:8005)
    env "${env_args[@]}" setsid "$PANAL" serve "$s" >"$WORK/$s.out" 2>"$WORK/$s.err" </dev/null &
    PIDS+=($!)
  done
  for p in "${ports[@]}"; do wait_http "http://127.0.0.1:$p/readyz"; done
}

stop_all() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop_all EXIT

if [ "$MODE" = serve ]; then
  start_serve
else
  start_panal
  PIDS=("$PANAL_PID")
fi

# Resident memory (KiB) and CPU ticks of every Panal process, every SAMPLE_SECS.
(
  while true; do
    rss=0 ticks=0
    for p in "${PIDS[@]}"; do
      [ -r "/proc/$p/status" ] || continue
      rss=$((rss + $(awk '/VmRSS/{print $2}' "/proc/$p/status")))
      ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$(date +%s) $rss $ticks"
    sleep "$SAMPLE_SECS"
  done
) >"$WORK/load-memory.txt" &
sampler=$!

echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr); $("$PANAL" --version)"
echo "mode: $MODE, $USERS people (spawned $SPAWN/s), think time ${LOAD_WAIT_MIN:-0.5}–${LOAD_WAIT_MAX:-2.0} s, $DURATION, locust $(locust --version 2>&1 | awk '{print $2}')"
locust -f "$ROOT/bench/load/locustfile.py" --headless --host http://127.0.0.1:8000 \
  -u "$USERS" -r "$SPAWN" -t "$DURATION" --csv "$WORK/load" --only-summary --loglevel WARNING >"$WORK/locust.out" 2>&1 || true
kill "$sampler" 2>/dev/null || true
python3 "$ROOT/bench/load/report.py" "$WORK/load_stats.csv" "$WORK/load-memory.txt" "$(getconf CLK_TCK)"
for s in "${services[@]}"; do
  [ -s "$WORK/$s.err" ] && grep -c '"level":"ERROR"' "$WORK/$s.err" | sed "s/^/$s: error lines: /" || true
done
