#!/usr/bin/env bash
# Builds the statically linked `panal` and the image `panal:latest` from it.
#
#   bash deploy/container/build.sh                 # podman, tag panal:latest
#   ENGINE=docker TAG=registry.example.com/panal:1.4 bash deploy/container/build.sh
#
# glibc linked statically (`+crt-static`; the musl target is not needed):
# glibc ≥ 2.34 has its `files` and `dns` name services inside libc itself, so
# the binary resolves host names from /etc/hosts and DNS in a scratch image
# with no NSS modules (checked by deploy/container/smoke.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

engine=${ENGINE:-podman}
tag=${TAG:-panal:latest}
triple=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-target}

# With --target, RUSTFLAGS reach only the binary, not build scripts or
# procedural macros (which must stay dynamic to be loaded by rustc).
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$triple" -p panal

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$target_dir/$triple/release/panal" "$context/panal"
strip "$context/panal"
cp /etc/ssl/certs/ca-certificates.crt "$context/"
mkdir "$context/data"

# --format docker: OCI images have no HEALTHCHECK; Docker's format keeps it.
engine_args=()
if [ "$engine" = podman ]; then engine_args=(--format docker); fi
"$engine" build "${engine_args[@]}" -f deploy/container/Containerfile -t "$tag" "$context"
"$engine" image ls "$tag"
