"""KFP components: evaluate and promote."""

from typing import List  # noqa: UP035 - KFP reads typing.List in component signatures

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output


def evaluate(
    config: str,
    raw: Input[Dataset],
    atft: Input[List[Dataset]],  # noqa: UP006
    baselines: Input[List[Dataset]],  # noqa: UP006
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
    summary: Output[Markdown],
) -> bool:
    """Out-of-sample metrics, backtest, report; returns the promotion gate's decision."""
    import json
    import shutil
    from pathlib import Path

    from kabuflow.config import from_dict
    from kabuflow.evaluate import evaluate as stage

    dirs = [a.path for a in list(atft) + list(baselines)]
    manifest = stage(from_dict(json.loads(config)), dirs, evaluation.path, raw=raw.path)
    out = Path(evaluation.path)
    shutil.copyfile(out / "report.html", report.path)
    shutil.copyfile(out / "report.md", summary.path)
    for name, value in manifest.get("headline", {}).items():
        metrics.log_metric(name, float(value))
    return bool(json.loads((out / "gate.json").read_text())["promote"])


def promote(evaluation: Input[Dataset]) -> str:
    """Copy the challenger (model, metrics, daily RankIC) to the champion location gate.json names."""
    import json

    from kabuflow.evaluate.gate import promote as stage

    return json.dumps(stage(evaluation.path), default=str)
