#!/usr/bin/env bash
# GET /v1/auth/me through the gateway under wrk, beside, in the same run:
# auth called directly, nginx answering a constant, and nginx proxy_pass to
# auth's /v1/auth/me. Usage: bench/http.sh
source "$(dirname "$0")/lib.sh"
build_release
machine
echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency; access logs off on both sides"
start_panal
trap 'stop_panal; stop_nginx' EXIT
TOKEN=$(sign_in bench@example.com)
AUTHZ="authorization: Bearer $TOKEN"
start_nginx 2 "
  server { listen 127.0.0.1:9080; location / { default_type application/json; return 200 '{\"ok\":true}'; } }
  server { listen 127.0.0.1:9081; location / { proxy_pass http://auth; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
wait_http http://127.0.0.1:9080/
echo
echo "| target | requests/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|"
run_wrk "nginx, constant 200 (ceiling of this machine + wrk)" http://127.0.0.1:9080/
run_wrk "nginx proxy_pass → auth /v1/auth/me" http://127.0.0.1:9081/v1/auth/me -H "$AUTHZ"
run_wrk "auth /v1/auth/me directly (port 8001)" http://127.0.0.1:8001/v1/auth/me -H "$AUTHZ"
run_wrk "gateway → auth /v1/auth/me (port 8000)" http://127.0.0.1:8000/v1/auth/me -H "$AUTHZ"
run_wrk "gateway /healthz (gateway alone)" http://127.0.0.1:8000/healthz
echo
echo "RSS after the runs: $(awk '/VmRSS/{printf "%.1f MiB", $2/1024}' "/proc/$PANAL_PID/status")"
