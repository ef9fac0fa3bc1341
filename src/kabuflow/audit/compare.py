"""Value-by-value comparison of a cut run's features with the full run's, keyed by (date, code)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kabuflow import calendar
from kabuflow.artifacts import read_json

EPOCH = dt.date(1970, 1, 1)
BATCH = 8  # feature columns read per pass: the two frames are never whole in memory
Example = tuple[int, str, Any, Any]  # (epoch day, code, full value, cut value)


def day(epoch_day: int) -> str:
    """ISO date of a day count since 1970-01-01 (polars' and numpy's physical date)."""
    return (EPOCH + dt.timedelta(days=int(epoch_day))).isoformat()


def _plain(v: Any) -> Any:
    """A JSON-able scalar: numpy numbers to Python, NaN to None."""
    v = v.item() if isinstance(v, np.generic) else v
    return None if isinstance(v, float) and v != v else v


@dataclass
class Tally:
    """One column's count of values compared and moved, and its earliest moved value as the example."""

    column: str
    compared: int = 0
    moved: int = 0
    first: Example | None = None

    def add(
        self, compared: int, moved: np.ndarray, when: np.ndarray, example: Callable[[int], Example]
    ) -> None:
        """Count a block: `moved` (bool) and `when` (epoch days) are aligned; example(i) describes value i."""
        self.compared += compared
        hits = np.flatnonzero(moved)
        if not len(hits):
            return
        self.moved += len(hits)
        i = int(hits[np.argmin(when.ravel()[hits])])
        if self.first is None or when.ravel()[i] < self.first[0]:
            self.first = example(i)

    def to_dict(self) -> dict[str, Any]:
        """{column, compared, moved, first_moved, example: {date, code, full, cut}}."""
        out: dict[str, Any] = {"column": self.column, "compared": self.compared, "moved": self.moved}
        if self.first is not None:
            when, code, full, cut = self.first
            out["first_moved"] = day(when)
            out["example"] = {"date": day(when), "code": code, "full": _plain(full), "cut": _plain(cut)}
        return out


def differs(full: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """True where two values differ; two missing values (NaN, None) are the same value. Exact: a
    stage that reads nothing after D gives bit-identical numbers, so any tolerance would hide a leak."""
    if full.dtype.kind == "f" or cut.dtype.kind == "f":
        full, cut = full.astype(np.float64), cut.astype(np.float64)
        return ~((full == cut) | (np.isnan(full) & np.isnan(cut)))
    return full != cut


def result(stage: str, cut: dt.date, tallies: list[Tally], seconds: float) -> dict[str, Any]:
    """One stage's verdict for one cut: totals and every column, the most moved first."""
    cols = sorted((t.to_dict() for t in tallies), key=lambda c: (-c["moved"], c["column"]))
    return {
        "stage": stage,
        "cut": cut.isoformat(),
        "compared": sum(t.compared for t in tallies),
        "moved": sum(t.moved for t in tallies),
        "columns": cols,
        "seconds": round(seconds, 2),
    }


def _scan(path: Path, cut: dt.date) -> pl.LazyFrame:
    return pl.scan_parquet(path / "features.parquet").filter(pl.col("date") <= cut)


def _align(full: Path, cut_dir: Path, cut: dt.date) -> tuple[pl.DataFrame, Tally]:
    """Row positions (i_full, i_cut) of every (date, code) both runs have on dates <= D, and a tally
    of the keys only one run has (a row that appears or vanishes is a moved value too)."""
    keys_f = _scan(full, cut).select("date", "code").collect().with_row_index("i_full")
    keys_c = _scan(cut_dir, cut).select("date", "code").collect().with_row_index("i_cut")
    both = keys_f.join(keys_c, on=["date", "code"], how="full", coalesce=True)
    rows = Tally("(row)")
    lone = both.filter(pl.col("i_full").is_null() | pl.col("i_cut").is_null())
    when = lone["date"].to_physical().to_numpy()
    rows.add(
        both.height,
        np.ones(lone.height, bool),
        when,
        lambda i: (
            int(when[i]),
            lone["code"][i],
            lone["i_full"][i] is not None,
            lone["i_cut"][i] is not None,
        ),
    )
    return both.drop_nulls(["i_full", "i_cut"]).sort("i_full"), rows


def _label_crosses(dates: pl.Series, h: int, cut: dt.date) -> np.ndarray:
    """True where y_h(t)'s window (sessions t+1 .. t+1+h) ends after session D."""
    sess = calendar.sessions(dates.min(), cut)
    pos = pl.Series(sess, dtype=pl.Date).search_sorted(dates, side="left").to_numpy()
    return pos + 1 + h > len(sess) - 1


def compare_features(full: Path, cut_dir: Path, cut: dt.date) -> list[Tally]:
    """Tallies for the row set, s33/mkt, every feature column and every label of features.parquet.

    A feature must be equal on every (date, code) <= D. A label must be equal where its window ends
    on or before D and missing in the cut run where it ends after D (the cut run cannot know it).
    """
    names_f = [f["name"] for f in read_json(full / "manifest.json")["features"]]
    names_c = {f["name"] for f in read_json(cut_dir / "manifest.json")["features"]}
    labels = read_json(full / "manifest.json")["labels"]
    pairs, rows = _align(full, cut_dir, cut)
    i_f, i_c = pairs["i_full"].to_numpy(), pairs["i_cut"].to_numpy()
    when, codes = pairs["date"].to_physical().to_numpy(), pairs["code"]
    tallies = [rows]
    missing = [n for n in names_f if n not in names_c]
    for name in missing:  # a whole column the cut run lacks (e.g. a family whose table is empty by D)
        tallies.append(Tally(name, len(pairs), len(pairs), (int(when[0]), codes[0], "present", "absent")))
    columns = ["s33", "mkt", *[n for n in names_f if n in names_c], *labels]
    for k in range(0, len(columns), BATCH):
        batch = columns[k : k + BATCH]
        a = _scan(full, cut).select(batch).collect()[i_f]
        b = _scan(cut_dir, cut).select(batch).collect()[i_c]
        for name in batch:
            fa, fb = a[name].to_numpy(), b[name].to_numpy()
            moved = differs(fa, fb)
            if name in labels:
                h = int(name[2:-1])
                moved = np.where(
                    _label_crosses(pairs["date"], h, cut), b[name].is_not_null().to_numpy(), moved
                )
            t = Tally(name)
            t.add(len(pairs), moved, when, lambda i, fa=fa, fb=fb: (int(when[i]), codes[i], fa[i], fb[i]))
            tallies.append(t)
    return tallies
