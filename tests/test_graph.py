"""graph: a 6-node graph with known correlations, a naive per-pair reference, CSR layout, leakage."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
import torch

from kabuflow.config import Config, ConfigError
from kabuflow.correlations import pairwise_corr
from kabuflow.graph import graph
from kabuflow.manifest import seal

# Orthogonal zero-mean +-1 Walsh vectors: correlations of their combinations are cosines.
A = np.array([1, -1, 1, -1, 1, -1, 1, -1.0])
B = np.array([1, 1, -1, -1, 1, 1, -1, -1.0])
C = np.array([1, 1, 1, 1, -1, -1, -1, -1.0])
D = np.array([1, -1, -1, 1, 1, -1, -1, 1.0])
KNOWN = 0.01 * np.stack([A, A + 0.5 * B, -A + C, D, D + 0.3 * A, B + C], axis=1)  # [8 sessions, 6 codes]
SECTOR = [0, 0, 1, 1, 0, -1]
MARKET = [0, 0, 0, 1, 1, 1]


def _panel(path, r, valid=None, sector=None, market=None):
    """A hand-written panel dir: only R/valid/sector/market matter to the graph."""
    t, n = r.shape
    path.mkdir(parents=True, exist_ok=True)
    arrays = {
        "X": np.zeros((t, n, 1), np.float32),
        "Y": np.full((t, n, 4), np.nan, np.float32),
        "Y_raw": np.full((t, n, 4), np.nan, np.float32),
        "valid": np.ones((t, n), bool) if valid is None else valid,
        "R": r.astype(np.float32),
        "sector": np.broadcast_to(np.asarray(SECTOR if sector is None else sector, np.int16), (t, n)).copy(),
        "market": np.broadcast_to(np.asarray(MARKET if market is None else market, np.int16), (t, n)).copy(),
    }
    for name, arr in arrays.items():
        np.save(path / f"{name}.npy", arr)
    dates = [(dt.date(2024, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(t)]
    meta = {
        "dates": dates,
        "codes": [f"{1000 + i}0" for i in range(n)],
        "feature_names": ["f"],
        "horizons": [1, 5, 10, 20],
    }
    (path / "meta.json").write_text(json.dumps(meta))
    seal(path, "normalize")
    return path


def _cfg(**over) -> Config:
    base = {
        "window": 8,
        "min_obs": 8,
        "threshold": 0.3,
        "top_k": 1,
        "shrinkage": 0.1,
        "sector_edges": 1,
        "residual": "none",
        "every": 1,
    } | over
    return Config().with_overrides([f"graph.{k}={v}" for k, v in base.items()])


def _load(out):
    return {n: np.load(out / f"{n}.npy") for n in ("edge_index", "edge_attr", "offsets")}


def _pairs(g, t):
    lo, hi = g["offsets"][t], g["offsets"][t + 1]
    return {
        (int(s), int(d)): tuple(g["edge_attr"][e])
        for e, (s, d) in zip(range(lo, hi), g["edge_index"][:, lo:hi].T, strict=True)
    }


def _undirected(pairs):
    assert all((d, s) in pairs for s, d in pairs)  # both directions stored
    return {(s, d) for s, d in pairs if s < d}


def test_known_correlations_edges_attrs_and_offsets(tmp_path):
    manifest = graph(_cfg(), _panel(tmp_path / "p", KNOWN), tmp_path / "g")
    g = _load(tmp_path / "g")
    assert (
        g["edge_index"].dtype == np.int32
        and g["edge_attr"].dtype == np.float32
        and g["offsets"].dtype == np.int64
    )
    # Sessions 0..6 have < min_obs returns: only sector edges (unknown rho: ties go to the lower code).
    np.testing.assert_array_equal(g["offsets"], [0, 6, 12, 18, 24, 30, 36, 42, 54])
    assert _undirected(_pairs(g, 0)) == {(0, 1), (0, 4), (2, 3)}
    assert all(a[0] == 0.0 for a in _pairs(g, 0).values())
    last = _pairs(g, 7)
    # top-1 by |0.9 rho| >= 0.3: 0-1 (.805), 2-0 (-.636), 3-4 (.862), 5-2 (.45); sector: 4-0 (.259), 2-3 (0).
    assert _undirected(last) == {(0, 1), (0, 2), (0, 4), (2, 3), (2, 5), (3, 4)}
    expect = {
        (0, 1): (0.9 / math.sqrt(1.25), 1, 1),
        (0, 2): (-0.9 / math.sqrt(2), 0, 1),
        (0, 4): (0.9 * 0.3 / math.sqrt(1.09), 1, 0),
        (2, 3): (0.0, 1, 0),
        (2, 5): (0.45, 0, 0),
        (3, 4): (0.9 / math.sqrt(1.09), 0, 1),
    }
    for (s, d), attr in expect.items():
        np.testing.assert_allclose(last[(s, d)], attr, atol=1e-6)
        np.testing.assert_allclose(last[(d, s)], attr, atol=1e-6)
    assert manifest["edges"] == 54 and manifest["attrs"] == ["rho", "same_sector", "same_market"]


def test_top_k_two_without_sector_edges(tmp_path):
    graph(_cfg(top_k=2, sector_edges=0), _panel(tmp_path / "p", KNOWN), tmp_path / "g")
    g = _load(tmp_path / "g")
    np.testing.assert_array_equal(g["offsets"], [0] * 8 + [10])
    assert _undirected(_pairs(g, 7)) == {(0, 1), (0, 2), (1, 2), (2, 5), (3, 4)}


def test_invalid_node_is_left_out_and_indices_stay_global(tmp_path):
    valid = np.ones((8, 6), bool)
    valid[7, 3] = False
    graph(_cfg(), _panel(tmp_path / "p", KNOWN, valid=valid), tmp_path / "g")
    # 4's only strong partner (3) is gone and its other |rho| < 0.3; 2 has no valid sector peer.
    assert _undirected(_pairs(_load(tmp_path / "g"), 7)) == {(0, 1), (0, 2), (0, 4), (2, 5)}


def _naive_rho(win, min_obs):
    n = win.shape[1]
    rho = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            both = np.isfinite(win[:, i]) & np.isfinite(win[:, j])
            if i != j and both.sum() >= min_obs and win[both, i].std() > 0 and win[both, j].std() > 0:
                rho[i, j] = np.corrcoef(win[both, i], win[both, j])[0, 1]
    return rho


def _naive_edges(win, sector, market, g):
    rho = _naive_rho(win, g.min_obs) * (1 - g.shrinkage)
    n, chosen = win.shape[1], set()
    for i in range(n):
        cands = sorted((j for j in range(n) if np.isfinite(rho[i, j])), key=lambda j: -abs(rho[i, j]))
        chosen |= {(i, j) for j in cands[: g.top_k] if abs(rho[i, j]) >= g.threshold}
        if sector[i] >= 0:
            peers = [j for j in range(n) if j != i and sector[j] == sector[i]]
            peers.sort(key=lambda j: (-(rho[i, j] if np.isfinite(rho[i, j]) else -2.0), j))
            chosen |= {(i, j) for j in peers[: g.sector_edges]}
    chosen |= {(j, i) for i, j in chosen}
    attr = lambda i, j: (np.nan_to_num(rho[i, j]), sector[i] == sector[j] >= 0, market[i] == market[j] >= 0)  # noqa: E731
    return {(i, j): attr(i, j) for i, j in chosen}


def _random_panel(seed, t=40, n=12):
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=(t, 3))
    r = 0.01 * (factor @ rng.normal(size=(3, n)) + rng.normal(size=(t, n)))
    r[rng.random((t, n)) < 0.1] = np.nan
    r[:20, 4] = np.nan  # a late listing
    r[5:25, 7] = 0.0  # halted: constant returns
    valid = rng.random((t, n)) > 0.1
    sector = rng.integers(-1, 3, size=(t, n)).astype(np.int16)
    market = rng.integers(-1, 2, size=(t, n)).astype(np.int16)
    return r, valid, sector, market


def test_pairwise_corr_matches_per_pair_reference():
    r, *_ = _random_panel(0)
    win = r[5:25]
    got = pairwise_corr(torch.from_numpy(win), min_obs=12).numpy()
    np.testing.assert_allclose(got, _naive_rho(win, 12), atol=1e-10)
    got32 = pairwise_corr(torch.from_numpy(win.astype(np.float32)), min_obs=12).numpy()
    np.testing.assert_allclose(got32, _naive_rho(win, 12), atol=2e-6)
    assert np.isnan(got[7]).all() and np.isnan(got[4]).all()  # constant series; too few sessions


def test_graph_matches_naive_reference_on_random_panel(tmp_path):
    r, valid, sector, market = _random_panel(1)
    cfg = _cfg(window=15, min_obs=10, threshold=0.2, top_k=3, sector_edges=2)
    graph(cfg, _panel(tmp_path / "p", r, valid, sector, market), tmp_path / "g")
    g, gc = _load(tmp_path / "g"), cfg.graph
    r32 = r.astype(np.float32).astype(np.float64)
    for t in range(r.shape[0]):
        nodes = np.flatnonzero(valid[t])
        ref = _naive_edges(r32[max(0, t - 14) : t + 1][:, nodes], sector[t, nodes], market[t, nodes], gc)
        ref = {(int(nodes[i]), int(nodes[j])): a for (i, j), a in ref.items()}
        got = _pairs(g, t)
        assert set(got) == set(ref), t
        for key, attr in ref.items():
            np.testing.assert_allclose(got[key], np.asarray(attr, float), atol=1e-6)
    assert g["offsets"][-1] > 500


def test_market_residual_finds_peers_the_market_factor_hides(tmp_path):
    """Pairs (0,1), (2,3), (4,5) share A, B, C under a market factor 5D: raw rho is 25/26 for every pair
    across groups too; minus each session's mean, (2A - B - C)/3 per member: rho 1 within, -1/2 across."""
    r = 0.01 * (np.stack([A, A, B, B, C, C], axis=1) + 5 * D[:, None])
    cfg = _cfg(top_k=1, threshold=0.3, sector_edges=0)
    graph(cfg, _panel(tmp_path / "raw", r), tmp_path / "g_raw")
    raw = _pairs(_load(tmp_path / "g_raw"), 7)
    across = [a[0] for (s, d), a in raw.items() if s // 2 != d // 2]
    np.testing.assert_allclose(across, 0.9 * 25 / 26, atol=1e-6)  # the market makes strangers peers
    graph(
        _cfg(top_k=1, threshold=0.3, sector_edges=0, residual="market"),
        _panel(tmp_path / "p", r),
        tmp_path / "g",
    )
    got = _pairs(_load(tmp_path / "g"), 7)
    assert _undirected(got) == {(0, 1), (2, 3), (4, 5)}
    for attr in got.values():
        np.testing.assert_allclose(attr[0], 0.9, atol=1e-6)


def _assert_residual_graph_is_raw_graph_of(tmp_path, residual, demeaned, r, valid, sector, market):
    """graph.residual=<residual> on r builds exactly the residual=none graph of the hand-demeaned r."""
    cfg = _cfg(window=15, min_obs=10, threshold=0.2, top_k=3, sector_edges=2)
    graph(cfg, _panel(tmp_path / "p0", demeaned, valid, sector, market), tmp_path / "g0")
    res = cfg.with_overrides([f"graph.residual={residual}"])
    graph(res, _panel(tmp_path / "p1", r, valid, sector, market), tmp_path / "g1")
    g0, g1 = _load(tmp_path / "g0"), _load(tmp_path / "g1")
    np.testing.assert_array_equal(g1["offsets"], g0["offsets"])
    np.testing.assert_array_equal(g1["edge_index"], g0["edge_index"])
    np.testing.assert_allclose(g1["edge_attr"], g0["edge_attr"], atol=1e-5)
    assert g1["offsets"][-1] > 500


def test_residual_graph_is_the_raw_graph_of_hand_demeaned_returns(tmp_path):
    """The session mean is over the stocks valid with a return that session, nothing else."""
    r, valid, sector, market = _random_panel(4)
    ok = valid & np.isfinite(r)
    mean = np.array([r[t, ok[t]].mean() if ok[t].any() else 0.0 for t in range(len(r))])
    demeaned = np.where(ok, r - mean[:, None], np.nan)
    _assert_residual_graph_is_raw_graph_of(tmp_path, "market", demeaned, r, valid, sector, market)


@pytest.mark.parametrize(("residual", "every"), [("none", 1), ("market", 1), ("sector", 1), ("sector", 4)])
def test_leakage_nothing_after_d_moves_edges_at_or_before_d(tmp_path, residual, every):
    r, valid, sector, market = _random_panel(2)
    cfg = _cfg(window=15, min_obs=10, threshold=0.2, top_k=3, sector_edges=2, residual=residual, every=every)
    d = 25
    graph(cfg, _panel(tmp_path / "p", r, valid, sector, market), tmp_path / "g")
    rng = np.random.default_rng(3)
    r2, valid2, sector2, market2 = r.copy(), valid.copy(), sector.copy(), market.copy()
    r2[d + 1 :] = rng.normal(scale=0.05, size=r2[d + 1 :].shape)
    valid2[d + 1 :] = rng.random(valid2[d + 1 :].shape) > 0.5
    sector2[d + 1 :], market2[d + 1 :] = 2, 1
    graph(cfg, _panel(tmp_path / "p2", r2, valid2, sector2, market2), tmp_path / "g2")
    g, g2 = _load(tmp_path / "g"), _load(tmp_path / "g2")
    cut = g["offsets"][d + 1]
    np.testing.assert_array_equal(g2["offsets"][: d + 2], g["offsets"][: d + 2])
    np.testing.assert_array_equal(g2["edge_index"][:, :cut], g["edge_index"][:, :cut])
    np.testing.assert_array_equal(g2["edge_attr"][:cut], g["edge_attr"][:cut])
    assert not np.array_equal(g2["offsets"], g["offsets"])  # later dates did change


def test_sector_residual_is_the_raw_graph_of_hand_demeaned_returns(tmp_path):
    """Each valid return minus its sector's mean that session (as-of sector, valid stocks with a return);
    a stock with no sector, or in a sector with fewer than 3 such stocks, minus the whole session's mean."""
    r, valid, sector, market = _random_panel(5, n=16)
    sector[:, 12:] = np.where(sector[:, 12:] >= 0, 3, -1)  # a 4-stock sector: < 3 valid on some days
    ok = valid & np.isfinite(r)
    demeaned = np.full(r.shape, np.nan)
    small = 0
    for t in range(len(r)):
        for i in np.flatnonzero(ok[t]):
            mates = ok[t] & (sector[t] == sector[t, i])
            if sector[t, i] < 0 or mates.sum() < 3:
                small += sector[t, i] >= 0
                mates = ok[t]
            demeaned[t, i] = r[t, i] - r[t, mates].mean()
    assert small > 20  # the fallback is exercised
    _assert_residual_graph_is_raw_graph_of(tmp_path, "sector", demeaned, r, valid, sector, market)


def test_every_k_sessions_keeps_the_last_pairs_among_todays_stocks(tmp_path):
    """With every=4, date t uses the pairs computed at 4 * (t // 4), those with both ends valid at t,
    their rho, and t's own sector/market attributes."""
    r, valid, sector, market = _random_panel(6)
    cfg = _cfg(window=15, min_obs=10, threshold=0.2, top_k=3, sector_edges=2)
    graph(cfg, _panel(tmp_path / "p", r, valid, sector, market), tmp_path / "g1")
    graph(
        cfg.with_overrides(["graph.every=4"]),
        _panel(tmp_path / "p", r, valid, sector, market),
        tmp_path / "g4",
    )
    daily, g4 = _load(tmp_path / "g1"), _load(tmp_path / "g4")
    changed = 0
    for t in range(r.shape[0]):
        base = _pairs(daily, 4 * (t // 4))
        same = lambda a, b, x: float(x[a] == x[b] and x[a] >= 0)  # noqa: E731
        want = {
            (s, d): (a[0], same(s, d, sector[t]), same(s, d, market[t]))
            for (s, d), a in base.items()
            if valid[t, s] and valid[t, d]
        }
        got = _pairs(g4, t)
        assert set(got) == set(want), t
        for key, attr in want.items():
            np.testing.assert_allclose(got[key], attr, atol=1e-6)
        changed += set(got) != set(_pairs(daily, t))
    assert changed > 10  # the held pairs do differ from the daily graph


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="graph.every"):
        graph(_cfg(every=0), _panel(tmp_path / "p", KNOWN), tmp_path / "g")
    with pytest.raises(ConfigError, match="graph.min_obs"):
        graph(_cfg(min_obs=9), _panel(tmp_path / "p", KNOWN), tmp_path / "g")
