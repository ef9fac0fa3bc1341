"""The whole pipeline on the real jpx-2463 set, stage by stage: wall, CPU seconds and peak RSS per task."""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def per_stage(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Profile lines grouped by stage (train-fold by model): runs, wall and CPU summed, peak RSS max."""
    groups: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for line in lines:
        model = line["label"].split("/")[0] if line["stage"] == "train-fold" else ""
        groups[f"{line['stage']} {model}".strip()].append(line)
    return [
        {
            "stage": name,
            "runs": len(rows),
            "wall_s": round(sum(r["seconds"] for r in rows), 1),
            "cpu_s": round(sum(r["cpu_seconds"] for r in rows), 1),
            "peak_rss_gb": round(max(r["peak_rss_gb"] for r in rows), 2),
        }
        for name, rows in groups.items()
    ]


def table(stages: list[dict[str, Any]]) -> str:
    """The per-stage rows as aligned text."""
    lines = [f"{'stage':<22}{'runs':>5}{'wall s':>9}{'CPU s':>9}{'peak GB':>9}"]
    for s in stages:
        lines.append(
            f"{s['stage']:<22}{s['runs']:>5}{s['wall_s']:>9.1f}{s['cpu_s']:>9.1f}{s['peak_rss_gb']:>9.2f}"
        )
    return "\n".join(lines)


def profile_run(argv: list[str], work: Path) -> dict[str, Any]:
    """`kabuflow run <argv> --out work/run` in a child process: its wall, CPU (the whole process tree,
    from wait4) and peak RSS (its largest process), and the per-stage table from $KABUFLOW_PROFILE."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    profile = work / "profile.jsonl"
    cli = Path(sys.executable).with_name("kabuflow")
    cmd = [str(cli), "run", *argv, "--out", str(work / "run")]
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, env=os.environ | {"KABUFLOW_PROFILE": str(profile)})
    _, status, use = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit status {os.waitstatus_to_exitcode(status)}")
    stages = per_stage([json.loads(line) for line in profile.read_text().splitlines()])
    print(table(stages), flush=True)
    return {
        "command": " ".join(["kabuflow", "run", *argv]),
        "wall_s": round(wall, 1),
        "cpu_s": round(use.ru_utime + use.ru_stime, 1),
        "peak_rss_gb": round(use.ru_maxrss / 2**20, 2),
        "load_avg_1m_end": os.getloadavg()[0],
        "stages": stages,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The real-data run profiled (skipped without ../shared/data/jpx-2463)."""
    data = args.data
    if data is None or not (Path(data) / "equities_bars_daily.parquet").exists():
        return {"real": "skipped: ../shared/data/jpx-2463 not present"}
    out = {"load_avg_1m_start": os.getloadavg()[0]}
    return out | profile_run(["--source", "files", "--path", str(data)], Path(args.out) / "run-jpx-2463")
