#!/bin/sh
# `pip install ARGS` for one build step (docker/Dockerfile bind-mounts docker/ at /build for that step only).
#   INDEX_URL            the index; empty = pip's default
#   /build/wheels/*.whl  searched first (find-links)
#   /build/certs/*.crt   trusted on top of the image's CA bundle, for this step only
#   --requirements-of F  install the dependencies pyproject.toml F lists (their own, cacheable layer)
set -eu
here=$(dirname "$0")
bundle=/tmp/kabuflow-ca.pem
trap 'rm -f "$bundle" /tmp/kabuflow-requirements.txt' EXIT
if ls "$here"/certs/*.crt >/dev/null 2>&1; then
    cat /etc/ssl/certs/ca-certificates.crt "$here"/certs/*.crt > "$bundle"
    export PIP_CERT="$bundle"
fi
if ls "$here"/wheels/*.whl >/dev/null 2>&1; then
    export PIP_FIND_LINKS="$here/wheels"
fi
if [ -n "${INDEX_URL:-}" ]; then export PIP_INDEX_URL="$INDEX_URL"; else unset PIP_INDEX_URL; fi
if [ "${1:-}" = "--requirements-of" ]; then
    python -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
        "$2" > /tmp/kabuflow-requirements.txt
    set -- -r /tmp/kabuflow-requirements.txt
fi
pip install --no-cache-dir "$@"
