"""Graph-stage speed: seconds per 1,000 sessions as N grows, and the real set's edges per day."""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kabuflow.config import GraphConfig
from kabuflow.graph import build

SIZES = (500, 1000, 2000)
SESSIONS = 250  # timed sessions per size (after a warm-up window); extrapolated to 1,000


def real_returns(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """R [T, N] = log(AdjC_t / AdjC_{t-1}) per code, valid = traded (Vo > 0), sector/market from master."""
    bars = pl.read_parquet(data / "equities_bars_daily.parquet", columns=["Date", "Code", "AdjC", "Vo"])
    bars = bars.sort("Code", "Date").with_columns(
        r=(pl.col("AdjC") / pl.col("AdjC").shift(1)).log().over("Code"), ok=pl.col("Vo") > 0
    )
    dates, codes = bars["Date"].unique().sort(), bars["Code"].unique().sort()
    ti = dates.search_sorted(bars["Date"]).to_numpy()
    ci = codes.search_sorted(bars["Code"]).to_numpy()
    r = np.full((len(dates), len(codes)), np.nan, np.float32)
    valid = np.zeros((len(dates), len(codes)), bool)
    r[ti, ci] = bars["r"].fill_nan(None).to_numpy()
    valid[ti, ci] = bars["ok"].to_numpy()
    master = pl.read_parquet(data / "equities_master.parquet", columns=["Code", "S33", "Mkt"]).unique("Code")
    master = pl.DataFrame({"Code": codes}).join(master, on="Code", how="left")
    sector = master["S33"].cast(pl.Categorical).to_physical().fill_null(-1).cast(pl.Int16).to_numpy()
    market = master["Mkt"].cast(pl.Categorical).to_physical().fill_null(-1).cast(pl.Int16).to_numpy()
    t = len(dates)
    return r, valid, np.broadcast_to(sector, (t, len(codes))), np.broadcast_to(market, (t, len(codes)))


def synthetic_returns(t: int, n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A 5-factor market, 0.02 % of returns missing (~1 % of 60-day windows incomplete; jpx-2463: ~0.3 %), 33 sectors and 3 markets: real-like density of edges."""
    rng = np.random.default_rng(seed)
    r = (0.01 * (rng.normal(size=(t, 5)) @ rng.normal(size=(5, n)) + 0.015 * rng.normal(size=(t, n)))).astype(
        np.float32
    )
    r[rng.random((t, n)) < 0.0002] = np.nan
    valid = np.isfinite(r)
    sector = np.broadcast_to(rng.integers(0, 33, n).astype(np.int16), (t, n))
    market = np.broadcast_to(rng.integers(0, 3, n).astype(np.int16), (t, n))
    return r, valid, sector, market


def real_shaped_returns(t: int, n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A factor market with jpx-2463's gaps: 20 % of codes list late (uniform over the span), 87 % miss
    sessions inside their life at a per-code rate drawn around 2 % (jpx-2463: 87 % do, median 23 of
    2,219 sessions, mean 49), and a code is valid exactly where it has a return. 33 sectors carry their
    own factor, so sector residuals keep some structure; 3 markets."""
    rng = np.random.default_rng(seed)
    sector = rng.integers(0, 33, n)
    common = rng.normal(size=(t, 5)) @ rng.normal(size=(5, n)) + 0.7 * rng.normal(size=(t, 33))[:, sector]
    r = (0.01 * common + 0.015 * rng.normal(size=(t, n))).astype(np.float32)
    rate = np.where(rng.random(n) < 0.87, rng.exponential(0.02, n), 0.0)
    r[rng.random((t, n)) < rate] = np.nan
    start = np.where(rng.random(n) < 0.2, rng.integers(0, t, n), 0)
    r[np.arange(t)[:, None] < start] = np.nan
    valid = np.isfinite(r)
    market = np.broadcast_to(rng.integers(0, 3, n).astype(np.int16), (t, n))
    return r, valid, np.broadcast_to(sector.astype(np.int16), (t, n)), market


def time_build(arrays: tuple[np.ndarray, ...], g: GraphConfig, sessions: int) -> dict[str, Any]:
    """Seconds per 1,000 sessions over the last `sessions` dates (plus their warm-up window)."""
    r, valid, sector, market = (a[-(sessions + g.window) :] for a in arrays)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        offsets = build(r, valid, sector, market, g, Path(tmp))
        secs = time.perf_counter() - t0
    per_day = np.diff(offsets)[g.window :]
    return {
        "n": int(r.shape[1]),
        "sessions": int(r.shape[0]),
        "s_per_1000_sessions": round(1000 * secs / r.shape[0], 2),
        "edges_per_day": round(float(per_day.mean()), 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Scaling in N on a synthetic factor market and, when args.data has jpx-2463, on the real set."""
    g = GraphConfig()
    # Shared 2-core dev boxes vary a lot: the load average says how busy the machine was.
    out: dict[str, Any] = {
        "config": dataclasses.asdict(g),
        "load_avg_1m": os.getloadavg()[0],
        "synthetic": [],
    }
    for n in SIZES:
        out["synthetic"].append(time_build(synthetic_returns(SESSIONS + g.window, n), g, SESSIONS))
    data = args.data
    if data is None or not (Path(data) / "equities_bars_daily.parquet").exists():
        out["real"] = "skipped: ../shared/data/jpx-2463 not present"
        return out
    arrays = real_returns(Path(data))
    order = np.argsort(-np.isfinite(arrays[0][-(SESSIONS + g.window) :]).sum(0), kind="stable")
    out["real"] = [time_build(tuple(a[:, np.sort(order[:n])] for a in arrays), g, SESSIONS) for n in SIZES]
    out["real"].append(time_build(arrays, g, SESSIONS))  # every code
    out["real_shape"] = {"T": int(arrays[0].shape[0]), "N": int(arrays[0].shape[1])}
    return out
