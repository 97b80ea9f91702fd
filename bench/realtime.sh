#!/usr/bin/env bash
# Realtime beside soketi (a uWebSockets.js server speaking the Pusher
# protocol), measured by the same client in the same run:
#
# - memory per idle connection: SUBSCRIBERS (10,000) sockets opened and
#   subscribed to one channel; the server's resident memory before and after;
# - fan-out: MESSAGES (20) publications to that channel, INTERVAL (0.5 s)
#   apart, each to every subscriber: latency of every delivery and time to the
#   last delivery of each message (p50/p99).
#
# The client is `panal-dev ws-fanout` (Rust, tokio-tungstenite), spreading
# connections over 127.0.0.1-4 source addresses. Soketi is installed from npm
# into $WORK/soketi (its uWebSockets.js dependency points at GitHub; the npm
# package uws-pack ships the same binaries and is aliased in its place).
source "$(dirname "$0")/lib.sh"
SUBSCRIBERS="${SUBSCRIBERS:-10000}"
MESSAGES="${MESSAGES:-20}"
INTERVAL="${INTERVAL:-0.5}"
ulimit -n "$(ulimit -Hn)"  # 10,000 sockets on each side need the fds

build_release
machine
echo "node $(node --version), soketi 1.6.1 (uWebSockets.js from uws-pack 20.0.8)"

# Runs the fan-out client, then the publisher once it is ready; prints its JSON.
fanout() { # publisher-args... (after `--`), client args before
  local out="$WORK/fanout.out"
  : >"$out"
  "$PANAL_DEV" ws-fanout "${CLIENT[@]}" >"$out" &
  local client=$!
  for _ in $(seq 1 3000); do grep -q '^ready$' "$out" && break; sleep 0.1; done
  grep -q '^ready$' "$out" || { echo "the client never got ready" >&2; cat "$out" >&2; return 1; }
  python3 "$ROOT/bench/realtime_publish.py" "$@"
  wait "$client"
  grep '^{' "$out"
}

# --- Panal (`panal up`: every service in one process) ---
start_panal
trap stop_panal EXIT
TOKEN=$(sign_in bench-rt@example.com)
USER_ID=$(curl -sf http://127.0.0.1:8000/v1/auth/me -H "authorization: Bearer $TOKEN" | json_field id)
CREATED=$("$PANAL" auth clients create --name bench --scope realtime:publish --data-dir "$WORK/data")
CLIENT_ID=$(awk '/^client_id:/{print $2}' <<<"$CREATED")
SECRET=$(awk '/^client_secret:/{print $2}' <<<"$CREATED")
SERVICE=$(curl -sf -u "$CLIENT_ID:$SECRET" -d grant_type=client_credentials -d scope=realtime:publish \
  http://127.0.0.1:8000/v1/auth/token | json_field access_token)
echo "panal realtime ($SUBSCRIBERS subscribers of one channel, $MESSAGES publications):"
CLIENT=(--url ws://127.0.0.1:8003/v1/ws --protocol centrifugo --subscribers "$SUBSCRIBERS" --token "$TOKEN"
  --channel "user:$USER_ID" --messages "$MESSAGES" --pid "$PANAL_PID")
fanout panal http://127.0.0.1:8003/v1/realtime/publish "$SERVICE" "user:$USER_ID" "$MESSAGES" "$INTERVAL"
stop_panal
trap - EXIT

# --- soketi ---
SOKETI="$WORK/soketi"
if [ ! -x "$SOKETI/node_modules/.bin/soketi" ]; then
  mkdir -p "$SOKETI"
  cat >"$SOKETI/package.json" <<'JSON'
{"name": "soketi-bench", "private": true, "dependencies": {"@soketi/soketi": "1.6.1"},
 "overrides": {"uWebSockets.js": "npm:uws-pack@20.0.8"}}
JSON
  (cd "$SOKETI" && npm install --silent --no-audit --no-fund >&2)
  # uws-pack is an ES module; soketi require()s it.
  cat >"$SOKETI/node_modules/uWebSockets.js/index.cjs" <<'JS'
module.exports = require(`./dist/bin/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`);
JS
  python3 - "$SOKETI/node_modules/uWebSockets.js/package.json" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p))
for k in ("exports", "module"): d.pop(k, None)
d.update(type="commonjs", main="index.cjs"); json.dump(d, open(p, "w"))
PY
fi
SOKETI_PORT=6001 SOKETI_METRICS_SERVER_PORT=9601 SOKETI_DEBUG=0 \
  setsid node "$SOKETI/node_modules/@soketi/soketi/bin/server.js" start >"$WORK/soketi.out" 2>&1 </dev/null &
SOKETI_PID=$!
trap 'kill $SOKETI_PID 2>/dev/null || true' EXIT
wait_http http://127.0.0.1:6001/
echo "soketi ($SUBSCRIBERS subscribers of one channel, $MESSAGES publications):"
CLIENT=(--url "ws://127.0.0.1:6001/app/app-key?protocol=7" --protocol pusher --subscribers "$SUBSCRIBERS"
  --channel bench --messages "$MESSAGES" --pid "$SOKETI_PID")
fanout soketi http://127.0.0.1:6001 app-id app-key app-secret bench "$MESSAGES" "$INTERVAL"
