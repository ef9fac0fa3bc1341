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
    import json

    from kabuflow.config import from_dict
    from kabuflow.train import train_fold as stage

    # spec = {"fold": k, "model": m}; the local runner may hand whole numbers back as floats (kfp #11004).
    fold, model = int(spec["fold"]), str(spec["model"])
    manifest = stage(
        from_dict(json.loads(config)), panel.path, graph.path, folds.path, fold, model, result.path
    )
    result.metadata.update({"fold": fold, "model": model})
    for name, value in manifest.get("metrics", {}).items():
        if isinstance(value, int | float):
            metrics.log_metric(name, float(value))
