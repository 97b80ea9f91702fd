#!/usr/bin/env bash
# CI: the image runs `panal up` as it would anywhere — not root, read-only
# root filesystem, every capability dropped, its data on a volume (which
# takes the image's /data ownership) — is healthy by its own health check
# (no shell or curl inside), and a user walks through the gateway's
# published port.
#
#   bash deploy/container/build.sh && bash deploy/container/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/ci/podman.sh
tag=${TAG:-panal:latest}
port=${SMOKE_PORT:-18000}
name=panal-smoke-$$

podman run -d --name "$name" --read-only --cap-drop all --security-opt no-new-privileges \
  -v "$name:/data" -p "127.0.0.1:$port:8000" "$tag" 2> >(grep -v "systemd connection" >&2) >/dev/null
cleanup() {
  status=$?
  [ "$status" = 0 ] || podman logs --tail 40 "$name" || true
  podman rm -f "$name" >/dev/null 2>&1 || true
  podman volume rm -f "$name" >/dev/null 2>&1 || true
  exit "$status"
}
trap cleanup EXIT

wait_healthy "$name"
echo "health check: healthy"

user=$(podman inspect --format '{{.Config.User}}' "$name")
[ "$user" = "65532:65532" ] || { echo "runs as $user, not 65532:65532"; exit 1; }
bash deploy/ci/walkthrough.sh "http://127.0.0.1:$port"
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "image $tag: $((size / 1024 / 1024)) MiB, user $user, read-only root, no capabilities"
