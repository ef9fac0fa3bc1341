#!/usr/bin/env bash
# `make image-test`: on a fresh machine of our kind (Debian bookworm, root, no Docker daemon, no registry
# access but the package mirrors), set up podman, bootstrap the base image, build the cpu image, run a small
# pipeline with every task in a container of it, run the same config through the subprocess runner, and
# check (scripts/image_check.py) one container per task, uid 1000, a read-only root filesystem, equal metrics.
# The heavy steps take the shared lock when the machine has one (several engineers share it).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/image-test}
SMALL=(--set synthetic.n_stocks=30 --set synthetic.start=2019-01-04 --set synthetic.end=2021-06-30
       --set folds.n_folds=2 --set folds.val_days=40 --set folds.test_days=40 --set folds.min_train_days=250
       --set train.epochs=1 --set model.members=1 --set lightgbm.n_estimators=20)
# KABUFLOW_LOCK= (empty) when the caller already holds the lock: flock on a new descriptor would wait on itself.
LOCK=${KABUFLOW_LOCK-/tmp/kabuflow-heavy.lock}
heavy() { if [[ -n $LOCK ]] && command -v flock >/dev/null; then flock "$LOCK" "$@"; else "$@"; fi; }
stamp() { date +%s; }

t0=$(stamp)
bash scripts/podman-setup.sh
export DOCKER_HOST=${DOCKER_HOST:-unix:///run/podman/podman.sock}
t1=$(stamp)
image=$(heavy bash scripts/image-build.sh cpu | tail -1)
t2=$(stamp)
rm -rf "$OUT" && mkdir -p "$OUT"
heavy .venv/bin/kabuflow run --runner docker --image "$image" --out "$OUT/docker" "${SMALL[@]}"
t3=$(stamp)
heavy .venv/bin/kabuflow run --out "$OUT/subprocess" "${SMALL[@]}"
t4=$(stamp)
.venv/bin/python scripts/image_check.py --docker "$OUT/docker" --subprocess "$OUT/subprocess"
echo "image-test: podman set-up $((t1 - t0)) s, image $((t2 - t1)) s (with lock waits)," \
     "container run $((t3 - t2)) s, subprocess run $((t4 - t3)) s;" \
     "$image is $(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=si)B"
