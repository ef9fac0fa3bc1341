"""Training speed: stock-days/s of ATFT-GAT-FAN training and scoring (local on CPU, a100 on CUDA) and model sizes."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kabuflow.config import Config, load
from kabuflow.graph import Graph
from kabuflow.model.atft_gat_fan import ATFTGATFAN, n_params
from kabuflow.model.losses import horizon_weights
from kabuflow.normalize import Panel
from kabuflow.train.days import DayData
from kabuflow.train.loop import lr_schedule, train_epoch
from kabuflow.train.predictions import val_rank_ic
from kabuflow.train.step import forward_fn

N_FEATURES = 100  # the synthetic market's order of magnitude
EDGES_PER_NODE = 20


def random_market(t: int, n: int, f: int, seed: int = 0) -> tuple[Panel, Graph]:
    """An in-memory panel and graph of the contract's shapes (speed does not depend on the values)."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((t, n, 4)).astype(np.float32)
    panel = Panel(
        path=Path("<memory>"),
        X=rng.standard_normal((t, n, f)).astype(np.float32),
        Y=y,
        Y_raw=0.01 * y,
        valid=np.ones((t, n), bool),
        R=np.zeros((t, n), np.float32),
        sector=np.zeros((t, n), np.int16),
        market=np.zeros((t, n), np.int16),
        meta={
            "dates": [],
            "codes": [],
            "feature_names": [f"f{i}" for i in range(f)],
            "horizons": [1, 5, 10, 20],
        },
    )
    per_day = n * EDGES_PER_NODE
    edge_index = rng.integers(0, n, (2, per_day * t)).astype(np.int32)
    edge_attr = rng.random((per_day * t, 3)).astype(np.float32)
    return panel, Graph(edge_index, edge_attr, np.arange(t + 1, dtype=np.int64) * per_day)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg: Config, n_stocks: int, n_days: int, device: torch.device) -> dict[str, Any]:
    """Train one epoch of n_days (after a warm-up epoch) and score n_days; stock-days per second each."""
    t_total = cfg.model.lookback + 2 * n_days
    panel, graph = random_market(t_total, n_stocks, N_FEATURES)
    data = DayData(panel, graph, t_total - 1, device)
    torch.manual_seed(0)
    model = ATFTGATFAN(cfg.model, N_FEATURES, 4).to(device)
    fwd = forward_fn(model, cfg.train)  # eager, or compiled as train.compile / compile_mode say
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    sched = lr_schedule(opt, 10, 10_000)
    w = horizon_weights(cfg.train.horizon_weights, 4, device)
    days = np.arange(cfg.model.lookback, cfg.model.lookback + n_days)
    c = cfg.with_overrides(["train.days_per_epoch=0"])
    train_epoch(fwd, model, opt, sched, data, days[: max(2, n_days // 4)], c, 0, w, 0, 1)  # warm-up/compile
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0, c0 = time.perf_counter(), time.process_time()
    with _UtilSampler(device) as util:
        _, seen = train_epoch(fwd, model, opt, sched, data, days, c, 1, w, 0, 1)
        _sync(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    model.__dict__.pop("encode", None)  # score with the plain encoder, as fit_atft leaves the model
    val_rank_ic(model, data, days + n_days, w, cfg.train.bf16)
    _sync(device)
    score_wall = time.perf_counter() - t1
    return {
        "stocks_per_day": min(n_stocks, cfg.train.max_stocks_per_day or n_stocks),
        "train_stock_days_per_s": round(seen / wall),
        "train_stock_days_per_cpu_s": round(seen / cpu),
        "score_stock_days_per_s": round(n_days * n_stocks / score_wall),
        "gpu_mem_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0,
        "gpu_utilization_pct": util.mean(),
    }


class _UtilSampler:
    """Mean NVML GPU utilisation over a timed region, sampled every 0.2 s by a background thread.

    One reading after the region would report whatever the last 1/6 s happened to be; the mean over the
    epoch is the figure that says whether the GPU waits on the host. None on CPU or without NVML.
    """

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples, self._stop = device, [], threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(float(torch.cuda.utilization(self.device)))
            except (ModuleNotFoundError, RuntimeError):  # no NVML bindings: report none, not a guess
                return

    def __enter__(self) -> _UtilSampler:
        if self.device.type == "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def run(args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Parameter counts of both profiles; CPU throughput of `local` (1 thread: two folds share 2 cores);
    CUDA throughput of `a100` when a GPU is visible."""
    local, a100 = load("local", ["train.threads=1"]), load("a100")
    out: dict[str, Any] = {
        "params_local": n_params(ATFTGATFAN(local.model, N_FEATURES, 4)),
        "params_a100": n_params(ATFTGATFAN(a100.model, N_FEATURES, 4)),
        "n_features": N_FEATURES,
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out["local_cpu_1thread"] = measure(local, 400, 40, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        out["a100_cuda"] = measure(a100, 4000, 100, torch.device("cuda"))
        out["a100_cuda"]["device"] = torch.cuda.get_device_name()
    return out
