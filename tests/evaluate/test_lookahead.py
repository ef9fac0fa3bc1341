"""The statistical look-ahead check: loadings of a score at t on the returns of days t-2..t+3, and its flags."""

import numpy as np
import polars as pl
import pytest

from kabuflow import calendar
from kabuflow.evaluate.lookahead import check, flags, loadings, section

DAYS = calendar.sessions("2024-01-04", "2024-03-29")
CODES = ["10010", "10020", "10030", "10040", "10050"]


def _market(seed: int = 0) -> tuple[np.ndarray, pl.DataFrame]:
    """Returns r[s, j] of day s and the 1d labels they imply: y_1d(t) = r(t + 2)."""
    r = np.random.default_rng(seed).standard_normal((len(DAYS), len(CODES)))
    rows = [(DAYS[t], c, r[t + 2, j]) for t in range(len(DAYS) - 2) for j, c in enumerate(CODES)]
    return r, pl.DataFrame(rows, schema=["date", "code", "label"], orient="row")


def _scores(r: np.ndarray, model: str, k: int) -> list[tuple]:
    """A score at t equal to r(t + k): its loading on r(t + k) is exactly 1."""
    return [(DAYS[t], c, model, r[t + k, j]) for t in range(2, len(DAYS) - 3) for j, c in enumerate(CODES)]


def test_a_score_that_is_a_days_return_loads_1_on_that_day_only_where_it_was_seen():
    r, labels = _market()
    rows = (
        _scores(r, "peek", 1)
        + _scores(r, "reversal_5d", 0)
        + [(d, c, "flat", 1.0) for d, c, *_ in _scores(r, "x", 0)]
    )
    table = loadings(pl.DataFrame(rows, schema=["date", "code", "model", "score"], orient="row"), labels)
    assert list(table) == ["peek", "reversal_5d"]  # a constant score has no rank correlation with anything
    assert list(table["peek"]) == ["t-2", "t-1", "t", "t+1", "t+2", "t+3"]
    assert table["peek"]["t+1"] == pytest.approx(1.0) and table["reversal_5d"]["t"] == pytest.approx(1.0)
    assert abs(table["peek"]["t+2"]) < 0.3  # independent days: only noise (5 stocks, 55 days)


def test_flags_a_judged_model_above_every_baseline_by_more_than_their_range():
    base = {"t-2": 0.0, "t-1": 0.0, "t": 0.0, "t+2": 0.0, "t+3": 0.0}
    table = {
        "atft": {**base, "t+1": 0.09},
        "lightgbm": {**base, "t+1": 0.03},
        "ridge": {**base, "t+1": 0.05},
        "reversal_5d": {**base, "t+1": 0.04},
        "oracle": {**base, "t+1": 0.5},  # never judged, never a yardstick
    }
    # margin = max(0.01, 0.05 - 0.03) = 0.02: 0.09 > 0.05 + 0.02
    assert [w["model"] for w in flags(table, {}, 0.01)] == ["atft"]
    table["atft"]["t+1"] = 0.069  # 0.069 < 0.07: within the baselines' spread of it
    assert flags(table, {}, 0.01) == []
    assert flags(table, {}, 0.03) == []
    warned = flags(table, {"ridge": "ridge 1d: a 1-day RankIC this high ..."}, 0.01)
    assert [(w["model"], w["kind"]) for w in warned] == [("ridge", "alarm")]


def test_evaluate_check_reads_the_stitched_predictions_and_the_report_shows_it():
    r, labels = _market(1)
    rows = []
    for model, k in (("atft", 1), ("ridge", 2), ("lightgbm", 3), ("momentum_60d", -1)):
        rows += [(d, c, model, 1, s, None) for d, c, _, s in _scores(r, model, k)]
    frame = pl.DataFrame(rows, schema=["date", "code", "model", "horizon", "score", "label"], orient="row")
    frame = frame.drop("label").join(labels, on=["date", "code"], how="left")
    result = check(frame, [], 0.01)
    assert result["table"]["atft"]["t+1"] == pytest.approx(1.0)
    assert [w["model"] for w in result["warnings"]] == ["atft"]
    html = section(result)
    assert "r(t+1)" in html and "atft: loading on r(t+1) 1.0000" in html and section(None) == ""
