"""hpo: a few tiny Optuna trials on SQLite, a resumable study, and test dates that are never read."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tiny_market import make_market

from kabuflow.config import Config
from kabuflow.manifest import seal
from kabuflow.train.hpo import run_hpo
from kabuflow.train.study import redact

TINY = [
    "model.hidden=16",
    "model.heads=2",
    "model.gat_heads=2",
    "model.lookback=6",
    "train.device=cpu",
    "train.threads=1",
    "train.days_per_epoch=12",
    "train.warmup_steps=2",
    "hpo.epochs=2",
]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return make_market(tmp_path_factory.mktemp("market"), t=90, n=16)


def test_study_on_sqlite_writes_best_params(market, tmp_path):
    cfg = Config().with_overrides(TINY)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_hpo(cfg, market["panel"], market["graph"], market["folds"], 2, storage, tmp_path)
    saved = json.loads((tmp_path / "hpo.json").read_text())
    assert saved["n_trials"] == 2 and saved["n_complete"] + saved["n_pruned"] == 2
    assert set(saved["best_params"]) == set(cfg.hpo.space)
    assert saved["best_value"] == result["best_value"] and -1 <= result["best_value"] <= 1
    best = cfg.with_params(saved["best_params"])  # typed values of real settings
    assert best.train.lr == saved["best_params"]["train.lr"] and 3e-4 <= best.train.lr <= 5e-3
    again = run_hpo(cfg, market["panel"], market["graph"], market["folds"], 1, storage, tmp_path)
    assert again["n_trials"] == 3  # the same study continues: the count the deflated Sharpe needs


def test_test_dates_never_influence_the_study(market, tmp_path):
    """Scramble everything from the first test date on: every trial's value is unchanged."""
    cfg = Config().with_overrides([*TINY, "hpo.study=leak"])
    moved = tmp_path / "panel"
    shutil.copytree(market["panel"], moved)
    test_start = json.loads(market["folds"].read_text())[0]["test_start"]
    cut = json.loads((moved / "meta.json").read_text())["dates"].index(test_start)
    for name in ("X", "Y", "Y_raw"):
        arr = np.load(moved / f"{name}.npy")
        arr[cut:] = 100.0
        np.save(moved / f"{name}.npy", arr)
    seal(moved, "normalize")  # another panel, sealed as one
    a = run_hpo(cfg, market["panel"], market["graph"], market["folds"], 1, "", tmp_path / "a")
    b = run_hpo(cfg, moved, market["graph"], market["folds"], 1, "", tmp_path / "b")
    assert a["best_value"] == b["best_value"] and a["best_params"] == b["best_params"]
    assert (tmp_path / "a" / "optuna.db").exists()  # "" = SQLite beside the output


def test_redact_hides_the_password():
    assert redact("postgresql://kabu:s3cret@db:5432/optuna") == "postgresql://kabu:***@db:5432/optuna"
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
