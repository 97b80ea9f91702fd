#!/usr/bin/env bash
# CI: compose.yaml's Panal containers — one per service — under podman on
# this machine's network, against its own PostgreSQL, NATS and Redis, every
# host name (postgres, nats, redis, auth, …) resolved by DNS
# (deploy/ci/dns.py answers 127.0.0.1). Then a user's walk-through passes
# with the users service killed before they register and started again
# before their profile is read. Cleans up after itself (containers, its
# databases, its NATS namespace).
#
#   bash deploy/container/build.sh && bash deploy/compose/ci.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source deploy/ci/podman.sh
command -v podman-compose >/dev/null || pip install --quiet 'podman-compose==1.5.0'

project=panal-ci
namespace=ci-$$
prefix=ci_compose_
services=(auth users realtime chat game tournament stats ai ledger notify gateway)
with_db=(auth users chat game tournament stats ai ledger notify)
work=$(mktemp -d)
cp deploy/compose/compose.yaml deploy/compose/postgres-init.sh "$work/"

python3 deploy/ci/dns.py 53 &
dns=$!
sleep 0.3
kill -0 "$dns" 2>/dev/null || { echo "the DNS server could not start (is port 53 taken?)"; exit 1; }
export PGOPTIONS='-c client_min_messages=warning'

compose() { podman-compose --project-name "$project" -f "$work/compose.yaml" -f "$work/ci.yaml" "$@"; }
cleanup() {
  status=$?
  if [ "$status" != 0 ]; then
    for s in "${services[@]}"; do
      echo "--- $s"; podman logs --tail 15 "${project}_${s}_1" 2>&1 || true
    done
  fi
  compose down -v -t 5 >/dev/null 2>&1 || true
  kill "$dns" 2>/dev/null || true
  for s in "${with_db[@]}"; do
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $prefix$s WITH (FORCE)" -c "DROP ROLE IF EXISTS $prefix$s" 2>/dev/null || true
  done
  # This run's JetStream stream, by the JetStream API over NATS's text protocol.
  python3 - "$namespace" <<'PY' || true
import socket, sys
stream = "PANAL_" + sys.argv[1].upper().replace("-", "_")
s = socket.create_connection(("127.0.0.1", 4222), timeout=5)
s.recv(4096)
s.sendall(f"CONNECT {{}}\r\nSUB ci.deleted 1\r\nPUB $JS.API.STREAM.DELETE.{stream} ci.deleted 0\r\n\r\n".encode())
reply = b""
while b"MSG ci.deleted" not in reply:
    reply += s.recv(4096)
PY
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# Secrets as an operator makes them; databases for them on this machine's
# PostgreSQL (trust authentication here, so the passwords go unchecked).
PANAL_DB_PREFIX=$prefix bash deploy/compose/secrets.sh "$work/secrets" >/dev/null
for s in "${with_db[@]}"; do
  psql -q -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS $prefix$s WITH (FORCE)" -c "DROP ROLE IF EXISTS $prefix$s" \
    -c "CREATE ROLE $prefix$s LOGIN" -c "CREATE DATABASE $prefix$s OWNER $prefix$s"
done

# The host's network instead of compose's, the DNS above, a bus namespace of
# this run's own, and loopback only.
{
  echo "services:"
  for s in provision "${services[@]}"; do
    cat <<YAML
  $s:
    network_mode: host
    dns: [127.0.0.1]
    environment:
      PANAL_HOST: 127.0.0.1
      PANAL_BUS__NAMESPACE: $namespace
YAML
  done
} >"$work/ci.yaml"

# The clients first (as compose's depends_on orders it), then every service.
compose run --rm --no-deps provision
compose up -d --no-deps "${services[@]}"

for s in "${services[@]}"; do
  wait_healthy "${project}_${s}_1"
done
echo "healthy: ${services[*]}"

BEFORE_REGISTER="podman kill ${project}_users_1 >/dev/null && echo 'users: killed'" \
BEFORE_PROFILE="sleep 2 && podman start ${project}_users_1 >/dev/null && echo 'users: started again'" \
  bash deploy/ci/walkthrough.sh http://127.0.0.1:8000
echo "compose: every service in its own container; the walk-through survived users' death"
