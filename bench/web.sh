#!/usr/bin/env bash
# The web client's first load and the game page's frame rate, in headless
# Chromium (Debian's, driven by playwright-core from web/node_modules) against
# `panal up` (release build):
#
# - first load of /signin with an empty cache, RUNS (10) times: bytes on the
#   wire (headers and bodies, as Chromium counts them), requests, and the time
#   to interactive (navigation start → the app's page rendered with its
#   handlers attached: the sign-in button exists), under Playwright's tracing
#   (the last run's trace is kept as $WORK/first-load-trace.zip); the same
#   with `Accept-Encoding: identity` as the comparison (what compression
#   saves); and a reload with a warm cache;
# - the game page: a signed-up person plays the AI (points to win 21), and the
#   page's own count of frames drawn a second is read every second for
#   WINDOW (10) seconds.
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-10}"
WINDOW="${WINDOW:-10}"

# BENCH_PANAL (lib.sh): measure that build instead of building one.
[ -n "${BENCH_PANAL:-}" ] || build_release
machine
[ -d "$ROOT/web/node_modules/playwright-core" ] || (cd "$ROOT/web" && npm ci --silent --no-audit --no-fund)
start_panal
trap stop_panal EXIT
node "$ROOT/bench/web/measure.mjs" http://127.0.0.1:8000 "$RUNS" "$WINDOW" "$WORK"
