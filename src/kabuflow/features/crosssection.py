"""Cross-sectional family (`cs_*`): per-date ranks and z-scores of the main signals (no time axis at all)."""

from __future__ import annotations

import polars as pl

from kabuflow.features._ops import DATE, cs_rank, cs_z, f64
from kabuflow.features.spec import Family, Feature

RANKED = (
    "ret_1d",
    "ret_5d",
    "ret_20d",
    "ret_60d",
    "ret_mom_120d",
    "vol_20d",
    "liq_turnover_20d",
    "tech_rsi_14d",
)
SCORED = ("ret_5d", "ret_20d", "vol_20d", "liq_volume_ratio_20d")


def cs_rank_of(col: str) -> pl.Expr:
    """Rank of a feature among the stocks trading on the date, in [0, 1] (ranks need no float64 copy)."""
    return cs_rank(pl.col(col)).alias(f"cs_rank_{col}")


def cs_z_of(col: str) -> pl.Expr:
    """Z-score of a feature among the stocks trading on the date."""
    return cs_z(f64(col)).alias(f"cs_z_{col}")


def features() -> list[Feature]:
    """The family's features, in output order."""
    return [Feature(cs_rank_of(c)) for c in RANKED] + [Feature(cs_z_of(c)) for c in SCORED]


# Run by date: each expression sees one date's stocks (a group_by; see Family.by).
FAMILY = Family("cs", features, cross_sectional=True, by=DATE)
