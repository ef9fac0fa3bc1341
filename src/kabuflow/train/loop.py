"""ATFT-GAT-FAN training loop: one day per batch, AdamW + warmup/cosine, early stopping on validation RankIC,
an atomic checkpoint every epoch (bit-exact resume), and data-parallel ranks over days (DDP-ready)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from kabuflow import telemetry
from kabuflow.config import Config
from kabuflow.model.atft_gat_fan import ATFTGATFAN
from kabuflow.model.losses import (
    horizon_weights,
)
from kabuflow.train.checkpoint import FitState, resume, save
from kabuflow.train.days import DayData
from kabuflow.train.predictions import val_rank_ic
from kabuflow.train.step import forward_fn, step_loss

EpochHook = Callable[[int, float], None]


@dataclass
class FitResult:
    """The trained model (best validation epoch, or the last one when early stopping is off) and its history."""

    model: ATFTGATFAN
    history: list[dict[str, float]]
    best_epoch: int
    best_score: float
    resumed_from: int  # epochs already done in the checkpoint this run resumed from (0: a fresh start)


def epoch_days(train_days: np.ndarray, seed: int, epoch: int, per_epoch: int, group: int) -> np.ndarray:
    """The epoch's shuffled training days: a function of (seed, epoch) only, so a resumed run and every
    rank agree. Optionally the first `per_epoch` of them; trimmed to a multiple of the days per step."""
    order = np.random.default_rng([seed, epoch]).permutation(train_days)
    if per_epoch:
        order = order[:per_epoch]
    return order[: len(order) // group * group]


def lr_schedule(opt: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup then cosine decay to 0 over `total` steps (warmup capped at a quarter of them)."""
    warmup = max(1, min(warmup, total // 4))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _allreduce_grads(model: torch.nn.Module, world: int) -> None:
    """Average gradients over ranks in one flat buffer (what DDP does, minus its bucketing)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


@torch.no_grad()
def _ema_update(ema: ATFTGATFAN, model: ATFTGATFAN, decay: float, step: int) -> None:
    """ema <- ema + (1 - d) (model - ema), d = min(decay, (1 + step) / (10 + step)): the warm-up keeps the
    average from clinging to the initial weights in the first hundred steps."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1.0 - d)


def train_epoch(
    fwd: Any,
    model: ATFTGATFAN,
    opt: Any,
    sched: Any,
    data: DayData,
    days: np.ndarray,
    cfg: Config,
    epoch: int,
    w: torch.Tensor,
    rank: int,
    world: int,
    ema: ATFTGATFAN | None = None,
) -> tuple[float, int]:
    """One pass over the epoch's days; rank r takes days[r::world]. Returns (mean loss, stock-days).
    `ema`, when given, tracks an exponential moving average of the weights (train.ema_decay)."""
    model.train()
    dps, check = cfg.train.days_per_step, cfg.train.check_every
    order = epoch_days(days, cfg.train.seed, epoch, cfg.train.days_per_epoch, dps * world)
    mine = order[rank::world]
    steps = len(mine) // dps
    total, n_seen = torch.zeros((), device=data.device), 0
    first_bad = torch.full((), -1, dtype=torch.long, device=data.device)  # first non-finite step, on device
    for s in range(steps):
        opt.zero_grad(set_to_none=True)
        torch.compiler.cudagraph_mark_step_begin()  # a new step: CUDA graph outputs of the last may go
        loss, n = step_loss(fwd, data, mine[s * dps : (s + 1) * dps], cfg, epoch, w)
        # Checked on the device and read by the host every `check` steps (0: at the end of the epoch):
        # `if not isfinite(loss)` here made the host wait for the GPU on every step.
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), s, first_bad)
        if check and (s + 1) % check == 0:
            _raise_if_non_finite(first_bad, mine, dps, epoch)
        loss.backward()
        if world > 1:
            _allreduce_grads(model, world)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            _ema_update(ema, model, cfg.train.ema_decay, sched.last_epoch)
        total += loss.detach()
        n_seen += n
    _raise_if_non_finite(first_bad, mine, dps, epoch)  # before the epoch's checkpoint can keep the weights
    return float(total) / max(1, steps), n_seen


def _raise_if_non_finite(first_bad: torch.Tensor, mine: np.ndarray, dps: int, epoch: int) -> None:
    """One degenerate day must not poison the weights for good: stop, naming the step's days."""
    s = int(first_bad)  # the host sync
    if s >= 0:
        raise FloatingPointError(
            f"non-finite training loss at epoch {epoch}, days {mine[s * dps : (s + 1) * dps]}"
        )


def _gpu_mem(device: torch.device) -> float:
    return float(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else 0.0


def _end_epoch(st: FitState, score: float, model: ATFTGATFAN, patience: int) -> None:
    """Track the best validation epoch (a copy of its weights) and the early-stopping counter."""
    if score > st.best_score:
        st.best_score, st.best_epoch, st.bad_epochs = score, st.epoch, 0
        st.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        st.bad_epochs += 1
    st.epoch += 1
    st.stopped = patience > 0 and st.bad_epochs >= patience


def _build(
    cfg: Config, data: DayData, days: dict[str, np.ndarray], fold: int, world: int
) -> tuple[ATFTGATFAN, Any, Any]:
    """Model (same initial weights on every rank), AdamW and the warmup + cosine schedule."""
    tc = cfg.train
    for key in ("epochs", "days_per_step", "val_stride"):
        if getattr(tc, key) < 1:
            raise ValueError(f"train.{key} must be >= 1, got {getattr(tc, key)}")
    if min(tc.check_every, tc.pad_stocks) < 0:
        raise ValueError("train.check_every and train.pad_stocks must be >= 0")
    torch.manual_seed(tc.seed * 1009 + fold)  # each fold its own initial weights (ranks share them)
    model = ATFTGATFAN(cfg.model, data.X.shape[2], data.Y.shape[2]).to(data.device)
    if world > 1:
        for p in model.parameters():
            dist.broadcast(p.data, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, foreach=True)
    group = tc.days_per_step * world
    steps = len(epoch_days(days["train"], tc.seed, 0, tc.days_per_epoch, group)) // group
    if steps == 0:
        raise ValueError(f"fold {fold}: {len(days['train'])} training days, fewer than one step of {group}")
    return model, opt, lr_schedule(opt, tc.warmup_steps, steps * tc.epochs)


def _validate(
    model: ATFTGATFAN, data: DayData, days: np.ndarray, w: torch.Tensor, cfg: Config, world: int
) -> tuple[float, list[float]]:
    """Validation RankIC on every val_stride-th validation day (all of them are predicted at the end);
    under DDP rank 0's number for everyone, so the ranks never disagree on stopping."""
    shuffle = cfg.train.seed if cfg.train.shuffle_labels else None
    score, per_h = val_rank_ic(model, data, days[:: cfg.train.val_stride], w, cfg.train.bf16, shuffle)
    if world > 1:
        buf = torch.tensor([score], device=data.device)
        dist.broadcast(buf, 0)
        score = float(buf)
    return score, per_h


def fit_atft(
    cfg: Config,
    data: DayData,
    days: dict[str, np.ndarray],
    ckpt: Path | None,
    *,
    fold: int = 0,
    rank: int = 0,
    world: int = 1,
    on_epoch_end: EpochHook | None = None,
) -> FitResult:
    """Train on days['train'], early-stop on days['val']; checkpoint to `ckpt` (rank 0) and resume from it.

    With world > 1 (torch.distributed initialised by the caller), rank r trains on days[r::world] of each
    step's group and gradients are averaged, so 2 ranks x 1 day equal 1 process x 2 days per step.
    patience <= 0 turns early stopping off: all epochs run and the last weights are kept.
    `on_epoch_end(epoch, val_score)` runs after the checkpoint (Optuna pruning; tests simulate a kill).
    """
    tc = cfg.train
    model, opt, sched = _build(cfg, data, days, fold, world)
    # The data is part of the fingerprint (panel and graph by manifest hash, the fold by its dates): a
    # checkpoint left by a run on other data is an error, never a resume.
    bounds = [int(days[s][i]) for s in ("train", "val") for i in (0, -1)]
    fingerprint = repr((cfg.model, tc, fold, bounds, world, sorted(data.lineage.items())))
    st = resume(ckpt, model, opt, sched, fingerprint, rank, world)
    resumed_from = st.epoch
    ema = copy.deepcopy(model) if tc.ema_decay > 0 else None  # validated, kept and returned when on
    if ema is not None and st.ema_state is not None:
        ema.load_state_dict(st.ema_state)
    scored = ema if ema is not None else model
    fwd = forward_fn(model, tc)
    w = horizon_weights(tc.horizon_weights, data.Y.shape[2], data.device)
    while st.epoch < tc.epochs and not st.stopped:
        t0 = time.perf_counter()
        loss, n_seen = train_epoch(
            fwd, model, opt, sched, data, days["train"], cfg, st.epoch, w, rank, world, ema
        )
        speed = n_seen * world / (time.perf_counter() - t0)
        # Without early stopping or a pruning hook nothing reads a non-final epoch's score: skipping
        # those validations leaves the weights as they were (eval draws no random numbers).
        needed = tc.patience > 0 or on_epoch_end is not None or st.epoch == tc.epochs - 1
        if needed or tc.validate_every_epoch:
            score, per_h = _validate(scored, data, days["val"], w, cfg, world)
        else:
            score, per_h = math.nan, []
        row = {"epoch": st.epoch, "train_loss": loss, "val_rank_ic": score, "stock_days_per_s": speed}
        st.history.append({**row, "val_rank_ic_h": per_h, "seconds": time.perf_counter() - t0})
        _end_epoch(st, score, scored, tc.patience)
        st.ema_state = ema.state_dict() if ema is not None else None
        if rank == 0:
            if ckpt is not None:
                save(ckpt, model, opt, sched, st, fingerprint)
            telemetry.record_epoch("atft", fold, **row, gpu_mem_bytes=_gpu_mem(data.device))
        if world > 1:
            dist.barrier()
        if on_epoch_end is not None:
            on_epoch_end(st.epoch - 1, score)
    model.__dict__.pop("encode", None)  # back to the plain method: the compiled one was for training shapes
    if tc.patience > 0 and st.best_state is not None:
        model.load_state_dict(st.best_state)
    elif ema is not None:
        model.load_state_dict(ema.state_dict())
    best_epoch = st.best_epoch if tc.patience > 0 else st.epoch - 1
    return FitResult(model, st.history, best_epoch, st.best_score, resumed_from)
