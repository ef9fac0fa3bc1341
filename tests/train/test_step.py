"""train.step and the sync-free day batches: stacked days, the padded encoder, the deferred finite check."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from tiny_market import TINY_ATFT, make_market

from kabuflow.config import Config
from kabuflow.folds import fold_days, read_fold
from kabuflow.graph import Graph, load_graph
from kabuflow.model.atft_gat_fan import ATFTGATFAN
from kabuflow.model.losses import horizon_weights
from kabuflow.normalize import load_panel
from kabuflow.train.days import DayData
from kabuflow.train.loop import _build, fit_atft, train_epoch
from kabuflow.train.step import padded, step_loss

TINY = [*TINY_ATFT, "train.days_per_epoch=12", "train.warmup_steps=2"]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    make_market(root, t=80, n=16)
    panel, graph = load_panel(root / "panel"), load_graph(root / "graph")
    days = fold_days(read_fold(root / "folds.json", 0), panel.dates)
    return panel, graph, days


def _cfg(*extra: str) -> Config:
    return Config().with_overrides([*TINY, *extra])


def _among_valid(graph: Graph, valid: np.ndarray) -> Graph:
    """The graph stage's contract: a day's edges join stocks valid that day (tiny_market's need not)."""
    day = np.repeat(np.arange(len(graph.offsets) - 1), np.diff(graph.offsets))
    keep = valid[day, graph.edge_index[0]] & valid[day, graph.edge_index[1]]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(day[keep], minlength=len(graph.offsets) - 1))])
    return Graph(graph.edge_index[:, keep], graph.edge_attr[keep], offsets)


def test_whole_day_edges_come_precomputed_and_match_the_renumbered_ones(market):
    panel, graph, _ = market
    graph = _among_valid(graph, panel.valid)
    data = DayData(panel, graph, 70, torch.device("cpu"))
    assert data.local_edges is not None
    for view in (data, data.upto(50)):
        for t in range(view.t_end + 1):
            idx = view.stocks(t)
            np.testing.assert_array_equal(idx.numpy(), np.flatnonzero(panel.valid[t]))
            fast, slow = view.day(t, 6, idx), view.day(t, 6, idx.clone())  # a copy takes the general path
            assert torch.equal(fast.edge_index, slow.edge_index) and torch.equal(
                fast.edge_attr, slow.edge_attr
            )
            assert fast.edge_index.shape[1] == graph.offsets[t + 1] - graph.offsets[t] > 0
    assert int(data.upto(50).local_edges.shape[1]) == int(graph.offsets[51])


def test_an_edge_to_a_stock_invalid_that_day_falls_back_to_filtering(market):
    """tiny_market's graph keeps edges to stocks missing that day: every day is renumbered and filtered."""
    panel, graph, _ = market
    data = DayData(panel, graph, 70, torch.device("cpu"))
    assert data.local_edges is None
    t = 40
    b = data.day(t, 6, data.stocks(t))
    ei = graph.edge_index[:, graph.offsets[t] : graph.offsets[t + 1]]
    ok = panel.valid[t][ei].all(0)
    assert b.edge_index.shape[1] == int(ok.sum()) < ei.shape[1]


def test_stacked_days_give_the_per_day_loss_and_gradients(market):
    """No dropout: one forward over 3 disjoint days equals 3 forwards, loss and every gradient."""
    panel, graph, days = market
    data = DayData(panel, graph, int(days["val"][-1]), torch.device("cpu"))
    step = days["train"][[3, 9, 20]]
    grads = []
    for stack in ("false", "true"):
        cfg = _cfg("model.dropout=0.0", f"train.stack_days={stack}", "train.days_per_step=3")
        torch.manual_seed(0)
        model = ATFTGATFAN(cfg.model, panel.X.shape[2], 4)
        loss, n = step_loss(
            model, data, step, cfg, 0, horizon_weights(cfg.train.horizon_weights, 4, data.device)
        )
        loss.backward()
        grads.append((float(loss), n, [p.grad.clone() for p in model.parameters()]))
    (l0, n0, g0), (l1, n1, g1) = grads
    assert n0 == n1 == int(panel.valid[step].sum())
    assert l1 == pytest.approx(l0, rel=1e-5) and np.isfinite(l0)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(g0, g1, strict=True))


def test_padded_encoder_cuts_the_padding_off():
    cfg = _cfg()
    model = ATFTGATFAN(cfg.model, 6, 4).eval()
    x = torch.randn(13, 6, 6)
    calls = []

    def encode(x):
        calls.append(x.shape[0])
        return model.encode(x)

    with torch.no_grad():
        h, aux = padded(encode, 8)(x)
        want, want_aux = model.encode(x)
    assert calls == [16] and h.shape == (13, 16)
    torch.testing.assert_close(h, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(aux["attention"], want_aux["attention"], atol=1e-6, rtol=1e-5)


def _poisoned(market, t_bad):
    panel, graph, days = market
    x = np.array(panel.X)
    x[t_bad] = np.inf  # every stock's input that day: that day's loss is NaN
    return DayData(dataclasses.replace(panel, X=x), graph, int(days["val"][-1]), torch.device("cpu")), days


@pytest.mark.parametrize("check_every", [0, 1])
def test_a_non_finite_loss_is_an_error_naming_its_day(market, check_every):
    """The on-device flag: read at the end of the epoch (0) or after every step (1); either way the
    error names the first bad step's days, and with 0 the rest of the epoch's steps still ran."""
    cfg = _cfg(f"train.check_every={check_every}")
    order = np.random.default_rng([cfg.train.seed, 0]).permutation(market[2]["train"])[:12]
    data, days = _poisoned(market, int(order[4]))
    model, opt, sched = _build(cfg, data, days, 0, 1)
    w = horizon_weights(cfg.train.horizon_weights, 4, data.device)
    with pytest.raises(
        FloatingPointError, match=rf"non-finite training loss at epoch 0, days \[{order[4]}\]"
    ):
        train_epoch(model, model, opt, sched, data, days["train"], cfg, 0, w, 0, 1)
    assert sched.last_epoch == (12 if check_every == 0 else 4)  # optimizer steps taken before the stop


def test_bad_step_settings_are_errors(market):
    panel, graph, days = market
    data = DayData(panel, graph, int(days["val"][-1]), torch.device("cpu"))
    with pytest.raises(ValueError, match="train.check_every"):
        _build(_cfg("train.check_every=-1"), data, days, 0, 1)


def test_unread_validations_are_skipped_and_the_weights_do_not_move(market):
    """patience 0, no hook: only the last epoch is validated; validating every epoch changes no weight."""
    panel, graph, days = market
    runs = []
    for every in ("false", "true"):
        cfg = _cfg(
            "train.epochs=2",
            "train.patience=0",
            "train.days_per_epoch=6",
            f"train.validate_every_epoch={every}",
        )
        data = DayData(panel, graph, int(days["val"][-1]), torch.device("cpu"))
        runs.append(fit_atft(cfg, data, days, None))
    skipped, full = runs
    assert [np.isnan(h["val_rank_ic"]) for h in skipped.history] == [True, False]
    assert all(np.isfinite(h["val_rank_ic"]) for h in full.history)
    assert skipped.history[-1]["val_rank_ic"] == full.history[-1]["val_rank_ic"]
    a, b = skipped.model.state_dict(), full.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
