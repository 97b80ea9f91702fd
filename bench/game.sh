#!/usr/bin/env bash
# Concurrent 60 Hz matches in one game process (`panal up`, release build):
# for each LEVELS count (100 250 500 1000), matches are created over HTTP
# through the gateway (Ada creates, Bob joins; points to win 21, nobody
# moves, so the serves go in and matches end and are topped up), then for
# WINDOW (10) seconds the script reads game's /metrics and the process:
# tick lateness p50/p99 (how late the clock stepped each tick after it was
# due) and jitter (how far the time between two steps strays from the ticks
# stepped), the time to step every match, the CPU and
# resident memory of the whole `panal up` process, frames published and
# broadcasts skipped; and the bytes a player's socket receives per second
# (a frame as realtime pushes it, times 30). Then, with the last level's
# matches still running, the input-to-broadcast latency: SAMPLES (200) key
# presses over the socket's rpc, each timed to the first frame that shows it
# (bench/game_input.py, the Centrifugo SDK for Python).
source "$(dirname "$0")/lib.sh"
LEVELS="${LEVELS:-100 250 500 1000}"
WINDOW="${WINDOW:-10}"
SAMPLES="${SAMPLES:-200}"

build_release
machine

# Nobody is heard from during the bench: away players would pause matches.
export PANAL_GAME__ABSENT_AFTER_MS=3600000 PANAL_GAME__MAX_LIVE_MATCHES=100000
start_panal
trap stop_panal EXIT
ADA=$(sign_in "ada-game@example.com")
BOB=$(sign_in "bob-game@example.com")
python3 "$ROOT/bench/game_matches.py" http://127.0.0.1:8000 http://127.0.0.1:8005 "$PANAL_PID" "$ADA" "$BOB" "$WINDOW" $LEVELS
python3 "$ROOT/bench/game_input.py" ws://127.0.0.1:8000/v1/ws http://127.0.0.1:8000 "$ADA" "$BOB" "$SAMPLES"
