"""FEATURES: every feature family in evaluation order (later families read earlier families' columns)."""

from __future__ import annotations

from kabuflow.features import (
    crosssection,
    flags,
    flows,
    liquidity,
    margin,
    market,
    returns,
    sector,
    statements,
    technical,
    volatility,
)
from kabuflow.features.spec import Family

FEATURES: tuple[Family, ...] = (
    returns.FAMILY,
    volatility.FAMILY,
    technical.FAMILY,
    liquidity.FAMILY,
    market.FAMILY,
    sector.FAMILY,
    crosssection.FAMILY,
    statements.FAMILY,
    flows.FAMILY,
    margin.FAMILY,
    flags.FAMILY,
)


def families(names: tuple[str, ...] | None = None) -> tuple[Family, ...]:
    """The registered families, or those named (unknown names are an error)."""
    if names is None:
        return FEATURES
    known = {f.name: f for f in FEATURES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown feature family {unknown[0]!r} (known: {', '.join(known)})")
    return tuple(known[n] for n in names)
