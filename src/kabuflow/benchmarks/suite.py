"""Runs the benchmarks in one process, one after another, and writes their figures to one JSON file."""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

from kabuflow.artifacts import write_json
from kabuflow.version import code_version

SUITE = ("synthetic", "features", "graph", "train", "run")


def shared_data() -> Path | None:
    """The real jpx-2463 set beside the repository (../shared/data), when this machine has it."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data" / "jpx-2463"
        if candidate.is_dir():
            return candidate
    return None


def run_suite(only: list[str], out: str) -> dict:
    """Run each benchmark (or those named in `only`), print its figures, save them all to out/bench.json."""
    unknown = sorted(set(only) - set(SUITE))
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r} (known: {', '.join(SUITE)})")
    results: dict[str, dict] = {"code_version": {"sha": code_version()}}
    for name in only or SUITE:
        module = importlib.import_module(f"kabuflow.benchmarks.{name}")
        print(f"\n=== bench {name} ===", flush=True)
        t0 = time.perf_counter()
        figures = module.run(argparse.Namespace(out=out, data=shared_data()))
        figures["bench_seconds"] = round(time.perf_counter() - t0, 1)
        results[name] = figures
        print(json.dumps(figures, indent=1, default=str), flush=True)
    write_json(Path(out) / "bench.json", results)
    return results
