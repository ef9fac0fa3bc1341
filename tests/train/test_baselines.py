"""Baselines through train-fold: planted signal found, closed-form ridge, factor definitions, no leakage."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
from tiny_market import make_market

from kabuflow import schema
from kabuflow.config import Config
from kabuflow.manifest import seal
from kabuflow.normalize import load_panel
from kabuflow.train import train_fold
from kabuflow.train.baselines import _fit_ridge, factor_feature

CFG = Config().with_overrides(
    ["lightgbm.min_child_samples=20", "lightgbm.n_estimators=60", "train.threads=1"]
)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return make_market(tmp_path_factory.mktemp("market"), t=160, n=30)


@pytest.mark.parametrize("model", ["lightgbm", "ridge", "reversal_5d", "momentum_60d"])
def test_baseline_finds_planted_signal(market, tmp_path, model):
    manifest = train_fold(CFG, market["panel"], None, market["folds"], 0, model, tmp_path)
    pred = schema.check(pl.read_parquet(tmp_path / "predictions.parquet"), schema.PREDICTIONS, "predictions")
    assert set(pred["split"]) == {"val", "test"} and set(pred["model"]) == {model}
    assert pred["q50"].null_count() == pred.height  # baselines give no quantiles
    floor = {"lightgbm": 0.3, "ridge": 0.4, "reversal_5d": 0.2, "momentum_60d": 0.1}[model]
    assert manifest["metrics"]["test_rank_ic_5d"] > floor
    assert json.loads((tmp_path / "metrics.json").read_text())["splits"]["val"]["5d"]["n_days"] > 20


def test_factor_scores_are_the_feature(market, tmp_path):
    train_fold(CFG, market["panel"], None, market["folds"], 0, "reversal_5d", tmp_path)
    panel = load_panel(market["panel"])
    row = pl.read_parquet(tmp_path / "predictions.parquet").row(0, named=True)
    t, s = panel.meta["dates"].index(row["date"].isoformat()), panel.codes.index(row["code"])
    assert row["score"] == pytest.approx(-float(panel.X[t, s, panel.feature_names.index("ret_5d")]))


def test_factor_feature_fallback_says_why():
    assert factor_feature(["ret_5d", "ret_60d"], "momentum_60d") == ("ret_60d", "")
    name, note = factor_feature(["ret_5d", "ret_20d", "ret_120d"], "momentum_60d")
    assert name == "ret_20d" and "ret_60d is not among" in note
    with pytest.raises(ValueError, match="needs a ret_<w>d feature"):
        factor_feature(["vol_20d"], "reversal_5d")
    assert factor_feature(["vol_20d", "vol_60d"], "low_vol_60d") == ("vol_60d", "")
    name, note = factor_feature(["vol_5d", "vol_20d", "vol_of_vol_20d"], "low_vol_60d")
    assert name == "vol_20d" and "vol_60d is not among" in note


def test_low_vol_scores_minus_the_60_day_volatility(market, tmp_path):
    """low_vol_60d = -vol_60d: the tiny panel's f_noise column renamed vol_60d stands in for it."""
    moved = tmp_path / "panel"
    shutil.copytree(market["panel"], moved)
    meta = json.loads((moved / "meta.json").read_text())
    meta["feature_names"] = [("vol_60d" if f == "f_noise" else f) for f in meta["feature_names"]]
    (moved / "meta.json").write_text(json.dumps(meta))
    seal(moved, "normalize")  # the edited panel, sealed as one
    train_fold(CFG, moved, None, market["folds"], 0, "low_vol_60d", tmp_path / "out")
    panel = load_panel(moved)
    pred = pl.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert json.loads((tmp_path / "out" / "factor.json").read_text())["feature"] == "vol_60d"
    for row in pred.head(5).iter_rows(named=True):
        t, s = panel.meta["dates"].index(row["date"].isoformat()), panel.codes.index(row["code"])
        assert row["score"] == pytest.approx(-float(panel.X[t, s, panel.feature_names.index("vol_60d")]))


def test_ridge_closed_form_by_hand():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 3)).astype(np.float32)
    y = 2.0 + x @ np.array([1.0, -0.5, 0.25]) + 0.01 * rng.standard_normal(500)
    beta, b0 = _fit_ridge(x, y, alpha=0.0)
    assert beta == pytest.approx([1.0, -0.5, 0.25], abs=2e-3) and b0 == pytest.approx(2.0, abs=2e-3)
    shrunk, _ = _fit_ridge(x, y, alpha=1e6)
    assert np.abs(shrunk).max() < 0.01  # a huge penalty shrinks to ~0 (the intercept is not penalised)


def _scrambled_copy(market, tmp_path, after: str):
    moved = tmp_path / "panel"
    shutil.copytree(market["panel"], moved)
    end = json.loads(market["folds"].read_text())[0][after]
    cut = json.loads((moved / "meta.json").read_text())["dates"].index(end) + 1
    rng = np.random.default_rng(5)
    for name in ("X", "Y", "Y_raw"):
        arr = np.load(moved / f"{name}.npy")
        arr[cut:] = rng.standard_normal(arr[cut:].shape)
        np.save(moved / f"{name}.npy", arr)
    seal(moved, "normalize")  # another panel, sealed as one
    return moved


def _fitted(path, model):
    if model == "ridge":  # the fit itself; the recorded validation scores may differ
        return [
            (h["penalty"], h["intercept"], h["coef"])
            for h in json.loads((path / "ridge.json").read_text())["horizons"]
        ]
    return [(path / f"lightgbm_{h}d.txt").read_text() for h in (1, 5, 10, 20)]


@pytest.mark.parametrize("model", ["ridge", "lightgbm"])
def test_no_leakage_from_dates_after_train_end(market, tmp_path, model):
    """Scramble X and labels after the train end: the fitted model is identical once nothing is chosen
    on validation (one ridge penalty; LightGBM without early stopping, which reads validation labels)."""
    cfg = CFG.with_overrides(["lightgbm.early_stopping_rounds=0", "ridge.penalties=[0.01]"])
    moved = _scrambled_copy(market, tmp_path, "train_end")
    train_fold(cfg, market["panel"], None, market["folds"], 0, model, tmp_path / "a")
    train_fold(cfg, moved, None, market["folds"], 0, model, tmp_path / "b")
    assert _fitted(tmp_path / "a", model) == _fitted(tmp_path / "b", model)


@pytest.mark.parametrize("model", ["ridge", "lightgbm"])
def test_choices_on_validation_never_read_test_dates(market, tmp_path, model):
    """With the penalty grid and RankIC early stopping on, scrambling every date after the validation
    end leaves the chosen model unchanged."""
    moved = _scrambled_copy(market, tmp_path, "val_end")
    train_fold(CFG, market["panel"], None, market["folds"], 0, model, tmp_path / "a")
    train_fold(CFG, moved, None, market["folds"], 0, model, tmp_path / "b")
    assert _fitted(tmp_path / "a", model) == _fitted(tmp_path / "b", model)
