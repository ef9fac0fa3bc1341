"""Market family (`mkt_*`): market return, vol, trend, drawdown; the stock's beta, alpha, RS, idio vol."""

# The market is TOPIX when `indices_bars_daily_topix` is present, else an equal-weight proxy: the mean
# of the stocks' 1-day returns on each date (only stocks trading that day, so nothing after the date).

from __future__ import annotations

from typing import Any

import polars as pl

from kabuflow.features._ops import div, f64, ts_mean
from kabuflow.features.spec import Family, Feature

LEVEL, M = pl.col("mkt_level"), pl.col("mkt_ret_1d")
TOPIX = "indices_bars_daily_topix"
BETA_WINDOW = 60


def mkt_ret(w: int) -> pl.Expr:
    """Market return over w sessions, from the index level (date frame: one row per session, in order)."""
    return (div(LEVEL, LEVEL.shift(w)) - 1.0).alias(f"mkt_ret_{w}d")


def mkt_vol(w: int) -> pl.Expr:
    """Std of daily market returns over w sessions (date frame)."""
    return M.rolling_std(w, min_samples=w).alias(f"mkt_vol_{w}d")


def mkt_trend(w: int) -> pl.Expr:
    """Index level / its w-session SMA - 1 (date frame)."""
    return (div(LEVEL, LEVEL.rolling_mean(w, min_samples=w)) - 1.0).alias(f"mkt_trend_{w}d")


def mkt_drawdown(w: int) -> pl.Expr:
    """Index level / its max over the last w sessions - 1, ≤ 0 (date frame)."""
    return (div(LEVEL, LEVEL.rolling_max(w, min_samples=w)) - 1.0).alias(f"mkt_dd_{w}d")


def market_frame(frame: pl.DataFrame, tables: dict[str, pl.DataFrame]) -> tuple[pl.DataFrame, str]:
    """One row per date: `mkt_level`, `mkt_ret_1d` and `mkt_breadth_1d`, and where the market came from."""
    breadth = frame.group_by("date").agg(
        mkt_breadth_1d=div((pl.col("ret_1d") > 0).sum(), pl.col("ret_1d").count()),
        proxy=pl.col("ret_1d").cast(pl.Float64).mean(),
    )
    if TOPIX in tables:
        topix = (
            tables[TOPIX].select(pl.col("Date").alias("date"), pl.col("C").alias("mkt_level")).sort("date")
        )
        daily = topix.with_columns(mkt_ret_1d=div(LEVEL, LEVEL.shift(1)) - 1.0)
        return daily.join(breadth.drop("proxy"), on="date", how="left").sort("date"), "topix"
    daily = breadth.sort("date").with_columns(
        mkt_ret_1d=pl.col("proxy"),
        # Level of the proxy index: 1 before its first return, compounded from then on.
        mkt_level=(1.0 + pl.col("proxy")).fill_null(1.0).cum_prod(),
    )
    return daily.drop("proxy"), "proxy_equal_weight"


def attach(
    frame: pl.DataFrame, tables: dict[str, pl.DataFrame], cal: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Join the date-level market features onto every stock row of the same date."""
    daily, source = market_frame(frame, tables)
    exprs = [mkt_ret(w) for w in (5, 20, 60)] + [mkt_vol(20), mkt_vol(60), mkt_trend(20), mkt_trend(60)]
    daily = daily.with_columns(*exprs, mkt_drawdown(252)).drop("mkt_level")
    # Columns no stock-level feature reads are stored as Float32 anyway: cast the one row per date
    # before the join spreads it over every stock row (half the bytes, the same values).
    stored_only = [c for c in MARKET_COLUMNS if c not in READ_AT_FULL_PRECISION]
    daily = daily.with_columns(pl.col(stored_only).cast(pl.Float32))
    note = {
        "topix": "TOPIX (indices_bars_daily_topix)",
        "proxy_equal_weight": "no TOPIX table: equal-weight mean of the stocks' 1-day returns per date",
    }[source]
    return frame.join(daily, on="date", how="left", maintain_order="left"), {
        "market_source": source,
        "note": note,
    }


def inputs() -> list[dict[str, pl.Expr]]:
    """Window inputs: the trailing 60-bar means of r (stock 1-day return), m (market's on the same
    date) and their products, shared by beta, alpha and idiosyncratic volatility. The products are
    cheap enough to form inside the windows: materializing them first costs more in fresh memory."""
    r, m = f64("ret_1d"), M
    parts = {"r": r, "m": m, "rm": r * m, "mm": m * m, "rr": r * r}
    return [{f"_e{k}": ts_mean(v, BETA_WINDOW) for k, v in parts.items()}]


def _moments() -> dict[str, pl.Expr]:
    """The trailing 60-bar means of r, m, r·m, m², r² over the stock's rows (inputs columns)."""
    return {k: pl.col(f"_e{k}") for k in ("r", "m", "rm", "mm", "rr")}


def mkt_beta() -> pl.Expr:
    """OLS beta of the stock's daily returns on the market's over its last 60 bars."""
    e, w = _moments(), BETA_WINDOW
    return div(e["rm"] - e["r"] * e["m"], e["mm"] - e["m"] ** 2).alias(f"mkt_beta_{w}d")


def mkt_alpha() -> pl.Expr:
    """Daily OLS intercept: mean(r) - beta · mean(m) over the last 60 bars."""
    e, w = _moments(), BETA_WINDOW
    beta = div(e["rm"] - e["r"] * e["m"], e["mm"] - e["m"] ** 2)
    return (e["r"] - beta * e["m"]).alias(f"mkt_alpha_{w}d")


def mkt_ivol() -> pl.Expr:
    """Idiosyncratic volatility: sqrt(var(r) - cov(r, m)^2 / var(m)) over the last 60 bars (population moments)."""
    e, w = _moments(), BETA_WINDOW
    cov, var_m = e["rm"] - e["r"] * e["m"], e["mm"] - e["m"] ** 2
    resid = e["rr"] - e["r"] ** 2 - div(cov**2, var_m)
    return resid.clip(lower_bound=0.0).sqrt().alias(f"mkt_ivol_{w}d")


def mkt_rs(w: int) -> pl.Expr:
    """Relative strength: the stock's w-bar return minus the market's w-session return."""
    return (f64(f"ret_{w}d") - pl.col(f"mkt_ret_{w}d")).alias(f"mkt_rs_{w}d")


READ_AT_FULL_PRECISION = ("mkt_ret_1d", "mkt_ret_20d", "mkt_ret_60d")  # by inputs() and mkt_rs
MARKET_COLUMNS = (
    "mkt_ret_1d", "mkt_ret_5d", "mkt_ret_20d", "mkt_ret_60d", "mkt_vol_20d", "mkt_vol_60d",
    "mkt_trend_20d", "mkt_trend_60d", "mkt_dd_252d", "mkt_breadth_1d",
)  # fmt: skip


def features() -> list[Feature]:
    """Market-level columns (joined by attach) then the stock-level exposures."""
    market = [Feature(pl.col(c), "market") for c in MARKET_COLUMNS]
    stock = [mkt_beta(), mkt_alpha(), mkt_ivol(), mkt_rs(20), mkt_rs(60)]
    return market + [Feature(e) for e in stock]


FAMILY = Family("mkt", features, attach=attach, inputs=inputs)
