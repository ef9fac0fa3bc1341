"""XTKS session positions and close times: the clock every point-in-time rule in features runs on."""

from __future__ import annotations

import datetime as dt

import exchange_calendars as xc
import polars as pl

# Publication lag of weekly margin data when a row has no PubDate (old J-Quants rows): the exchange
# publishes a week's balances on the 2nd business day after the record date.
MARGIN_PUBLICATION_LAG = 2
_EARLIEST = dt.date(1997, 1, 1)  # exchange_calendars' bound for XTKS


def sessions(start: dt.date, end: dt.date) -> pl.DataFrame:
    """XTKS sessions over [start - 2 weeks, end + 6 weeks]: `date`, `sess` (Int32 position), `close` (JST).

    Positions are what "the next session" and "h sessions later" mean everywhere in features: counting
    sessions, not rows, is what makes a halted stock's missing day a gap instead of a shorter week.
    The close comes from the exchange calendar (15:00 JST, 15:30 from 2024-11-05).
    """
    lo = max(start - dt.timedelta(days=14), _EARLIEST)
    cal = xc.get_calendar("XTKS", start=str(lo), end=str(end + dt.timedelta(days=42)))
    sched = cal.schedule
    close = sched["close"].dt.tz_convert("Asia/Tokyo")
    return pl.DataFrame(
        {
            "date": pl.Series([d.date() for d in sched.index], dtype=pl.Date),
            "sess": pl.Series(range(len(sched)), dtype=pl.Int32),
            "close": pl.Series([t.time() for t in close], dtype=pl.Time),
        }
    )


def effective_session(
    events: pl.DataFrame, cal: pl.DataFrame, day: str, time: str, name: str
) -> pl.DataFrame:
    """Add `name`: the first session whose close follows the event at `day` `time` ("HH:MM[:SS]" JST).

    An event on a session strictly before its close counts on that session; at or after the close, on a
    holiday, or with an unreadable time (we cannot prove it came before the close) it counts on the
    next session.
    """
    clock = pl.coalesce(
        pl.col(time).str.to_time("%H:%M:%S", strict=False), pl.col(time).str.to_time("%H:%M", strict=False)
    )
    df = events.join(
        cal.select(pl.col("date").alias(day), pl.col("close").alias("_close")),
        on=day,
        how="left",
        maintain_order="left",
    )
    before_close = pl.col("_close").is_not_null() & (clock < pl.col("_close")).fill_null(False)
    cand = pl.when(before_close).then(pl.col(day)).otherwise(pl.col(day) + dt.timedelta(days=1))
    return _lookup(df, cal, cand, "forward", name).drop("_close")


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
