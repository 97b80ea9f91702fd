#!/usr/bin/env bash
# Idle WebSocket connections held by realtime, and memory per connection.
# Starts `panal up`, signs a user in, opens CONNECTIONS (2000) sockets to
# realtime (each connected and subscribed to the user's channel), and reports
# the process's resident memory per connection (bench/realtime_idle.py).
# Needs Python's `websockets` (pip install centrifuge-python brings it).
source "$(dirname "$0")/lib.sh"
CONNECTIONS="${CONNECTIONS:-2000}"

build_release
machine
start_panal
trap stop_panal EXIT
curl -sf -o /dev/null -X POST http://127.0.0.1:8000/v1/auth/register -H 'content-type: application/json' \
  -d "{\"email\":\"bench-rt@example.com\",\"password\":\"$PASSWORD\",\"display_name\":\"Bench\"}"
TOKEN=$(curl -sf -X POST http://127.0.0.1:8000/v1/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"bench-rt@example.com\",\"password\":\"$PASSWORD\"}" | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
USER_ID=$(curl -sf http://127.0.0.1:8000/v1/auth/me -H "authorization: Bearer $TOKEN" | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
echo "realtime idle connections (panal up, all services in one process):"
python3 "$ROOT/bench/realtime_idle.py" --ws ws://127.0.0.1:8003/v1/ws --pid "$PANAL_PID" \
  --token "$TOKEN" --user "$USER_ID" --connections "$CONNECTIONS"
