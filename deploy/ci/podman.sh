# Sourced by CI's container steps: podman as this machine needs it — runc
# (crun fails here), cgroupfs (no systemd), no default ulimits (the sandbox
# refuses podman's), events to a file (no journald).
conf=${TMPDIR:-/tmp}/panal-containers.conf
cat >"$conf" <<'CONF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF=$conf

# Waits up to a minute for a container's own health check to pass.
wait_healthy() { # container
  local _
  for _ in $(seq 1 120); do
    podman healthcheck run "$1" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "$1 never became healthy" >&2
  return 1
}
