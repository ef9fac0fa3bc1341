"""What a feature family declares: its named expressions, their kinds, the raw tables it needs, its joins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from kabuflow.schema import KINDS


@dataclass(frozen=True)
class Feature:
    """One named Polars expression over the base frame and what normalize should do with it.

    kind: `stock` (normalized cross-sectionally per date), `market` (one value per date for every
    stock; normalized by a trailing z-score), `flag` (0/1, passed through).
    """

    expr: pl.Expr
    kind: str = "stock"

    def __post_init__(self) -> None:
        assert self.kind in KINDS, f"unknown feature kind {self.kind!r}"

    @property
    def name(self) -> str:
        """The output column name (`<family>_<what>_<window>`)."""
        return self.expr.meta.output_name()


# attach(frame, tables, cal) -> (frame with the family's inputs joined on, notes for the manifest).
Attach = Callable[[pl.DataFrame, dict[str, pl.DataFrame], pl.DataFrame], tuple[pl.DataFrame, dict[str, Any]]]


@dataclass(frozen=True)
class Family:
    """A feature family: a prefix, the expressions, the optional raw tables it needs and how they join in.

    `requires` lists raw tables beyond the bars; when one is absent the family is left out of the
    output (never zero-filled) and the manifest says why. `attach` joins the family's point-in-time
    inputs onto the base frame before the expressions run; `drop` names helper columns it added.
    `inputs`: passes of per-bar window inputs materialized as temporary columns (dropped afterwards)
    before the features run: an expression inside `.over` is evaluated once per stock, a plain column
    is not, so windows over ready columns cost a fraction.
    `cross_sectional`: the expressions group by date or date × sector only, never by stock; such
    families run together on a copy of the columns they read sorted by (date, sector), where groups
    are contiguous (~3x cheaper than scattered).
    `by`: for a cross-sectional family, the key whose groups its expressions run within (a group_by,
    one value per row); None: plain expressions that carry their own `.over`. The group_by ranks ~2x
    faster than `.over` across the ~2,000 stocks of a date, but is slower over small date × sector groups.
    """

    name: str
    features: Callable[[], list[Feature]]
    requires: tuple[str, ...] = ()
    attach: Attach | None = None
    drop: tuple[str, ...] = field(default_factory=tuple)
    cross_sectional: bool = False
    by: str | None = None
    inputs: Callable[[], list[dict[str, pl.Expr]]] | None = None

    def __post_init__(self) -> None:
        assert self.by is None or self.cross_sectional, "only a cross-sectional family runs by group"
