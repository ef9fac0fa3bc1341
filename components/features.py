"""KFP component: features."""

from kfp.dsl import Dataset, Input, Output


def features(config: str, raw: Input[Dataset], features: Output[Dataset]) -> None:
    """Point-in-time features and labels from the raw tables."""
    import json

    from kabuflow.config import from_dict
    from kabuflow.features import features as stage

    manifest = stage(from_dict(json.loads(config)), raw.path, features.path)
    features.metadata["n_features"] = len(manifest["features"])
