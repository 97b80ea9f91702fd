#!/usr/bin/env bash
# The bots' levels against each other and against a scripted perfect player
# (sees every tick, misjudges nothing, reacts at once, aims away): MATCHES
# (200) seeded duels per pairing, first to POINTS (11), sides swapped every
# other match, without and with power-ups, on game's own rules
# (crates/game/src/domain.rs) stepped as fast as the machine goes. Each bot
# looks once a second and plays the plan it makes (crates/ai/src/domain.rs),
# exactly as it does in a live match. Prints Markdown tables.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MATCHES="${MATCHES:-200}"
POINTS="${POINTS:-11}"
echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -sr)"
cd "$ROOT"
time cargo run -q --release -p ai --example levels -- "$MATCHES" "$POINTS"
