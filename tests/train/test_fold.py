"""train-fold for ATFT: outputs and schema, exact resume after a kill, leakage, day batches, loading and predicting."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest
import torch
from tiny_market import TINY_ATFT, make_market
from torch import nn

from kabuflow import schema
from kabuflow.config import Config
from kabuflow.folds import fold_days, read_fold
from kabuflow.graph import load_graph
from kabuflow.manifest import partial_dir, seal
from kabuflow.normalize import load_panel
from kabuflow.predict import load_model, predict_dates
from kabuflow.train import train_fold
from kabuflow.train.checkpoint import FitState
from kabuflow.train.days import DayData
from kabuflow.train.loop import _end_epoch, fit_atft
from kabuflow.train.targets import with_target

# TINY_ATFT with one GAT layer and an 8-day lookback (later overrides win over its 6).
TINY = [
    *TINY_ATFT,
    "model.gat_layers=1",
    "model.lookback=8",
    "train.epochs=2",
    "train.warmup_steps=5",
    "train.threads=1",
    "train.days_per_epoch=30",
]


class Killed(RuntimeError):
    """Stands in for a preempted pod."""


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return make_market(tmp_path_factory.mktemp("market"))


def _cfg(*extra: str) -> Config:
    return Config().with_overrides([*TINY, *extra])


def _fold0(m: dict, cfg: Config) -> tuple:
    """(panel, fold 0's day indices, its DayData up to the last validation date) of a tiny market, with
    Y the target train-fold fits under cfg."""
    panel = with_target(load_panel(m["panel"]), cfg.train.target, cfg.normalize.clip)
    graph = load_graph(m["graph"])
    days = fold_days(read_fold(m["folds"], 0), panel.dates)
    return panel, days, DayData(panel, graph, int(days["val"][-1]), torch.device("cpu"))


def _kill(epoch: int, score: float) -> None:
    raise Killed(f"preempted after epoch {epoch}")


def _weights(out) -> dict[str, torch.Tensor]:
    return torch.load(out / "model.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def trained(market, tmp_path_factory):
    out = tmp_path_factory.mktemp("atft")
    manifest = train_fold(_cfg(), market["panel"], market["graph"], market["folds"], 0, "atft", out)
    return out, manifest


def test_outputs_schema_and_coverage(trained, market):
    out, manifest = trained
    pred = schema.check(pl.read_parquet(out / "predictions.parquet"), schema.PREDICTIONS, "predictions")
    panel = load_panel(market["panel"])
    days = fold_days(read_fold(market["folds"], 0), panel.dates)
    for split in ("val", "test"):
        part = pred.filter(pl.col("split") == split)
        want = {panel.dates[t] for t in days[split]}
        assert set(part["date"].unique()) == want  # every date of the split, nothing else
        t = days[split][0]
        first = part.filter((pl.col("date") == panel.dates[t]) & (pl.col("horizon") == 5))
        assert first.height == int(panel.valid[t].sum())  # every valid stock of the day
    assert set(pred["horizon"].unique()) == {1, 5, 10, 20}
    assert (pred["score"] == pred["q50"]).all()
    assert (pred["q10"] <= pred["q25"]).all() and (pred["q75"] <= pred["q90"]).all()
    row = pred.filter(pl.col("label").is_not_null()).row(0, named=True)
    t, s = panel.meta["dates"].index(row["date"].isoformat()), panel.codes.index(row["code"])
    assert row["label"] == pytest.approx(float(panel.Y_raw[t, s, panel.horizons.index(row["horizon"])]))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 0
    assert metrics["epochs_run"] == 2 and len(json.loads((out / "history.json").read_text())) == 2
    assert metrics["splits"]["test"]["5d"]["rank_ic"] > 0.3  # the planted signal is strong
    assert manifest["metrics"]["test_rank_ic_5d"] == pytest.approx(metrics["splits"]["test"]["5d"]["rank_ic"])
    assert not (out / "checkpoint.pt").exists()


def test_vsn_weights_are_written_per_feature(trained, market):
    out, _ = trained
    w = json.loads((out / "vsn_weights.json").read_text())
    assert set(w) == set(load_panel(market["panel"]).feature_names)
    assert sum(w.values()) == pytest.approx(1.0, abs=1e-5) and min(w.values()) > 0


def test_model_file_loads_and_predicts_live(trained, market):
    out, _ = trained
    blob = torch.load(out / "model.pt", weights_only=True)
    assert {"state_dict", "config", "model_config", "feature_names", "code_version"} <= set(blob)
    model, meta = load_model(out)
    assert meta["feature_names"] == load_panel(market["panel"]).feature_names
    pred = pl.read_parquet(out / "predictions.parquet").filter(pl.col("split") == "test")
    day = pred["date"].max()
    live = predict_dates(out, market["panel"], market["graph"], [day])
    assert set(live["split"]) == {"live"} and live["label"].null_count() == live.height
    both = live.join(pred, on=["date", "code", "horizon"], suffix="_test")
    assert both.height == live.height
    assert np.allclose(both["score"], both["score_test"], atol=1e-5)
    with pytest.raises(ValueError, match="not in the panel"):
        predict_dates(out, market["panel"], market["graph"], [dt.date(1999, 1, 4)])


@pytest.mark.parametrize("extra", [("train.patience=1",), ("train.ema_decay=0.9", "train.patience=0")])
def test_resume_after_kill_gives_identical_weights(trained, market, tmp_path, extra):
    """Kill after epoch 1 of 2, rerun train-fold in the same directory: same weights as uninterrupted
    (with early stopping's best weights, and with weight averaging: their state travels in the checkpoint)."""
    cfg = _cfg(*extra)
    panel, days, data = _fold0(market, cfg)

    out = tmp_path / "out"
    ckpt = partial_dir(out) / "checkpoint.pt"  # where train-fold keeps its checkpoints until it publishes
    with pytest.raises(Killed):
        fit_atft(cfg, data, days, ckpt, fold=0, on_epoch_end=_kill)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    train_fold(cfg, panel, market["graph"], market["folds"], 0, "atft", out)
    assert json.loads((out / "metrics.json").read_text())["resumed_from_epoch"] == 1
    assert not partial_dir(out).exists()
    straight_dir = tmp_path / "straight"
    train_fold(cfg, panel, market["graph"], market["folds"], 0, "atft", straight_dir)
    resumed, straight = _weights(out), _weights(straight_dir)
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    """Validation 0.10, 0.20, 0.15, 0.12 with patience 2: best epoch 1 (its weights), stop after epoch 3."""
    model, st = nn.Linear(1, 1), FitState()
    for epoch, score in enumerate([0.10, 0.20, 0.15, 0.12]):
        with torch.no_grad():
            model.weight.fill_(epoch)
        assert not st.stopped
        _end_epoch(st, score, model, patience=2)
    assert st.stopped and st.best_epoch == 1 and st.best_score == 0.20 and st.epoch == 4
    assert float(st.best_state["weight"]) == 1.0
    off = FitState()
    for score in [0.3, 0.2, 0.1, 0.0]:
        _end_epoch(off, score, model, patience=0)
    assert not off.stopped and off.best_epoch == 0  # patience 0: never stops (the caller keeps the last)


def test_no_leakage_from_dates_after_train_end(market, tmp_path):
    """Scramble everything dated after the train end: one epoch without early stopping, same weights."""
    cfg = _cfg("train.epochs=1", "train.patience=0")
    panel = load_panel(market["panel"])
    days = fold_days(read_fold(market["folds"], 0), panel.dates)
    cut = int(days["train"][-1]) + 1
    moved = tmp_path / "moved"
    (moved / "panel").mkdir(parents=True)
    rng = np.random.default_rng(9)
    for name in ("X", "Y", "Y_raw", "R"):
        arr = np.load(market["panel"] / f"{name}.npy").copy()
        arr[cut:] = rng.standard_normal(arr[cut:].shape) * 10
        np.save(moved / "panel" / f"{name}.npy", arr)
    for name in ("valid", "sector", "market", "meta.json"):
        suffix = "" if name.endswith(".json") else ".npy"
        (moved / "panel" / f"{name}{suffix}").write_bytes((market["panel"] / f"{name}{suffix}").read_bytes())
    graph = load_graph(market["graph"])
    attr = np.array(graph.edge_attr)
    attr[graph.offsets[cut] :] = rng.random(attr[graph.offsets[cut] :].shape)
    (moved / "graph").mkdir()
    np.save(moved / "graph" / "edge_index.npy", np.array(graph.edge_index))
    np.save(moved / "graph" / "edge_attr.npy", attr.astype(np.float32))
    np.save(moved / "graph" / "offsets.npy", np.array(graph.offsets))
    seal(moved / "panel", "normalize")
    seal(moved / "graph", "graph")
    train_fold(cfg, market["panel"], market["graph"], market["folds"], 0, "atft", tmp_path / "a")
    train_fold(cfg, moved / "panel", moved / "graph", market["folds"], 0, "atft", tmp_path / "b")
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    pa, pb = (pl.read_parquet(tmp_path / d / "predictions.parquet") for d in ("a", "b"))
    assert not pa["score"].equals(pb["score"])  # the perturbation was real: predictions after the cut move


def test_day_batch_window_edges_and_shuffle(market):
    panel, graph = load_panel(market["panel"]), load_graph(market["graph"])
    data = DayData(panel, graph, 50, torch.device("cpu"))
    idx = data.stocks(40, max_stocks=10, gen=torch.Generator().manual_seed(0))
    assert len(idx) == 10 and bool(panel.valid[40, idx.numpy()].all())
    b = data.day(40, 8, idx)
    assert torch.equal(b.x, torch.from_numpy(np.array(panel.X[33:41, idx.numpy()])).permute(1, 0, 2))
    early = data.day(3, 8, idx)
    assert early.x.shape == (10, 8, 6) and early.x[:, :4].abs().sum() == 0  # before the panel: zeros
    ei = graph.edge_index[:, graph.offsets[40] : graph.offsets[41]]
    chosen = set(idx.tolist())
    want = {(s, d) for s, d in ei.T.tolist() if s in chosen and d in chosen}
    got = {(idx[s].item(), idx[d].item()) for s, d in b.edge_index.T.tolist()}
    assert got == want
    shuffled = data.day(40, 8, idx, shuffle_gen=torch.Generator().manual_seed(1))
    assert not torch.equal(shuffled.y.nan_to_num(), b.y.nan_to_num())
    assert sorted(shuffled.y[:, 1].nan_to_num().tolist()) == sorted(b.y[:, 1].nan_to_num().tolist())
    with pytest.raises(AssertionError, match="outside the data"):
        data.day(51, 8, idx)


def test_bad_model_and_fold_are_errors(market, tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        train_fold(_cfg(), market["panel"], market["graph"], market["folds"], 0, "xgboost", tmp_path)
    with pytest.raises(ValueError, match="fold 3 not in folds"):
        train_fold(_cfg(), market["panel"], market["graph"], market["folds"], 3, "ridge", tmp_path)


def test_graph_required_when_the_model_uses_one(market, tmp_path):
    with pytest.raises(ValueError, match="no graph was given"):
        train_fold(_cfg(), market["panel"], None, market["folds"], 0, "atft", tmp_path)


def test_benchmark_measures_a_tiny_run():
    from kabuflow.benchmarks.train import measure

    got = measure(_cfg("train.max_stocks_per_day=8"), n_stocks=12, n_days=4, device=torch.device("cpu"))
    assert (
        got["stocks_per_day"] == 8 and got["train_stock_days_per_s"] > 0 and got["score_stock_days_per_s"] > 0
    )


def test_ensemble_is_the_mean_of_its_members_and_resumes_inside_a_member(market, tmp_path):
    """members=2 trains seeds 2s and 2s+1 one after another: its predictions are the mean of those two
    single models', model.pt loads as the ensemble, and a kill inside member 1 resumes there."""
    from kabuflow.model.atft_gat_fan import Ensemble
    from kabuflow.train.fold import member_config

    cfg = _cfg("model.members=2", "train.seed=1")
    panel, days, data = _fold0(market, cfg)

    out, ckpts = tmp_path / "out", partial_dir(tmp_path / "out")
    fit_atft(member_config(cfg, 0), data, days, ckpts / "checkpoint.pt", fold=0)  # member 0 done
    with pytest.raises(Killed):  # member 1 killed after its first epoch
        fit_atft(member_config(cfg, 1), data, days, ckpts / "checkpoint.m1.pt", fold=0, on_epoch_end=_kill)
    train_fold(cfg, panel, market["graph"], market["folds"], 0, "atft", out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["members"] == 2 and metrics["resumed_from_epoch"] == [2, 1]
    assert not list(out.glob("checkpoint*"))
    singles = []
    for seed in (2, 3):
        one = tmp_path / f"seed{seed}"
        train_fold(_cfg(f"train.seed={seed}"), panel, market["graph"], market["folds"], 0, "atft", one)
        singles.append(pl.read_parquet(one / "predictions.parquet"))
    ens = pl.read_parquet(out / "predictions.parquet")
    mean = (singles[0]["score"].to_numpy() + singles[1]["score"].to_numpy()) / 2
    assert (ens["code"] == singles[0]["code"]).all() and (ens["date"] == singles[0]["date"]).all()
    np.testing.assert_allclose(ens["score"].to_numpy(), mean, atol=1e-5)
    assert np.abs(singles[0]["score"].to_numpy() - singles[1]["score"].to_numpy()).max() > 1e-2
    model, _ = load_model(out)
    assert isinstance(model, Ensemble) and len(model.members) == 2
    with pytest.raises(ValueError, match="model.members"):
        train_fold(
            _cfg("model.members=0"), panel, market["graph"], market["folds"], 0, "atft", tmp_path / "z"
        )


def test_lineage_is_checked_where_panel_graph_and_folds_meet(market, tmp_path):
    """A graph built from another panel is refused before any training; so is a checkpoint left by a
    run on other data (same shapes, same config: before, it resumed as if it were this run's)."""
    from kabuflow.graph import graph as graph_stage
    from kabuflow.manifest import ArtifactError

    other = make_market(tmp_path / "other", seed=1)
    cfg = _cfg("graph.window=30", "graph.min_obs=20")
    graph_stage(cfg, other["panel"], tmp_path / "other_graph")
    with pytest.raises(ArtifactError, match="lineage mismatch: .*graph .* come from different normalize"):
        train_fold(
            cfg, market["panel"], tmp_path / "other_graph", market["folds"], 0, "ridge", tmp_path / "r"
        )
    assert not (tmp_path / "r").exists()

    _, days, data = _fold0(other, _cfg())

    out = tmp_path / "atft"
    with pytest.raises(Killed):  # the other data's run, killed after epoch 1 of 2 in this directory
        fit_atft(_cfg(), data, days, partial_dir(out) / "checkpoint.pt", fold=0, on_epoch_end=_kill)
    with pytest.raises(RuntimeError, match="different config, fold or data"):
        train_fold(_cfg(), market["panel"], market["graph"], market["folds"], 0, "atft", out)
    # evaluate: every prediction set must come from the same panel and folds
    from kabuflow.evaluate import evaluate

    train_fold(_cfg(), market["panel"], None, market["folds"], 0, "ridge", tmp_path / "ridge_a")
    train_fold(_cfg(), other["panel"], None, other["folds"], 0, "reversal_5d", tmp_path / "rev_b")
    with pytest.raises(ArtifactError, match="lineage mismatch: predictions.* come from different normalize"):
        evaluate(_cfg(), [tmp_path / "ridge_a", tmp_path / "rev_b"], tmp_path / "evaluate")
    assert not (tmp_path / "evaluate").exists()


def test_fold_metrics_follow_the_evaluation_rules():
    """split_metrics is evaluate.metrics.daily_ic averaged per split: a constant-score day counts as 0."""
    from kabuflow.train.predictions import split_metrics

    days = [dt.date(2024, 1, d) for d in (4, 5, 9)]
    score = {days[0]: [1.0, 2.0, 3.0], days[1]: [5.0, 5.0, 5.0], days[2]: [3.0, 2.0, 1.0]}
    rows = [
        {
            "date": d,
            "code": c,
            "model": "atft",
            "fold": 0,
            "split": "test" if d == days[2] else "val",
            "horizon": 1,
            "score": score[d][i],
            "label": float(i + 1),
        }
        for d in days
        for i, c in enumerate(("A", "B", "C"))
    ]
    got = split_metrics(pl.DataFrame(rows))
    # val: RankIC 1 on the 4th, 0 (not missing) on the constant 5th; test: -1 on the 9th.
    assert got["val"]["1d"] == {"rank_ic": 0.5, "ic": 0.5, "n_days": 2}
    assert got["test"]["1d"] == {"rank_ic": -1.0, "ic": -1.0, "n_days": 1}
