"""KFP component: folds."""

from kfp.dsl import Artifact, Input, Output


def folds(config: str, panel: Input[Artifact], folds: Output[Artifact]) -> None:
    """Walk-forward folds with embargo over the panel's dates: folds.json and its manifest, for every train-fold task."""
    import json

    from kabuflow.config import from_dict
    from kabuflow.folds import build_folds

    written = build_folds(from_dict(json.loads(config)), panel.path, folds.path)
    folds.metadata["n_folds"] = len(written)
