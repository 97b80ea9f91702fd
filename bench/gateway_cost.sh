#!/usr/bin/env bash
# What a proxied request costs the gateway, beside nginx `proxy_pass`:
# 1. CPU per request (user and system µs, from /proc/<pid>/stat) of the
#    gateway process and of nginx's workers, under the same wrk load as
#    bench/gateway.sh, alternated ROUNDS (3) times;
#    beside them hyper alone (crates/gateway/examples/bare_proxy.rs: hyper's
#    server and client, thread per core, no features), for how much of the
#    gap is hyper's, and a byte-level proxy (lean_proxy.rs: heads parsed in
#    place by httparse, never turned into header maps), the floor a
#    byte-level front could reach;
# 2. with valgrind installed, instructions per request under callgrind of
#    nginx (one worker), hyper alone, the byte-level floor and the gateway
#    process (a count, not a time: the same build gives the same count on a
#    busy or idle machine, so two builds compare exactly), and where the
#    gateway's go (the output file is named at the end).
# Usage: bench/gateway_cost.sh
source "$(dirname "$0")/lib.sh"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
build_release
machine
start_proxy_pair
export PANAL_HTTP__THREADS=2 TOKIO_WORKER_THREADS=1
PANAL_CONFIG="$ROOT/bench/panal-gateway-bench.toml" start_panal
trap 'stop_panal; stop_proxy_pair' EXIT
TOKEN=$(sign_in bench@example.com)
AUTHZ="authorization: Bearer $TOKEN"
NGINX_WORKERS=$(pgrep -P "$(cat "$NGINX_PREFIX/nginx.pid")" | tr '\n' ' ')
setsid "$CARGO_TARGET_DIR/release/examples/bare_proxy" 127.0.0.1:9090 127.0.0.1:9082 2 </dev/null &
BARE_PID=$!
setsid "$CARGO_TARGET_DIR/release/examples/lean_proxy" 127.0.0.1:9092 127.0.0.1:9082 2 </dev/null &
LEAN_PID=$!
trap 'kill "$BARE_PID" "$LEAN_PID" 2>/dev/null || true; stop_panal; stop_proxy_pair' EXIT
wait_http http://127.0.0.1:9090/
wait_http http://127.0.0.1:9092/

ticks() { # pids -> "user system" clock ticks
  local u=0 s=0 a b p
  for p in $1; do
    read -r a b <<<"$(awk '{print $14, $15}' "/proc/$p/stat")"
    u=$((u + a)) s=$((s + b))
  done
  echo "$u $s"
}

cpu_row() { # label pids url
  local u0 s0 u1 s1 out n rps hz
  read -r u0 s0 <<<"$(ticks "$2")"
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -H "$AUTHZ" "$3")
  read -r u1 s1 <<<"$(ticks "$2")"
  n=$(awk '/requests in/{print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  hz=$(getconf CLK_TCK)
  awk -v l="$1" -v n="$n" -v r="$rps" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$hz" \
    'BEGIN{printf "| %s | %.0f | %.1f | %.1f | %.1f |\n", l, r, u*1e6/hz/n, s*1e6/hz/n, (u+s)*1e6/hz/n}'
}

echo
echo "| process (load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION) | requests/s | user µs/request | system µs/request | total |"
echo "|---|---|---|---|---|"
for round in $(seq 1 "${ROUNDS:-3}"); do
  cpu_row "nginx proxy_pass (its 2 workers), round $round" "$NGINX_WORKERS" http://127.0.0.1:9083/v1/bench/x
  cpu_row "gateway (the panal up process), round $round" "$PANAL_PID" http://127.0.0.1:8000/v1/bench/x
  cpu_row "hyper alone (bare_proxy example), round $round" "$BARE_PID" http://127.0.0.1:9090/v1/bench/x
  cpu_row "byte-level floor (lean_proxy example), round $round" "$LEAN_PID" http://127.0.0.1:9092/v1/bench/x
done
kill "$BARE_PID" "$LEAN_PID" 2>/dev/null || true

if ! command -v valgrind >/dev/null; then
  echo
  echo "valgrind is not installed: no instruction count (apt-get install valgrind)"
  exit 0
fi
stop_panal

# Instructions per request of one proxy under callgrind: started with the
# rest of the arguments, warmed up, then 10 s of wrk -t1 -c4 against URL
# counted; requests answered other than 2xx are reported, since an error
# path would make the count meaningless. Sets LAST_OUT to the output file.
count_instructions() { # label url command...
  local label=$1 url=$2 pid out n total bad
  shift 2
  LAST_OUT="$WORK/callgrind.${label%% *}.out"
  rm -f "$LAST_OUT"
  setsid valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$LAST_OUT" "$@" \
    >"$WORK/callgrind.${label%% *}.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "$url" && break
    sleep 0.2
  done
  [ -n "${ON_START:-}" ] && "$ON_START"
  wrk -t1 -c4 -d2s -H "$AUTHZ" "$url" >/dev/null
  callgrind_control -i on "$pid" >/dev/null 2>&1
  out=$(wrk -t1 -c4 -d10s -H "$AUTHZ" "$url")
  callgrind_control -i off "$pid" >/dev/null 2>&1
  n=$(awk '/requests in/{print $1}' <<<"$out")
  bad=$(awk '/Non-2xx/{print $NF}' <<<"$out")
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  total=$(callgrind_annotate "$LAST_OUT" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1}')
  echo "| $label | $n | ${bad:-0} | $((total / n)) |"
}

# The gateway needs an account and a token once it is up.
gateway_token() {
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null http://127.0.0.1:8000/readyz && break
    sleep 0.2
  done
  AUTHZ="authorization: Bearer $(sign_in bench@example.com)"
}

# nginx as one worker in the foreground (valgrind follows one process).
NGINX_CG="$WORK/nginx-callgrind"
mkdir -p "$NGINX_CG/logs"
cat >"$NGINX_CG/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
pid $NGINX_CG/nginx.pid;
error_log $NGINX_CG/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000;
  upstream bench { server 127.0.0.1:9082; keepalive 64; }
  server { listen 127.0.0.1:9091; location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF

echo
echo "| process under callgrind (wrk -t1 -c4 -d10s) | requests counted | non-2xx | instructions per request |"
echo "|---|---|---|---|"
count_instructions "nginx proxy_pass (1 worker)" http://127.0.0.1:9091/v1/bench/x \
  nginx -p "$NGINX_CG" -c "$NGINX_CG/nginx.conf"
count_instructions "hyper alone (bare_proxy example)" http://127.0.0.1:9090/v1/bench/x \
  "$CARGO_TARGET_DIR/release/examples/bare_proxy" 127.0.0.1:9090 127.0.0.1:9082 2
count_instructions "byte-level floor (lean_proxy example)" http://127.0.0.1:9092/v1/bench/x \
  "$CARGO_TARGET_DIR/release/examples/lean_proxy" 127.0.0.1:9092 127.0.0.1:9082 2
rm -rf "$WORK/data"
export PANAL_CONFIG="$ROOT/bench/panal-gateway-bench.toml" PANAL_LOG=warn PANAL_HTTP__ACCESS_LOG=false
ON_START=gateway_token count_instructions "gateway (panal up)" http://127.0.0.1:8000/v1/bench/x \
  "$PANAL" up --data-dir "$WORK/data"
echo
echo "(each count includes the process's background work in those seconds; where the gateway's go:"
echo " callgrind_annotate --inclusive=yes $LAST_OUT)"
