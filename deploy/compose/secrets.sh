#!/usr/bin/env bash
# Makes the secrets compose.yaml reads, in deploy/compose/secrets/ (or $1):
# a password per service's database role and its URL, PostgreSQL's own
# password, and the id and secret of each service client (ai, game,
# tournament). Files that exist are kept, so running it again changes
# nothing; delete a file and run it to rotate that secret (docs/deploy.md).
set -euo pipefail
dir=${1:-"$(dirname "$0")/secrets"}
db_host=${PANAL_DB_HOST:-postgres}
# Before each role's and database's name (CI uses its own on a shared server).
prefix=${PANAL_DB_PREFIX:-}
mkdir -p "$dir"
chmod 700 "$dir"

random() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
# Written once; the container user (65532) must be able to read the files
# compose mounts as secrets.
keep() { # file value
  [ -s "$dir/$1" ] && return 0
  printf '%s\n' "$2" >"$dir/$1"
  chmod 644 "$dir/$1"
}

keep postgres-password "$(random)"
for service in auth users chat game tournament stats ai ledger notify; do
  keep "$service-database-password" "$(random)"
  password=$(cat "$dir/$service-database-password")
  keep "$service-database-url" "postgres://$prefix$service:$password@$db_host:5432/$prefix$service"
done
for service in ai game tournament; do
  keep "$service-client-id" "$(cat /proc/sys/kernel/random/uuid)"
  keep "$service-client-secret" "$(random)"
done
echo "secrets in $dir"
