#!/usr/bin/env bash
# Logins/s and refreshes/s through the gateway, beside the raw Argon2id hash
# rate of this machine measured in the same run; token verifications/s in the
# verifier the gateway runs, and GET /v1/auth/me through the gateway (one token,
# verified once then from the cache). Usage: bench/auth.sh
source "$(dirname "$0")/lib.sh"
build_release
machine
echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency"
echo
echo "raw Argon2id (m=19456 KiB, t=2, p=1), one hash per thread, same binary settings:"
"$CARGO_TARGET_DIR/release/examples/argon2_rate" 2>&1
echo
echo "access-token verification (kit::auth::TokenVerifier, as in the gateway), one task per core:"
"$CARGO_TARGET_DIR/release/examples/verify_rate" 2>&1
start_panal
trap stop_panal EXIT
register bench@example.com

# Each wrk connection refreshes its own chain: it starts from a token of its own
# and uses the successor each answer returns. wrk calls request() once per
# thread before any connection sends, so each thread gets one spare token.
TOKENS="$WORK/refresh-tokens.txt"
: >"$TOKENS"
for _ in $(seq 1 $((CONNECTIONS + THREADS))); do
  login_json bench@example.com | json_field refresh_token >>"$TOKENS"
done

echo
echo "| operation | requests/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|"
run_wrk "POST /v1/auth/login (gateway)" http://127.0.0.1:8000/v1/auth/login \
  -s "$ROOT/bench/login.lua"
THREADS="$THREADS" TOKENS_FILE="$TOKENS" run_wrk "POST /v1/auth/refresh (gateway)" http://127.0.0.1:8000/v1/auth/refresh \
  -s "$ROOT/bench/refresh.lua"
ACCESS=$(login_json bench@example.com | json_field access_token)
run_wrk "GET /v1/auth/me (gateway verifies the token, then auth)" http://127.0.0.1:8000/v1/auth/me \
  -H "authorization: Bearer $ACCESS"
