"""KFP component: train-fold."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Output


def train_fold(
    config: str,
    panel: Input[Dataset],
    graph: Input[Dataset],
    folds: Input[Artifact],
    spec: dict,
    result: Output[Dataset],
    metrics: Output[Metrics],
) -> None:
    """One fold of one model kind: weights, validation/test predictions, history."""

    from kabuflow.config import from_json
    from kabuflow.train import train_fold as stage

    # spec = {"fold": k, "model": m}; the local runner may hand whole numbers back as floats (kfp #11004).
    fold, model = int(spec["fold"]), str(spec["model"])
    manifest = stage(from_json(config), panel.path, graph.path, folds.path, fold, model, result.path)
    result.metadata.update({"fold": fold, "model": model})
    for name, value in manifest.get("metrics", {}).items():
        if isinstance(value, int | float):
            metrics.log_metric(name, float(value))


def train_fold_trainjob(
    config: str,
    image: str,
    panel: Input[Dataset],
    graph: Input[Dataset],
    folds: Input[Artifact],
    spec: dict,
    result: Output[Dataset],
    metrics: Output[Metrics],
) -> None:
    """One ATFT fold as a Kubeflow Trainer TrainJob (torchrun DDP over several GPU nodes); this pod only waits."""
    import json
    import os

    from kabuflow import storage
    from kabuflow.config import from_json
    from pipelines.trainjob import current_namespace, launch_trainjob, render_trainjob, trainjob_name

    cfg = from_json(config)
    fold, model = int(spec["fold"]), str(spec["model"])
    run_id = os.environ.get("KABUFLOW_RUN_ID", "run")
    # The trainer pods write to a scratch prefix; the launcher then uploads result.path as usual.
    scratch = result.uri.rstrip("/") + "-trainjob"
    manifest = render_trainjob(
        cfg,
        image,
        fold,
        model,
        panel.uri,
        graph.uri,
        folds.uri,
        scratch,
        trainjob_name(run_id, fold, model),
        run_id=run_id,
    )
    launch_trainjob(manifest, current_namespace(), cfg.pipeline.trainjob_timeout)
    storage.download_dir(scratch, result.path)
    result.metadata.update({"fold": fold, "model": model, "trainjob": manifest["metadata"]["name"]})
    done = json.loads(open(os.path.join(result.path, "metrics.json")).read())
    for name, value in done.items():
        if isinstance(value, int | float):
            metrics.log_metric(name, float(value))
