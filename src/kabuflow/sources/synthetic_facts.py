"""Stylized facts of daily bars (synthetic or real, one code path) and signal diagnostics: labels, RankIC."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

# What a split ratio is called, by AdjFactor on the ex-date (J-Quants: 0.5 = one share became two).
SPLIT_NAMES = {
    0.5: "1:2",
    1 / 3: "1:3",
    0.25: "1:4",
    0.2: "1:5",
    0.1: "1:10",
    2.0: "2:1",
    5.0: "5:1",
    10.0: "10:1",
}


def daily_returns(bars: pl.DataFrame) -> pl.DataFrame:
    """Log close-to-close returns from AdjC per code, over traded rows only (Vo > 0).

    Zero-volume rows are dropped first: real downloads carry holidays and untraded days as rows with
    Vo = 0 and a copied close, which would count as fake zero returns.
    """
    return (
        bars.lazy()
        .filter((pl.col("Vo") > 0) & (pl.col("AdjC") > 0))
        .select("Code", "Date", "AdjC")
        .sort("Code", "Date")
        .with_columns(r=pl.col("AdjC").log().diff().over("Code"))
        .filter(pl.col("r").is_not_null() & pl.col("r").is_finite())
        .select("Code", "Date", "r")
        .collect()
    )


def _per_stock(rets: pl.DataFrame, min_days: int) -> pl.DataFrame:
    """Per-code volatility, excess kurtosis, lag-1 autocorrelation of |r| and share of zero returns."""
    a = pl.col("r").abs()
    return (
        rets.group_by("Code")
        .agg(
            n=pl.len(),
            vol=pl.col("r").std(),
            kurt=pl.col("r").kurtosis(fisher=True),
            acf_abs=pl.corr(a, a.shift(1)),
            zero=(pl.col("r") == 0).mean(),
        )
        .filter(pl.col("n") >= min_days)
    )


def _mean_pairwise_corr(rets: pl.DataFrame, max_stocks: int) -> float:
    """Median over calendar years of the mean off-diagonal correlation of fully observed stocks.

    Uses sum_ij corr_ij = |Z 1|^2 / T for standardized columns Z, so it is O(T N), not O(N^2).
    """
    yearly = []
    for (_,), df in rets.with_columns(y=pl.col("Date").dt.year()).group_by(["y"], maintain_order=True):
        wide = df.pivot(on="Code", index="Date", values="r", sort_columns=True).drop("Date")
        days = wide.height
        if days < 120:
            continue
        full = [c for c in wide.columns if wide[c].null_count() == 0]
        full = full[:: max(1, math.ceil(len(full) / max_stocks))]
        if len(full) < 10:
            continue
        x = wide.select(full).to_numpy()
        sd = x.std(axis=0)
        x = x[:, sd > 0]
        z = (x - x.mean(axis=0)) / x.std(axis=0)
        n = z.shape[1]
        yearly.append((np.square(z.sum(axis=1)).sum() / days - n) / (n * (n - 1)))
    return float(np.median(yearly)) if yearly else float("nan")


def split_ratios(bars: pl.DataFrame) -> dict[str, float]:
    """Share of each split/consolidation ratio among ex-dates (AdjFactor != 1); {} when none."""
    f = bars.filter((pl.col("AdjFactor") != 1.0) & pl.col("AdjFactor").is_not_null())["AdjFactor"].to_numpy()
    if len(f) == 0:
        return {}
    names = np.array([min(SPLIT_NAMES, key=lambda k, v=v: abs(math.log(k / v))) for v in f])
    out = {}
    for k, name in SPLIT_NAMES.items():
        share = float(np.mean(names == k))
        if share > 0:
            out[name] = share
    return out


def stylized_facts(bars: pl.DataFrame, min_days: int = 250, max_stocks: int = 800) -> dict[str, float]:
    """Median-stock statistics of daily returns that any plausible model of the TSE must reproduce.

    `vol`: median daily std of log returns; `kurt`: median excess kurtosis; `acf_abs`: median lag-1
    autocorrelation of |r| (volatility clustering); `corr`: mean pairwise correlation (median over
    years); `mkt_vol`, `mkt_acf_abs`: daily std and lag-1 autocorrelation of |r| of the equal-weight
    market return; `dispersion`: median over dates of the cross-sectional std; `zero_share`: median
    share of zero-return days; `splits_per_1000`: ex-dates per 1,000 stock-years, NaN without any
    AdjFactor other than 1 (pre-adjusted data such as jpx-2463 carry no factors to count).
    """
    rets = daily_returns(bars)
    per = _per_stock(rets, min_days)
    ew = rets.group_by("Date").agg(pl.col("r").mean()).sort("Date")["r"].to_numpy()
    ew_abs = np.abs(ew - ew.mean())
    disp = rets.group_by("Date").agg(s=pl.col("r").std(), n=pl.len()).filter(pl.col("n") >= 20)["s"]
    stock_years = bars.height / 245.0
    n_splits = bars.filter((pl.col("AdjFactor") != 1.0) & pl.col("AdjFactor").is_not_null()).height
    return {
        "stocks": float(per.height),
        "vol": float(per["vol"].median()),
        "kurt": float(per["kurt"].median()),
        "acf_abs": float(per["acf_abs"].median()),
        "corr": _mean_pairwise_corr(rets, max_stocks),
        "mkt_vol": float(ew.std()),
        "mkt_acf_abs": float(np.corrcoef(ew_abs[1:], ew_abs[:-1])[0, 1]),
        "dispersion": float(disp.median()),
        "zero_share": float(per["zero"].median()),
        "splits_per_1000": 1000.0 * n_splits / stock_years if n_splits else float("nan"),
    }


def skew_by_volatility(bars: pl.DataFrame, horizon: int = 5, window: int = 60) -> dict[str, float]:
    """How the return distribution changes with volatility: the mean-vs-median trap of issue #12.

    Per date, stocks fall into quintiles of trailing `window`-session vol of log returns (known at t);
    the label is the next `horizon`-session simple return from the close of t+1, minus the date's mean.
    `mean_gap` / `median_gap`: top-minus-bottom quintile of the date's mean / median label, averaged over
    dates; `skew_low` / `skew_high`: median skewness of daily simple returns of the stocks in the bottom
    / top quintile of full-sample volatility.
    """
    r = daily_returns(bars).with_columns(simple=pl.col("r").exp() - 1)
    per = r.group_by("Code").agg(vol=pl.col("r").std(), skew=pl.col("simple").skew(), n=pl.len())
    per = per.filter(pl.col("n") >= 2 * window).with_columns(q=(pl.col("vol").rank() * 5 / pl.len()).ceil())
    close = pl.col("AdjC")
    lab = (
        bars.filter(pl.col("Vo") > 0)
        .sort("Code", "Date")
        .with_columns(
            vol=pl.col("AdjC").log().diff().rolling_std(window).over("Code"),
            y=(close.shift(-1 - horizon) / close.shift(-1) - 1).over("Code"),
        )
        .drop_nulls(["vol", "y"])
        .with_columns(
            q=(pl.col("vol").rank().over("Date") * 5 / pl.len().over("Date")).ceil(),
            y=pl.col("y") - pl.col("y").mean().over("Date"),
        )
    )
    by = lab.group_by("Date", "q").agg(mean=pl.col("y").mean(), median=pl.col("y").median())
    avg = by.group_by("q").agg(pl.col("mean", "median").mean()).sort("q")
    top, bottom = avg.filter(pl.col("q") == 5), avg.filter(pl.col("q") == 1)
    return {
        "mean_gap": float(top["mean"][0] - bottom["mean"][0]),
        "median_gap": float(top["median"][0] - bottom["median"][0]),
        "skew_low": float(per.filter(pl.col("q") == 1)["skew"].median()),
        "skew_high": float(per.filter(pl.col("q") == 5)["skew"].median()),
    }


def forward_labels(adj_close: np.ndarray, horizons: tuple[int, ...]) -> np.ndarray:
    """[H, T, N] labels y_h(t) = AdjC[t+1+h] / AdjC[t+1] - 1 on the session grid; NaN where unknown."""
    t_len = len(adj_close)
    out = np.full((len(horizons), *adj_close.shape), np.nan)
    for k, h in enumerate(horizons):
        if t_len > 1 + h:
            out[k, : t_len - 1 - h] = adj_close[1 + h :] / adj_close[1 : t_len - h] - 1
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)


def rank_ic(score: np.ndarray, label: np.ndarray, min_stocks: int = 20) -> float:
    """Mean over dates of the cross-sectional Spearman correlation of score and label [T, N] (NaN = absent)."""
    ics = []
    for s, y in zip(score, label, strict=True):
        ok = ~(np.isnan(s) | np.isnan(y))
        if ok.sum() >= min_stocks and np.ptp(s[ok]) > 0:
            ics.append(np.corrcoef(_ranks(s[ok]), _ranks(y[ok]))[0, 1])
    return float(np.mean(ics)) if ics else float("nan")


def fama_macbeth(
    label: np.ndarray, xs: list[np.ndarray], lags: int = 0, min_stocks: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Mean over dates of per-date cross-sectional OLS slopes of label on xs [T, N], and its standard
    error, Newey-West with `lags` (overlapping labels and persistent signals make slopes autocorrelated)."""
    slopes = []
    for t in range(len(label)):
        ok = ~np.isnan(label[t])
        for x in xs:
            ok &= ~np.isnan(x[t])
        if ok.sum() < min_stocks:
            continue
        design = np.column_stack([x[t][ok] - x[t][ok].mean() for x in xs])
        if np.linalg.matrix_rank(design) < len(xs):
            continue
        slopes.append(np.linalg.lstsq(design, label[t][ok] - label[t][ok].mean(), rcond=None)[0])
    b = np.array(slopes)
    d = b - b.mean(axis=0)
    var = (d * d).mean(axis=0)
    for lag in range(1, lags + 1):
        var += 2 * (1 - lag / (lags + 1)) * (d[lag:] * d[:-lag]).sum(axis=0) / len(d)
    return b.mean(axis=0), np.sqrt(var / len(d))
