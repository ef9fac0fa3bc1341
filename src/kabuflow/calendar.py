"""The one trading calendar (XTKS, Tokyo Stock Exchange sessions) every stage uses."""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from typing import Any

import numpy as np
import polars as pl

# Fixed bounds so results never depend on the day the code runs; the calendar knows the holiday
# rules, so sessions after the last published JPX calendar are projections (as in any calendar).
FIRST = dt.date(2000, 1, 1)
LAST = dt.date(2035, 12, 31)
# TSE extended the afternoon session by 30 minutes from this session on (arrowhead 2024).
CLOSE_CHANGE = dt.date(2024, 11, 5)
CLOSE_BEFORE = dt.time(15, 0)
CLOSE_AFTER = dt.time(15, 30)


@functools.lru_cache(maxsize=1)
def calendar() -> Any:
    """The exchange_calendars XTKS object, loaded once per process (loading costs ~0.2 s)."""
    import exchange_calendars as xcals

    with warnings.catch_warnings():  # exchange_calendars 4.13 trips a pandas 3.1 deprecation inside
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar("XTKS", start=FIRST.isoformat(), end=LAST.isoformat())


@functools.lru_cache(maxsize=1)
def _sessions() -> np.ndarray:
    """All sessions as sorted datetime64[D]: the array every lookup searches."""
    return calendar().sessions.values.astype("datetime64[D]")


def _d64(d: dt.date | str) -> np.datetime64:
    if isinstance(d, dt.datetime):
        d = d.date()
    day = dt.date.fromisoformat(d) if isinstance(d, str) else d
    if not FIRST <= day <= LAST:
        raise ValueError(f"date {day} is outside the XTKS calendar's range {FIRST}..{LAST}")
    return np.datetime64(day, "D")


def _date(x: np.datetime64) -> dt.date:
    return x.astype("datetime64[D]").item()


def _at(i: int, d: object) -> dt.date:
    s = _sessions()
    if not 0 <= i < len(s):
        raise ValueError(f"no XTKS session that far from {d} (calendar covers {FIRST}..{LAST})")
    return _date(s[i])


def is_session(d: dt.date | str) -> bool:
    """True when the TSE traded on `d` (weekends, holidays and 2020-10-01's outage are not)."""
    x = _d64(d)
    s = _sessions()
    i = int(np.searchsorted(s, x))
    return i < len(s) and s[i] == x


def sessions(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """Sessions in [start, end], both ends included, in order."""
    s = _sessions()
    lo, hi = np.searchsorted(s, _d64(start), "left"), np.searchsorted(s, _d64(end), "right")
    return [_date(x) for x in s[lo:hi]]


def next_session(d: dt.date | str) -> dt.date:
    """The first session strictly after `d`."""
    return _at(int(np.searchsorted(_sessions(), _d64(d), "right")), d)


def previous_session(d: dt.date | str) -> dt.date:
    """The last session strictly before `d`."""
    return _at(int(np.searchsorted(_sessions(), _d64(d), "left")) - 1, d)


def add_sessions(d: dt.date | str, n: int) -> dt.date:
    """The session `n` sessions after (n > 0) or before (n < 0) `d`.

    On a non-session `d`, +1 is the next session and -1 the previous one; n = 0 rolls forward to
    the next session (what happens to anything dated on a holiday: it counts from the next session).
    """
    s, x = _sessions(), _d64(d)
    i = int(np.searchsorted(s, x, "left"))  # first session >= d
    on = i < len(s) and s[i] == x
    if on or n == 0:
        return _at(i + n, d)
    return _at(i + n - 1 if n > 0 else i + n, d)


def session_index(d: dt.date | str) -> int:
    """Position of session `d` in the calendar; differences of indices count sessions."""
    x = _d64(d)
    i = int(np.searchsorted(_sessions(), x))
    if not is_session(d):
        raise ValueError(f"{np.datetime_as_string(x)} is not an XTKS session")
    return i


def count_sessions(start: dt.date | str, end: dt.date | str) -> int:
    """Number of sessions in [start, end], both ends included."""
    s = _sessions()
    return int(np.searchsorted(s, _d64(end), "right") - np.searchsorted(s, _d64(start), "left"))


def close_time(d: dt.date | str) -> dt.time:
    """Closing time (JST) of the session on `d`: 15:00, or 15:30 from 2024-11-05 on."""
    day = _date(_d64(d))
    return CLOSE_AFTER if day >= CLOSE_CHANGE else CLOSE_BEFORE


def _seconds(t: str | dt.time | None) -> int:
    """Seconds after midnight of "HH:MM[:SS]"; -1 when unknown (empty, null, unparseable)."""
    if isinstance(t, dt.time):
        return t.hour * 3600 + t.minute * 60 + t.second
    parts = (t or "").strip().split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        return -1
    h, m, sec = (int(p) for p in [*parts, "0"][:3])
    return h * 3600 + m * 60 + sec if h < 24 and m < 60 and sec < 60 else -1


def effective_sessions(dates: pl.Series, times: pl.Series) -> pl.Series:
    """Vectorised `effective_session` over a column of disclosure dates and "HH:MM[:SS]" times."""
    if len(dates) != len(times):
        raise ValueError(f"dates ({len(dates)}) and times ({len(times)}) differ in length")
    if dates.null_count():
        raise ValueError("effective_sessions: a disclosure date is null")
    days = dates.cast(pl.Date).to_numpy().astype("datetime64[D]")
    if len(days) and (days.min() < np.datetime64(FIRST) or days.max() > np.datetime64(LAST)):
        raise ValueError(f"disclosure dates {days.min()}..{days.max()} leave the calendar {FIRST}..{LAST}")
    secs = np.array([_seconds(t) for t in times.cast(pl.String).to_list()], dtype=np.int64)
    s = _sessions()
    i = np.searchsorted(s, days, "left")  # first session >= disclosure date
    on = (i < len(s)) & (s[np.minimum(i, len(s) - 1)] == days)
    close = np.where(days >= np.datetime64(CLOSE_CHANGE), 15 * 3600 + 1800, 15 * 3600)
    # Strictly before the close: news at 15:00:00 sharp (common for results) cannot be in that
    # close's price, so it belongs to the next session. Unknown time -> treated as after the close.
    same = on & (secs >= 0) & (secs < close)
    j = i + (on & ~same)
    if len(j) and j.max() >= len(s):
        raise ValueError(f"no XTKS session after {days.max()} within the calendar")
    return pl.Series(dates.name, s[j].astype("datetime64[D]"), dtype=pl.Date)


def effective_session(disclosure_date: dt.date | str, disclosure_time: str | dt.time | None) -> dt.date:
    """The first session whose close comes after the disclosure: the session it can affect.

    14:59 on a session -> that session; 15:00 or later -> the next; a holiday -> the next session;
    an empty or unknown time -> treated as after the close (the conservative side of leakage).
    """
    day = _date(_d64(disclosure_date))
    t = disclosure_time.isoformat() if isinstance(disclosure_time, dt.time) else disclosure_time
    out = effective_sessions(pl.Series([day], dtype=pl.Date), pl.Series([t], dtype=pl.String))
    return out[0]
