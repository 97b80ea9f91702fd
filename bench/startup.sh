#!/usr/bin/env bash
# `panal up`: time from launch to every service answering, and idle memory.
# Usage: bench/startup.sh [runs]
source "$(dirname "$0")/lib.sh"
RUNS="${1:-10}"
build_release
machine
echo
echo "| run | to table printed (ms, self-reported) | to gateway /readyz 200 (ms) | idle RSS after 2 s (MiB) |"
echo "|---|---|---|---|"
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
  echo "| $i | $table | $ready | $rss |"
  kill -TERM "$pid"
  wait "$pid"
done
