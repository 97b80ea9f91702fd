#!/usr/bin/env bash
# A user's first steps through a running Panal's gateway: register, sign in,
# read their profile (made by users from auth's event). Exit 0 when all
# worked. Before registering it runs $BEFORE_REGISTER and before reading the
# profile $BEFORE_PROFILE, when set: CI kills the users service in the first
# and starts it again in the second, so the account's event waits for users
# in the bus meanwhile.
#
#   bash deploy/ci/walkthrough.sh http://127.0.0.1:8000
set -euo pipefail
gateway=$1
email="walk-$(date +%s%N)@example.com"
password="correct horse battery staple 42"

call() { # method path [json] [token] → body; status in $status
  local args=(-sS -o /tmp/walk-body -w '%{http_code}' -X "$1" "$gateway$2" -H 'content-type: application/json')
  [ -n "${3:-}" ] && args+=(--data "$3")
  [ -n "${4:-}" ] && args+=(-H "authorization: Bearer $4")
  status=$(curl "${args[@]}" || echo 000)
}

[ -z "${BEFORE_REGISTER:-}" ] || bash -c "$BEFORE_REGISTER"
call POST /v1/auth/register "{\"email\":\"$email\",\"password\":\"$password\",\"display_name\":\"Walker\"}"
[ "$status" = 202 ] || { echo "register: $status $(cat /tmp/walk-body)"; exit 1; }
echo "register: 202"
call POST /v1/auth/login "{\"email\":\"$email\",\"password\":\"$password\"}"
[ "$status" = 200 ] || { echo "login: $status $(cat /tmp/walk-body)"; exit 1; }
token=$(python3 -c 'import json,sys; print(json.load(open("/tmp/walk-body"))["access_token"])')
echo "login: 200"

[ -z "${BEFORE_PROFILE:-}" ] || bash -c "$BEFORE_PROFILE"

# The profile appears once users has applied auth's user_registered.
for _ in $(seq 1 120); do
  call GET /v1/users/me "" "$token"
  if [ "$status" = 200 ]; then
    grep -q '"display_name":"Walker"' /tmp/walk-body || { echo "me: $(cat /tmp/walk-body)"; exit 1; }
    echo "me: 200 (Walker)"
    exit 0
  fi
  sleep 0.5
done
echo "me: still $status after 60 s: $(cat /tmp/walk-body)"
exit 1
