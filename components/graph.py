"""KFP component: graph."""

from kfp.dsl import Dataset, Input, Output


def graph(config: str, panel: Input[Dataset], graph: Output[Dataset]) -> None:
    """Per-date stock graph from trailing return correlations and sectors."""
    import json

    from kabuflow.config import from_dict
    from kabuflow.graph import graph as stage

    stage(from_dict(json.loads(config)), panel.path, graph.path)
