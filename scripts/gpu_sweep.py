"""Many ATFT training variants on the default synthetic market at once, on one GPU (research, not CI).

    python scripts/gpu_sweep.py WORK OUT [--procs 6] [--deadline 420] [--quick]

Builds the default market's panel, both graphs (the default and the pre-2026-11-26 raw-60-session one)
and folds under WORK with the CLI, then trains each variant's three folds in a pool of worker
processes sharing the GPU (a 400-stock day is launch-bound, so several processes fill it), and scores
the stitched test predictions exactly as evaluate does (mean daily Spearman RankIC vs the raw label).
Variants run in priority order and none starts after --deadline seconds. Writes OUT/sweep.jsonl.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SEEDS = (0, 1, 2)
OLD_GRAPH = ["graph.window=60", "graph.min_obs=40", "graph.residual=false"]


def variants(quick: bool) -> list[tuple[str, str, list[str]]]:
    """(name, graph dir name or 'none', --set overrides), most wanted first."""
    if quick:
        return [("base_s0", "graph", ["train.seed=0", "train.epochs=1"]), ("nograph_s0", "none", [])]
    v: list[tuple[str, str, list[str]]] = []
    for s in SEEDS:
        v += [(f"base_s{s}", "graph", [f"train.seed={s}"]), (f"nograph_s{s}", "none", [f"train.seed={s}"])]
    v += [(f"shuffled_s{s}", "graph", [f"train.seed={s}", "train.shuffle_labels=true"]) for s in range(6)]
    v += [(f"oldgraph_s{s}", "graph_old", [f"train.seed={s}"]) for s in (0, 1)]
    knobs = {
        "ep8_all": ["train.epochs=8", "train.days_per_epoch=0", "train.patience=3"],
        "ep8": ["train.epochs=8", "train.patience=3"],
        "h128": ["model.hidden=128"],
        "lb60": ["model.lookback=60"],
        "rank0.3": ["train.rank_weight=0.3"],
        "rank3": ["train.rank_weight=3.0"],
        "lr3e-4": ["train.lr=3e-4"],
        "ema": ["train.ema_decay=0.99"],
        "wd1e-2": ["train.weight_decay=1e-2"],
        "drop0.3": ["model.dropout=0.3"],
        "gat1": ["model.gat_layers=1"],
        "san": ["model.input_norm=san"],
        "sharpe": ["train.sharpe_weight=0.1"],
        "dps4": ["train.days_per_step=4", "train.days_per_epoch=0", "train.epochs=6"],
    }
    v += [(name, "graph", sets) for name, sets in knobs.items()]
    return v


def build_data(work: Path, data_sets: list[str]) -> None:
    """raw -> features -> panel -> graph (new and old defaults, side by side) -> folds, by the CLI."""
    if (work / "folds.json").exists():
        return
    kf = [sys.executable, "-m", "kabuflow.cli"]
    extra = [a for s in data_sets for a in ("--set", s)]

    def run(*args: str) -> None:
        t0 = time.perf_counter()
        subprocess.run([*kf, args[0], *extra, *args[1:]], check=True, stdout=subprocess.DEVNULL)
        print(f"  {args[0]}: {time.perf_counter() - t0:.1f} s", flush=True)

    run("ingest", "--source", "synthetic", "--out", str(work / "raw"))
    run("features", "--raw", str(work / "raw"), "--out", str(work / "features"))
    run("normalize", "--features", str(work / "features"), "--out", str(work / "panel"))
    old = [a for s in OLD_GRAPH for a in ("--set", s)]
    procs = [
        subprocess.Popen([*kf, "graph", "--panel", str(work / "panel"), "--out", str(work / "graph")]),
        subprocess.Popen(
            [*kf, "graph", *old, "--panel", str(work / "panel"), "--out", str(work / "graph_old")]
        ),
    ]
    assert all(p.wait() == 0 for p in procs), "graph failed"
    run("folds", "--panel", str(work / "panel"), "--out", str(work / "folds.json"))


def stitched_rank_ic(pred_files: list[Path], panel_dir: Path) -> dict[str, float]:
    """Mean daily Spearman RankIC of the test predictions against the raw label, per horizon."""
    import polars as pl

    pred = pl.concat([pl.read_parquet(f) for f in pred_files]).filter(pl.col("split") == "test")
    out = {}
    for h in sorted(pred["horizon"].unique()):
        d = pred.filter(
            (pl.col("horizon") == h) & pl.col("label").is_not_nan() & pl.col("label").is_not_null()
        )
        ic = (
            d.with_columns(
                pl.col("score").rank().over("date").alias("rs"),
                pl.col("label").rank().over("date").alias("rl"),
            )
            .group_by("date")
            .agg(pl.corr("rs", "rl").alias("ic"), pl.len().alias("n"))
            .filter(pl.col("n") > 30)
        )
        out[f"{h}d"] = round(float(ic["ic"].mean()), 4)
    return out


def run_variant(args: tuple[str, str, list[str], str, str]) -> dict:
    """One variant's three folds in this worker process; its stitched test RankIC."""
    name, graph, sets, work, out = args
    import torch

    from kabuflow.config import load
    from kabuflow.train import train_fold

    work_p = Path(work)
    sets = [*sets, "train.device=cuda" if torch.cuda.is_available() else "train.device=cpu"]
    if graph == "none":
        sets.append("model.use_graph=false")
    cfg = load("local", sets)
    t0 = time.perf_counter()
    files = []
    for k in range(3):
        fold_dir = work_p / "sweep_runs" / name / f"fold{k}"
        train_fold(
            cfg,
            work_p / "panel",
            None if graph == "none" else work_p / graph,
            work_p / "folds.json",
            k,
            "atft",
            fold_dir,
        )
        files.append(fold_dir / "predictions.parquet")
    res = {"name": name, "graph": graph, "sets": sets, "seconds": round(time.perf_counter() - t0, 1)}
    res["test_rank_ic"] = stitched_rank_ic(files, work_p / "panel")
    return res


def ensembles(out: Path, work: Path, results: list[dict]) -> list[dict]:
    """Average the scores of the seed replicas (base, nograph, shuffled) and score the average."""
    import polars as pl

    rows = []
    for group in ("base", "nograph", "shuffled"):
        names = [r["name"] for r in results if r["name"].startswith(group + "_s")]
        if len(names) < 2:
            continue
        frames = []
        for n in names:
            f = pl.concat(
                [
                    pl.read_parquet(p)
                    for p in sorted((work / "sweep_runs" / n).glob("fold*/predictions.parquet"))
                ]
            )
            frames.append(
                f.filter(pl.col("split") == "test").select(
                    "date",
                    "code",
                    "horizon",
                    "label",
                    pl.col("score").rank().over("date", "horizon").alias(n),
                )
            )
        merged = frames[0]
        for f, n in zip(frames[1:], names[1:], strict=True):
            merged = merged.join(f.select("date", "code", "horizon", n), on=["date", "code", "horizon"])
        merged = merged.with_columns(pl.mean_horizontal(names).alias("score"), pl.lit("test").alias("split"))
        tmp = out / f"ens_{group}.parquet"
        merged.write_parquet(tmp)
        rows.append(
            {
                "name": f"ensemble_{group}_{len(names)}",
                "test_rank_ic": stitched_rank_ic([tmp], work / "panel"),
            }
        )
        tmp.unlink()
    return rows


def main() -> None:
    """Data, then the variants in a pool, then the seed ensembles; a table last."""
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("out")
    ap.add_argument("--procs", type=int, default=6)
    ap.add_argument("--deadline", type=float, default=420.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--set", action="append", default=[], help="data-building override (quick tests)")
    a = ap.parse_args()
    t_start = time.perf_counter()
    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    build_data(work, a.set)
    print(f"data ready at {time.perf_counter() - t_start:.0f} s", flush=True)
    todo = [(n, g, s, str(work), str(out)) for n, g, s in variants(a.quick)]
    results = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(a.procs, maxtasksperchild=1) as pool, open(out / "sweep.jsonl", "a") as log:
        pending = []
        for item in todo:
            pending.append(pool.apply_async(run_variant, (item,)))
        for item, job in zip(todo, pending, strict=True):
            left = a.deadline - (time.perf_counter() - t_start)
            try:
                res = job.get(timeout=max(1.0, left))
            except mp.TimeoutError:
                print(f"deadline: {item[0]} and later variants not finished", flush=True)
                pool.terminate()
                break
            except Exception as e:  # one broken variant must not lose the others
                res = {"name": item[0], "error": f"{type(e).__name__}: {e}"}
            results.append(res)
            log.write(json.dumps(res) + "\n")
            log.flush()
            print(json.dumps(res), flush=True)
    try:
        rows = ensembles(out, work, [r for r in results if "error" not in r])
    except Exception as e:  # the single runs are already logged
        rows = [{"name": "ensembles", "error": f"{type(e).__name__}: {e}"}]
    for row in rows:
        print(json.dumps(row), flush=True)
        with open(out / "sweep.jsonl", "a") as log:
            log.write(json.dumps(row) + "\n")
    print("\n== 5d test RankIC ==")
    for r in results:
        print(
            f"{r['name']:<16} {r.get('test_rank_ic', {}).get('5d', r.get('error'))}  {r.get('seconds', '')}"
        )
    print(f"total {time.perf_counter() - t_start:.0f} s; numpy {np.__version__}")


if __name__ == "__main__":
    main()
