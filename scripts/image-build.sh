#!/usr/bin/env bash
# Build the cpu (or gpu) image with podman from this machine's own package sources; prints the image name.
#
#   bash scripts/image-build.sh [cpu|gpu]      (root; after scripts/podman-setup.sh)
#
# Nothing host-specific is committed: the base image is bootstrapped from the machine's Debian mirror
# (scripts/base-image.sh) unless PYTHON_IMAGE names one; the pip index is the machine's
# (`pip config get global.index-url`, else pip's default); a torch wheel in the machine's find-links
# directory (`pip config get global.find-links`) is staged into docker/wheels/ and used instead of the
# PyTorch index; the machine's extra CA certificates (/usr/local/share/ca-certificates/*.crt) are staged
# into docker/certs/ for the build steps only. Both folders are git-ignored and never enter a layer.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=${1:-cpu}
TORCH=$(grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"' | cut -d= -f3)
base=${PYTHON_IMAGE:-$(bash scripts/base-image.sh | tail -1)}
sha=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
image=${IMAGE:-localhost/kabuflow:$TARGET-$sha}

stage() {  # stage SRC_GLOB... DEST: hard links where possible (no copy of a 200 MB wheel), else copies
    local dest=${*: -1}
    find "$dest" -mindepth 1 ! -name .gitignore -delete
    for f in "${@:1:$#-1}"; do
        [[ -f $f ]] && { ln "$f" "$dest/" 2>/dev/null || cp "$f" "$dest/"; }
    done
    return 0
}
find_links=$(pip config get global.find-links 2>/dev/null || true)
wheels=()
for dir in $find_links; do
    for w in "${dir#file://}"/torch-"$TORCH"[+-]*.whl; do [[ -f $w ]] && wheels+=("$w"); done
done
stage "${wheels[@]}" docker/wheels
stage /usr/local/share/ca-certificates/*.crt docker/certs
index=$(pip config get global.index-url 2>/dev/null || true)

args=(--build-arg "PYTHON_IMAGE=$base" --build-arg "PIP_INDEX_URL=$index"
      --build-arg "SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)"
      --build-arg "GIT_SHA=$(git rev-parse HEAD 2>/dev/null || echo unknown)")
if [[ $TARGET == cpu ]] && ((${#wheels[@]})); then
    args+=(--build-arg TORCH_INDEX_URL=)  # the staged CPU wheel, its dependencies from the pip index
    echo "image-build: torch from ${wheels[*]}" >&2
fi
echo "image-build: $image from $base (pip index: ${index:-pip default}; $(find docker/certs -name "*.crt" | wc -l) extra CA certs)" >&2
t0=$(date +%s)
podman build --layers -f docker/Dockerfile --target "$TARGET" "${args[@]}" -t "$image" . >&2
echo "image-build: built $image in $(( $(date +%s) - t0 )) s, $(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec) " >&2
echo "$image"
