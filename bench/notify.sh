#!/usr/bin/env bash
# Notify: N (1,000) friend requests published on the embedded bus, each
# becoming an inbox item (and its push for realtime) and an e-mail handed to
# a real SMTP server (aiosmtpd, from PyPI). Prints the latency from each
# event to its inbox item and to the SMTP server's acceptance (p50/p99), the
# rates, and — measured in the same run — the SMTP server's own acceptance
# rate with the same client, as many at a time as notify's sender (8).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
N="${N:-1000}"
python3 -c 'import aiosmtpd' 2>/dev/null || pip install --quiet aiosmtpd
echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -sr)"
cd "$ROOT"
cargo run -q --release -p notify --example throughput -- "$N"
