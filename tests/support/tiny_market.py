"""Hand-made tiny panel, graph and folds (the docs/architecture.md file contracts) for the training tests.

The label is planted: y = -0.6 ret_5d + 0.4 ret_60d + 0.5 f_lin + 0.4 (neighbour's ret_1d) + noise, so the
factor baselines, ridge, LightGBM and ATFT all have something real to find, and the graph carries the
lead-lag part.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from kabuflow.manifest import seal

FEATURES = ["ret_1d", "ret_5d", "ret_60d", "f_lin", "f_noise", "mkt_x"]
HORIZONS = [1, 5, 10, 20]


def _dates(t: int) -> list[str]:
    d, out = dt.date(2020, 1, 6), []
    while len(out) < t:
        if d.weekday() < 5:
            out.append(d.isoformat())
        d += dt.timedelta(days=1)
    return out


# The smallest ATFT that still has every part (two heads, two GAT heads, a 6-day lookback), on the CPU.
TINY_ATFT = ["model.hidden=16", "model.heads=2", "model.gat_heads=2", "model.lookback=6", "train.device=cpu"]


def make_market(root: Path, t: int = 120, n: int = 24, seed: int = 0, noise: float = 0.5) -> dict[str, Path]:
    """Write panel/, graph/ and folds.json under root; returns their paths."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((t, n, len(FEATURES))).astype(np.float32)
    x[:, :, 5] = rng.standard_normal((t, 1))  # a market feature: one value per date
    leader = (np.arange(n) + 1) % n  # stock i follows stock i+1 (a ring), seen through the graph
    signal = -0.6 * x[:, :, 1] + 0.4 * x[:, :, 2] + 0.5 * x[:, :, 3] + 0.4 * x[:, leader, 0]
    valid = rng.random((t, n)) > 0.05
    y = np.stack([signal * s + noise * rng.standard_normal((t, n)) for s in (0.6, 1.0, 1.2, 1.4)], -1)
    y_raw = (0.01 * y).astype(np.float32)
    y_raw[-2:, :, :] = np.nan  # label windows that have not finished
    y_raw[~valid] = np.nan
    y_std = np.full_like(y_raw, np.nan)
    for t_ in range(t - 2):  # standardised per date, as normalize does
        v = y_raw[t_]
        y_std[t_] = (v - np.nanmean(v, 0)) / np.nanstd(v, 0)
    x[~valid] = 0.0
    panel = root / "panel"
    panel.mkdir(parents=True, exist_ok=True)
    arrays = {
        "X": x,
        "Y": y_std,
        "Y_raw": y_raw,
        "valid": valid,
        "R": (0.01 * x[:, :, 0]).astype(np.float32),
        "sector": (np.arange(n)[None, :] % 3 + np.zeros((t, 1))).astype(np.int16),
        "market": np.zeros((t, n), dtype=np.int16),
    }
    for name, arr in arrays.items():
        np.save(panel / f"{name}.npy", arr)
    meta = {
        "dates": _dates(t),
        "codes": [f"{1000 + 10 * i:04d}0" for i in range(n)],
        "feature_names": FEATURES,
        "feature_kinds": ["stock"] * 5 + ["market"],
        "horizons": HORIZONS,
        "sectors": ["a", "b", "c"],
        "markets": ["prime"],
    }
    (panel / "meta.json").write_text(json.dumps(meta))
    seal(panel, "normalize")  # hand-made, but read like a stage output: listed, sized, hashed
    graph = _write_graph(root / "graph", t, n, leader, rng)
    seal(graph, "graph")
    folds = root / "folds.json"
    d = meta["dates"]
    a, b = int(t * 0.55), int(t * 0.75)
    fold = {"k": 0, "train_start": d[0], "train_end": d[a], "val_start": d[a + 3], "val_end": d[b],
            "test_start": d[b + 3], "test_end": d[-1]}  # fmt: skip
    folds.write_text(json.dumps([fold]))
    return {"panel": panel, "graph": graph, "folds": folds}


def _write_graph(path: Path, t: int, n: int, leader: np.ndarray, rng: np.random.Generator) -> Path:
    """Each day: both directions of the leader ring plus two random pairs; attributes (rho, same sector, same mkt)."""
    edges, attrs, offsets = [], [], [0]
    for _ in range(t):
        src = np.concatenate([leader, np.arange(n), rng.integers(0, n, 2)])
        dst = np.concatenate([np.arange(n), leader, rng.integers(0, n, 2)])
        edges.append(np.stack([src, dst]))
        attrs.append(np.stack([rng.uniform(0.3, 0.9, len(src)), (src % 3 == dst % 3), np.ones(len(src))], 1))
        offsets.append(offsets[-1] + len(src))
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "edge_index.npy", np.concatenate(edges, 1).astype(np.int32))
    np.save(path / "edge_attr.npy", np.concatenate(attrs).astype(np.float32))
    np.save(path / "offsets.npy", np.array(offsets, dtype=np.int64))
    (path / "meta.json").write_text(json.dumps({"n_edges": int(offsets[-1])}))
    return path
