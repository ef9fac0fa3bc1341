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
    from kabuflow.evaluate import for_kfp

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
    from kabuflow.evaluate import for_kfp

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
