"""XTKS calendar: hand-checked sessions, the 2024-11-05 close change, and when a disclosure takes effect."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from kabuflow import calendar as cal

D = dt.date


def test_hand_checked_sessions():
    assert not cal.is_session("2024-01-02")  # New Year holidays: Jan 1-3
    assert not cal.is_session(D(2023, 12, 31)) and not cal.is_session(D(2024, 1, 6))  # Sat
    assert cal.is_session("2024-01-04") and cal.is_session("2024-12-30")
    assert not cal.is_session("2024-11-04")  # Culture Day observed (Monday)
    assert not cal.is_session("2020-10-01")  # the arrowhead outage: no trading at all
    assert cal.sessions("2024-10-31", "2024-11-06") == [
        D(2024, 10, 31),
        D(2024, 11, 1),
        D(2024, 11, 5),
        D(2024, 11, 6),
    ]
    assert len(cal.sessions("2013-01-04", "2024-12-25")) == 2930
    assert cal.count_sessions("2024-01-01", "2024-01-31") == 19


def test_next_previous_and_add_sessions():
    assert cal.next_session("2024-01-02") == D(2024, 1, 4)
    assert cal.next_session("2024-01-04") == D(2024, 1, 5)
    assert cal.previous_session("2024-01-04") == D(2023, 12, 29)
    assert cal.previous_session("2024-01-02") == D(2023, 12, 29)
    assert cal.add_sessions("2024-11-01", 1) == D(2024, 11, 5)  # over the weekend and the holiday
    assert cal.add_sessions("2024-11-05", -1) == D(2024, 11, 1)
    assert cal.add_sessions("2024-11-05", 0) == D(2024, 11, 5)
    # from a non-session: +1 is the next session, -1 the previous, 0 rolls forward
    assert cal.add_sessions("2024-11-04", 1) == D(2024, 11, 5)
    assert cal.add_sessions("2024-11-04", 2) == D(2024, 11, 6)
    assert cal.add_sessions("2024-11-04", -1) == D(2024, 11, 1)
    assert cal.add_sessions("2024-11-04", 0) == D(2024, 11, 5)
    assert cal.add_sessions("2024-01-04", 20) == D(2024, 2, 2)  # Jan 4..31 are 19 sessions: Feb 1 is +19
    i = cal.session_index("2024-01-04")
    assert cal.session_index("2024-02-02") - i == 20
    with pytest.raises(ValueError, match="2024-01-02 is not an XTKS session"):
        cal.session_index("2024-01-02")
    with pytest.raises(ValueError, match="outside the XTKS calendar"):
        cal.is_session("1990-01-04")


def test_close_time_changes_on_2024_11_05():
    assert cal.close_time("2024-11-01") == dt.time(15, 0)
    assert cal.close_time("2024-11-05") == dt.time(15, 30)
    # the same as the exchange calendar's own schedule
    xc = cal.calendar()
    for day in ("2024-11-01", "2024-11-05"):
        close = xc.session_close(day).tz_convert("Asia/Tokyo")
        assert close.time() == cal.close_time(day)


@pytest.mark.parametrize(
    ("date", "time", "expected"),
    [
        ("2024-11-01", "14:59:59", D(2024, 11, 1)),  # before the 15:00 close: counts that day
        ("2024-11-01", "14:59", D(2024, 11, 1)),
        ("2024-11-01", "15:00:00", D(2024, 11, 5)),  # at the close: the close cannot reflect it
        ("2024-11-01", "15:01", D(2024, 11, 5)),
        ("2024-11-05", "15:10:00", D(2024, 11, 5)),  # before the new 15:30 close
        ("2024-11-05", "15:30:00", D(2024, 11, 6)),
        ("2024-11-03", "10:00:00", D(2024, 11, 5)),  # a Sunday (and Monday is a holiday)
        ("2024-11-01", "", D(2024, 11, 5)),  # unknown time: after the close
        ("2024-11-01", None, D(2024, 11, 5)),
        ("2024-11-01", "later", D(2024, 11, 5)),
        ("2024-12-30", "16:00", D(2025, 1, 6)),  # over the New Year break
    ],
)
def test_effective_session(date, time, expected):
    assert cal.effective_session(date, time) == expected


def test_effective_sessions_vectorised_matches_scalar():
    dates = pl.Series("DiscDate", [D(2024, 11, 1), D(2024, 11, 1), D(2024, 11, 4), D(2024, 11, 5)])
    times = pl.Series("DiscTime", ["11:30:00", "15:00:00", "09:00:00", None])
    out = cal.effective_sessions(dates, times)
    assert out.dtype == pl.Date and out.name == "DiscDate"
    assert out.to_list() == [D(2024, 11, 1), D(2024, 11, 5), D(2024, 11, 5), D(2024, 11, 6)]
    assert out.to_list() == [cal.effective_session(d, t) for d, t in zip(dates, times, strict=True)]
    assert cal.effective_session(D(2024, 11, 1), dt.time(14, 0)) == D(2024, 11, 1)
