"""`make run` and `make run-containers`: the very same pipeline, on this machine, through KFP's local runners."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kabuflow import redact, telemetry
from kabuflow.artifacts import write_json
from kabuflow.config import Config, ConfigError
from pipelines.console import Console, Plan
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

RUNNERS = ("subprocess", "docker")
RESULTS = ("metrics.json", "report.html", "report.md", "predictions.parquet", "gate.json")
STAGE_OUTPUTS = {
    "ingest": "raw",
    "features": "features",
    "normalize": "panel",
    "graph": "graph",
    "folds": "folds",
}


def run_local(
    cfg: Config,
    out: Path,
    runner: str = "subprocess",
    image: str = "",
    verbose: bool = False,
    pipeline: str = "train",
) -> dict:
    """Run the whole DAG (`pipeline`: "train" or "hpo") locally, then lay the results and stage
    artifacts out under `out`.

    runner: "subprocess" (every task a process on this machine) or "docker" (every task a container of
    `image`, pipelines/containers.py). Unless `verbose`, the runner's own stream goes to
    out/logs/kfp-<time>.log and the terminal shows pipelines/console.py's summary instead."""
    if runner not in RUNNERS:
        raise ConfigError(f"unknown runner {runner!r} (known: {', '.join(RUNNERS)})")
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
    env = {"KABUFLOW_THREADS": os.environ.get("KABUFLOW_THREADS", str(threads))}
    if not verbose:
        env[telemetry.EVENTS_ENV] = "1"
    os.environ.update(env)  # the subprocess runner's tasks inherit it; containers get it explicitly
    _hide_docker_dir()
    from kfp import local

    # The local runner warns, per task, that cluster-only settings (resources, the image) do nothing here.
    warnings.filterwarnings("ignore", module=r"kfp\.local\..*")
    record: dict[str, Any] = {"runner": runner, "env": env, "started": time.time()}
    task_runner, image = _runner(runner, cfg, out, image, record)
    local.init(runner=task_runner, pipeline_root=str(root), raise_on_error=True)
    t0 = time.perf_counter()
    build = build_hpo_pipeline if pipeline == "hpo" else build_pipeline
    dag = build(cfg, image=image)
    # No stage of this pipeline connects to the HPO database with a password: credentials stay out of it.
    config = json.dumps(redact.tree(cfg.to_dict()), sort_keys=True)
    printer = builtins.print  # kfp indents task output by swapping print, racily across parallel tasks
    try:
        if verbose:
            task = dag(config=config)
        else:
            task = _quietly(lambda: dag(config=config), cfg, out, runner)
    finally:
        builtins.print = printer
    seconds = time.perf_counter() - t0
    write_json(out / "run.json", {**record, "image": image, "seconds": seconds, "finished": time.time()})
    result = Path(task.output.path)
    run_dir = result.parents[1]
    for task_name, output in STAGE_OUTPUTS.items():
        _link(run_dir / task_name / output, out / output)
    if pipeline == "hpo":
        _lay_out_hpo(result, out)
        if not cfg.hpo.then_train:
            print(f"\nhpo pipeline finished in {seconds:.0f} s; report: {out / 'hpo-report.html'}")
            return json.loads((out / "hpo.json").read_text())
        result = next(run_dir.glob("evaluate*/evaluation"))
    metrics = _lay_out_evaluation(result, out)
    from kabuflow.evaluate.report import summary_table

    print(summary_table(metrics))
    print(f"\npipeline finished in {seconds:.0f} s ({runner} runner); report: {out / 'report.html'}")
    return metrics


def _runner(kind: str, cfg: Config, out: Path, image: str, record: dict[str, Any]) -> tuple[Any, str]:
    """The kfp task runner and the image name to build the pipeline with; notes the run in `record`."""
    from kfp import local

    if kind == "subprocess":
        return local.SubprocessRunner(use_venv=False), "kabuflow:local"
    from pipelines.containers import docker_runner

    # The label names this run's containers in the engine's event log (scripts/image_check.py).
    record["label"] = f"{out.name}-{time.strftime('%Y%m%dT%H%M%S')}"
    runner, image = docker_runner(cfg, out / "kfp", image or default_image(), record["env"], record["label"])
    record["read_only"] = runner.container_run_args.get("read_only", False)
    return runner, image


def default_image() -> str:
    """The image `make image-cpu` builds from this checkout: localhost/kabuflow:cpu-<short sha>."""
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if sha.returncode != 0:
        raise ConfigError("--runner docker outside a git checkout needs --image NAME")
    return f"localhost/kabuflow:cpu-{sha.stdout.strip()}"


def _quietly(run: Callable[[], Any], cfg: Config, out: Path, runner: str) -> Any:
    """Run with stdout and stderr going to the log file, and the console summary on the terminal."""
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    path = logs / f"kfp-{time.strftime('%Y%m%dT%H%M%S')}.log"
    term = sys.stdout
    n_models = len(cfg.pipeline.models)
    plan = Plan(cfg.folds.n_folds, cfg.model.members, cfg.train.epochs, cfg.folds.n_folds * n_models)
    print(f"kabuflow run: {runner} runner; the full KFP log: {path}", file=term, flush=True)
    root_logger = logging.getLogger()
    saved = root_logger.handlers[:]
    with path.open("w") as stream:
        console = Console(stream, term, plan, tty=term.isatty())
        # kfp logs through the root logger, also after the run (workspace clean-up): into the log as well.
        root_logger.handlers = [logging.StreamHandler(console)]
        try:
            with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
                return run()
        except BaseException:
            console.close_status()
            print(f"kabuflow run failed; the full KFP log: {path}", file=term, flush=True)
            raise
        finally:
            root_logger.handlers = saved
            console.close_status()


def _lay_out_hpo(summary: Path, out: Path) -> None:
    shutil.copyfile(summary / "hpo.json", out / "hpo.json")
    shutil.copyfile(summary / "report.html", out / "hpo-report.html")
    _link(summary, out / "hpo")
    print((summary / "summary.md").read_text())


def _lay_out_evaluation(evaluation: Path, out: Path) -> dict:
    """Copy the results next to `out` and link the evaluation there; returns metrics.json."""
    for name in RESULTS:
        shutil.copyfile(evaluation / name, out / name)
    _link(evaluation, out / "evaluation")
    return json.loads((out / "metrics.json").read_text())


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
