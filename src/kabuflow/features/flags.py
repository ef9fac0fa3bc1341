"""Validity flags (`flag_*`): 0/1 markers of how much history a stock has, for masking warm-up windows."""

from __future__ import annotations

import polars as pl

from kabuflow.features._ops import POS
from kabuflow.features.spec import Family, Feature

WINDOWS = (20, 60, 120, 200)


def flag_warm(w: int) -> pl.Expr:
    """1 when the stock has at least w bars up to and including this one, else 0."""
    return (POS + 1 >= w).cast(pl.Float64).alias(f"flag_warm_{w}d")


def features() -> list[Feature]:
    """The family's features, in output order."""
    return [Feature(flag_warm(w), "flag") for w in WINDOWS]


FAMILY = Family("flag", features)
