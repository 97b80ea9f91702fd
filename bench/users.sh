#!/usr/bin/env bash
# GET /v1/users/{id} through the gateway under wrk, beside the gateway's own
# /healthz and users called directly, in the same run. Usage: bench/users.sh
source "$(dirname "$0")/lib.sh"
build_release
machine
echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency; access logs off"
start_panal
trap stop_panal EXIT
TOKEN=$(sign_in viewer@example.com)
AUTHZ="authorization: Bearer $TOKEN"
TARGET_TOKEN=$(sign_in target@example.com)
# Profiles come from auth's event; wait for them.
for _ in $(seq 1 100); do
  TARGET=$(curl -sf http://127.0.0.1:8000/v1/users/me -H "authorization: Bearer $TARGET_TOKEN" | json_field id 2>/dev/null) && break
  sleep 0.05
done
curl -sf "http://127.0.0.1:8000/v1/users/me" -H "$AUTHZ" >/dev/null
echo
echo "| target | requests/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|"
run_wrk "gateway /healthz (the gateway alone)" http://127.0.0.1:8000/healthz
run_wrk "users GET /v1/users/{id} directly (port 8002)" "http://127.0.0.1:8002/v1/users/$TARGET" -H "$AUTHZ"
run_wrk "gateway → users GET /v1/users/{id}" "http://127.0.0.1:8000/v1/users/$TARGET" -H "$AUTHZ"
run_wrk "gateway → users GET /v1/users/{id}/avatar (no token, 304 by ETag)" "http://127.0.0.1:8000/v1/users/$TARGET/avatar" \
  -H "if-none-match: $(curl -sI "http://127.0.0.1:8000/v1/users/$TARGET/avatar" | awk -F': ' 'tolower($1)=="etag"{print $2}' | tr -d '\r')"
