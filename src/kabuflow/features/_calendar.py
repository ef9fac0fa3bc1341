"""Session positions over kabuflow.calendar (XTKS): the clock every point-in-time rule in features runs on."""

from __future__ import annotations

import datetime as dt

import polars as pl

from kabuflow import calendar

# Publication lag of weekly margin data when a row has no PubDate (old J-Quants rows): the exchange
# publishes a week's balances on the 2nd business day after the record date.
MARGIN_PUBLICATION_LAG = 2


def sessions(start: dt.date, end: dt.date) -> pl.DataFrame:
    """XTKS sessions over [start - 2 weeks, end + 6 weeks]: `date` and `sess` (Int32 position).

    Positions are what "the next session" and "h sessions later" mean everywhere in features: counting
    sessions, not rows, is what makes a halted stock's missing day a gap instead of a shorter week.
    The margins let an event just outside the bars still find its effective session.
    """
    lo = max(start - dt.timedelta(days=14), calendar.FIRST)
    hi = min(end + dt.timedelta(days=42), calendar.LAST)
    days = calendar.sessions(lo, hi)
    return pl.DataFrame(
        {"date": pl.Series(days, dtype=pl.Date), "sess": pl.Series(range(len(days)), dtype=pl.Int32)}
    )


def effective_session(
    events: pl.DataFrame, cal: pl.DataFrame, day: str, time: str, name: str
) -> pl.DataFrame:
    """Add `name`: the session of the first close after the event at `day` `time` ("HH:MM[:SS]" JST).

    kabuflow.calendar.effective_sessions decides: strictly before a session's close (15:00; 15:30 from
    2024-11-05) → that session; at/after the close, on a holiday, or with an unknown time → the next.
    Rows without a date are dropped: they cannot be placed in time.
    """
    events = events.filter(pl.col(day).is_not_null())
    eff = calendar.effective_sessions(events[day], events[time]).alias("_eff")
    looked = events.with_columns(eff).join(
        cal.select(pl.col("date").alias("_eff"), pl.col("sess").alias(name)),
        on="_eff",
        how="left",
        maintain_order="left",
    )
    return looked.drop("_eff")


def session_after(events: pl.DataFrame, cal: pl.DataFrame, day: str, name: str) -> pl.DataFrame:
    """Add `name`: the first session strictly after `day` (weekly data counts from the day after publication)."""
    return _lookup(events, cal, pl.col(day) + dt.timedelta(days=1), "forward", name)


def session_on_or_before(events: pl.DataFrame, cal: pl.DataFrame, day: str, name: str) -> pl.DataFrame:
    """Add `name`: the last session on or before `day` (the session a record date belongs to)."""
    return _lookup(events, cal, pl.col(day), "backward", name)


def _lookup(df: pl.DataFrame, cal: pl.DataFrame, cand: pl.Expr, strategy: str, name: str) -> pl.DataFrame:
    """Add `name` = the session found from the date `cand` by an as-of search of the calendar; keeps row order."""
    keyed = df.with_row_index("_row").with_columns(_cand=cand)
    found = (
        keyed.select("_row", "_cand")
        .filter(pl.col("_cand").is_not_null())
        .sort("_cand")
        .join_asof(cal.select("date", "sess"), left_on="_cand", right_on="date", strategy=strategy)
        .select("_row", pl.col("sess").alias(name))
    )
    return keyed.join(found, on="_row", how="left", maintain_order="left").drop("_row", "_cand")
