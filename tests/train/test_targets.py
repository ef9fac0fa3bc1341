"""Training targets (train.target): each transform on a hand-computed day, and train-fold fitting it."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_market import make_market

from kabuflow.config import Config
from kabuflow.normalize import load_panel
from kabuflow.train import train_fold
from kabuflow.train.targets import train_target, with_target

# One date, four stocks, one horizon; the fourth stock is not valid that day.
Y_RAW = np.array([[[0.03], [-0.01], [0.02], [0.05]]], dtype=np.float32)  # [T=1, N=4, H=1]
VALID = np.array([[True, True, True, False]])


def test_rank_target_is_the_gaussianised_rank():
    # ranks 3, 1, 2 of n = 3: Phi^-1(5/6), Phi^-1(1/6), Phi^-1(3/6)
    got = train_target(Y_RAW, VALID, "rank", clip=5.0)[0, :, 0]
    np.testing.assert_allclose(got[:3], [0.967422, -0.967422, 0.0], atol=1e-5)
    assert np.isnan(got[3])


def test_z_target_is_the_per_date_z_score():
    # mean 0.013333, sd (ddof 1) sqrt(8.6667e-4 / 2) = 0.020817
    got = train_target(Y_RAW, VALID, "z", clip=5.0)[0, :, 0]
    np.testing.assert_allclose(got[:3], [0.800641, -1.120897, 0.320256], atol=1e-5)
    assert np.isnan(got[3])


def test_raw_target_is_the_label_where_valid():
    got = train_target(Y_RAW, VALID, "raw", clip=5.0)[0, :, 0]
    np.testing.assert_allclose(got[:3], [0.03, -0.01, 0.02])
    assert np.isnan(got[3])


def test_rank_target_ties_and_missing_labels():
    y = np.array([[[0.01], [0.01], [np.nan], [0.02]]], dtype=np.float32)
    got = train_target(y, np.ones((1, 4), bool), "rank", clip=5.0)[0, :, 0]
    # average ranks 1.5, 1.5, 3 of n = 3: Phi^-1(1/3) twice, Phi^-1(5/6)
    np.testing.assert_allclose(got[[0, 1, 3]], [-0.430727, -0.430727, 0.967422], atol=1e-5)
    assert np.isnan(got[2])


def test_unknown_target_names_the_setting():
    with pytest.raises(ValueError, match="train.target must be one of rank, z, raw"):
        train_target(Y_RAW, VALID, "zscore", clip=5.0)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return make_market(tmp_path_factory.mktemp("market"), t=160, n=30)


def test_with_target_keeps_the_raw_labels(market):
    panel = load_panel(market["panel"])
    ranked = with_target(panel, "rank", 5.0)
    assert ranked.Y_raw is panel.Y_raw
    t = 10
    order = np.argsort(np.argsort(panel.Y_raw[t, panel.valid[t], 1]))
    assert np.array_equal(np.argsort(np.argsort(ranked.Y[t, panel.valid[t], 1])), order)


@pytest.mark.parametrize(
    ("target", "objective"), [("rank", "l2"), ("z", "l1"), ("raw", "l2"), ("rank", "lambdarank")]
)
def test_lightgbm_fits_every_target_and_objective(market, tmp_path, target, objective):
    cfg = Config().with_overrides(
        [
            f"train.target={target}",
            f"lightgbm.objective={objective}",
            "lightgbm.min_child_samples=20",
            "lightgbm.n_estimators=60",
            "lightgbm.min_rounds=10",
            "lightgbm.early_stopping_rounds=10",
        ]
    )
    manifest = train_fold(cfg, market["panel"], None, market["folds"], 0, "lightgbm", tmp_path)
    assert manifest["metrics"]["test_rank_ic_5d"] > 0.3  # the planted signal, on the raw label
