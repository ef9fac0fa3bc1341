"""KFP components: evaluate and promote, and the glue they share (for_kfp)."""

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
    from components.evaluate import for_kfp

    dirs = [a.path for a in list(atft) + list(baselines)]
    headline, promote = for_kfp(config, raw.path, dirs, evaluation.path, report.path, summary.path)
    for name, value in headline.items():
        metrics.log_metric(name, value)
    return promote


def evaluate_all(
    config: str,
    raw: Input[Dataset],
    predictions: Input[List[Dataset]],  # noqa: UP006
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
    summary: Output[Markdown],
) -> bool:
    """The same for a CPU-only pipeline, whose ATFT and baseline folds share one fan-out."""
    from components.evaluate import for_kfp

    dirs = [a.path for a in predictions]
    headline, promote = for_kfp(config, raw.path, dirs, evaluation.path, report.path, summary.path)
    for name, value in headline.items():
        metrics.log_metric(name, value)
    return promote


def promote(evaluation: Input[Dataset]) -> str:
    """Copy the challenger (model, metrics, daily RankIC) to the champion location gate.json names."""
    import json

    from kabuflow.evaluate.gate import promote as stage

    return json.dumps(stage(evaluation.path), default=str)


def for_kfp(
    config_json: str, raw: str, dirs: list[str], out: str, report_path: str, summary_path: str
) -> tuple[dict[str, float], bool]:
    """What the KFP evaluate components do: run the stage, copy the report and the Markdown summary to
    their output artifacts, and return (headline metrics to log, the gate's promote decision).

    Imports inside: compiling the pipeline imports this module, and needs none of the evaluate stage."""
    import shutil
    from pathlib import Path

    from kabuflow.artifacts import read_json
    from kabuflow.config import from_json
    from kabuflow.evaluate import evaluate as stage

    manifest = stage(from_json(config_json), dirs, out, raw=raw)
    shutil.copyfile(Path(out) / "report.html", report_path)
    shutil.copyfile(Path(out) / "report.md", summary_path)
    decision = bool(read_json(Path(out) / "gate.json")["promote"])
    return {k: float(v) for k, v in manifest.get("headline", {}).items()}, decision
