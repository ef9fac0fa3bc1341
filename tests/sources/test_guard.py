"""The ingest guard on hand-made bars: TSE limits, missed splits, bad prints, level shifts, each mode."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from kabuflow import calendar
from kabuflow.config import ConfigError
from kabuflow.sources import guard, limits

DAYS = calendar.sessions(dt.date(2019, 6, 3), dt.date(2019, 12, 27))  # before 2020-08-03: x2 broadening


def bars(code: str, closes: list[float], vols: list[float] | None = None, start: int = 0) -> pl.DataFrame:
    """One code's bars on consecutive sessions, O = H = L = C, adjusted = raw, AdjFactor 1."""
    n = len(closes)
    vo = vols or [1000.0] * n
    c = pl.Series(closes, dtype=pl.Float64)
    return pl.DataFrame(
        {
            "Date": DAYS[start : start + n],
            "Code": [code] * n,
            **{k: c for k in ("O", "H", "L", "C")},
            "Vo": vo,
            "Va": None,
            "AdjFactor": [1.0] * n,
            **{f"Adj{k}": c for k in "OHLC"},
            "AdjVo": vo,
        },
        schema_overrides={"Va": pl.Float64},
    )


SPLIT = bars("1111", [1000.0, 1010, 990, 1000, 1005, 995] * 2 + [500.0, 505, 495, 500, 502, 498] * 2,
             [1000.0] * 12 + [2000.0] * 12)  # fmt: skip
SPIKE = bars("2222", [1000.0] * 10 + [4000.0] + [1000.0] * 10)


def test_limit_table_matches_jpx():
    base = np.array([99, 100, 199.9, 200, 999, 1000, 2999, 3000, 5000, 9999, 10000, 1e5, 4.9e7, 5e7, 9e8])
    want = [30, 50, 50, 80, 150, 300, 500, 700, 1000, 1500, 3000, 30000, 7e6, 1e7, 1e7]
    assert limits.limit_width(base).tolist() == want
    # unknown raw closes: the widest share within 10x either way (449 -> 44.9 yen: 30 / 44.9)
    assert limits.share(np.array([449.0]), 10.0)[0] == pytest.approx(30 / 44.9)
    assert limits.share(np.array([37000.0]), 10.0)[0] == pytest.approx(0.3)  # at 10,000 and 100,000


def test_moves_at_the_limit_and_broadened_after_a_limit_close_are_legal():
    # 1000 -> 1300 is the +300 yen limit; from a close at the limit the upper side doubles (2019):
    # 1300 -> 1900 (+600) is legal, but not from a 1300 that did not close at its limit.
    ok = bars("3333", [1000.0, 1300, 1900, 1900, 1880])
    _, info, _ = guard.guard(ok, "repair", 0.0)
    assert info["events"] == []
    assert limits.broaden(np.array(["2020-07-31", "2020-08-03"], dtype="datetime64[D]")).tolist() == [2, 4]


def test_missed_split_is_repaired_from_its_date_back():
    out, info, dropped = guard.guard(SPLIT, "repair", 0.05)
    (event,) = info["events"]
    assert (event["code"], event["date"], event["prev_date"]) == ("1111", str(DAYS[12]), str(DAYS[11]))
    assert (event["verdict"], event["ratio"], event["action"], event["rows"]) == (
        "missed_split",
        0.5,
        "repaired",
        0,
    )
    assert (event["raw_move"], event["limit"]) == (round(500 / 995 - 1, 6), round(150 / 995, 6))
    assert out["AdjC"].to_list() == [c / 2 for c in SPLIT["C"][:12]] + SPLIT["C"][12:].to_list()
    assert out["AdjVo"].to_list() == [2000.0] * 24
    assert out["AdjFactor"].to_list() == [1.0] * 12 + [0.5] + [1.0] * 11
    assert out["C"].equals(SPLIT["C"]) and dropped == []
    assert info["counts"] == {"missed_split": 1, "bad_print": 0, "level_shift": 0}


def test_mask_and_keep_modes():
    masked, info, dropped = guard.guard(SPLIT, "mask", 0.05)
    assert masked["Date"].to_list() == DAYS[12:24] and masked["AdjC"].equals(SPLIT["AdjC"][12:])
    assert info["actions"] == {"repaired": 0, "masked": 1, "kept": 0} and info["rows_masked"] == 12
    assert dropped == [{"table": "equities_bars_daily", "reason": "guard_missed_split", "rows": 12}]
    kept, info, dropped = guard.guard(pl.concat([SPLIT, SPIKE]), "keep", 0.05)
    assert kept.equals(pl.concat([SPLIT, SPIKE])) and dropped == []
    assert [(e["verdict"], e["action"]) for e in info["events"]] == [
        ("missed_split", "kept"),
        ("bad_print", "kept"),
    ]


def test_bad_print_is_masked_and_its_move_back_is_the_same_event():
    out, info, dropped = guard.guard(SPIKE, "repair", 0.05)
    (event,) = info["events"]
    assert (event["date"], event["verdict"], event["ratio"], event["rows"]) == (
        str(DAYS[10]),
        "bad_print",
        4.0,
        1,
    )
    assert DAYS[10] not in out["Date"].to_list() and out.height == 20 and set(out["AdjC"]) == {1000.0}
    assert dropped == [{"table": "equities_bars_daily", "reason": "guard_bad_print", "rows": 1}]


def test_lasting_jump_that_is_no_split_masks_its_day_and_goes_on_from_the_new_level():
    # +46 % from a close that was not at its limit, lasting, volume flat: near 3:2 in price but the
    # volume does not move, so no split; the day is masked and the next moves start from 1,900.
    jump = bars("4444", [1300.0, 1300, 1300, 1900, 1900, 1910, 1890, 1900])
    out, info, dropped = guard.guard(jump, "repair", 0.05)
    assert [(e["verdict"], e["date"], e["rows"]) for e in info["events"]] == [
        ("level_shift", str(DAYS[3]), 1)
    ]
    assert out["Date"].to_list() == DAYS[:3] + DAYS[4:8]
    assert dropped == [{"table": "equities_bars_daily", "reason": "guard_level_shift", "rows": 1}]


def test_untraded_sessions_in_between_may_have_broadened_the_limit():
    # 1,000 -> 1,700 across two missing sessions (untraded limit days drop out as zero-volume rows): with
    # the x2 broadening compounded over 3 sessions it is legal; on consecutive sessions it is not.
    gapped = pl.concat([bars("7777", [1000.0, 1000]), bars("7777", [1700.0, 1700], start=4)])
    assert guard.guard(gapped, "repair", 0.0)[1]["events"] == []
    assert (
        guard.guard(bars("7777", [1000.0, 1000, 1700, 1700]), "repair", 0.0)[1]["counts"]["level_shift"] == 1
    )


def test_codes_are_judged_apart_and_a_code_change_is_no_move():
    both = pl.concat([bars("5555", [100.0] * 5), bars("6666", [5000.0] * 5)])
    _, info, _ = guard.guard(both, "repair", 0.0)
    assert info["events"] == []


def test_settings_are_checked_by_name():
    with pytest.raises(ConfigError, match="data.bad_moves='fix'"):
        guard.guard(SPIKE, "fix", 0.05)
    with pytest.raises(ConfigError, match="data.limit_tolerance"):
        guard.guard(SPIKE, "repair", -0.1)
