#!/usr/bin/env bash
# Run once by the postgres image on an empty data directory: one role and
# one database per service, each role owning only its own database (a
# service can neither read nor change another's data).
set -euo pipefail
for service in auth users chat game tournament stats ai ledger notify; do
  password=$(cat "/run/secrets/$service-database-password")
  psql -v ON_ERROR_STOP=1 --username postgres <<SQL
CREATE ROLE "$service" LOGIN PASSWORD '$password';
CREATE DATABASE "$service" OWNER "$service";
REVOKE ALL ON DATABASE "$service" FROM PUBLIC;
SQL
done
