"""correlations: the rolling sums against a from-scratch rho, and the rolling graph against the reference's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from kabuflow.benchmarks.graph import real_shaped_returns
from kabuflow.config import GraphConfig
from kabuflow.correlations import RollingCorr, correlations, pairwise_corr
from kabuflow.graph import build


def _gappy(t: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = 0.01 * (rng.normal(size=(t, 2)) @ rng.normal(size=(2, n)) + rng.normal(size=(t, n)))
    r[rng.random((t, n)) < 0.15] = np.nan
    r[: t // 3, 3] = np.nan  # a late listing
    r[t // 2 : t // 2 + 40, 5] = 0.0  # halted: constant on its own
    return r


def test_rolling_rho_is_the_from_scratch_rho_after_2000_steps():
    """Session by session through 2,000 sessions with a 60-session window: every rho still within
    1e-6 of a float64 recomputation over the window (float32 output: ~6e-8), NaN exactly where it is."""
    r, w = _gappy(2000, 9, 0), 60
    roll = RollingCorr(9, tile=4)  # 3 x 3 tiles, the last one partial
    valid = np.ones(9, bool)
    for t in range(2000):
        rho, score = roll.step(r[t : t + 1], r[t - w : t - w + 1] if t >= w else r[:0], valid, 20)
        if t in (59, 997, 1999):
            want = pairwise_corr(torch.from_numpy(r[max(0, t - w + 1) : t + 1]), 20).numpy()
            np.testing.assert_array_equal(np.isnan(rho.numpy()), np.isnan(want))
            assert np.nanmax(np.abs(rho.numpy() - want)) < 1e-6
            np.testing.assert_array_equal(score.numpy(), np.nan_to_num(np.abs(rho.numpy()), nan=-1.0))
            assert np.isfinite(want).sum() > 40


def test_tiles_threads_and_invalid_columns_do_not_change_rho():
    r = _gappy(200, 11, 1)
    valid = np.ones(11, bool)
    valid[[2, 8]] = False
    one = RollingCorr(11, threads=1).step(r[:150], r[:0], valid, 30)[0]
    tiled, score = RollingCorr(11, threads=2, tile=3).step(r[:150], r[:0], valid, 30, scale=0.5)
    np.testing.assert_array_equal(score.numpy(), np.nan_to_num(np.abs(tiled.numpy()), nan=-1.0))
    tiled = tiled / 0.5
    np.testing.assert_array_equal(tiled.numpy(), one.numpy())
    assert np.isnan(one.numpy()[2]).all() and np.isnan(one.numpy()[:, 8]).all()
    want = pairwise_corr(torch.from_numpy(r[:150]), 30).numpy()
    keep = np.flatnonzero(valid)
    np.testing.assert_allclose(one.numpy()[np.ix_(keep, keep)], want[np.ix_(keep, keep)], atol=1e-6)


@pytest.mark.parametrize(("window", "every"), [(50, 7), (4, 10)])
def test_rolling_and_reference_recomputes_agree(window, every):
    """every > window: sessions that would enter and leave within one step are never added at all."""
    r = _gappy(120, 8, 2)
    valid = np.random.default_rng(3).random((120, 8)) > 0.1
    g = dataclasses.replace(GraphConfig(), window=window, min_obs=min(window, 20), every=every)
    pairs = zip(correlations(r, valid, g, "rolling"), correlations(r, valid, g, "reference"), strict=True)
    for (t, nodes, rho, _), (t_ref, ref_nodes, ref, _) in pairs:
        assert t == t_ref and t % every == 0
        np.testing.assert_array_equal(nodes[valid[t]], ref_nodes)
        sub = rho.numpy()[np.ix_(ref_nodes, ref_nodes)]
        np.testing.assert_array_equal(np.isnan(sub), np.isnan(ref.numpy()))
        assert np.nanmax(np.abs(sub - ref.numpy()), initial=0.0) < 2e-6
    with pytest.raises(ValueError, match="method"):
        next(correlations(r, valid, g, "recompute"))


def test_rolling_graph_has_the_reference_edges_on_real_shaped_data(tmp_path):
    """240 codes x 500 sessions with real gaps and late listings, sector residuals, the default top 7
    above 0.25 every 5 sessions over 300: the same edges on every date, rho within float32 rounding."""
    r, valid, sector, market = real_shaped_returns(500, 240, seed=4)
    assert (~valid[-300:]).any(axis=0).mean() > 0.7  # most codes take the masked path
    g = dataclasses.replace(GraphConfig(), window=300)
    (tmp_path / "rolling").mkdir(), (tmp_path / "reference").mkdir()
    got = build(r, valid, sector, market, g, tmp_path / "rolling", method="rolling")
    ref = build(r, valid, sector, market, g, tmp_path / "reference", method="reference")
    np.testing.assert_array_equal(got, ref)
    load = lambda d, f: np.load(tmp_path / d / f"{f}.npy")  # noqa: E731
    np.testing.assert_array_equal(load("rolling", "edge_index"), load("reference", "edge_index"))
    np.testing.assert_allclose(load("rolling", "edge_attr"), load("reference", "edge_attr"), atol=2e-6)
    assert got[-1] > 50_000
