"""`make run`: the very same pipeline, executed on this machine by KFP's local SubprocessRunner."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

from kabuflow import redact
from kabuflow.config import Config
from pipelines.hpo import build_hpo_pipeline
from pipelines.pipeline import build_pipeline


def _hide_docker_dir() -> None:
    """Keep the repo's docker/ folder from posing as the `docker` package when run from the repo root.

    kfp.local imports `docker` optionally (only its DockerRunner needs it) and catches ImportError; a
    namespace package found in the working directory imports fine but has no DockerClient, which then
    crashes kfp. Where the real package is absent, make the import fail as kfp expects.
    """
    spec = importlib.util.find_spec("docker")
    if spec is not None and spec.origin is None and "docker" not in sys.modules:
        sys.modules["docker"] = None  # type: ignore[assignment]


log = logging.getLogger("kabuflow.run")

RESULTS = ("metrics.json", "report.html", "report.md", "predictions.parquet", "gate.json")
STAGE_OUTPUTS = {
    "ingest": "raw",
    "features": "features",
    "normalize": "panel",
    "graph": "graph",
    "folds": "folds",
}


def run_local(cfg: Config, out: Path, pipeline: str = "train") -> dict:
    """Run the whole DAG (`pipeline`: "train" or "hpo") locally, then lay the results and stage
    artifacts out under `out`."""
    out = out.resolve()
    if not cfg.evaluate.champion_uri:  # the champion outlives the run's fresh artifact folders
        cfg = dataclasses.replace(
            cfg, evaluate=dataclasses.replace(cfg.evaluate, champion_uri=str(out / "models" / "champion"))
        )
    if pipeline == "hpo" and not cfg.hpo.storage:  # every worker task and the summary share one study
        cfg = cfg.with_params({"hpo.storage": f"sqlite:///{out / 'optuna.db'}"})
    root = out / "kfp"
    root.mkdir(parents=True, exist_ok=True)
    # Folds train side by side: give each its share of the cores instead of oversubscribing them.
    threads = max(1, (os.cpu_count() or 1) // max(1, cfg.pipeline.parallelism))
    os.environ.setdefault("KABUFLOW_THREADS", str(threads))
    _hide_docker_dir()
    from kfp import local

    # The local runner warns, per task, that cluster-only settings (resources, the image) do nothing here.
    warnings.filterwarnings("ignore", module=r"kfp\.local\..*")

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    t0 = time.perf_counter()
    # No stage of this pipeline connects to the HPO database with a password: credentials stay out of it.
    config = json.dumps(redact.tree(cfg.to_dict()), sort_keys=True)
    build = build_hpo_pipeline if pipeline == "hpo" else build_pipeline
    task = build(cfg, image="kabuflow:local")(config=config)
    result = Path(task.output.path)
    seconds = time.perf_counter() - t0
    run_dir = result.parents[1]
    for task_name, output in STAGE_OUTPUTS.items():
        _link(run_dir / task_name / output, out / output)
    if pipeline == "hpo":
        _lay_out_hpo(result, out)
        if not cfg.hpo.then_train:
            print(f"\nhpo pipeline finished in {seconds:.0f} s; report: {out / 'hpo-report.html'}")
            return json.loads((out / "hpo.json").read_text())
        result = next(run_dir.glob("evaluate*/evaluation"))
    return _lay_out_evaluation(result, out, seconds)


def _lay_out_hpo(summary: Path, out: Path) -> None:
    shutil.copyfile(summary / "hpo.json", out / "hpo.json")
    shutil.copyfile(summary / "report.html", out / "hpo-report.html")
    _link(summary, out / "hpo")
    print((summary / "summary.md").read_text())


def _lay_out_evaluation(evaluation: Path, out: Path, seconds: float) -> dict:
    for name in RESULTS:
        shutil.copyfile(evaluation / name, out / name)
    _link(evaluation, out / "evaluation")
    metrics = json.loads((out / "metrics.json").read_text())
    from kabuflow.evaluate.report import summary_table

    print(summary_table(metrics))
    print(f"\npipeline finished in {seconds:.0f} s; report: {out / 'report.html'}")
    return metrics


def run_audit_local(cfg: Config, out: Path) -> dict:
    """The audit pipeline through the same local runner; audit.json and audit.html are copied to `out`."""
    from pipelines.audit import build_audit_pipeline

    out = out.resolve()
    (out / "kfp").mkdir(parents=True, exist_ok=True)
    _hide_docker_dir()
    from kfp import local

    warnings.filterwarnings("ignore", module=r"kfp\.local\..*")
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(out / "kfp"), raise_on_error=True
    )
    task = build_audit_pipeline(cfg, image="kabuflow:local")(config=json.dumps(cfg.to_dict(), sort_keys=True))
    for name in ("audit.json", "audit.html"):
        shutil.copyfile(Path(task.output.path) / name, out / name)
    return json.loads((out / "audit.json").read_text())


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink() if link.is_symlink() or link.is_file() else shutil.rmtree(link)
    link.symlink_to(target, target_is_directory=target.is_dir())
