"""The data as it stood at the close of session D: every raw table cut by the rule that makes it public."""

# The cut is as strict as the point-in-time rules allow, never looser: a row that the rules say counts
# only after D is removed, so a feature at or before D that reads it anyway differs between the two runs.
# Keeping such a row would hide exactly the leak the audit looks for.

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from kabuflow import calendar
from kabuflow.features import _calendar
from kabuflow.features.base import BARS, MASTER

FINS, FLOWS, MARGIN = "fins_summary", "equities_investor_types", "markets_margin_interest"
# Tables public on their own Date: a row dated after D does not exist yet at D's close.
BY_DATE = (BARS, "indices_bars_daily_topix", "markets_calendar", "oracle")


def master_is_snapshot(master: pl.DataFrame, bars: pl.DataFrame) -> bool:
    """features.base.attach_master's test: one row per code, some dated after that code's first bar.

    Then the features stage uses the snapshot for every date (a look-ahead its manifest states), so the
    cut keeps it whole: cutting it would compare "no sectors" with "the snapshot's sectors", which says
    nothing about the stages, only about the data the user has.
    """
    first = bars.group_by("Code").agg(pl.col("Date").min().alias("first"))
    m = master.join(first, on="Code", how="inner")
    if m.is_empty() or m["Code"].n_unique() != m.height:
        return False
    return bool((m["Date"] > m["first"]).any())


def _disclosed_by(fins: pl.DataFrame, cut: dt.date) -> pl.DataFrame:
    """Statements whose first close after disclosure (features' effective session) is on or before D."""
    fins = fins.filter(pl.col("DiscDate").is_not_null())
    eff = calendar.effective_sessions(fins["DiscDate"], fins["DiscTime"])
    return fins.filter(eff <= cut)


def _published_before(df: pl.DataFrame, cut: dt.date) -> pl.DataFrame:
    """Weekly rows published strictly before D: they count from the session after publication."""
    return df.filter(pl.col("PubDate") < cut)


def _margin_by(margin: pl.DataFrame, cut: dt.date) -> pl.DataFrame:
    """Margin rows counting by D: published before D, or (no PubDate) the assumed publication
    MARGIN_PUBLICATION_LAG sessions after the record date, plus one, on or before D."""
    lo = min(margin["Date"].min() or cut, cut)
    cal = _calendar.sessions(lo, cut)
    sess_d = int(cal.filter(pl.col("date") <= cut)["sess"].max())
    rec = _calendar.session_on_or_before(margin, cal, "Date", "_rec")
    lagged = pl.col("_rec") + _calendar.MARGIN_PUBLICATION_LAG + 1 <= sess_d
    keep = pl.when(pl.col("PubDate").is_not_null()).then(pl.col("PubDate") < cut).otherwise(lagged)
    return rec.filter(keep.fill_null(False)).drop("_rec")


def truncate(tables: dict[str, pl.DataFrame], cut: dt.date) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """Copies of `tables` holding only what was public at the close of session `cut`, and notes.

    bars, TOPIX, the calendar and the oracle by Date; statements by disclosure date and time (the
    effective session); investor flows and margin by publication date; the master as of D (rows dated
    on or before D), except a single snapshot, which the features stage applies to every date anyway.
    """
    out, notes = {}, {}
    for name, df in tables.items():
        if name in BY_DATE:
            out[name] = df.filter(pl.col("Date") <= cut)
        elif name == FINS:
            out[name] = _disclosed_by(df, cut)
        elif name == FLOWS:
            out[name] = _published_before(df, cut)
        elif name == MARGIN:
            out[name] = _margin_by(df, cut) if df.height else df
        elif name == MASTER:
            snapshot = master_is_snapshot(df, tables[BARS])
            out[name] = df if snapshot else df.filter(pl.col("Date") <= cut)
        else:
            raise ValueError(f"audit: no truncation rule for table {name!r}")
        notes[name] = f"{out[name].height:,} of {df.height:,} rows"
        if name == MASTER and snapshot:
            notes[name] += (
                ": one snapshot per code dated after some first bars, kept whole (features use it for every date)"
            )
    return out, notes
