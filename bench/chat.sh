#!/usr/bin/env bash
# Chat end to end: MESSAGES (2,000) messages posted over HTTP through the
# gateway by CONCURRENCY (8) clients, each persisted with its outbox event,
# relayed over the bus to realtime and delivered to SUBSCRIBERS (100) sockets
# of a room member. Reports the posting rate and the latency from post to
# each socket (p50/p99), with `panal up` (channels in memory) and again with
# `PANAL_REDIS_URL` set (channels shared through Redis, as replicas run).
source "$(dirname "$0")/lib.sh"
MESSAGES="${MESSAGES:-2000}"
CONCURRENCY="${CONCURRENCY:-8}"
SUBSCRIBERS="${SUBSCRIBERS:-100}"
REDIS="${REDIS:-redis://127.0.0.1:6379}"
ulimit -n "$(ulimit -Hn)"  # 10,000 sockets on each side need the fds

build_release
machine

run_once() { # label
  start_panal
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
  "$PANAL_DEV" ws-fanout --url ws://127.0.0.1:8000/v1/ws --protocol centrifugo --subscribers "$SUBSCRIBERS" \
    --token "$bob" --channel "chat:$room" --messages "$MESSAGES" --pointer /message/body --timeout 300 >"$out" &
  local client=$!
  for _ in $(seq 1 600); do grep -q '^ready$' "$out" && break; sleep 0.1; done
  echo "$1:"
  python3 "$ROOT/bench/chat_post.py" http://127.0.0.1:8000 "$ada" "$room" "$MESSAGES" "$CONCURRENCY"
  wait "$client"
  grep '^{' "$out"
  stop_panal
  trap - EXIT
}

# Posting limits out of the way (the bench posts far faster than people do).
export PANAL_CHAT__MESSAGES_PER_MINUTE=100000000 PANAL_CHAT__MESSAGE_BURST=100000000
run_once "panal up, channels in memory"
export PANAL_REDIS_URL="$REDIS"
run_once "panal up, channels shared through Redis"
unset PANAL_REDIS_URL
