"""Runs the registered families over the base frame: joins, per-bar input passes, code- or date-grouped queries."""

from __future__ import annotations

from typing import Any

import polars as pl

from kabuflow.features._ops import DATE, DATE_SECTOR
from kabuflow.features.registry import FEATURES
from kabuflow.features.spec import Family


def compute(
    frame: pl.DataFrame,
    tables: dict[str, pl.DataFrame],
    cal: pl.DataFrame,
    fams: tuple[Family, ...] = FEATURES,
) -> tuple[pl.DataFrame, list[dict[str, str]], list[dict[str, str]], dict[str, Any]]:
    """Run each family whose tables are present; return the frame, its feature catalogue, absences, notes.

    Per family: its join, its input passes (windows several features share, computed once), then
    one query for its features, cast to Float32 straight away to keep peak memory down. Consecutive
    cross-sectional families share one date-sorted copy of the columns they read.
    """
    catalogue, absent, notes, pending = [], [], {}, []
    for fam in fams:
        missing = [t for t in fam.requires if t not in tables or tables[t].height == 0]
        if missing:
            absent.append({"family": fam.name, "reason": f"raw table {missing[0]} is absent or empty"})
            continue
        catalogue += [{"name": f.name, "family": fam.name, "kind": f.kind} for f in fam.features()]
        if fam.cross_sectional:  # consecutive cross-sectional families share one sorted copy
            pending.append(fam)
            continue
        frame, pending = _cross_sectional(frame, pending), []
        if fam.attach is not None:
            frame, notes[fam.name] = fam.attach(frame, tables, cal)
        frame = _run(frame, fam)
    return _cross_sectional(frame, pending), catalogue, absent, notes


def _run(frame: pl.DataFrame, fam: Family) -> pl.DataFrame:
    """Materialize the family's input passes, then its features; drop the temporary columns."""
    temporary = []
    for step in fam.inputs() if fam.inputs is not None else []:
        frame = _by_code(frame, [e.alias(k) for k, e in step.items()])
        temporary += list(step)
    frame = _by_code(frame, [f.expr.cast(pl.Float32) for f in fam.features()])
    return frame.drop(*temporary, *fam.drop, strict=False)


def _cross_sectional(frame: pl.DataFrame, fams: list[Family]) -> pl.DataFrame:
    """Run cross-sectional families (no inputs, no joins) on one (date, sector)-sorted copy."""
    assert all(f.inputs is None and f.attach is None for f in fams), "cross-sectional families take no inputs"
    exprs = [f.expr.cast(pl.Float32) for fam in fams for f in fam.features()]
    made = {e.meta.output_name() for e in exprs}
    assert not any(set(e.meta.root_names()) & made for e in exprs), "one query cannot read its own outputs"
    return _grouped(frame, exprs) if exprs else frame


def _replace(frame: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """frame with `new`'s columns added (a joined input recast to Float32 replaces itself)."""
    return frame.drop(c for c in new.columns if c in frame.columns).hstack(new)


def _by_code(frame: pl.DataFrame, exprs: list[pl.Expr]) -> pl.DataFrame:
    """Add the columns on the (code, date)-sorted frame. Only the new columns go through the engine
    (it would re-split every existing column into morsels), and they are kept in one chunk each."""
    # The in-memory engine: ~1.5x the streaming one for windows `.over` a code (families put shared
    # windows in their inputs passes, so its lack of common-subexpression elimination costs nothing).
    return _replace(frame, frame.lazy().select(exprs).collect(engine="in-memory").rechunk())


def _grouped(frame: pl.DataFrame, exprs: list[pl.Expr]) -> pl.DataFrame:
    """Add columns whose expressions group by date or date × sector: computed on a copy of the columns
    they read sorted by `dsec` (date first, then sector), then put back in the frame's order.

    The sort is stable (rows of a group stay in code order), so sums within a group add up in the same
    order on every run; flagging both keys as sorted lets `.over` take contiguous slices.
    """
    keys = [DATE, DATE_SECTOR]
    needed = sorted({c for e in exprs for c in e.meta.root_names()} | set(keys))
    perm = frame.select(pl.arg_sort_by(DATE_SECTOR, maintain_order=True)).to_series()
    view = (
        frame.select(needed).select(pl.all().gather(perm)).with_columns(pl.col(k).set_sorted() for k in keys)
    )
    out = view.lazy().select(exprs).collect(engine="in-memory")
    return _replace(frame, out.select(pl.all().gather(perm.arg_sort())))
