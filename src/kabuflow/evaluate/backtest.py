"""Top-minus-bottom quantile long–short backtest with overlapping h-day holdings and costs on turnover.

Timing (the labels' convention, y_h(t) = AdjC[t+1+h]/AdjC[t+1] − 1): the signal of date t is known at
t's close and traded at the close of t+1. The cohort formed from it is held h sessions; on its j-th
session (j = 1..h) it earns the stocks' 1-day label of date t+j−1, since y_1d(s) = AdjC[s+2]/AdjC[s+1] − 1.
So the P&L of "day s" (realised at the close of s+2, indexed by s) is

    W_s = (1/h) Σ_{k=0..h−1} C_{s−k},      r_s = Σ_i W_{s,i} · y_1d(s, i)

where C_t holds the cohort's target weights (+1/n_top on the top quantile, −1/n_bottom on the bottom,
formed from every scored name: which names will still have a label is not known at t). Each cohort
gets 1/h of the capital and is rebalanced to its target weights daily, so its h-day return equals its
label spread up to compounding. The book starts empty: the first h−1 days are partly in cash.
Costs: cost_bp per side on every unit of notional traded, Σ_i |W_s,i − W_{s−1},i|. A held name with no
1-day label that day (suspended, delisted, end of data) earns 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from kabuflow.evaluate import stats

GROSS_BOOK = 2.0  # long 1 + short 1


@dataclass(frozen=True)
class LongShort:
    """Daily long–short series over the days with a live position that has a realised return."""

    dates: list[date]
    gross: np.ndarray  # [D] return before costs
    net: np.ndarray  # [D] return after costs
    turnover: np.ndarray  # [D] one-way turnover as a share of the gross book


def quantile_weights(scores: pl.DataFrame, n_quantiles: int) -> pl.DataFrame:
    """(date, code, weight): +1/n_top for the top score quantile, −1/n_bottom for the bottom one; ties
    broken by code so that the book is deterministic. Dates with fewer names than quantiles get none."""
    s = scores.filter(pl.col("score").is_not_null()).sort("code")
    s = s.with_columns(
        pl.len().over("date").alias("_n"),
        pl.col("score").rank("ordinal").over("date").cast(pl.Int64).alias("_r"),
    ).filter(pl.col("_n") >= n_quantiles)
    s = s.with_columns(((pl.col("_r") - 1) * n_quantiles // pl.col("_n")).alias("_q"))
    side = (
        pl.when(pl.col("_q") == n_quantiles - 1).then(1.0).when(pl.col("_q") == 0).then(-1.0).otherwise(0.0)
    )
    s = s.with_columns(side.alias("_side")).filter(pl.col("_side") != 0.0)
    weight = pl.col("_side") / pl.len().over("date", "_side")
    return s.select("date", "code", weight.alias("weight")).sort("code", "date")


def _dense(df: pl.DataFrame, value: str, axes: tuple[pl.DataFrame, pl.DataFrame], fill: float) -> np.ndarray:
    """Scatter a long (date, code, value) frame into a [T, N] array over the session and code axes."""
    days, codes = axes
    out = np.full((days.height, codes.height), fill, dtype=np.float64)
    idx = df.join(days, on="date", how="inner").join(codes, on="code", how="inner")
    out[idx["_t"].to_numpy(), idx["_j"].to_numpy()] = idx[value].to_numpy()
    return out


def long_short(
    weights: pl.DataFrame, returns: pl.DataFrame, sessions: list[date], horizon: int, cost_bp: float
) -> LongShort:
    """The overlapping h-day long–short book of the module docstring, over the given session axis (the
    sorted test dates; gaps between folds' test windows, if any, are treated as adjacent sessions)."""
    days = pl.DataFrame(
        {"date": sessions, "_t": np.arange(len(sessions))}, schema={"date": pl.Date, "_t": pl.Int64}
    )
    codes = pl.concat([weights["code"], returns["code"]]).unique().sort()
    axes = (days, pl.DataFrame({"code": codes, "_j": np.arange(codes.len())}))
    cohort = _dense(weights, "weight", axes, 0.0)  # C[t, i]
    ret = _dense(returns, "ret", axes, math.nan)  # y_1d[s, i]
    book = np.zeros_like(cohort)  # W[s, i] = (1/h) Σ_k C[s − k, i]
    alive = np.zeros(len(sessions), dtype=bool)  # some cohort is in its holding period on day s
    formed = np.abs(cohort).sum(axis=1) > 0
    for k in range(horizon):
        book[k:] += cohort[: len(sessions) - k] / horizon
        alive[k:] |= formed[: len(sessions) - k]
    gross = (book * np.nan_to_num(ret)).sum(axis=1)
    traded = np.abs(np.diff(book, axis=0, prepend=np.zeros((1, book.shape[1])))).sum(axis=1)
    net = gross - cost_bp * 1e-4 * traded
    # A day counts while a cohort is live and the market has realised returns for it (even when the
    # cohorts net to a flat book that day: a zero return is still a return, and its trades still cost).
    live = alive & np.isfinite(ret).any(axis=1)
    return LongShort(
        dates=[d for d, keep in zip(sessions, live, strict=True) if keep],
        gross=gross[live],
        net=net[live],
        turnover=traded[live] / (2.0 * GROSS_BOOK),
    )


def summarise(ls: LongShort) -> dict[str, float]:
    """Annualised Sharpe (gross, net), annual return, drawdown, turnover and the PSR of one book."""
    sr_daily = stats.sharpe(ls.net)
    skew, kurt = stats.moments(ls.net)
    n = int(ls.net.size)
    return {
        "ls_sharpe_gross": stats.sharpe(ls.gross, stats.TRADING_DAYS),
        "ls_sharpe_net": stats.sharpe(ls.net, stats.TRADING_DAYS),
        "ls_ann_return_gross": float(ls.gross.mean() * stats.TRADING_DAYS) if n else math.nan,
        "ls_ann_return_net": float(ls.net.mean() * stats.TRADING_DAYS) if n else math.nan,
        "ls_ann_vol_net": float(ls.net.std(ddof=1) * math.sqrt(stats.TRADING_DAYS)) if n > 1 else math.nan,
        "max_drawdown": stats.max_drawdown(ls.net),
        "turnover": float(ls.turnover.mean()) if n else math.nan,
        "psr": stats.probabilistic_sharpe(sr_daily, n, skew, kurt),
        "sr_daily_net": sr_daily,
        "skew_net": skew,
        "kurtosis_net": kurt,
        "n_days": n,
    }


def run_all(frame: pl.DataFrame, returns: pl.DataFrame, n_quantiles: int, cost_bp: float) -> pl.DataFrame:
    """(model, horizon, date, gross, net, turnover) for every (model, horizon) of the stitched frame,
    all on one session axis: the sorted union of the test dates."""
    sessions = sorted(frame["date"].unique().to_list())
    parts = []
    for (model, h), part in frame.group_by("model", "horizon", maintain_order=True):
        ls = long_short(quantile_weights(part, n_quantiles), returns, sessions, int(h), cost_bp)
        parts.append(to_frame(ls, str(model), int(h)))
    return pl.concat(parts).sort("model", "horizon", "date")


def to_frame(ls: LongShort, model: str, horizon: int) -> pl.DataFrame:
    """A LongShort as rows (model, horizon, date, gross, net, turnover)."""
    return pl.DataFrame(
        {
            "model": [model] * len(ls.dates),
            "horizon": [horizon] * len(ls.dates),
            "date": ls.dates,
            "gross": ls.gross,
            "net": ls.net,
            "turnover": ls.turnover,
        },
        schema={
            "model": pl.String,
            "horizon": pl.Int32,
            "date": pl.Date,
            "gross": pl.Float64,
            "net": pl.Float64,
            "turnover": pl.Float64,
        },
    )


def from_frame(pnl: pl.DataFrame, model: str, horizon: int) -> LongShort:
    """The LongShort of one (model, horizon) back from run_all's frame."""
    part = pnl.filter((pl.col("model") == model) & (pl.col("horizon") == horizon)).sort("date")
    return LongShort(
        dates=part["date"].to_list(),
        gross=part["gross"].to_numpy(),
        net=part["net"].to_numpy(),
        turnover=part["turnover"].to_numpy(),
    )
