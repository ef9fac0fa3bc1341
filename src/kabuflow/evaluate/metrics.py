"""Signal quality per model and horizon: daily IC and RankIC, their Newey–West summary, deciles, controls."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from kabuflow.evaluate import stats

KEYS = ["model", "horizon", "date"]
MIN_NAMES = 3  # a date with fewer scored, labelled names has no meaningful cross-sectional correlation
N_BINS = 10

# The metric names of the metrics.json contract (DESIGN.md), in display order.
METRICS = (
    "ic",
    "rank_ic",
    "icir",
    "rank_icir",
    "rank_ic_tstat",
    "hit_rate",
    "ls_sharpe_gross",
    "ls_sharpe_net",
    "ls_ann_return_net",
    "max_drawdown",
    "turnover",
    "psr",
    "dsr",
)

DEFINITIONS = {
    "ic": "mean over test dates of the cross-sectional Pearson correlation of score and realised label",
    "rank_ic": "mean over test dates of the cross-sectional Spearman correlation (average ranks)",
    "icir": "mean / std (ddof=1) of the daily IC; per day, not annualised",
    "rank_icir": "mean / std (ddof=1) of the daily RankIC; per day, not annualised",
    "rank_ic_tstat": "t of the mean daily RankIC with a Newey–West (Bartlett) standard error, "
    "lags = max(horizon, floor(4 (T/100)^(2/9)))",
    "hit_rate": "share of test dates whose RankIC is > 0",
    "ls_sharpe_gross": "annualised (×√252) Sharpe of the daily top-minus-bottom quantile returns before costs",
    "ls_sharpe_net": "the same after cost_bp per side on every unit of notional traded",
    "ls_ann_return_net": "mean daily net long-short return × 252 (arithmetic)",
    "max_drawdown": "largest fall of compounded net equity below its running peak (positive fraction)",
    "turnover": "mean daily one-way turnover as a share of the gross book (1 = whole book replaced daily)",
    "psr": "probabilistic Sharpe (Bailey & López de Prado 2012) of the daily net returns against SR* = 0",
    "dsr": "deflated Sharpe (Bailey & López de Prado 2014): PSR against the expected best of "
    "hpo_trials × n_models zero-skill trials, trial variance from the models' daily net Sharpes",
    "oracle_share": "model RankIC / oracle RankIC on the same dates (synthetic data only)",
}


def daily_ic(frame: pl.DataFrame, label: str = "label") -> pl.DataFrame:
    """Per (model, horizon, date): n, IC (Pearson) and RankIC (Spearman, average ranks) over the rows that
    have both a score and a label. A constant score ranks nothing: its day counts as 0, not as missing,
    so that a degenerate model cannot improve its mean by abstaining."""
    ok = frame.filter(pl.col("score").is_not_null() & pl.col(label).is_not_null())
    ranked = ok.with_columns(
        pl.col("score").rank("average").over(KEYS).alias("_rs"),
        pl.col(label).rank("average").over(KEYS).alias("_rl"),
    )
    out = (
        ranked.group_by(KEYS)
        .agg(
            pl.col("fold").min(),
            pl.len().alias("n"),
            pl.corr("score", label).alias("ic"),
            pl.corr("_rs", "_rl").alias("rank_ic"),
        )
        .filter(pl.col("n") >= MIN_NAMES)
    )
    return out.with_columns(pl.col("ic", "rank_ic").fill_nan(0.0).fill_null(0.0)).sort(KEYS)


def summarise_ic(ic: np.ndarray, rank_ic: np.ndarray, horizon: int) -> dict[str, float]:
    """Mean, IR, Newey–West t and hit rate of one model's daily IC/RankIC series at one horizon."""
    ic, rank_ic = np.asarray(ic, dtype=np.float64), np.asarray(rank_ic, dtype=np.float64)
    n = rank_ic.size
    lags = stats.nw_lags(n, horizon)

    def ir(x: np.ndarray) -> float:
        sd = float(x.std(ddof=1)) if x.size > 1 else 0.0
        return float(x.mean() / sd) if sd > 0 else math.nan

    return {
        "ic": float(ic.mean()) if n else math.nan,
        "rank_ic": float(rank_ic.mean()) if n else math.nan,
        "icir": ir(ic),
        "rank_icir": ir(rank_ic),
        "rank_ic_tstat": stats.nw_tstat(rank_ic, lags),
        "hit_rate": float(np.mean(rank_ic > 0)) if n else math.nan,
        "n_dates": n,
        "nw_lags": lags,
    }


def ic_table(daily: pl.DataFrame) -> dict[tuple[str, int], dict[str, float]]:
    """summarise_ic for every (model, horizon) of a daily_ic frame."""
    out = {}
    for (model, h), part in daily.group_by("model", "horizon"):
        out[(model, h)] = summarise_ic(part["ic"].to_numpy(), part["rank_ic"].to_numpy(), int(h))
    return out


def deciles(frame: pl.DataFrame, n_bins: int = N_BINS) -> pl.DataFrame:
    """(model, horizon, bucket, mean_return): the mean realised label of each score bucket (0 = lowest),
    averaged per date first so that each date weighs the same. Ties are broken by code, deterministically;
    dates with fewer names than buckets are skipped."""
    ok = frame.filter(pl.col("score").is_not_null() & pl.col("label").is_not_null()).sort("code")
    ok = ok.with_columns(
        pl.len().over(KEYS).alias("_n"),
        pl.col("score").rank("ordinal").over(KEYS).alias("_r"),
    ).filter(pl.col("_n") >= n_bins)
    ok = ok.with_columns(((pl.col("_r").cast(pl.Int64) - 1) * n_bins // pl.col("_n")).alias("bucket"))
    # Sorted before the second mean: group_by's output order varies from run to run, and a mean summed in
    # another order differs in the last bit; make run's metrics must be identical run after run.
    per_day = ok.group_by([*KEYS, "bucket"]).agg(pl.col("label").mean()).sort([*KEYS, "bucket"])
    return (
        per_day.group_by("model", "horizon", "bucket")
        .agg(pl.col("label").mean().alias("mean_return"))
        .sort("model", "horizon", "bucket")
    )


def decile_summary(dec: pl.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """{model: {"5d": {mean_return: [...], monotonicity, spread}}}: monotonicity is the Spearman
    correlation of bucket index and mean return (1 = returns rise bucket by bucket)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (model, h), part in dec.group_by("model", "horizon"):
        part = part.sort("bucket")
        means = part["mean_return"].to_numpy()
        out.setdefault(model, {})[f"{h}d"] = {
            "mean_return": means.tolist(),
            "monotonicity": stats.spearman(part["bucket"].to_numpy(), means),
            "spread": float(means[-1] - means[0]) if means.size > 1 else math.nan,
        }
    return out


def shuffled_control(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """daily_ic with the labels permuted among the names of each (model, horizon, date), with a fixed
    seed. Nothing real survives the permutation, so a RankIC far from 0 here is a bug in the evaluation
    (or a score that is the label's own rank), never skill."""
    ok = frame.filter(pl.col("score").is_not_null() & pl.col("label").is_not_null()).sort(*KEYS, "code")
    rng = np.random.default_rng(seed)
    # Both orders are sorted by KEYS first, so the groups line up row for row: placing the labels in
    # (KEYS, random key) order beside the (KEYS, code) order permutes them within each group.
    keyed = ok.select(*KEYS, "label").with_columns(pl.Series("_key", rng.random(ok.height)))
    shuffled = keyed.sort(*KEYS, "_key")["label"].alias("shuffled")
    return daily_ic(ok.with_columns(shuffled), label="shuffled")


def control_table(control: pl.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {"5d": {rank_ic, rank_ic_tstat, n_dates}}} of the shuffled-label control."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (model, h), s in ic_table(control).items():
        keep = {k: s[k] for k in ("rank_ic", "rank_ic_tstat", "n_dates")}
        out.setdefault(model, {})[f"{h}d"] = keep
    return out


def fold_table(daily: pl.DataFrame, pnl: pl.DataFrame) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """{model: {"5d": {"fold_k": {rank_ic, rank_ic_tstat, n_dates, ls_sharpe_net}}}}: each fold's test
    window on its own, so that one lucky fold cannot hide behind the stitched average."""
    # A P&L day belongs to the fold of the latest scored date at or before it (the last days of a test
    # window have no finished h-day label, hence no daily IC, but their book still earns).
    fold_of = daily.select("model", "horizon", "date", "fold").sort("date")
    pnl = pnl.sort("date").join_asof(
        fold_of, on="date", by=["model", "horizon"], strategy="backward", check_sortedness=False
    )
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for (model, h, fold), part in daily.group_by("model", "horizon", "fold"):
        s = summarise_ic(part["ic"].to_numpy(), part["rank_ic"].to_numpy(), int(h))
        net = pnl.filter((pl.col("model") == model) & (pl.col("horizon") == h) & (pl.col("fold") == fold))
        row = {k: s[k] for k in ("rank_ic", "rank_ic_tstat", "n_dates")}
        row["ls_sharpe_net"] = stats.sharpe(net["net"].to_numpy(), stats.TRADING_DAYS)
        out.setdefault(model, {}).setdefault(f"{h}d", {})[f"fold_{fold}"] = row
    return {m: {h: dict(sorted(v.items())) for h, v in sorted(hs.items())} for m, hs in sorted(out.items())}
