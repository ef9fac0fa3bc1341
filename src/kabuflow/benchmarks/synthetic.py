"""Synthetic-market generation time (default and 4,000 stocks x 10 years), its oracle RankIC, and its
stylized facts side by side with the real jpx-2463 bars when ../shared/data has them."""

from __future__ import annotations

import argparse
import dataclasses
import math
import resource
import time
from pathlib import Path
from typing import Any

import polars as pl

from kabuflow.config import Config
from kabuflow.sources import synthetic as syn
from kabuflow.sources.synthetic_facts import stylized_facts

BIG = {"n_stocks": 4000, "start": "2015-01-05", "end": "2024-12-30"}  # the whole market, 10 years


def generate(s: Any) -> tuple[dict[str, Any], syn.Market, dict[str, pl.DataFrame]]:
    """Time simulate + tables + oracle for one configuration; the timings and the results."""
    t0 = time.perf_counter()
    m = syn.simulate(s)
    t1 = time.perf_counter()
    tables = syn.build_tables(m)
    oracle = syn.oracle_table(m)
    t2 = time.perf_counter()
    figures = {
        "n_stocks": s.n_stocks,
        "sessions": len(m.dates),
        "bar_rows": tables["equities_bars_daily"].height,
        "oracle_rows": oracle.height,
        "simulate_s": round(t1 - t0, 2),
        "tables_s": round(t2 - t1, 2),
        "total_s": round(t2 - t0, 2),
    }
    return figures, m, tables


def _json_safe(facts: dict[str, float]) -> dict[str, float | None]:
    """NaN (a fact the data cannot give, e.g. splits without AdjFactor) as null: strict JSON."""
    return {k: None if math.isnan(v) else v for k, v in facts.items()}


def side_by_side(synthetic: dict[str, float | None], real: dict[str, float | None] | None) -> str:
    """A small text table of the stylized facts: synthetic next to real."""
    lines = [f"{'fact':<16}{'synthetic':>12}{'jpx-2463':>12}"]
    for key, value in synthetic.items():
        other = real.get(key) if real else None
        right = f"{other:12.4f}" if other is not None else f"{'-':>12}"
        lines.append(f"{key:<16}{value if value is not None else float('nan'):12.4f}{right}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Default market: time, oracle RankIC by horizon, stylized facts (vs jpx-2463); then 4,000 x 10y."""
    s = syn.resolve(Config())
    syn.simulate(dataclasses.replace(s, n_stocks=50, end="2017-12-29"))  # warm the calendar and imports
    default, m, tables = generate(s)
    out: dict[str, Any] = {"default": default, "oracle_rank_ic": syn.oracle_rank_ic(m)}
    out["facts_synthetic"] = _json_safe(stylized_facts(tables["equities_bars_daily"]))
    data = getattr(args, "data", None)
    real_path = Path(data) / "equities_bars_daily.parquet" if data else None
    if real_path is not None and real_path.exists():
        out["facts_jpx_2463"] = _json_safe(stylized_facts(pl.read_parquet(real_path)))
    else:
        out["facts_jpx_2463"] = "skipped: ../shared/data/jpx-2463 not present"
    real = out["facts_jpx_2463"] if isinstance(out["facts_jpx_2463"], dict) else None
    print(side_by_side(out["facts_synthetic"], real), flush=True)
    del m, tables
    if not getattr(args, "quick", False):
        big, _, _ = generate(dataclasses.replace(s, **BIG))
        big["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        out["whole_market_10y"] = big
    return out
