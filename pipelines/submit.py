"""Submit a compiled pipeline to Kubeflow Pipelines: a version named by the git SHA, then a run or a schedule."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import yaml

from kabuflow.config import ConfigError
from kabuflow.version import code_version

log = logging.getLogger(__name__)

# Where Kubeflow projects a ServiceAccount token with audience pipelines.kubeflow.org (kfp's own default).
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"


def resolve_token(token: str | None = None) -> str | None:
    """The bearer token: `token`, else $KF_PIPELINES_TOKEN, else the file at $KF_PIPELINES_SA_TOKEN_PATH
    (in a pod: the projected ServiceAccount token); None means no Authorization header (port-forward)."""
    if token:
        return token.strip()
    if os.environ.get("KF_PIPELINES_TOKEN"):
        return os.environ["KF_PIPELINES_TOKEN"].strip()
    path = Path(os.environ.get("KF_PIPELINES_SA_TOKEN_PATH", SA_TOKEN_PATH))
    if path.is_file():
        return path.read_text().strip()
    if "KF_PIPELINES_SA_TOKEN_PATH" in os.environ:  # named explicitly but absent: say so, don't go anonymous
        raise ConfigError(f"KF_PIPELINES_SA_TOKEN_PATH={path} does not exist")
    return None


def default_version_name() -> str:
    """The commit the image and package were built from: $GITHUB_SHA in CI, else `git rev-parse HEAD`."""
    return os.environ.get("GITHUB_SHA") or code_version()


def pipeline_name(package_path: str | Path) -> str:
    """The name compiled into the package (pipelineInfo.name): the pipeline's name on the server."""
    with open(package_path) as f:
        spec = next(yaml.safe_load_all(f))
    try:
        return spec["pipelineInfo"]["name"]
    except (KeyError, TypeError):
        raise ConfigError(f"{package_path} is not a compiled KFP pipeline (no pipelineInfo.name)") from None


def _check_cron(cron: str) -> None:
    # KFP schedules with robfig/cron and a seconds field: "0 0 3 * * *" is 03:00 daily.
    if not cron.startswith("@") and len(cron.split()) != 6:
        raise ConfigError(
            f"--recurring {cron!r}: KFP cron has 6 fields, seconds first (e.g. '0 0 3 * * 1-5')"
        )


def _equals(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def _pipeline_version(
    client: Any, package_path: str, name: str, version_name: str, namespace: str | None
) -> tuple:
    """(pipeline_id, version_id): the pipeline is created when missing; an existing version of the same
    name (the same commit submitted again, e.g. by the schedule) is reused rather than uploaded twice."""
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        body = client.api_models.V2beta1Pipeline(display_name=name, namespace=namespace)
        pipeline_id = client.pipelines.pipeline_service_create_pipeline(pipeline=body).pipeline_id
        log.info("created pipeline %s (%s)", name, pipeline_id)
    found = client.list_pipeline_versions(pipeline_id, filter=_equals("display_name", version_name))
    if found.pipeline_versions:
        return pipeline_id, found.pipeline_versions[0].pipeline_version_id
    version = client.upload_pipeline_version(
        package_path, pipeline_version_name=version_name, pipeline_id=pipeline_id
    )
    return pipeline_id, version.pipeline_version_id


def submit(
    host: str,
    package_path: str | Path = "pipeline.yaml",
    experiment: str = "kabuflow",
    recurring_cron: str | None = None,
    token: str | None = None,
    version_name: str | None = None,
    namespace: str | None = None,
    pipeline: str | None = None,
) -> dict[str, str]:
    """Upload `package_path` as pipeline version `version_name` (default: the git SHA) and start a run in
    `experiment`, or, with `recurring_cron`, a recurring run (one at a time, no catch-up backfill).
    `pipeline`, when given, is the name the package must hold (a guard against submitting the wrong file).

    Returns ids and `url`, the run's (or schedule's) page in the KFP dashboard."""
    import kfp

    if recurring_cron:
        _check_cron(recurring_cron)
    package_path = str(package_path)
    name = pipeline_name(package_path)
    if pipeline and name != pipeline:  # e.g. --pipeline hpo with the training pipeline's file
        raise ConfigError(
            f"{package_path} holds pipeline {name!r}, not {pipeline!r}: compile it with --pipeline"
        )
    version_name = version_name or default_version_name()
    host = host.rstrip("/")
    with warnings.catch_warnings():  # kfp warns on every Client() that it needs a v2 backend; we target one
        warnings.simplefilter("ignore", FutureWarning)
        client = kfp.Client(host=host, existing_token=resolve_token(token), namespace=namespace or "kubeflow")
    pipeline_id, version_id = _pipeline_version(client, package_path, name, version_name, namespace)
    exp = client.create_experiment(experiment, namespace=namespace)
    job = f"{name}-{version_name[:12]}"
    ref = dict(experiment_id=exp.experiment_id, job_name=job, pipeline_id=pipeline_id, version_id=version_id)
    result = {
        "pipeline_id": pipeline_id,
        "pipeline_name": name,
        "version_id": version_id,
        "version_name": version_name,
        "experiment_id": exp.experiment_id,
    }
    if recurring_cron:
        rec = client.create_recurring_run(
            cron_expression=recurring_cron, max_concurrency=1, no_catchup=True, **ref
        )
        result["recurring_run_id"] = rec.recurring_run_id
        result["url"] = f"{host}/#/recurringrun/details/{rec.recurring_run_id}"
    else:
        run = client.run_pipeline(**ref)
        result["run_id"] = run.run_id
        result["url"] = f"{host}/#/runs/details/{run.run_id}"
    log.info("submitted %s version %s: %s", name, version_name, result["url"])
    return result
