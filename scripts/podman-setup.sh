#!/usr/bin/env bash
# Install and configure podman as a Docker-compatible engine on a Debian bookworm machine (root; idempotent).
#
# Why each setting (found on a 2-core root VM without a Docker daemon, issue #16):
#   runc, not crun: crun 1.8 refuses hybrid cgroups ("cgroups in hybrid mode not supported").
#   default_ulimits: root may lack CAP_SYS_RESOURCE, and podman's default rlimits then fail
#     ("setrlimit RLIMIT_NOFILE: Operation not permitted"); these stay within the host's limits.
#   the API socket: kfp.local.DockerRunner talks to the Docker API through the `docker` package;
#     `podman system service` serves that API on a unix socket (DOCKER_HOST points there).
set -euo pipefail

SOCKET=${PODMAN_SOCKET:-/run/podman/podman.sock}
CONF=/etc/containers/containers.conf
PACKAGES=(podman runc mmdebstrap netavark aardvark-dns iptables catatonit)

[[ $(id -u) -eq 0 ]] || { echo "podman-setup: run as root (it installs packages and writes $CONF)" >&2; exit 1; }

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "podman-setup: installing ${missing[*]}"
    apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq "$@"; }
    apt_get update
    apt_get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

# Written only when different, so a second run changes nothing (and a hand-edited file is replaced, on purpose:
# the pipeline's containers need exactly these two settings).
want=$(cat <<'EOF'
# Written by kabuflow's scripts/podman-setup.sh (see there for why).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF
)
if [[ ! -f $CONF ]] || [[ "$(cat "$CONF")" != "$want" ]]; then
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n' "$want" > "$CONF.tmp" && mv "$CONF.tmp" "$CONF"
    echo "podman-setup: wrote $CONF"
fi

# The API service: started once, detached, and left running for every later run on this machine.
if ! curl -sf --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; then
    mkdir -p "$(dirname "$SOCKET")"
    rm -f "$SOCKET"
    setsid podman system service --time=0 "unix://$SOCKET" >/var/log/podman-service.log 2>&1 < /dev/null &
    for _ in $(seq 1 50); do
        curl -sf --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -sf --unix-socket "$SOCKET" http://d/_ping >/dev/null \
        || { echo "podman-setup: the API socket $SOCKET did not answer; see /var/log/podman-service.log" >&2; exit 1; }
    echo "podman-setup: podman API serving on unix://$SOCKET"
fi
podman info --format 'podman-setup: podman {{.Version.Version}}, runtime {{.Host.OCIRuntime.Name}}, storage {{.Store.GraphDriverName}}'
