# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are used by the scripts that source it
# Shared by deploy/container/{build,up,down,test}: which container engine and
# which compose tool this machine has. Sourced, not run.
#
# Docker, when an engine answers (`docker info`), with `docker compose` (or
# docker-compose). Otherwise podman (installed from Debian when missing), as
# root, with two settings this kind of kernel needs (deploy/container/containers.conf:
# runc, since crun fails on hybrid cgroups, and rlimits under the hard limit),
# and Debian's docker-compose talking to podman's Docker-compatible API socket:
# it honours `depends_on: condition: service_healthy`, which podman-compose
# 1.0 (Debian) ignores, and deploy/check already installs it.

MF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MF_CACHE="${MAILFLEET_CI_CACHE:-$HOME/.cache/mailfleet-ci}"
MF_PROJECT="${MAILFLEET_COMPOSE_PROJECT:-mailfleet}"
MF_IMAGE="localhost/mailfleet:dev"

mf_log() { printf '== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" >&2; }
mf_die() { printf 'deploy/container: %s\n' "$*" >&2; exit 1; }
mf_as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

mf_apt() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  mf_apt_packages "${missing[@]}"
}

mf_apt_packages() {
  mf_log "apt-get install $*"
  mf_as_root apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  mf_as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null
}

# Sets ENGINE (docker|podman) and the engine command array E.
mf_engine() {
  if [ -n "${ENGINE:-}" ]; then :
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker
  else ENGINE=podman
  fi
  if [ "$ENGINE" = podman ]; then
    mf_apt podman:podman runc:runc
    # Compose services find each other by name through the CNI dnsname
    # plugin, which podman only recommends (and --no-install-recommends
    # leaves out): without it "postgres" does not resolve in the stack.
    if [ ! -x /usr/lib/cni/dnsname ] && podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null | grep -qx cni; then
      mf_apt_packages golang-github-containernetworking-plugin-dnsname
    fi
    # Read by every podman process, the API service's included.
    export CONTAINERS_CONF="$MF_ROOT/deploy/container/containers.conf"
    E=(podman)
  else
    E=(docker)
  fi
}

# Sets C: the compose command (with the project name and both files).
mf_compose() {
  mf_engine
  local files=(-f "$MF_ROOT/docker-compose.yml")
  [ "${MF_LOCAL_IMAGES:-}" = 1 ] && files+=(-f "$MF_ROOT/deploy/container/compose.local.yml")
  if [ "$ENGINE" = docker ]; then
    if docker compose version >/dev/null 2>&1; then C=(docker compose); else mf_apt docker-compose:docker-compose; C=(docker-compose); fi
  else
    mf_apt docker-compose:docker-compose
    local sock="$MF_CACHE/container/podman.sock"
    mkdir -p "$MF_CACHE/container"
    if ! curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; then
      # The API service outlives this script (compose's restart policies and
      # `down` need it); `down` stops it.
      rm -f "$sock"
      setsid podman system service --time=0 "unix://$sock" \
        >"$MF_CACHE/container/podman-service.log" 2>&1 < /dev/null &
      echo $! > "$MF_CACHE/container/podman-service.pid"
      for _ in $(seq 50); do curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1 && break; sleep 0.2; done
      curl -sf --unix-socket "$sock" http://d/_ping >/dev/null || mf_die "podman system service did not start (see $MF_CACHE/container/podman-service.log)"
    fi
    export DOCKER_HOST="unix://$sock"
    C=(docker-compose)
  fi
  C+=(-p "$MF_PROJECT" --project-directory "$MF_ROOT" "${files[@]}")
}

# Whether this machine builds its base images itself (no registry reachable):
# remembered by `build` in the cache, so up/test use the same override.
mf_local_images_state() {
  if [ -f "$MF_CACHE/container/local-images" ]; then MF_LOCAL_IMAGES=1; else MF_LOCAL_IMAGES=0; fi
}
