# Helpers shared by the benchmark scripts. Everything runs on 127.0.0.1 only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/panal-target}"
# BENCH_PANAL: another build of panal to measure (a previous one, say).
PANAL="${BENCH_PANAL:-$CARGO_TARGET_DIR/release/panal}"
# The drill and benchmark tools (bus-produce, bus-pipeline, bus-raw, …).
PANAL_DEV="${BENCH_PANAL_DEV:-$CARGO_TARGET_DIR/release/panal-dev}"
WORK="${BENCH_WORK:-/tmp/panal-bench}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-2}"
PASSWORD="correct horse battery staple"

build_release() {
  (cd "$ROOT" && cargo build --release -p panal -p auth -p gateway --examples --bins >&2)
}

machine() {
  echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
  echo "scheduler: autogroup $(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo 'n/a') (servers run in sessions of their own)"
  echo "tools: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), $(nginx -v 2>&1), $("$PANAL" --version)"
}

# Servers are started in a session of their own, as nginx's daemon runs. With
# Linux's autogroup scheduling (kernel.sched_autogroup_enabled, on by default
# on desktop and many cloud kernels) CPU is shared fairly between sessions
# first, then between the threads of a session. nginx daemonizes into its own
# session; a server started from this script would share the script's
# session, and so its CPU share, with wrk, the load generator: measured on a
# 2-core machine, that alone cost the gateway a tenth of its requests/s and
# put 30-90 ms stalls into its tail (docs/benchmarks.md). In a script (no job
# control) setsid does not fork, so `$!` is the server's pid; scripts call it
# directly (`setsid cmd &`), not through a function, for the same reason.

# Starts `panal up` in $WORK/data with logs quiet, in its own session; sets PANAL_PID.
start_panal() {
  rm -rf "$WORK/data"
  mkdir -p "$WORK"
  PANAL_CONFIG="${PANAL_CONFIG:-$ROOT/bench/panal-bench.toml}" PANAL_LOG=warn PANAL_HTTP__ACCESS_LOG=false \
    setsid "$PANAL" up --data-dir "$WORK/data" >"$WORK/up.out" 2>"$WORK/up.err" </dev/null &
  PANAL_PID=$!
  wait_http "http://127.0.0.1:8000/readyz"
}

stop_panal() {
  kill -TERM "$PANAL_PID" 2>/dev/null || true
  wait "$PANAL_PID" 2>/dev/null || true
}

wait_http() {
  for _ in $(seq 1 1000); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.01
  done
  echo "timed out waiting for $1" >&2
  return 1
}

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

register() { # email
  curl -sf -X POST http://127.0.0.1:8000/v1/auth/register -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$PASSWORD\",\"display_name\":\"Bench\"}" >/dev/null
}

login_json() { # email
  curl -sf -X POST http://127.0.0.1:8000/v1/auth/login -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$PASSWORD\"}"
}

# Registers `email` and prints an access token for it.
sign_in() { # email
  register "$1"
  login_json "$1" | json_field access_token
}

# Starts nginx with the given server blocks on a private prefix; sets NGINX_PREFIX.
# A third argument names the prefix, to run a second nginx beside the first.
start_nginx() { # workers server-blocks [name]
  NGINX_PREFIX="$WORK/${3:-nginx}"
  rm -rf "$NGINX_PREFIX"
  mkdir -p "$NGINX_PREFIX/logs"
  cat >"$NGINX_PREFIX/nginx.conf" <<CONF
worker_processes $1;
pid $NGINX_PREFIX/nginx.pid;
error_log $NGINX_PREFIX/logs/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 100000;
  upstream auth { server 127.0.0.1:8001; keepalive 64; }
  $2
}
CONF
  nginx -p "$NGINX_PREFIX" -c "$NGINX_PREFIX/nginx.conf"
}

stop_nginx() {
  nginx -p "$NGINX_PREFIX" -c "$NGINX_PREFIX/nginx.conf" -s stop 2>/dev/null || true
  sleep 0.3
}

# What the gateway benches compare with: a constant upstream (nginx `return
# 200` on 9082, 2 workers) and nginx `proxy_pass` to it (9083, 2 workers,
# keep-alive upstream connections). The upstream is an nginx of its own, so
# both proxies forward across processes; nginx proxying to a server block of
# its own workers would skip the hop the gateway has to make. Sets
# NGINX_PREFIX (the proxy's) and UPSTREAM_PREFIX.
start_proxy_pair() {
  start_nginx 2 "
  server { listen 127.0.0.1:9082; location / { default_type application/json; return 200 '{\"ok\":true}'; } }" nginx-upstream
  UPSTREAM_PREFIX="$NGINX_PREFIX"
  start_nginx 2 "
  upstream bench { server 127.0.0.1:9082; keepalive 64; }
  server { listen 127.0.0.1:9083; location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
  wait_http http://127.0.0.1:9082/
  wait_http http://127.0.0.1:9083/
}

stop_proxy_pair() {
  stop_nginx
  NGINX_PREFIX="$UPSTREAM_PREFIX" stop_nginx
}

# Runs wrk and prints "label  req/s  p50  p99  errors".
run_wrk() { # label url [extra wrk args...]
  local label=$1 url=$2
  shift 2
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  p50=$(awk '$1=="50%"{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/{print $NF}' <<<"$out")
  printf '| %s | %s | %s | %s | %s |\n' "$label" "$rps" "$p50" "$p99" "${non2xx:-0}"
  # For summaries: the last run's figures (p99 in ms).
  LAST_RPS=$rps
  LAST_P99_MS=$(awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}' <<<"$p99")
}

median() { # numbers...
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'
}
