"""Labels: y_h(t) = AdjC[t+1+h] / AdjC[t+1] - 1 by XTKS session, null (never 0) where a bar is missing."""

import pytest
from market_tables import CLOSES, bars, sessions, tiny

from kabuflow.features import build

A, B = "13010", "13020"


def labels_of(out, code, h):
    return out.filter(out["code"] == code)[f"y_{h}d"].to_list()


def test_labels_hand_computed():
    out = build(tiny(), (1, 5, 10, 20))[0]
    c = CLOSES[A]
    y1, y5 = labels_of(out, A, 1), labels_of(out, A, 5)
    assert y1[0] == pytest.approx(c[2] / c[1] - 1) and y1[7] == pytest.approx(c[9] / c[8] - 1)
    assert y1[8:] == [None, None]  # the window runs past the data
    assert y5[0] == pytest.approx(c[6] / c[1] - 1) and y5[3] == pytest.approx(c[9] / c[4] - 1)
    assert y5[4:] == [None] * 6
    assert labels_of(out, A, 10) == [None] * 10 and labels_of(out, A, 20) == [None] * 10


def test_a_halted_day_makes_labels_null_instead_of_stretching_the_window():
    halted = {**CLOSES, B: CLOSES[B][:4] + [None] + CLOSES[B][5:]}  # no bar on session 4
    t = tiny(halted)
    out = build(t, (1, 5))[0]
    c = CLOSES[B]
    y1, y5 = labels_of(out, B, 1), labels_of(out, B, 5)  # rows: sessions 0,1,2,3,5,6,7,8,9
    # Session 2 exits on the halted session 4, session 3 would enter on it: both null.
    assert y1[:4] == [pytest.approx(c[2] / c[1] - 1), pytest.approx(c[3] / c[2] - 1), None, None]
    assert y1[4] == pytest.approx(c[7] / c[6] - 1)  # session 5
    # Session 0: entry at session 1, exit at session 6 — the halt between them does not matter.
    assert y5[0] == pytest.approx(c[6] / c[1] - 1)
    # Session 3: entry would be session 4 (halted) -> null; by rows it would have used session 5.
    assert y5[3] is None


def test_non_session_rows_are_dropped_and_counted():
    dates = sessions("2024-01-04", 3)
    holiday_rows = bars({A: [1.0]}, [dates[0].replace(day=8)])  # 2024-01-08: Coming-of-Age Day
    t = tiny()
    t["equities_bars_daily"] = t["equities_bars_daily"].vstack(holiday_rows)
    out, info = build(t, (1,))
    assert info["dropped"]["off_calendar"] == 1 and out.height == 30
