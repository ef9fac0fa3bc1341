"""The mean-vs-rank trap on the embedded market: a baseline fitted to per-date z-scores with L2 (the
mean) must not beat the same baseline fitted to per-date ranks, scored by RankIC on raw labels.

The synthetic market plants what jpx-2463 shows (issue #12): right-skewed idiosyncratic shocks whose
skew grows with volatility and a lottery premium paid in that tail, so volatile stocks' mean return
rises while their median falls, plus a low-risk signal. A mean-fitting model leans towards volatile
stocks; the rank metric rewards the opposite.
"""

from __future__ import annotations

import pytest

from kabuflow.config import Config
from kabuflow.features import features
from kabuflow.folds import build_folds, read_folds
from kabuflow.ingest import ingest
from kabuflow.normalize import normalize
from kabuflow.train import train_fold

MARKET = ["synthetic.n_stocks=300", "synthetic.start=2017-01-04", "synthetic.end=2021-12-28"]


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    root = tmp_path_factory.mktemp("trap")
    cfg = Config().with_overrides(MARKET)
    ingest(cfg, root / "raw")
    features(cfg, root / "raw", root / "features")
    normalize(cfg, root / "features", root / "panel")
    build_folds(cfg, root / "panel", root / "folds.json")
    return root


def _test_rank_ic(root, target: str) -> float:
    cfg = Config().with_overrides([*MARKET, f"train.target={target}", "lightgbm.objective=l2"])
    n_folds = len(read_folds(root / "folds.json"))
    got = [
        train_fold(cfg, root / "panel", None, root / "folds.json", k, "ridge", root / f"{target}{k}")
        for k in range(n_folds)
    ]
    return sum(m["metrics"]["test_rank_ic_5d"] for m in got) / len(got)


def test_z_fitted_ridge_does_not_beat_rank_fitted_ridge(panel):
    z, rank = _test_rank_ic(panel, "z"), _test_rank_ic(panel, "rank")
    assert rank > 0.03  # both find the planted signals
    assert z <= rank, f"z/L2 ridge {z:.4f} beat the rank ridge {rank:.4f} on the skewed market"
