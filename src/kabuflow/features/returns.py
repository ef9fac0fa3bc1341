"""Returns family (`ret_*`): close-to-close, log, overnight, intraday and momentum returns of Adj prices."""

from __future__ import annotations

import polars as pl

from kabuflow.features._ops import C, O, div, lag, ts_max, ts_ret
from kabuflow.features.spec import Family, Feature

WINDOWS = (1, 5, 10, 20, 60, 120)


def ret(w: int) -> pl.Expr:
    """AdjC[t] / AdjC[t-w] - 1, w bars of the stock back: a ratio, so a later split cancels out."""
    return ts_ret(C, w).alias(f"ret_{w}d")


def ret_log(w: int) -> pl.Expr:
    """log(AdjC[t] / AdjC[t-w])."""
    return div(C, lag(C, w)).log().alias(f"ret_log_{w}d")


def ret_overnight() -> pl.Expr:
    """AdjO[t] / AdjC[t-1] - 1: the gap, public at t's open."""
    return (div(O, lag(C)) - 1.0).alias("ret_overnight_1d")


def ret_intraday() -> pl.Expr:
    """AdjC[t] / AdjO[t] - 1."""
    return (div(C, O) - 1.0).alias("ret_intraday_1d")


def ret_mom(w: int, skip: int = 20) -> pl.Expr:
    """AdjC[t-skip] / AdjC[t-w] - 1: momentum that leaves out the last month's reversal."""
    return (div(lag(C, skip), lag(C, w)) - 1.0).alias(f"ret_mom_{w}d")


def ret_max(w: int) -> pl.Expr:
    """Largest daily return over the last w bars (the 'lottery' effect)."""
    return ts_max(pl.col("_r1"), w).alias(f"ret_max_{w}d")


def inputs() -> list[dict[str, pl.Expr]]:
    """Per-bar window input: the daily simple return."""
    return [{"_r1": div(C, lag(C)) - 1.0}]


def features() -> list[Feature]:
    """The family's features, in output order."""
    exprs = [ret(w) for w in WINDOWS]
    exprs += [ret_log(1), ret_log(5), ret_log(20), ret_overnight(), ret_intraday(), ret_mom(120), ret_max(20)]
    return [Feature(e) for e in exprs]


FAMILY = Family("ret", features, inputs=inputs)
