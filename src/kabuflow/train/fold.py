"""train-fold: one walk-forward fold x one model kind (atft | lightgbm | ridge | a zero-parameter factor)."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.distributed as dist

from kabuflow import manifest, telemetry
from kabuflow.artifacts import atomic_write, write_json, write_parquet
from kabuflow.config import Config, ModelName
from kabuflow.folds import Fold, FoldsLike, check_lookback, fold_days, folds_lineage, read_fold
from kabuflow.graph import Graph, as_graph, load_graph
from kabuflow.model.atft_gat_fan import Ensemble, model_config_to_dict, n_params
from kabuflow.model.losses import horizon_weights
from kabuflow.normalize import Panel, as_panel
from kabuflow.train.baselines import run_baseline
from kabuflow.train.days import DayData, deterministic, resolve_device
from kabuflow.train.loop import fit_atft
from kabuflow.train.predictions import predict_days, prediction_table, split_metrics, val_rank_ic, vsn_weights
from kabuflow.train.targets import with_target
from kabuflow.version import code_version

MODELS: tuple[str, ...] = typing.get_args(ModelName)
CHECKPOINT = "checkpoint.pt"


def _dist_env(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world, device) under torchrun (WORLD_SIZE > 1 in the environment), else (0, 1, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return dist.get_rank(), world, device


def member_config(cfg: Config, m: int) -> Config:
    """Member m's config: train.seed = seed * members + m, so the members of seeds 0 and 1 never
    share a seed and a one-member model keeps the plain seed."""
    return cfg.with_params({"train.seed": cfg.train.seed * cfg.model.members + m})


def _epoch_event(fold: int, member: int, members: int, epoch: int, val_rank_ic: float) -> None:
    """The console's progress bar: `epoch` (0-based) of `member` has ended; -1 = the member starts."""
    telemetry.event(
        "epoch", model="atft", fold=fold, member=member, members=members, epoch=epoch + 1, val=val_rank_ic
    )


def _checkpoint(out: Path, m: int) -> Path:
    return out / (CHECKPOINT if m == 0 else f"checkpoint.m{m}.pt")


def _train_atft(
    cfg: Config, panel: Panel, graph: Any, days: dict[str, np.ndarray], k: int, out: Path
) -> tuple[pl.DataFrame | None, dict]:
    """Fit on the fold's train dates (val early-stops), then score val and test; rank 0 writes model.pt.

    The fit gets a view of the data that ends at the last validation date (DayData.upto), so no test
    date is reachable while weights change; the full data is used only for scoring afterwards. With
    model.members = k > 1 the members train one after another, each with its own checkpoint (a killed
    run resumes in the member it was in), and the model is their Ensemble.
    """
    if cfg.model.members < 1:
        raise ValueError(f"model.members must be >= 1, got {cfg.model.members}")
    rank, world, device = _dist_env(resolve_device(cfg.train.device))
    g = as_graph(graph, cfg.model.use_graph)
    t0 = time.perf_counter()
    data = DayData(panel, g, int(days["test"][-1]), device)
    fits = []
    for m in range(cfg.model.members):
        progress = functools.partial(_epoch_event, k, m, cfg.model.members) if rank == 0 else None
        if progress is not None:
            progress(-1, float("nan"))
        with deterministic(device):
            fits.append(
                fit_atft(
                    member_config(cfg, m),
                    data.upto(int(days["val"][-1])),
                    days,
                    _checkpoint(out, m),
                    fold=k,
                    rank=rank,
                    world=world,
                    on_epoch_end=progress,
                )
            )
    model = fits[0].model if len(fits) == 1 else Ensemble([f.model for f in fits])
    fit_seconds = time.perf_counter() - t0
    history = [{**h, "member": m} for m, f in enumerate(fits) for h in f.history]
    val_score = fits[0].best_score
    if len(fits) > 1:  # the ensemble's own validation RankIC (what its members were stopped on, averaged)
        w = horizon_weights(cfg.train.horizon_weights, data.Y.shape[2], data.device)
        val_score, _ = val_rank_ic(model, data, days["val"][:: cfg.train.val_stride], w, cfg.train.bf16)
    info = {
        "members": len(fits),
        "best_epoch": fits[0].best_epoch if len(fits) == 1 else [f.best_epoch for f in fits],
        "val_score": val_score,
        "epochs_run": len(history),
        "resumed_from_epoch": fits[0].resumed_from if len(fits) == 1 else [f.resumed_from for f in fits],
        "n_params": n_params(model),
        "fit_seconds": fit_seconds,
        "stock_days_per_s": float(np.mean([h["stock_days_per_s"] for h in history])) if history else 0.0,
        "history": history,
        "world_size": world,
        "rank": rank,
    }
    if rank != 0:
        return None, info
    quantiles = tuple(cfg.model.quantiles)
    tables = [
        prediction_table(
            panel, "atft", k, split, predict_days(model, data, days[split], cfg.train.bf16), quantiles
        )
        for split in ("val", "test")
    ]
    blob = {
        "state_dict": {n: v.detach().cpu() for n, v in model.state_dict().items()},
        "config": cfg.to_dict(),
        "model_config": model_config_to_dict(cfg.model),
        "feature_names": panel.feature_names,
        "horizons": panel.horizons,
        "code_version": code_version(),
        "fold": k,
    }
    atomic_write(out / "model.pt", lambda p: torch.save(blob, p))
    # What the model reads, on the fold's test days: the report's variable-selection section.
    write_json(out / "vsn_weights.json", vsn_weights(model, data, days["test"], panel.feature_names))
    for m in range(len(fits)):  # the run is complete; model.pt supersedes the checkpoints
        _checkpoint(out, m).unlink(missing_ok=True)
    return pl.concat(tables).sort("code", "date", "horizon"), info


def _flat_metrics(nested: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """{"val_rank_ic_5d": ..., "test_ic_1d": ...}: the numbers KFP's Metrics artifact shows."""
    flat = {}
    for split, per_h in nested.items():
        for h, values in per_h.items():
            for name in ("rank_ic", "ic"):
                v = values[name]
                flat[f"{split}_{name}_{h}"] = v if math.isfinite(v) else float("nan")
    return flat


def fit_panel(cfg: Config, panel: Panel | str | Path) -> Panel:
    """The panel as every model fits it, Y = cfg.train.target (Y_raw, which evaluation scores, stays),
    with torch's CPU threads set from train.threads: train-fold and hpo both start here, so a study
    tunes on the very target and thread count that train-fold then trains with."""
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    return with_target(as_panel(panel), cfg.train.target, cfg.normalize.clip)


def train_fold(
    cfg: Config,
    panel: Panel | str | Path,
    graph: Graph | str | Path | None,
    folds: FoldsLike,
    k: int,
    model: str,
    out: str | Path,
) -> dict[str, Any]:
    """Train `model` on fold k's train dates (validation only early-stops) and predict its val and test dates.

    Writes to out: predictions.parquet (schema.PREDICTIONS), history.json, metrics.json, manifest.json and
    the model file (atft: model.pt; lightgbm: lightgbm_<h>d.txt; ridge: ridge.json; factors: factor.json).
    Under torchrun only rank 0 writes. Returns the manifest (with flat `metrics`). The output is
    published as a unit (kabuflow.manifest); until then the checkpoints live in manifest.partial_dir(out),
    which a re-run resumes from. Panel, graph and folds must share one lineage (the same normalize output).
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
    rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes the output
    place = manifest.output(cfg, out, "train-fold", keep=("checkpoint*.pt",)) if rank0 else _scratch(cfg)
    with place as w:
        p = fit_panel(cfg, panel)
        check_lookback(cfg.model.lookback, len(p.dates))
        g = load_graph(graph) if isinstance(graph, str | Path) else graph
        # Lineage where the artifacts meet: panel, graph and folds must come from one normalize output.
        for name, lineage in (("panel", p.lineage), ("graph", getattr(g, "lineage", {}))):
            w.use(f"{name} {panel if name == 'panel' else graph}", lineage)
        w.use(f"folds {folds if isinstance(folds, str | Path) else '(list)'}", folds_lineage(folds))
        fold = read_fold(folds, k)
        days = fold_days(fold, p.dates)
        return _fit_and_write(cfg, p, g, days, fold, model, w)


@contextlib.contextmanager
def _scratch(cfg: Config) -> Iterator[manifest.Output]:
    """A non-zero torchrun rank's throwaway output: it trains, rank 0 writes."""
    with tempfile.TemporaryDirectory(prefix="kabuflow-rank-") as tmp:
        yield manifest.Output(cfg, Path(tmp) / "out", "train-fold", Path(tmp))


def _fit_and_write(
    cfg: Config, p: Panel, g: Any, days: dict[str, np.ndarray], fold: Fold, model: str, w: manifest.Output
) -> dict[str, Any]:
    """Train, then write predictions, history, metrics and the manifest into the output being made."""
    k, out = fold.k, w.dir
    with telemetry.stage("train-fold", label=f"{model}/{k}") as rec:
        rec.rows_in = int(sum(np.asarray(p.valid[days[s]]).sum() for s in days))
        if model == "atft":
            pred, info = _train_atft(cfg, p, g, days, k, out)
        else:
            pred, info = run_baseline(cfg, p, days, model, k, out)
        if pred is None:  # a non-zero torchrun rank: rank 0 writes the artifacts
            w.committed = {}
            return {"rank": info["rank"], "world_size": info["world_size"], "model": model, "fold": k}
        rec.rows_out = pred.height
        nested = split_metrics(pred)
        gate_h = cfg.evaluate.gate_horizon  # the console's key figure (and a Prometheus gauge)
        rec.labels = {"fold": str(k), "model": model, "horizon": gate_h}
        rec.extra["test_rank_ic"] = nested.get("test", {}).get(gate_h, {}).get("rank_ic", float("nan"))
    history = info.pop("history", [])
    metrics = {"model": model, "fold": k, "splits": nested, **info}
    write_parquet(out / "predictions.parquet", pred)
    write_json(out / "history.json", history)
    write_json(out / "metrics.json", metrics)
    content = {"model": model, "fold": fold.to_dict(), "metrics": _flat_metrics(nested), "rows": pred.height}
    return w.commit(content)
