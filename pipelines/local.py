"""`make run`: the very same pipeline, executed on this machine by KFP's local SubprocessRunner."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from kfp import local

from kabuflow.config import Config
from pipelines.pipeline import build_pipeline

log = logging.getLogger("kabuflow.run")

RESULTS = ("metrics.json", "report.html", "report.md", "predictions.parquet", "gate.json")
STAGE_OUTPUTS = {
    "ingest": "raw",
    "features": "features",
    "normalize": "panel",
    "graph": "graph",
    "folds": "folds",
}


def run_local(cfg: Config, out: Path) -> dict:
    """Run the whole DAG locally, then lay the results and stage artifacts out under `out`."""
    out = out.resolve()
    root = out / "kfp"
    root.mkdir(parents=True, exist_ok=True)
    # Folds train side by side: give each its share of the cores instead of oversubscribing them.
    threads = max(1, (os.cpu_count() or 1) // max(1, cfg.pipeline.parallelism))
    os.environ.setdefault("KABUFLOW_THREADS", str(threads))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    t0 = time.perf_counter()
    task = build_pipeline(cfg, image="kabuflow:local")(config=json.dumps(cfg.to_dict(), sort_keys=True))
    evaluation = Path(task.output.path)
    seconds = time.perf_counter() - t0
    for name in RESULTS:
        shutil.copyfile(evaluation / name, out / name)
    run_dir = evaluation.parents[1]
    for task_name, output in STAGE_OUTPUTS.items():
        _link(run_dir / task_name / output, out / output)
    _link(evaluation, out / "evaluation")
    metrics = json.loads((out / "metrics.json").read_text())
    from kabuflow.evaluate.report import summary_table

    print(summary_table(metrics))
    print(f"\npipeline finished in {seconds:.0f} s; report: {out / 'report.html'}")
    return metrics


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink() if link.is_symlink() or link.is_file() else shutil.rmtree(link)
    link.symlink_to(target, target_is_directory=target.is_dir())
