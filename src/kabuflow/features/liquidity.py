"""Range and liquidity family (`liq_*`): bar range, close location, volume ratios, turnover, Amihud."""

# Volumes are AdjVo (ratios only, so a later split cancels). Turnover is the yen value traded (Va; where
# it is null, AdjC × AdjVo, which equals C × Vo because a split scales price and volume inversely), so
# it is a level that no split moves.

from __future__ import annotations

import polars as pl

from kabuflow.features._ops import VA, C, H, L, V, div, lag, ts_mean
from kabuflow.features.spec import Family, Feature


def inputs() -> list[dict[str, pl.Expr]]:
    """Per-bar window inputs: range, close location, Amihud ratio, stale-price indicator."""
    prev = lag(C)
    return [
        {
            "_range": (H - L) / C,
            # Close location ((C - L) - (H - C)) / (H - L) in [-1, 1]; null on H == L bars.
            "_clv": div((C - L) - (H - C), H - L),
            # |daily return| / yen turnover × 1e9 (yen per billion traded).
            "_amihud": div((div(C, prev) - 1.0).abs(), VA) * 1e9,
            "_flat": (C == prev).cast(pl.Float64),
        }
    ]


def liq_range(w: int) -> pl.Expr:
    """(H - L) / C, averaged over w bars (w = 1: today's)."""
    r = pl.col("_range")
    return (r if w == 1 else ts_mean(r, w)).alias(f"liq_range_{w}d")


def liq_clv(w: int) -> pl.Expr:
    """Close location in [-1, 1], averaged over w bars; null where a bar had H == L."""
    clv = pl.col("_clv")
    return (clv if w == 1 else ts_mean(clv, w)).alias(f"liq_clv_{w}d")


def liq_volume_ratio(short: int, long: int) -> pl.Expr:
    """Mean AdjVo over `short` bars / mean over `long` bars (short = 1: today's volume)."""
    num = V if short == 1 else ts_mean(V, short)
    name = f"liq_volume_ratio_{long}d" if short == 1 else f"liq_volume_ratio_{short}d_{long}d"
    return div(num, ts_mean(V, long)).alias(name)


def liq_turnover(w: int) -> pl.Expr:
    """log(1 + mean yen turnover over w bars)."""
    mean = VA if w == 1 else ts_mean(VA, w)
    return mean.log1p().alias(f"liq_turnover_{w}d")


def liq_amihud(w: int) -> pl.Expr:
    """Amihud illiquidity: mean(|daily return| / yen turnover) over w bars, × 1e9."""
    return ts_mean(pl.col("_amihud"), w).alias(f"liq_amihud_{w}d")


def liq_zero_ret(w: int) -> pl.Expr:
    """Share of the last w bars whose close equals the previous close (a stale-price illiquidity measure)."""
    return ts_mean(pl.col("_flat"), w).alias(f"liq_zero_ret_{w}d")


def features() -> list[Feature]:
    """The family's features, in output order."""
    exprs = [liq_range(1), liq_range(20), liq_clv(1), liq_clv(5)]
    exprs += [liq_volume_ratio(1, 20), liq_volume_ratio(5, 60)]
    exprs += [liq_turnover(1), liq_turnover(20), liq_turnover(60), liq_amihud(20), liq_zero_ret(20)]
    return [Feature(e) for e in exprs]


FAMILY = Family("liq", features, inputs=inputs)
