"""kabuflow audit on the embedded market: it passes the real stages and catches a leaking feature and setting."""

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from kabuflow import calendar
from kabuflow.audit import audit, resolve_cuts
from kabuflow.audit.compare import Tally, differs
from kabuflow.cli import main
from kabuflow.config import ConfigError, load
from kabuflow.features import registry
from kabuflow.features.spec import Family, Feature

# A small market, short range, tiny model: the point is the comparison, not the scores.
SMALL = [
    "synthetic.n_stocks=20",
    "synthetic.start=2021-01-04",
    "synthetic.end=2022-03-31",
    "graph.window=100",
    "graph.min_obs=30",
    "folds.embargo_days=5",
    "model.hidden=8",
    "model.members=1",
    "train.epochs=1",
    "train.days_per_epoch=10",
    "lightgbm.n_estimators=10",
]
CUT, CUT2 = "2021-08-16", "2021-12-01"


def _cfg(*extra: str):
    return load("local", [*SMALL, *extra])


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    return audit(_cfg(f"audit.cuts=[{CUT}, {CUT2}]"), out), out


def test_the_pipeline_passes_every_stage_at_every_cut(clean):
    report, out = clean
    assert report["passed"]
    assert [(s["stage"], s["cut"]) for s in report["stages"]] == [
        (stage, cut) for cut in (CUT, CUT2) for stage in ("features", "panel", "graph", "scores")
    ]
    for s in report["stages"]:
        assert s["compared"] > 0 and s["moved"] == 0, (s["stage"], s["cut"])
    by = {(s["stage"], s["cut"]): {c["column"]: c for c in s["columns"]} for s in report["stages"]}
    # Every feature, the labels, the panel's arrays, every edge attribute and every model x horizon.
    assert {"ret_1d", "stmt_roe", "flow_frgn_net_1w", "margin_ls_log_1w", "y_20d", "s33"} <= set(
        by["features", CUT]
    )
    assert {"X:ret_1d", "valid", "R", "sector", "market"} <= set(by["panel", CUT])
    assert set(by["graph", CUT]) == {"edge", "rho", "same_sector", "same_market"}
    assert by["graph", CUT]["edge"]["compared"] > 100  # the graph is not empty by the first cut
    models = {"atft", "lightgbm", "ridge", "reversal_5d", "momentum_60d", "low_vol_60d"}
    assert {c.split(":")[0] for c in by["scores", CUT]} == models
    # The later cut compares more dates: the same 20 stocks, ~75 more sessions.
    assert by["features", CUT2]["ret_1d"]["compared"] > by["features", CUT]["ret_1d"]["compared"] > 2000
    saved = json.loads((out / "audit.json").read_text())
    assert saved["passed"] and saved["cuts"] == [CUT, CUT2]
    assert "PASSED" in (out / "audit.html").read_text()
    assert not (out / "work" / f"cut-{CUT}").exists()  # a cut's copy of the stages is removed after use
    assert {r["run"] for r in report["cost"]["stages"]} == {"full", f"cut {CUT}", f"cut {CUT2}"}


def test_the_statistical_check_covers_every_model(clean):
    report, _ = clean
    table = report["lookahead"]["table"]
    assert set(table) == {"atft", "lightgbm", "ridge", "reversal_5d", "momentum_60d", "low_vol_60d"}
    for loads in table.values():
        assert list(loads) == ["t-2", "t-1", "t", "t+1", "t+2", "t+3"]
        assert all(-1 <= v <= 1 for v in loads.values())


def _leak() -> Family:
    """A registry entry that shifts a column by -1: tomorrow's daily return, seen today."""
    return Family("leak", lambda: [Feature(pl.col("ret_1d").shift(-1).over("cid").alias("leak_next_ret_1d"))])


def test_a_leaking_feature_is_caught_naming_the_column_and_the_first_moved_date(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "FEATURES", (*registry.FEATURES, _leak()))
    report = audit(_cfg(f"audit.cuts=[{CUT}]", "audit.scores=false"), tmp_path)
    assert not report["passed"]
    feats = next(s for s in report["stages"] if s["stage"] == "features")
    worst = feats["columns"][0]
    # Only the last session before the cut reads a day after it: one value per stock moves.
    assert worst["column"] == "leak_next_ret_1d" and worst["first_moved"] == CUT
    assert (
        0 < worst["moved"] <= 20 and worst["example"]["cut"] is None and worst["example"]["full"] is not None
    )
    assert [c["column"] for c in feats["columns"] if c["moved"]] == ["leak_next_ret_1d"]
    panel = next(s for s in report["stages"] if s["stage"] == "panel")
    assert panel["columns"][0]["column"] == "X:leak_next_ret_1d" and panel["columns"][0]["first_moved"] == CUT
    page = (tmp_path / "audit.html").read_text()
    assert "FAILED" in page and f'<tr class="bad"><td>features</td><td>{CUT}</td>' in page
    assert "leak_next_ret_1d" in page


def test_a_leaking_normalizer_setting_is_caught_naming_the_column_and_the_first_moved_date(tmp_path):
    report = audit(_cfg(f"audit.cuts=[{CUT}]", "audit.scores=false", "normalize.market_lag=-3"), tmp_path)
    stages = {s["stage"]: s for s in report["stages"]}
    assert stages["features"]["moved"] == 0 and stages["panel"]["moved"] > 0
    moved = [c for c in stages["panel"]["columns"] if c["moved"]]
    # The window of t reaches t+3: dates from 2 sessions before the cut on see a session after it, and
    # only the features normalized by that window move (kind market: mkt_*, and the weekly flow_*).
    meta = json.loads((tmp_path / "work" / "full" / "panel" / "meta.json").read_text())
    market = {
        f"X:{n}" for n, k in zip(meta["feature_names"], meta["feature_kinds"], strict=True) if k == "market"
    }
    assert {c["column"] for c in moved} <= market and any(c["column"].startswith("X:mkt_") for c in moved)
    assert {c["first_moved"] for c in moved} == {calendar.add_sessions(CUT, -2).isoformat()}


def test_the_command_exits_2_when_a_value_moved(tmp_path, capsys):
    argv = ["audit", "--out", str(tmp_path), "--cut", CUT, "--set", "audit.scores=false"]
    argv += [a for s in [*SMALL, "normalize.market_lag=-3"] for a in ("--set", s)]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    out = capsys.readouterr().out
    assert "FAILED" in out and "panel     2021-08-16" in out and "MOVED" in out and "cost:" in out


def test_cuts_default_to_three_over_the_range_and_roll_back_to_a_session():
    dates = calendar.sessions("2024-01-04", "2024-12-27")
    assert resolve_cuts((), dates) == [
        dates[len(dates) // 4],
        dates[len(dates) // 2],
        dates[3 * len(dates) // 4],
    ]
    assert resolve_cuts(("2024-05-04",), dates) == [dt.date(2024, 5, 2)]  # Saturday of Golden Week
    with pytest.raises(ConfigError, match="audit cut 2024-12-27 is outside"):
        resolve_cuts(("2024-12-27",), dates)
    with pytest.raises(ConfigError, match="'24/05/01' is not an ISO date"):
        resolve_cuts(("24/05/01",), dates)


def test_a_tally_counts_moved_values_and_keeps_the_earliest_as_its_example():
    t = Tally("x")
    full, cut = np.array([1.0, 2.0, np.nan, 4.0]), np.array([1.0, 2.5, np.nan, 4.5])
    when = np.array([10, 9, 8, 7])  # epoch days: the last value is the earliest
    t.add(4, differs(full, cut), when, lambda i: (int(when[i]), f"c{i}", full[i], cut[i]))
    assert t.to_dict() == {
        "column": "x",
        "compared": 4,
        "moved": 2,  # two missing values are the same value
        "first_moved": "1970-01-08",
        "example": {"date": "1970-01-08", "code": "c3", "full": 4.0, "cut": 4.5},
    }


def test_a_first_cut_too_early_to_train_on_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="the earliest cut 2021-03-01 leaves the models"):
        audit(_cfg("audit.cuts=[2021-03-01, 2021-08-16]"), tmp_path)
