#!/usr/bin/env bash
# The event bus end to end (outbox commit → relay → broker → inbox + handler,
# all in one process as in `panal up`) for each backend, beside the broker alone (same client library) and the
# producer's bare commit rate, measured in the same run.
# Usage: bench/bus.sh [backends...]   (default: embedded nats rabbitmq)
# Databases: SQLite files by default; BENCH_DB=postgres for PostgreSQL.
source "$(dirname "$0")/lib.sh"
BACKENDS=("${@:-embedded nats rabbitmq}")
read -r -a BACKENDS <<<"${BACKENDS[*]}"
NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
BENCH_DB="${BENCH_DB:-sqlite}"
build_release
machine
echo "databases: $BENCH_DB"
export PANAL_LOG=warn

export PGOPTIONS='-c client_min_messages=warning'

db_url() { # name
  if [ "$BENCH_DB" = postgres ]; then
    local name="panal_bench_$1_$$"
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $name" >/dev/null
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $name" >/dev/null
    echo "postgres://postgres@127.0.0.1:5432/$name"
  else
    rm -f "$WORK/$1.db"*
    echo "sqlite://$WORK/$1.db"
  fi
}

bus_url() {
  case $1 in
    embedded) echo "sqlite://$WORK/bus.db" ;;
    nats) echo "$NATS_URL" ;;
    rabbitmq) echo "$AMQP_URL" ;;
  esac
}

# run backend count per_tx pace_us → prints "events/s | p50 | p99"
run() {
  local backend=$1 count=$2 per_tx=$3 pace=$4
  rm -f "$WORK/bus.db"*
  local out
  out=$(PANAL_BUS_URL=$(bus_url "$backend") "$PANAL_DEV" bus-pipeline --producer-db "$(db_url producer)" \
    --consumer-db "$(db_url consumer)" --count "$count" --per-tx "$per_tx" --pace-us "$pace")
  python3 -c "
import json
r=json.loads('$out')
assert r['applied']==$count and r['max_times']==1, r
print(f\"{r['per_second']:,.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms\")"
}

commit_rate() { # count per_tx
  local db
  db=$(db_url commits)
  "$PANAL_DEV" bus-produce --db "$db" --kind panal.bench.commit.v1 --count "$1" --per-tx "$2" --no-relay \
    | python3 -c "import sys,re; m=re.search(r'committed (\d+) events in ([\d.]+) s', sys.stdin.read()); print(f'{int(m[1])/float(m[2]):,.0f}')"
}

echo
echo "reference, producer side: bare outbox commits, no bus"
echo "  1 event per transaction:   $(commit_rate 3000 1) events/s"
echo "  100 events per transaction: $(commit_rate 20000 100) events/s"
echo
echo "| backend | load | events/s end to end | p50 commit→handler | p99 commit→handler |"
echo "|---|---|---|---|---|"
for b in "${BACKENDS[@]}"; do
  echo "| $b | 3,000 events, 1 per transaction, as fast as possible | $(run "$b" 3000 1 0) |"
  echo "| $b | 20,000 events, 100 per transaction | $(run "$b" 20000 100 0) |"
  echo "| $b | 1,000 events, 1 per transaction, one every 5 ms (latency) | $(run "$b" 1000 1 5000) |"
done
echo
echo "| broker alone (same client, confirms + acks, no database) | messages/s | p50 | p99 |"
echo "|---|---|---|---|"
for b in "${BACKENDS[@]}"; do
  [ "$b" = embedded ] && continue
  r=$("$PANAL_DEV" bus-raw --url "$(bus_url "$b")" --count 20000)
  python3 -c "import json; r=json.loads('$r'); print(f\"| $b | {r['per_second']:,.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |\")"
done

if [ "$BENCH_DB" = postgres ]; then
  for name in producer consumer commits; do
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS panal_bench_${name}_$$ WITH (FORCE)" >/dev/null
  done
fi
