"""Volatility family (`vol_*`): close-to-close, Parkinson, Garman–Klass, Rogers–Satchell, Yang–Zhang, vol of vol."""

# All from Adj prices in log terms (a split cancels), in daily units (not annualised).

from __future__ import annotations

import polars as pl

from kabuflow.features._ops import LN2, C, H, L, O, div, lag, ts_mean, ts_std, ts_var
from kabuflow.features.spec import Family, Feature

WINDOWS = (5, 10, 20, 60)


def log_ret() -> pl.Expr:
    """log(AdjC[t] / AdjC[t-1]), null on the stock's first bar."""
    return div(C, lag(C)).log()


def rogers_satchell() -> pl.Expr:
    """Per-bar Rogers–Satchell variance ln(H/C)ln(H/O) + ln(L/C)ln(L/O) (drift-free, ≥ 0)."""
    return (H / C).log() * (H / O).log() + (L / C).log() * (L / O).log()


def vol(w: int) -> pl.Expr:
    """Sample std of daily log returns over w bars."""
    return ts_std(log_ret(), w).alias(f"vol_{w}d")


def vol_parkinson(w: int) -> pl.Expr:
    """sqrt(mean(ln(H/L)^2) / (4 ln 2)) over w bars."""
    return (ts_mean((H / L).log() ** 2, w) / (4 * LN2)).sqrt().alias(f"vol_pk_{w}d")


def vol_garman_klass(w: int) -> pl.Expr:
    """sqrt(mean(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2)) over w bars, floored at 0."""
    per_bar = 0.5 * (H / L).log() ** 2 - (2 * LN2 - 1) * (C / O).log() ** 2
    return ts_mean(per_bar, w).clip(lower_bound=0.0).sqrt().alias(f"vol_gk_{w}d")


def vol_rogers_satchell(w: int) -> pl.Expr:
    """sqrt(mean Rogers–Satchell variance) over w bars."""
    return ts_mean(rogers_satchell(), w).clip(lower_bound=0.0).sqrt().alias(f"vol_rs_{w}d")


def vol_yang_zhang(w: int) -> pl.Expr:
    """Yang–Zhang: var(overnight) + k var(open→close) + (1-k) mean(RS), k = 0.34 / (1.34 + (w+1)/(w-1))."""
    k = 0.34 / (1.34 + (w + 1) / (w - 1))
    overnight, intraday = ts_var(div(O, lag(C)).log(), w), ts_var((C / O).log(), w)
    total = overnight + k * intraday + (1 - k) * ts_mean(rogers_satchell(), w)
    return total.clip(lower_bound=0.0).sqrt().alias(f"vol_yz_{w}d")


def vol_down(w: int) -> pl.Expr:
    """Downside semi-deviation sqrt(mean(min(r, 0)^2)) of daily log returns over w bars."""
    return ts_mean(log_ret().clip(upper_bound=0.0) ** 2, w).sqrt().alias(f"vol_down_{w}d")


def vol_of_vol(inner: int, w: int) -> pl.Expr:
    """Coefficient of variation of the `inner`-bar volatility over the last w bars."""
    v = ts_std(log_ret(), inner)
    return div(ts_std(v, w), ts_mean(v, w)).alias(f"vol_vov_{w}d")


def vol_ratio(short: int, long: int) -> pl.Expr:
    """vol_short / vol_long: is volatility expanding?"""
    return div(ts_std(log_ret(), short), ts_std(log_ret(), long)).alias(f"vol_ratio_{short}d_{long}d")


def features() -> list[Feature]:
    """The family's features, in output order."""
    exprs = [vol(w) for w in WINDOWS]
    exprs += [vol_parkinson(20), vol_garman_klass(20), vol_rogers_satchell(20), vol_yang_zhang(20)]
    exprs += [vol_down(20), vol_of_vol(20, 60), vol_ratio(20, 60)]
    return [Feature(e) for e in exprs]


FAMILY = Family("vol", features)
