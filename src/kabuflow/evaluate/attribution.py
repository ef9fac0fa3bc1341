"""Signal attribution (synthetic market): how closely each model's scores track each planted signal."""

from __future__ import annotations

import polars as pl

from kabuflow import schema
from kabuflow.evaluate.metrics import MIN_NAMES
from kabuflow.evaluate.scorecard import hkey, model_rank
from kabuflow.evaluate.stitch import ORACLE

KEYS = ["model", "date"]
ABOUT = (
    "Mean over test dates of the cross-sectional Spearman correlation between each model's score and "
    "each planted signal's term of the oracle (synthetic data only), the last column against the oracle "
    "total; the oracle row shows how much of each signal a ranking by the true expected return carries."
)

Attribution = dict[str, dict[str, dict[str, float]]]  # {model: {"5d": {signal | "oracle": value}}}


def part_columns(oracle: pl.DataFrame) -> dict[int, dict[str, str]]:
    """{horizon: {signal: column}} of the optional part_<signal>_<h>d columns an oracle frame carries."""
    out: dict[int, dict[str, str]] = {}
    for col in oracle.columns:
        if found := schema.ORACLE_PART.match(col):
            out.setdefault(int(found["h"]), {})[found["signal"]] = col
    return dict(sorted(out.items()))


def daily_attribution(scored: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    """Per (model, date): n and the Spearman correlation (average ranks) of score with each column,
    named by its key in `columns`. A constant score counts as 0, as in metrics.daily_ic; a constant
    column (a signal switched off) is null that day: there is nothing to track."""
    cols = list(columns.values())
    ranked = scored.drop_nulls(["score", *cols]).with_columns(
        pl.col("score", *cols).rank("average").over(KEYS)
    )
    corr = [
        pl.when(pl.col(c).n_unique() > 1).then(pl.corr("score", c).fill_nan(0.0)).alias(name)
        for name, c in columns.items()
    ]
    daily = ranked.group_by(KEYS).agg(pl.len().alias("n"), *corr).filter(pl.col("n") >= MIN_NAMES)
    return daily.sort(KEYS)


def signal_attribution(frame: pl.DataFrame, oracle: pl.DataFrame | None) -> Attribution:
    """{model: {"5d": {signal: mean daily Spearman, ..., "oracle": the same against the oracle total}}}
    for every model in `frame` (the oracle's own rows included) at each horizon the oracle has parts
    for; {} when it has none (real data, or a raw directory written before the parts existed)."""
    if oracle is None:
        return {}
    out: Attribution = {}
    for h, parts in part_columns(oracle).items():
        columns = {**parts, ORACLE: f"oracle_{h}d"}
        scored = (
            frame.filter((pl.col("horizon") == h) & pl.col("score").is_not_null())
            .select("model", "date", "code", "score")
            .join(oracle.select("date", "code", *columns.values()), on=["date", "code"], how="inner")
        )
        means = daily_attribution(scored, columns).group_by("model").agg(pl.col(list(columns)).mean())
        for row in means.iter_rows(named=True):
            out.setdefault(row.pop("model"), {})[hkey(h)] = row
    return {m: out[m] for m in sorted(out, key=model_rank)}
