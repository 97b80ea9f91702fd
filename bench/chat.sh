#!/usr/bin/env bash
# Chat end to end: MESSAGES (2,000) messages posted over HTTP through the
# gateway by CONCURRENCY (8) clients, each persisted with its outbox event,
# relayed over the bus to realtime and delivered to SUBSCRIBERS (100) sockets
# of a room member. Reports the posting rate and the latency from post to
# each socket (p50/p99), with `panal up` (channels in memory), again with
# `PANAL_REDIS_URL` set (channels shared through Redis, as replicas run), and
# with two realtime replicas over Redis: the sockets on a second realtime
# process (`panal serve realtime` on port 8103), so that every message crosses
# from the replica that follows the bus to the other one through Redis.
source "$(dirname "$0")/lib.sh"
MESSAGES="${MESSAGES:-2000}"
CONCURRENCY="${CONCURRENCY:-8}"
SUBSCRIBERS="${SUBSCRIBERS:-100}"
REDIS="${REDIS:-redis://127.0.0.1:6379}"
ulimit -n "$(ulimit -Hn)"  # 10,000 sockets on each side need the fds

build_release
machine

run_once() { # label [socket-url]
  local url="${2:-ws://127.0.0.1:8000/v1/ws}"
  start_panal
  local replica=""
  if [ "$url" != "ws://127.0.0.1:8000/v1/ws" ]; then
    # The second replica: its own data directory (it follows no bus of the
    # first's), the same Redis, auth and chat found at their usual ports.
    rm -rf "$WORK/data-replica"
    PANAL_DATA_DIR="$WORK/data-replica" PANAL_LOG=warn PANAL_HTTP__ACCESS_LOG=false \
      setsid "$PANAL" serve realtime --port 8103 >"$WORK/replica.out" 2>"$WORK/replica.err" </dev/null &
    replica=$!
    wait_http http://127.0.0.1:8103/readyz
  fi
  trap stop_panal EXIT
  local ada bob room
  ada=$(sign_in "ada-$RANDOM@example.com")
  bob=$(sign_in "bob-$RANDOM@example.com")
  room=$(curl -sf -X POST http://127.0.0.1:8000/v1/chat/rooms -H "authorization: Bearer $ada" \
    -H 'content-type: application/json' -d "{\"name\":\"bench-$RANDOM\",\"visibility\":\"public\"}" | json_field id)
  curl -sf -o /dev/null -X POST "http://127.0.0.1:8000/v1/chat/rooms/$room/join" -H "authorization: Bearer $bob" \
    -H 'content-type: application/json' -d '{}'
  local out="$WORK/chat-fanout.out"
  : >"$out"
  "$PANAL_DEV" ws-fanout --url "$url" --protocol centrifugo --subscribers "$SUBSCRIBERS" \
    --token "$bob" --channel "chat:$room" --messages "$MESSAGES" --pointer /message/body --timeout 300 >"$out" &
  local client=$!
  for _ in $(seq 1 600); do grep -q '^ready$' "$out" && break; sleep 0.1; done
  echo "$1:"
  python3 "$ROOT/bench/chat_post.py" http://127.0.0.1:8000 "$ada" "$room" "$MESSAGES" "$CONCURRENCY"
  wait "$client"
  grep '^{' "$out"
  if [ -n "$replica" ]; then kill -TERM "$replica"; wait "$replica" || true; fi
  stop_panal
  trap - EXIT
}

# Posting limits out of the way (the bench posts far faster than people do).
export PANAL_CHAT__MESSAGES_PER_MINUTE=100000000 PANAL_CHAT__MESSAGE_BURST=100000000
run_once "panal up, channels in memory"
export PANAL_REDIS_URL="$REDIS"
run_once "panal up, channels shared through Redis"
run_once "two realtime replicas over Redis (sockets on the second)" ws://127.0.0.1:8103/v1/ws
unset PANAL_REDIS_URL
