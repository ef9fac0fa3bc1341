"""Features benchmark: the Polars stage against a straightforward pandas groupby-rolling reference, side by side."""

# The pandas reference (benchmarks/features_pandas.py) computes every family that runs on bars + master
# alone and the labels. Each side runs in its own subprocess so that peak RSS (ru_maxrss) is its own;
# the parent checks that the two agree.

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from kabuflow.benchmarks.features_pandas import pandas_features

# ---------------------------------------------------------------- the side-by-side run


def _prepare(data: Path | None, work: Path) -> tuple[Path, str]:
    """A raw dir for both sides: the real bars less zero-volume and non-session rows (what the files
    source drops), plus the master; or, without the real set, a generated random-walk market."""
    from kabuflow.features import _calendar

    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    if data is not None and (Path(data) / "equities_bars_daily.parquet").exists():
        bars = pl.read_parquet(Path(data) / "equities_bars_daily.parquet")
        master = pl.read_parquet(Path(data) / "equities_master.parquet")
        label = f"real: {data}"
    else:
        bars, master = _generated()
        label = "generated random walks (no real set found)"
    cal = _calendar.sessions(bars["Date"].min(), bars["Date"].max())
    bars = bars.filter(pl.col("Vo") > 0, pl.col("Date").is_in(cal["date"].implode())).sort("Code", "Date")
    bars.write_parquet(raw / "equities_bars_daily.parquet")
    master.write_parquet(raw / "equities_master.parquet")
    from kabuflow.manifest import seal

    seal(raw, "ingest", {"source": label})
    return raw, label


def _generated(n_codes: int = 600, n_days: int = 1500, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    from kabuflow import schema
    from kabuflow.features import _calendar

    dates = _calendar.sessions(pd.Timestamp("2017-01-04").date(), pd.Timestamp("2023-12-29").date())["date"]
    dates = dates.filter(dates >= pd.Timestamp("2017-01-04").date()).head(n_days)
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_codes, len(dates))), axis=1)).ravel()
    o = c * np.exp(rng.normal(0, 0.005, c.size))
    h, lo = (
        np.maximum(o, c) * (1 + rng.uniform(0, 0.02, c.size)),
        np.minimum(o, c) * (1 - rng.uniform(0, 0.02, c.size)),
    )
    vo = rng.lognormal(10, 1, c.size)
    codes = np.repeat([f"{1000 + i}0" for i in range(n_codes)], len(dates))
    frame = {
        "Date": np.tile(dates.to_numpy(), n_codes),
        "Code": codes,
        "O": o,
        "H": h,
        "L": lo,
        "C": c,
        "Vo": vo,
    }
    frame |= {"Va": None, "AdjFactor": 1.0, "AdjO": o, "AdjH": h, "AdjL": lo, "AdjC": c, "AdjVo": vo}
    bars = (
        pl.DataFrame(frame)
        .cast(schema.RAW["equities_bars_daily"])
        .select(list(schema.RAW["equities_bars_daily"]))
    )
    spec = schema.RAW["equities_master"]
    uniq = [f"{1000 + i}0" for i in range(n_codes)]
    master = pl.DataFrame({k: [None] * n_codes for k in spec}, schema=spec).with_columns(
        Date=pl.lit(dates[-1]),
        Code=pl.Series(uniq),
        S33=pl.Series([f"{50 + 50 * (i % 33):04d}" for i in range(n_codes)]),
    )
    return bars, master


def _child(impl: str, raw: Path, out: Path) -> dict[str, Any]:
    """One side, in its own process: read, compute features + labels (timed), write for the comparison."""
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    if impl == "polars":
        from kabuflow.config import HORIZONS
        from kabuflow.features import base, stage

        frame, info = stage.build(base.read_raw(raw), HORIZONS)
        figures = {"compute_s": time.perf_counter() - t0, "compute_cpu_s": time.process_time() - c0}
        stage.check_output(frame, info)
        stage.write_features(out / "features.parquet", frame)  # what the stage writes, timed with it
        figures["stage_s"] = time.perf_counter() - t0
        figures["rows"], figures["features"] = frame.height, len(info["features"])
    else:
        from kabuflow.features import _calendar

        bars = pd.read_parquet(raw / "equities_bars_daily.parquet")
        master = pd.read_parquet(raw / "equities_master.parquet")
        first, last = (pd.Timestamp(d).date() for d in (bars.Date.min(), bars.Date.max()))
        cal = _calendar.sessions(first, last).to_pandas()
        bars["Date"], cal["date"] = pd.to_datetime(bars.Date), pd.to_datetime(cal.date)
        frame = pandas_features(bars, master, cal)
        figures = {"compute_s": time.perf_counter() - t0, "compute_cpu_s": time.process_time() - c0}
        frame["date"] = frame.date.dt.date
        frame.to_parquet(out / "features.parquet")
        figures["rows"], figures["features"] = len(frame), frame.shape[1] - 6
    figures["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return figures


def _spawn(impl: str, raw: Path, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "kabuflow.benchmarks.features", impl, str(raw), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} side failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(a: Path, b: Path, rtol: float = 1e-4, atol: float = 1e-6) -> dict[str, Any]:
    """Column by column (one at a time, to bound memory): null masks, max |diff|, values outside tolerance."""
    keys = ["code", "date"]
    ka, kb = pl.read_parquet(a, columns=keys), pl.read_parquet(b, columns=keys)
    assert ka.equals(kb), "the two sides' (code, date) rows differ"
    common = [c for c in pl.read_parquet_schema(a) if c in pl.read_parquet_schema(b) and c not in keys]
    worst, rows = {"column": None, "abs_diff": 0.0}, {}
    for col in common:
        x = pl.read_parquet(a, columns=[col])[col].cast(pl.Float64).fill_nan(None)
        y = pl.read_parquet(b, columns=[col])[col].cast(pl.Float64).fill_nan(None)
        both = x.is_not_null() & y.is_not_null()
        diff = (x - y).abs().filter(both)
        bad = int((diff > atol + rtol * y.abs().filter(both)).sum())
        nulls = int((x.is_null() != y.is_null()).sum())
        top = float(diff.max() or 0.0)
        if top > worst["abs_diff"]:
            worst = {"column": col, "abs_diff": top}
        if bad or nulls:
            rows[col] = {"outside_tolerance": bad, "null_mismatch": nulls, "max_abs_diff": top}
    return {
        "columns_compared": len(common),
        "max_abs_diff": worst,
        "disagreeing_columns": rows,
        "rtol": rtol,
        "atol": atol,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Polars stage vs pandas reference on the real set (args.data) or a generated one; figures as a dict."""
    work = Path(args.out) / "features"
    raw, label = _prepare(getattr(args, "data", None), work)
    load = os.getloadavg()
    polars_side = _spawn("polars", raw, work / "polars")
    pandas_side = _spawn("pandas", raw, work / "pandas")
    agreement = compare(work / "polars" / "features.parquet", work / "pandas" / "features.parquet")
    ratio = pandas_side["compute_s"] / polars_side["compute_s"]
    return {
        "data": label,
        "rows": polars_side["rows"],
        "cores": os.cpu_count(),
        "polars_threads": pl.thread_pool_size(),
        # Other processes on the machine take cores from Polars (two threads) but not from pandas (one):
        # the 1-minute load average before and after says how much the wall-clock ratio was squeezed.
        "load_avg_1m": [round(load[0], 2), round(os.getloadavg()[0], 2)],
        "polars": {k: round(v, 2) if isinstance(v, float) else v for k, v in polars_side.items()},
        "pandas": {k: round(v, 2) if isinstance(v, float) else v for k, v in pandas_side.items()},
        "speedup_compute": round(ratio, 1),
        "speedup_cpu_seconds": round(pandas_side["compute_cpu_s"] / polars_side["compute_cpu_s"], 1),
        "agreement": agreement,
        "targets": {
            "stage_le_30s": polars_side["stage_s"] <= 30,
            "speedup_ge_5x": ratio >= 5,
            "peak_rss_le_6gb": polars_side["peak_rss_gb"] <= 6,
        },
    }


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))))
