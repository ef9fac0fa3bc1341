"""Sector family (`sec_*`): 33-sector returns and momentum, stock minus sector, in-sector z-scores and ranks."""

# Sectors are the as-of master's S33 on each date (see stage.py for the snapshot caveat); every statistic
# is over the stocks trading on that date only.

from __future__ import annotations

import polars as pl

from kabuflow.features._ops import f64, grp_mean, grp_rank, grp_z
from kabuflow.features.spec import Family, Feature


def sec_ret(w: int) -> pl.Expr:
    """Equal-weight mean of the sector's w-bar stock returns on the date."""
    return grp_mean(f64(f"ret_{w}d")).alias(f"sec_ret_{w}d")


def sec_mom(w: int) -> pl.Expr:
    """Sector momentum: equal-weight mean of the sector's w-bar returns."""
    return grp_mean(f64(f"ret_{w}d")).alias(f"sec_mom_{w}d")


def sec_rel(w: int) -> pl.Expr:
    """Stock's w-bar return minus its sector's mean."""
    return (f64(f"ret_{w}d") - grp_mean(f64(f"ret_{w}d"))).alias(f"sec_rel_{w}d")


def sec_z(col: str) -> pl.Expr:
    """In-sector z-score of a stock feature on the date."""
    return grp_z(f64(col)).alias(f"sec_z_{col}")


def sec_rank(col: str) -> pl.Expr:
    """In-sector rank of a stock feature on the date, in [0, 1] (ranks need no float64 copy)."""
    return grp_rank(pl.col(col)).alias(f"sec_rank_{col}")


def features() -> list[Feature]:
    """The family's features, in output order."""
    exprs = [sec_ret(1), sec_ret(5), sec_ret(20), sec_mom(60), sec_rel(5), sec_rel(20)]
    exprs += [sec_z("ret_20d"), sec_z("vol_20d"), sec_rank("ret_5d"), sec_rank("liq_turnover_20d")]
    return [Feature(e) for e in exprs]


FAMILY = Family("sec", features, cross_sectional=True)
