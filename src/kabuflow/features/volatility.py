"""Volatility family (`vol_*`): close-to-close, Parkinson, Garman–Klass, Rogers–Satchell, Yang–Zhang, vol of vol."""

# All from Adj prices in log terms (a split cancels), in daily units (not annualised).

from __future__ import annotations

import polars as pl

from kabuflow.features._ops import LN2, C, H, L, O, div, lag, ts_mean, ts_std, ts_var
from kabuflow.features.spec import Family, Feature

WINDOWS = (5, 10, 20, 60)


def inputs() -> list[dict[str, pl.Expr]]:
    """Per-bar window inputs, from log prices: the four logs are a pass of their own, since the engine
    would recompute a log at each of its ~20 reads below (it merges no repeated sub-expressions)."""
    logs = {f"_log_{k}": x.log() for k, x in (("o", O), ("h", H), ("l", L), ("c", C))}
    lo, lh, ll, lc = (pl.col(f"_log_{k}") for k in "ohlc")
    lr = lc - lag(lc)
    hl2, co = (lh - ll) ** 2, lc - lo
    return [
        logs,
        {
            "_lr": lr,
            "_lr_down2": lr.clip(upper_bound=0.0) ** 2,
            "_hl2": hl2,
            "_gk": 0.5 * hl2 - (2 * LN2 - 1) * co**2,
            # Rogers–Satchell variance per bar: ln(H/C)ln(H/O) + ln(L/C)ln(L/O) (drift-free, ≥ 0).
            "_rs": (lh - lc) * (lh - lo) + (ll - lc) * (ll - lo),
            "_co": co,
            "_on": lo - lag(lc),
        },
        {f"_vol{w}": ts_std(pl.col("_lr"), w) for w in WINDOWS},  # shared by vol, vov and ratio
    ]


def vol(w: int) -> pl.Expr:
    """Sample std of daily log returns over w bars."""
    return pl.col(f"_vol{w}").alias(f"vol_{w}d")


def vol_parkinson(w: int) -> pl.Expr:
    """sqrt(mean(ln(H/L)^2) / (4 ln 2)) over w bars."""
    # Floored at 0: an incremental window mean of non-negative terms can round to -1e-20.
    return (ts_mean(pl.col("_hl2"), w) / (4 * LN2)).clip(lower_bound=0.0).sqrt().alias(f"vol_pk_{w}d")


def vol_garman_klass(w: int) -> pl.Expr:
    """sqrt(mean(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2)) over w bars, floored at 0."""
    return ts_mean(pl.col("_gk"), w).clip(lower_bound=0.0).sqrt().alias(f"vol_gk_{w}d")


def vol_rogers_satchell(w: int) -> pl.Expr:
    """sqrt(mean Rogers–Satchell variance) over w bars."""
    return ts_mean(pl.col("_rs"), w).clip(lower_bound=0.0).sqrt().alias(f"vol_rs_{w}d")


def vol_yang_zhang(w: int) -> pl.Expr:
    """Yang–Zhang: var(overnight) + k var(open→close) + (1-k) mean(RS), k = 0.34 / (1.34 + (w+1)/(w-1))."""
    k = 0.34 / (1.34 + (w + 1) / (w - 1))
    total = ts_var(pl.col("_on"), w) + k * ts_var(pl.col("_co"), w) + (1 - k) * ts_mean(pl.col("_rs"), w)
    return total.clip(lower_bound=0.0).sqrt().alias(f"vol_yz_{w}d")


def vol_down(w: int) -> pl.Expr:
    """Downside semi-deviation sqrt(mean(min(r, 0)^2)) of daily log returns over w bars."""
    return ts_mean(pl.col("_lr_down2"), w).clip(lower_bound=0.0).sqrt().alias(f"vol_down_{w}d")


def vol_of_vol(inner: int, w: int) -> pl.Expr:
    """Coefficient of variation of the `inner`-bar volatility over the last w bars."""
    v = pl.col(f"_vol{inner}")
    return div(ts_std(v, w), ts_mean(v, w)).alias(f"vol_vov_{w}d")


def vol_ratio(short: int, long: int) -> pl.Expr:
    """vol_short / vol_long: is volatility expanding?"""
    return div(pl.col(f"_vol{short}"), pl.col(f"_vol{long}")).alias(f"vol_ratio_{short}d_{long}d")


def features() -> list[Feature]:
    """The family's features, in output order."""
    exprs = [vol(w) for w in WINDOWS]
    exprs += [vol_parkinson(20), vol_garman_klass(20), vol_rogers_satchell(20), vol_yang_zhang(20)]
    exprs += [vol_down(20), vol_of_vol(20, 60), vol_ratio(20, 60)]
    return [Feature(e) for e in exprs]


FAMILY = Family("vol", features, inputs=inputs)
