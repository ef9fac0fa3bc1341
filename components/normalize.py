"""KFP component: normalize."""

from kfp.dsl import Dataset, Input, Output


def normalize(config: str, features: Input[Dataset], panel: Output[Dataset]) -> None:
    """Causal normalization into the dense, memory-mappable training panel."""
    import json

    from kabuflow.config import from_dict
    from kabuflow.normalize import normalize as stage

    stage(from_dict(json.loads(config)), features.path, panel.path)
