"""Graph-stage speed, the rolling correlations beside the reference recompute in one run, with their agreement."""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kabuflow.config import GraphConfig
from kabuflow.correlations import torch_threads
from kabuflow.graph import build, date_edges, sector_residual

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


def time_build(arrays: tuple[np.ndarray, ...], g: GraphConfig, sessions: int, method: str) -> dict[str, Any]:
    """Build the last `sessions` dates (plus their warm-up window) with `method`: wall and CPU seconds
    per 1,000 sessions, edges per day, and the offsets/edges for the agreement check."""
    r, valid, sector, market = (a[-(sessions + g.window) :] for a in arrays)
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        offsets = build(r, valid, sector, market, g, Path(tmp), method=method)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        edges = np.load(Path(tmp) / "edge_index.npy"), np.load(Path(tmp) / "edge_attr.npy")
    per_day = np.diff(offsets)[g.window :]
    figures = {
        "s_per_1000_sessions": round(1000 * secs / r.shape[0], 2),
        "cpu_s_per_1000_sessions": round(1000 * cpu / r.shape[0], 2),
        "edges_per_day": round(float(per_day.mean()), 1),
    }
    return {"figures": figures, "offsets": offsets, "edges": edges}


def side_by_side(arrays: tuple[np.ndarray, ...], g: GraphConfig, sessions: int) -> dict[str, Any]:
    """Reference and rolling on the same input in one run: their speeds, ratio and agreement."""
    ref, new = (time_build(arrays, g, sessions, m) for m in ("reference", "rolling"))
    same_index = np.array_equal(ref["offsets"], new["offsets"]) and np.array_equal(
        ref["edges"][0], new["edges"][0]
    )
    rho_diff = float(np.abs(ref["edges"][1] - new["edges"][1]).max(initial=0.0)) if same_index else None
    return {
        "n": int(arrays[0].shape[1]),
        "sessions": int(min(arrays[0].shape[0], sessions + g.window)),
        "reference": ref["figures"],
        "rolling": new["figures"],
        "speedup": round(ref["figures"]["s_per_1000_sessions"] / new["figures"]["s_per_1000_sessions"], 1),
        "edges_identical": bool(same_index),
        "edges": int(new["offsets"][-1]),
        "max_abs_rho_diff": rho_diff,
    }


def whole_real_shaped(g: GraphConfig, t: int = 1950, n: int = 3929, sampled: int = 3) -> dict[str, Any]:
    """The real TSE universe's shape (3,929 codes x 1,950 sessions): the rolling build end to end, and
    the reference on `sampled` recompute dates at the end (a whole reference run takes over 35 min),
    extrapolated to every recompute date and checked edge for edge on those dates."""
    r, valid, sector, market = real_shaped_returns(t, n)
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        offsets = build(r, valid, sector, market, g, Path(tmp))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        index, attr = np.load(Path(tmp) / "edge_index.npy"), np.load(Path(tmp) / "edge_attr.npy")
    res = sector_residual(r, valid, sector)
    dates = [d for d in range(t - 1, 0, -1) if d % g.every == 0][:sampled]
    t0, c0, same, diff = time.perf_counter(), time.process_time(), 0, 0.0
    with torch_threads(g.threads):
        for d in dates:
            nodes = np.flatnonzero(valid[d])
            pairs, ref_attr = date_edges(
                res[max(0, d - g.window + 1) : d + 1, nodes], sector[d, nodes], market[d, nodes], g
            )
            lo, hi = offsets[d], offsets[d + 1]
            if np.array_equal(nodes[pairs], index[:, lo:hi]):
                same += 1
                diff = max(diff, float(np.abs(ref_attr - attr[lo:hi]).max(initial=0.0)))
    ref_wall, ref_cpu = (time.perf_counter() - t0) / len(dates), (time.process_time() - c0) / len(dates)
    recomputes = len(range(0, t, g.every))
    return {
        "n": n,
        "sessions": t,
        "rolling": {
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "edges_per_day": round(float(np.diff(offsets).mean()), 1),
        },
        "reference_extrapolated": {
            "wall_s": round(ref_wall * recomputes, 1),
            "cpu_s": round(ref_cpu * recomputes, 1),
            "from": f"{len(dates)} of {recomputes} recompute dates, full windows",
        },
        "speedup": round(ref_wall * recomputes / wall, 1),
        "sampled_dates_identical": f"{same} of {len(dates)}",
        "max_abs_rho_diff": diff,
    }


def _table(out: dict[str, Any]) -> str:
    """Reference and rolling side by side: wall s per 1,000 sessions (whole run for the real shape)."""
    lines = [f"{'case':<28}{'reference':>11}{'rolling':>10}{'speedup':>9}  edges identical"]
    for label, row in [(f"synthetic N={x['n']}", x) for x in out["synthetic"]] + (
        [(f"jpx-2463 N={out['real']['n']}", out["real"])] if isinstance(out.get("real"), dict) else []
    ):
        ref, new = row["reference"]["s_per_1000_sessions"], row["rolling"]["s_per_1000_sessions"]
        lines.append(f"{label:<28}{ref:>11.1f}{new:>10.1f}{row['speedup']:>8.1f}x  {row['edges_identical']}")
    big = out["real_shaped"]
    label = f"real-shaped {big['n']}x{big['sessions']} (run)"
    lines.append(
        f"{label:<28}{big['reference_extrapolated']['wall_s']:>11.0f}{big['rolling']['wall_s']:>10.0f}"
        f"{big['speedup']:>8.1f}x  {big['sampled_dates_identical']} sampled dates"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Reference vs rolling on a synthetic factor market as N grows and, when args.data has jpx-2463, on
    the real set; then the rolling build on the whole real-shaped universe."""
    g = GraphConfig()
    # Shared 2-core dev boxes vary a lot: the load average says how busy the machine was.
    out: dict[str, Any] = {
        "config": dataclasses.asdict(g),
        "threads": len(os.sched_getaffinity(0)) if g.threads == 0 else g.threads,
        "load_avg_1m_start": os.getloadavg()[0],
        "synthetic": [side_by_side(synthetic_returns(SESSIONS + g.window, n), g, SESSIONS) for n in SIZES],
    }
    data = args.data
    if data is None or not (Path(data) / "equities_bars_daily.parquet").exists():
        out["real"] = "skipped: ../shared/data/jpx-2463 not present"
    else:
        arrays = real_returns(Path(data))
        out["real"] = side_by_side(arrays, g, SESSIONS) | {"T": int(arrays[0].shape[0])}
    out["real_shaped"] = whole_real_shaped(g)
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    out["load_avg_1m_end"] = os.getloadavg()[0]
    print(_table(out), flush=True)
    return out
