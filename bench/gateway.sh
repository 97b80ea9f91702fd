#!/usr/bin/env bash
# The gateway beside nginx in the same run: wrk through the gateway (token
# verified, rate limits checked) and through nginx `proxy_pass` (same number
# of workers: 2) to the same constant upstream (nginx `return 200` on 9082);
# the upstream directly, for the latency each proxy adds; memory per 10,000
# idle keep-alive connections; the delay before a revoked session is refused;
# then, when Redis answers, the gateway with its rate limits kept there.
# Usage: bench/gateway.sh
source "$(dirname "$0")/lib.sh"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
build_release
machine
echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency; access logs off on both sides"
start_proxy_pair
# The gateway keeps idle connections as long as nginx does (75 s) for the memory test.
# Thread per core (docs/gateway.md): one single-threaded runtime per core,
# as nginx has one event loop per worker. BENCH_SHARED_RUNTIME=1 measures the
# default shared runtime instead.
if [ -z "${BENCH_SHARED_RUNTIME:-}" ]; then
  export PANAL_HTTP__THREADS=2 TOKIO_WORKER_THREADS=1
fi
PANAL_CONFIG="$ROOT/bench/panal-gateway-bench.toml" PANAL_HTTP__HEADER_READ_TIMEOUT_MS=75000 start_panal
trap 'stop_panal; stop_proxy_pair' EXIT
TOKEN=$(sign_in bench@example.com)
AUTHZ="authorization: Bearer $TOKEN"
echo
echo "| target | requests/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|"
run_wrk "upstream directly (nginx return 200)" http://127.0.0.1:9082/v1/bench/x
# Alternated pairs (ROUNDS, default 5): this machine's speed drifts, and a
# run's tail depends on how the scheduler places six busy threads on two
# cores, so one pair proves little; the medians are what to compare.
RATIOS=() NGINX_P99=() GATEWAY_P99=()
for round in $(seq 1 "${ROUNDS:-5}"); do
  run_wrk "nginx proxy_pass → upstream (2 workers), round $round" http://127.0.0.1:9083/v1/bench/x -H "$AUTHZ"
  nginx_rps=$LAST_RPS
  NGINX_P99+=("$LAST_P99_MS")
  run_wrk "**gateway → upstream** (token verified, rate limits on), round $round" http://127.0.0.1:8000/v1/bench/x -H "$AUTHZ"
  RATIOS+=("$(awk -v g="$LAST_RPS" -v n="$nginx_rps" 'BEGIN{printf "%.3f", g/n}')")
  GATEWAY_P99+=("$LAST_P99_MS")
done
echo
echo "gateway/nginx requests/s per round: ${RATIOS[*]}; median $(median "${RATIOS[@]}")"
echo "p99 median: nginx $(median "${NGINX_P99[@]}") ms, gateway $(median "${GATEWAY_P99[@]}") ms"
echo
NGINX_WORKERS=$(pgrep -P "$(cat "$NGINX_PREFIX/nginx.pid")" | tr '\n' ' ')
# Each connection makes one proxied request (token included), then idles.
echo "gateway (the whole panal up process): $(python3 "$ROOT/bench/gateway_probe.py" idle 127.0.0.1 8000 10000 /v1/bench/x "$AUTHZ" "$PANAL_PID")"
# shellcheck disable=SC2086
echo "nginx (its 2 workers): $(python3 "$ROOT/bench/gateway_probe.py" idle 127.0.0.1 9083 10000 /v1/bench/x "$AUTHZ" $NGINX_WORKERS)"
# The same through the gateway's hyper path (its own /healthz: the byte-level
# front hands such connections over), in a fresh process (one that served
# connections before would reuse the memory they left).
stop_panal
PANAL_CONFIG="$ROOT/bench/panal-gateway-bench.toml" PANAL_HTTP__HEADER_READ_TIMEOUT_MS=75000 start_panal
echo "gateway, connections served by hyper (GET /healthz): $(python3 "$ROOT/bench/gateway_probe.py" idle 127.0.0.1 8000 10000 /healthz "" "$PANAL_PID")"
TOKEN=$(sign_in bench@example.com)
echo
python3 "$ROOT/bench/gateway_probe.py" revoke http://127.0.0.1:8000 "$TOKEN"

# The rate limits kept in Redis (one round trip per request for every rule),
# when a Redis answers on 6379 (BENCH_REDIS_URL to point elsewhere).
REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
if (exec 3<>"/dev/tcp/127.0.0.1/6379") 2>/dev/null || [ -n "${BENCH_REDIS_URL:-}" ]; then
  stop_panal
  PANAL_REDIS_URL="$REDIS_URL" PANAL_GATEWAY__RATE_LIMITS__KEY_PREFIX="bench:$$:" \
    PANAL_CONFIG="$ROOT/bench/panal-gateway-bench.toml" start_panal
  TOKEN=$(sign_in bench@example.com)
  echo
  echo "| target | requests/s | p50 | p99 | non-2xx |"
  echo "|---|---|---|---|---|"
  run_wrk "nginx proxy_pass → upstream" http://127.0.0.1:9083/v1/bench/x -H "authorization: Bearer $TOKEN"
  run_wrk "**gateway → upstream, rate limits in Redis** ($REDIS_URL)" http://127.0.0.1:8000/v1/bench/x -H "authorization: Bearer $TOKEN"
fi
