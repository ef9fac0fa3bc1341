#!/usr/bin/env bash
# Bootstrap the Python 3.11 base image from this machine's Debian mirror, no container registry needed.
#
# The image is tagged by a hash of what goes into it (the mirror's signed InRelease index for the suite,
# the package list, base.Containerfile), so a second run with the same mirror state builds nothing, and a
# changed mirror or package list builds a new tag. Prints the image name on stdout's last line.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=${SUITE:-bookworm}  # bookworm's python3.11 is 3.11.2, the project's Python
INCLUDE=python3.11,python3.11-venv,ca-certificates,netbase,tzdata,passwd
NAME=localhost/kabuflow-base

# The mirror is the machine's own (its apt sources), never a host written here.
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -s $f ]] && sources+=("$f")
done
((${#sources[@]})) || { echo "base-image: no apt sources on this machine (/etc/apt/sources.list*)" >&2; exit 1; }
release=$(ls /var/lib/apt/lists/*_dists_"${SUITE}"_InRelease 2>/dev/null | head -1 || true)
if [[ -z $release ]]; then
    apt-get -o DPkg::Lock::Timeout=600 -qq update
    release=$(ls /var/lib/apt/lists/*_dists_"${SUITE}"_InRelease 2>/dev/null | head -1 || true)
fi
[[ -n $release ]] || { echo "base-image: the apt sources do not serve suite $SUITE" >&2; exit 1; }

key=$(cat "$release" <(echo "$INCLUDE") docker/base.Containerfile | sha256sum | cut -c1-16)
image="$NAME:py3.11-$SUITE-$key"
if podman image exists "$image"; then
    echo "base-image: cached $image" >&2
    echo "$image"
    exit 0
fi

work=$(mktemp -d /var/tmp/kabuflow-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "base-image: mmdebstrap $SUITE from ${sources[*]}" >&2
mmdebstrap --quiet --variant=minbase --include="$INCLUDE" "$SUITE" "$work/rootfs.tar" "${sources[@]}" >&2
podman import --quiet "$work/rootfs.tar" "$NAME-rootfs:$key" >/dev/null
podman build --quiet --build-arg ROOTFS="$NAME-rootfs:$key" -f docker/base.Containerfile -t "$image" docker >/dev/null
podman rmi "$NAME-rootfs:$key" >/dev/null  # the built image keeps the layer
echo "base-image: built $image" >&2
echo "$image"
