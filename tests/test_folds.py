"""folds: exact boundaries, the label-window embargo for every training and validation date, round trips."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from kabuflow.config import Config, ConfigError, FoldsConfig
from kabuflow.folds import Fold, build_folds, fold_index, make_folds, read_folds, sessions_needed, write_folds
from kabuflow.manifest import seal


def _sessions(n: int) -> list[dt.date]:
    """n weekdays from 2016-01-04 (the calendar does not matter to the index arithmetic)."""
    out, d = [], dt.date(2016, 1, 4)
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += dt.timedelta(days=1)
    return out


def test_default_config_boundaries_by_hand():
    dates = _sessions(1500)
    folds = make_folds(FoldsConfig(), dates, max_horizon=20)
    # gap = 20 + 20 + 1 = 41; tests tile 1020..1499 in 160s; val ends 41 before; train ends 41 before val.
    expect = [(819, 860, 979, 1020, 1179), (979, 1020, 1139, 1180, 1339), (1139, 1180, 1299, 1340, 1499)]
    for fold, (tr_e, v_s, v_e, te_s, te_e) in zip(folds, expect, strict=True):
        idx = fold_index(fold, dates)
        assert idx == {"train": slice(0, tr_e + 1), "val": slice(v_s, v_e + 1), "test": slice(te_s, te_e + 1)}
        assert fold.train_start == "2016-01-04" and fold.test_end == dates[te_e].isoformat()
    assert [f.k for f in folds] == [0, 1, 2]
    assert folds[-1].test_end == dates[-1].isoformat()
    assert folds[0].train_end == dates[819].isoformat()  # 820 >= min_train_days = 500


@pytest.mark.parametrize(
    ("cfg", "max_h", "n_dates"),
    [
        (FoldsConfig(), 20, 1500),
        (FoldsConfig(n_folds=5, val_days=30, test_days=40, embargo_days=5, min_train_days=100), 10, 600),
        (FoldsConfig(n_folds=1, val_days=1, test_days=1, embargo_days=0, min_train_days=1), 0, 5),
    ],
)
def test_no_label_window_crosses_a_boundary(cfg, max_h, n_dates):
    dates = _sessions(n_dates)
    folds = make_folds(cfg, dates, max_horizon=max_h)
    assert len(folds) == cfg.n_folds
    tests = [fold_index(f, dates)["test"] for f in folds]
    assert tests[-1].stop == n_dates and all(
        a.stop == b.start for a, b in zip(tests, tests[1:], strict=False)
    )
    for fold in folds:
        idx = fold_index(fold, dates)
        train, val, test = (range(n_dates)[idx[s]] for s in ("train", "val", "test"))
        assert train[0] == 0 and len(train) >= cfg.min_train_days
        assert len(val) == cfg.val_days and len(test) == cfg.test_days
        for t in train:  # label window t+1 .. t+1+max_h ends >= embargo sessions before validation
            assert t + 1 + max_h <= val.start - cfg.embargo_days
        for t in val:
            assert t + 1 + max_h <= test.start - cfg.embargo_days
        # The bound is tight: one more training date would break it.
        assert train[-1] + 1 + 1 + max_h > val.start - cfg.embargo_days


def test_too_few_dates_names_the_settings():
    cfg = FoldsConfig()
    assert sessions_needed(cfg, 20) == 1180
    make_folds(cfg, _sessions(1180), 20)  # exactly enough
    with pytest.raises(ValueError, match=r"folds.min_train_days=500.*need 1180"):
        make_folds(cfg, _sessions(1179), 20)
    with pytest.raises(ConfigError, match="folds.val_days"):
        make_folds(FoldsConfig(val_days=0), _sessions(2000), 20)
    with pytest.raises(ValueError, match="strictly increasing"):
        make_folds(cfg, list(reversed(_sessions(1500))), 20)


def test_json_round_trip_and_iso_strings(tmp_path):
    folds = make_folds(FoldsConfig(), [d.isoformat() for d in _sessions(1300)], 20)
    assert json.loads(json.dumps([f.to_dict() for f in folds]))[1]["k"] == 1
    assert [Fold.from_dict(f.to_dict()) for f in folds] == folds
    write_folds(tmp_path / "folds.json", folds)
    assert read_folds(tmp_path / "folds.json") == folds
    seal(tmp_path, "folds")
    assert read_folds(tmp_path) == folds  # a folds stage output directory, checked against its manifest
    with pytest.raises(ValueError, match="unknown keys"):
        Fold.from_dict({**folds[0].to_dict(), "extra": 1})


def test_build_folds_reads_panel_meta(tmp_path):
    (tmp_path / "panel").mkdir()
    meta = {"dates": [d.isoformat() for d in _sessions(1200)], "horizons": [1, 5, 10, 20]}
    (tmp_path / "panel" / "meta.json").write_text(json.dumps(meta))
    panel = seal(tmp_path / "panel", "normalize")
    folds = build_folds(Config(), tmp_path / "panel", tmp_path / "out")
    assert read_folds(tmp_path / "out" / "folds.json") == folds == read_folds(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "folds.json").read_text())
    assert written["max_horizon"] == 20
    stamp = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "code_version" in stamp and stamp["n_folds"] == len(folds)
    panel_sha = hashlib.sha256((tmp_path / "panel" / "manifest.json").read_bytes()).hexdigest()
    assert stamp["lineage"] == {"normalize": panel_sha} and panel["stage"] == "normalize"
    assert folds[0].train_end == meta["dates"][519]  # 1200 - 1180 + 500 training sessions


@pytest.mark.parametrize(
    ("lookback", "message"),
    [
        (0, "model.lookback must be >= 1 session, got 0"),
        (1201, "model.lookback=1201 is longer than the panel's history of 1200 sessions"),
    ],
)
def test_lookback_is_checked_against_the_panel(tmp_path, lookback, message):
    (tmp_path / "panel").mkdir()
    meta = {"dates": [d.isoformat() for d in _sessions(1200)], "horizons": [1, 5, 10, 20]}
    (tmp_path / "panel" / "meta.json").write_text(json.dumps(meta))
    seal(tmp_path / "panel", "normalize")
    with pytest.raises(ConfigError, match=message):
        build_folds(
            Config().with_overrides([f"model.lookback={lookback}"]), tmp_path / "panel", tmp_path / "f.json"
        )
    build_folds(Config().with_overrides(["model.lookback=1200"]), tmp_path / "panel", tmp_path / "f.json")
