"""Validation RankIC for model selection: the daily Spearman by hand, the round it picks, LightGBM
stopping there, ridge's penalty chosen on it, and date-sampled training rows."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from tiny_market import make_market

from kabuflow.config import Config
from kabuflow.evaluate.metrics import daily_ic
from kabuflow.folds import fold_days, read_fold
from kabuflow.normalize import load_panel
from kabuflow.train import train_fold
from kabuflow.train.baselines import _lgb_rows, design, valid_rows
from kabuflow.train.rank_ic import DailyRankIC, pick_round


def test_daily_rank_ic_by_hand():
    # day 0: ranks (1,2,3) vs (1,3,2): 1 - 6*2/(3*8) = 0.5; day 1: (3,2,1,4) vs (1,2,3,4): 1 - 6*8/60 = 0.2;
    # day 2 has two names (skipped); day 3's score is constant (counts 0); the NaN label is left out.
    t = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3])
    score = np.array([1, 2, 3, 9, 3, 2, 1, 5, 1, 2, 7, 7, 7], dtype=float)
    label = np.array([1, 3, 2, np.nan, 1, 2, 3, 4, 1, 2, 1, 2, 3])
    metric = DailyRankIC(t, label)
    np.testing.assert_allclose(metric.daily(score), [0.5, 0.2, 0.0])
    assert metric(score) == pytest.approx(0.7 / 3)


def test_pick_round_by_hand():
    scores = [0.1, 0.3, 0.2, 0.25, 0.22, 0.21]
    # rounds >= 3 only: the best is round 4 (0.25); two rounds without a better one -> stop
    assert pick_round(scores, min_rounds=3, patience=2) == (4, True)
    assert pick_round(scores[:5], min_rounds=3, patience=2) == (4, False)
    assert pick_round(scores, min_rounds=1, patience=4) == (2, True)
    assert pick_round(scores[:2], min_rounds=3, patience=2) == (2, False)  # too few rounds yet
    assert pick_round(scores, min_rounds=3, patience=0) == (4, False)  # off: never stops


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return make_market(tmp_path_factory.mktemp("market"), t=160, n=30, noise=2.0)


BASE = ["lightgbm.min_child_samples=20", "lightgbm.n_estimators=80", "lightgbm.learning_rate=0.1"]


def _hand_round(curve: list[float], min_rounds: int, patience: int) -> int:
    """The stopping rule written out: first max among rounds >= min_rounds, stop `patience` after it."""
    best, best_score = 0, -np.inf
    for k, value in enumerate(curve, start=1):
        if k >= min_rounds and value > best_score:
            best, best_score = k, value
        if k >= min_rounds and k - best >= patience:
            break
    return best


def test_lightgbm_stops_where_the_hand_computation_does(market, tmp_path):
    cfg = Config().with_overrides([*BASE, "lightgbm.min_rounds=15", "lightgbm.early_stopping_rounds=8"])
    train_fold(cfg, market["panel"], None, market["folds"], 0, "lightgbm", tmp_path / "es")
    full = Config().with_overrides([*BASE, "lightgbm.early_stopping_rounds=0"])
    train_fold(full, market["panel"], None, market["folds"], 0, "lightgbm", tmp_path / "all")
    # Score every round of the full booster on validation with evaluate's own daily RankIC.
    panel = load_panel(market["panel"])
    t, s = valid_rows(panel, fold_days(read_fold(market["folds"], 0), panel.dates)["val"])
    booster = lgb.Booster(model_file=str(tmp_path / "all" / "lightgbm_5d.txt"))
    x, label = design(panel, t, s), np.asarray(panel.Y_raw[t, s, 1], dtype=np.float64)
    curve = []
    for k in range(1, 81):
        frame = pl.DataFrame(
            {"model": "m", "horizon": 5, "date": t, "fold": 0, "score": booster.predict(x, num_iteration=k)}
        ).with_columns(label=pl.Series(label).fill_nan(None))
        curve.append(float(daily_ic(frame)["rank_ic"].mean()))
    info = json.loads((tmp_path / "es" / "metrics.json").read_text())
    np.testing.assert_allclose(info["val_rank_ic_by_round"][1], curve[: len(info["val_rank_ic_by_round"][1])])
    assert info["best_iteration"][1] == _hand_round(curve, 15, 8)
    assert info["best_iteration"][1] >= 15


def test_ridge_keeps_the_penalty_with_the_best_validation_rank_ic(market, tmp_path):
    cfg = Config().with_overrides(["ridge.penalties=[0.0001, 1.0, 1000.0]"])
    train_fold(cfg, market["panel"], None, market["folds"], 0, "ridge", tmp_path)
    fitted = json.loads((tmp_path / "ridge.json").read_text())["horizons"]
    pred = pl.read_parquet(tmp_path / "predictions.parquet").filter(pl.col("split") == "val")
    for h in fitted:
        assert h["penalty"] == [0.0001, 1.0, 1000.0][int(np.argmax(h["val_rank_ic"]))]
        got = daily_ic(pred.filter(pl.col("horizon") == h["horizon"]))["rank_ic"].mean()
        assert got == pytest.approx(max(h["val_rank_ic"]), abs=1e-9)
    # alpha = penalty x rows: 1000 per row shrinks every weight towards 0 (the signal is ~0.5 per unit)
    one = Config().with_overrides(["ridge.penalties=[1000.0]"])
    train_fold(one, market["panel"], None, market["folds"], 0, "ridge", tmp_path / "big")
    coef = json.loads((tmp_path / "big" / "ridge.json").read_text())["horizons"][1]["coef"]
    assert max(abs(c) for c in coef) < 1e-3


def test_training_rows_are_sampled_by_whole_dates(market):
    panel = load_panel(market["panel"])
    days = fold_days(read_fold(market["folds"], 0), panel.dates)["train"]
    cfg = Config().with_overrides(["lightgbm.max_train_rows=500"])
    t, s = _lgb_rows(cfg, panel, days)
    assert 0 < len(t) <= 500
    kept = np.unique(t)
    assert len(t) == int(np.asarray(panel.valid[kept]).sum())  # every kept date whole
    assert len(kept) < len(days)
