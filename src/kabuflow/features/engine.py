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
    """Materialize the family's input passes, then its features. A temporary column is dropped as soon
    as no later pass reads it, so its memory is reused at once instead of fresh pages being faulted in."""
    passes = [[e.alias(k) for k, e in step.items()] for step in (fam.inputs() if fam.inputs else [])]
    features = [f.expr.cast(pl.Float32) for f in fam.features()]
    made: set[str] = set()
    for i, exprs in enumerate(passes):
        frame = _by_code(frame, exprs)
        made |= {e.meta.output_name() for e in exprs}
        later = {c for step in [*passes[i + 1 :], features] for e in step for c in e.meta.root_names()}
        frame = frame.drop(made - later, strict=False)
    return _by_code(frame, features).drop(*made, *fam.drop, strict=False)


def _cross_sectional(frame: pl.DataFrame, fams: list[Family]) -> pl.DataFrame:
    """Run cross-sectional families (no inputs, no joins) on one (date, sector)-sorted copy."""
    assert all(f.inputs is None and f.attach is None for f in fams), "cross-sectional families take no inputs"
    exprs = {fam.name: [f.expr.cast(pl.Float32) for f in fam.features()] for fam in fams}
    made = {e.meta.output_name() for es in exprs.values() for e in es}
    assert not any(set(e.meta.root_names()) & made for es in exprs.values() for e in es), (
        "one query cannot read its own outputs"
    )
    if not made:
        return frame
    keys = [DATE, DATE_SECTOR]
    needed = sorted({c for es in exprs.values() for e in es for c in e.meta.root_names()} | set(keys))
    view, back = _date_sorted(frame, needed)
    out = pl.concat([_in_groups(view, exprs[fam.name], fam.by) for fam in fams], how="horizontal")
    return _replace(frame, out.select(pl.all().gather(back)))


def _replace(frame: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """frame with `new`'s columns added (a joined input recast to Float32 replaces itself)."""
    return frame.drop(c for c in new.columns if c in frame.columns).hstack(new)


def _by_code(frame: pl.DataFrame, exprs: list[pl.Expr]) -> pl.DataFrame:
    """Add the columns on the (code, date)-sorted frame. Only the new columns go through the engine
    (it would re-split every existing column into morsels), and they are kept in one chunk each."""
    # The in-memory engine: ~1.5x the streaming one for windows `.over` a code (families put shared
    # windows in their inputs passes, so its lack of common-subexpression elimination costs nothing).
    return _replace(frame, frame.lazy().select(exprs).collect(engine="in-memory").rechunk())


def _date_sorted(frame: pl.DataFrame, columns: list[str]) -> tuple[pl.DataFrame, pl.Series]:
    """The columns sorted by `dsec` (date first, then sector), and the permutation that puts them back.

    The sort is stable (rows of a group stay in code order), so sums within a group add up in the same
    order on every run; flagging both keys as sorted lets `.over` and `group_by` take contiguous slices.
    """
    perm = frame.select(pl.arg_sort_by(DATE_SECTOR, maintain_order=True)).to_series()
    view = frame.select(columns).select(pl.all().gather(perm))
    back = perm.clone().scatter(perm, pl.int_range(perm.len(), dtype=perm.dtype, eager=True))  # perm⁻¹
    return view.with_columns(pl.col(DATE).set_sorted(), pl.col(DATE_SECTOR).set_sorted()), back


def _in_groups(view: pl.DataFrame, exprs: list[pl.Expr], by: str | None) -> pl.DataFrame:
    """The expressions' columns over the sorted view: as they are (`by` None: they carry their own
    `.over`), or evaluated within each group of `by` by a group_by, one value per row, in view order."""
    if by is None:
        return view.lazy().select(exprs).collect(engine="in-memory")
    names = [e.meta.output_name() for e in exprs]
    # Groups are contiguous in the view and come out in order (maintain_order), each with its rows in
    # view order, so the exploded lists line up with the view's rows.
    grouped = view.lazy().group_by(by, maintain_order=True).agg(exprs)
    schema = grouped.collect_schema()
    scalar = [n for n in names if not isinstance(schema[n], pl.List)]
    assert not scalar, f"{scalar[0]}: a feature evaluated by group must have one value per row"
    # The streaming engine runs this ~2x faster than the in-memory one. Its output comes in morsel-sized
    # chunks, put in one piece because the gather back to the frame order is ~2x slower across them.
    return grouped.explode(names).select(names).collect(engine="streaming").rechunk()
