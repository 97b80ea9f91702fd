#!/usr/bin/env bash
# `panal up`: time from launch to every service answering, and idle memory.
# Usage: bench/startup.sh [runs]
source "$(dirname "$0")/lib.sh"
RUNS="${1:-10}"
build_release
machine
echo
echo "Each run starts on an empty data directory (databases created, migrations run, a signing key generated)."
echo "Reference in the same run: nginx from launch to its first 200, measured by the same polling loop (10 ms steps)."
echo
echo "| run | panal: to table printed (ms, self-reported) | panal: to gateway /readyz 200 (ms) | panal: idle RSS after 2 s (MiB) | nginx: to first 200 (ms) |"
echo "|---|---|---|---|---|"
for i in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/data"
  mkdir -p "$WORK"
  start=$(date +%s%N)
  PANAL_LOG=warn "$PANAL" up --data-dir "$WORK/data" >"$WORK/up.out" 2>"$WORK/up.err" &
  pid=$!
  wait_http "http://127.0.0.1:8000/readyz"
  ready=$(( ($(date +%s%N) - start) / 1000000 ))
  sleep 2
  rss=$(awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$pid/status")
  table=$(grep -o 'ready in [0-9]* ms' "$WORK/up.out" | grep -o '[0-9]*')
  kill -TERM "$pid"
  wait "$pid"
  start=$(date +%s%N)
  start_nginx 2 "server { listen 127.0.0.1:9080; location / { return 200 ok; } }"
  wait_http "http://127.0.0.1:9080/"
  nginx_ready=$(( ($(date +%s%N) - start) / 1000000 ))
  stop_nginx
  echo "| $i | $table | $ready | $rss | $nginx_ready |"
done
