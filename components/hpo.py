"""KFP components: hpo-worker and hpo-summary."""

from typing import List  # noqa: UP035 - KFP reads typing.List in component signatures

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output


def hpo_worker(
    config: str,
    panel: Input[Dataset],
    graph: Input[Dataset],
    folds: Input[Artifact],
    worker: int,
    result: Output[Dataset],
    metrics: Output[Metrics],
) -> None:
    """hpo.trials trials of the shared study at hpo.storage; result holds this worker's view (hpo.json)."""
    import json

    from kabuflow.config import from_dict
    from kabuflow.train.hpo import run_hpo

    cfg = from_dict(json.loads(config))
    worker = int(worker)  # the local runner may hand whole numbers back as floats (kfp #11004)
    done = run_hpo(
        cfg, panel.path, graph.path, folds.path, cfg.hpo.trials, cfg.hpo.storage, result.path, worker
    )
    result.metadata.update({"worker": worker, "study": done["study"]})
    for name in ("best_value", "n_trials", "n_complete", "n_pruned", "n_fail"):
        metrics.log_metric(name, float(done[name]))


def hpo_summary(
    config: str,
    workers: Input[List[Dataset]],  # noqa: UP006 - the fan-in: every worker has finished
    summary: Output[Dataset],
    report: Output[HTML],
    table: Output[Markdown],
    metrics: Output[Metrics],
) -> str:
    """Best settings, trial table, importance and plots of the study; returns the best config (JSON)."""
    import json
    import shutil

    from kabuflow.config import from_dict
    from kabuflow.train.hpo_summary import hpo_summary as stage

    done = stage(from_dict(json.loads(config)), summary.path)
    shutil.copyfile(f"{summary.path}/report.html", report.path)
    shutil.copyfile(f"{summary.path}/summary.md", table.path)
    summary.metadata.update({"study": done["study"], "workers": len(workers)})
    for name in ("best_value", "n_trials", "n_complete", "n_pruned", "n_fail", "n_waiting"):
        metrics.log_metric(name, float(done[name]))
    with open(f"{summary.path}/best_config.json") as f:
        return json.dumps(json.load(f), sort_keys=True)
