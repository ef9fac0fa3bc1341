"""Compile the pipeline to KFP IR YAML for the cluster."""

from __future__ import annotations

import re
from pathlib import Path

from kfp import compiler

from kabuflow.config import Config, ConfigError
from kabuflow.train.study import resolve_url
from pipelines.audit import build_audit_pipeline
from pipelines.hpo import build_hpo_pipeline
from pipelines.pipeline import build_pipeline

PIPELINES = {"kabuflow": build_pipeline, "hpo": build_hpo_pipeline, "audit": build_audit_pipeline}

# An image the cluster can pin: name@sha256:<digest>, or a tag that is a git SHA (KFP caches on the
# image string, so a mutable tag such as :latest would serve stale cached steps).
IMAGE_REF = re.compile(r"^[\w.\-/:]+(@sha256:[0-9a-f]{64}|:[0-9a-f]{7,40})$")


def compile_pipeline(cfg: Config, image: str, out: str | Path, pipeline: str = "kabuflow") -> Path:
    """Write the YAML of `pipeline` (kabuflow: training; hpo: the hyperparameter search; audit: the
    look-ahead audit) for `image`, which must be pinned by digest or git SHA."""
    if pipeline not in PIPELINES:
        raise ConfigError(f"unknown pipeline {pipeline!r} (known: {', '.join(PIPELINES)})")
    if not IMAGE_REF.match(image):
        raise ConfigError(f"image {image!r} must be pinned: name@sha256:<digest> or name:<git sha>")
    if pipeline == "hpo":
        check_cluster_storage(cfg)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(PIPELINES[pipeline](cfg, image), str(out))
    return out


def check_cluster_storage(cfg: Config) -> None:
    """hpo workers in separate pods share a study only through a database server: not SQLite."""
    url = resolve_url(cfg.hpo.storage, ".") if cfg.hpo.storage else ""
    if not url.startswith("postgresql"):
        raise ConfigError(
            f"hpo.storage={cfg.hpo.storage!r}: the cluster's hpo workers share one study through "
            "PostgreSQL, e.g. postgresql+psycopg://optuna@optuna-db.kabuflow.svc:5432/optuna"
        )
