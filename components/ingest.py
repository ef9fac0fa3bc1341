"""KFP component: ingest."""

from kfp.dsl import Dataset, Output


def ingest(config: str, raw: Output[Dataset]) -> None:
    """Raw J-Quants tables (+ the oracle on synthetic data) from the configured source."""
    import json

    from kabuflow.config import from_dict
    from kabuflow.ingest import ingest as stage

    manifest = stage(from_dict(json.loads(config)), raw.path)
    raw.metadata.update({"source": manifest["source"], "start": manifest["start"], "end": manifest["end"]})
