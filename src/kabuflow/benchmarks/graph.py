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
import torch

from kabuflow.config import GraphConfig
from kabuflow.correlations import RollingCorr, torch_threads, varies
from kabuflow.graph import build, date_edges, rho_edges, sector_residual

SIZES = (500, 1000, 2000)
SESSIONS = 250  # timed sessions per size (after a warm-up window); extrapolated to 1,000
REAL_DATES = 20  # jpx-2463's last recompute dates timed both ways (a whole reference run: hours, loaded)


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


def per_recompute(arrays: tuple[np.ndarray, ...], g: GraphConfig, k: int) -> dict[str, Any]:
    """The last k recompute dates with full windows, both ways in one run: the rolling sums filled once
    on the window before them, then k steps, against k from-scratch recomputes; CPU and wall seconds
    per recompute, and the edges of each date compared (what a whole reference run at real N, hours
    on a loaded box, would show at every date)."""
    assert g.residual == "sector", "the benchmark uses the default sector residuals"
    r, valid, sector, market = arrays
    res, n = sector_residual(r, valid, sector), r.shape[1]
    dates = list(range(0, len(r), g.every))[-k:]
    window = lambda t: res[max(0, t - g.window + 1) : t + 1]  # noqa: E731
    out: dict[str, Any] = {"n": n, "sessions": len(r), "recomputes": len(range(0, len(r), g.every)), "k": k}
    with torch_threads(g.threads):
        roll, prev = RollingCorr(n, torch.get_num_threads()), dates[0] - g.every
        roll.step(window(prev), res[:0], valid[prev] & varies(window(prev)), g.min_obs)
        got, c0, t0 = {}, time.process_time(), time.perf_counter()
        for t in dates:
            leave = res[max(0, prev - g.window + 1) : max(0, t - g.window + 1)]
            rho, score = roll.step(
                res[prev + 1 : t + 1], leave, valid[t] & varies(window(t)), g.min_obs, 1 - g.shrinkage
            )
            got[t], prev = rho_edges(rho, np.where(valid[t], sector[t], -1), market[t], g, score), t
        out["rolling"] = {
            "cpu_s": round((time.process_time() - c0) / k, 3),
            "wall_s": round((time.perf_counter() - t0) / k, 3),
        }
        same, diff, c0, t0 = 0, 0.0, time.process_time(), time.perf_counter()
        for t in dates:
            nodes = np.flatnonzero(valid[t])
            pairs, attr = date_edges(window(t)[:, nodes], sector[t, nodes], market[t, nodes], g)
            if np.array_equal(nodes[pairs], got[t][0]):
                same, diff = same + 1, max(diff, float(np.abs(attr - got[t][1]).max(initial=0.0)))
        out["reference"] = {
            "cpu_s": round((time.process_time() - c0) / k, 3),
            "wall_s": round((time.perf_counter() - t0) / k, 3),
        }
    out["speedup_wall"] = round(out["reference"]["wall_s"] / out["rolling"]["wall_s"], 1)
    out["speedup_cpu"] = round(out["reference"]["cpu_s"] / out["rolling"]["cpu_s"], 1)
    out["dates_identical"] = f"{same} of {k}"
    out["max_abs_rho_diff"] = diff
    out["edges_per_recompute"] = round(float(np.mean([e[0].shape[1] for e in got.values()])), 1)
    return out


def whole_real_shaped(g: GraphConfig, t: int = 1950, n: int = 3929, sampled: int = 5) -> dict[str, Any]:
    """The real TSE universe's shape (3,929 codes x 1,950 sessions): the rolling build end to end, and
    both methods on the last `sampled` recompute dates (`per_recompute`; a whole reference run takes
    over 35 min), the reference's whole run extrapolated from them."""
    arrays = real_shaped_returns(t, n)
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        offsets = build(*arrays, g, Path(tmp))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    sample = per_recompute(arrays, g, sampled)
    ref_wall = sample["reference"]["wall_s"] * sample["recomputes"]
    return {
        "n": n,
        "sessions": t,
        "rolling": {
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "edges_per_day": round(float(np.diff(offsets).mean()), 1),
        },
        "reference_extrapolated": {
            "wall_s": round(ref_wall, 1),
            "cpu_s": round(sample["reference"]["cpu_s"] * sample["recomputes"], 1),
        },
        "speedup": round(ref_wall / wall, 1),
        "sampled": sample,
    }


def _table(out: dict[str, Any]) -> str:
    """Reference and rolling side by side: wall s per 1,000 sessions (synthetic), per recompute (real),
    for the whole run (real-shaped)."""
    lines = [f"{'case':<34}{'reference':>11}{'rolling':>10}{'speedup':>9}  edges identical"]
    for x in out["synthetic"]:
        ref, new = x["reference"]["s_per_1000_sessions"], x["rolling"]["s_per_1000_sessions"]
        label = f"synthetic N={x['n']}, s/1000 sessions"
        lines.append(f"{label:<34}{ref:>11.1f}{new:>10.1f}{x['speedup']:>8.1f}x  {x['edges_identical']}")
    rows = [("jpx-2463", out["real"])] if isinstance(out.get("real"), dict) else []
    rows.append(("real-shaped", out["real_shaped"]["sampled"]))
    for name, x in rows:
        label = f"{name} N={x['n']}, s/recompute"
        lines.append(
            f"{label:<34}{x['reference']['wall_s']:>11.2f}{x['rolling']['wall_s']:>10.2f}{x['speedup_wall']:>8.1f}x  {x['dates_identical']} dates"
        )
    big = out["real_shaped"]
    label = f"real-shaped {big['n']}x{big['sessions']}, whole s"
    ref = big["reference_extrapolated"]["wall_s"]
    lines.append(
        f"{label:<34}{ref:>11.0f}{big['rolling']['wall_s']:>10.0f}{big['speedup']:>8.1f}x  (reference extrapolated)"
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
        out["real"] = per_recompute(real_returns(Path(data)), g, REAL_DATES)
    out["real_shaped"] = whole_real_shaped(g)
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    out["load_avg_1m_end"] = os.getloadavg()[0]
    print(_table(out), flush=True)
    return out
