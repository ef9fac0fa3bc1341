"""One optimizer step's loss: the step's day batches, their forwards (one by one, stacked as one graph,
or through a compiled encoder) and the mean day loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from kabuflow.config import Config
from kabuflow.model.atft_gat_fan import ATFTGATFAN
from kabuflow.model.losses import day_loss, long_short_return, masked_standardize, sharpe_loss
from kabuflow.train.days import DayBatch, DayData, day_seed


def _autocast(cfg: Config, device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.bf16 and device.type == "cuda")


def step_loss(
    fwd: Any, data: DayData, days: np.ndarray, cfg: Config, epoch: int, w: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Mean loss over this step's days (+ the optional Sharpe term across them) and the stock-days seen."""
    tc, quantiles = cfg.train, tuple(cfg.model.quantiles)
    batches = []
    for t in days:
        seed = day_seed(tc.seed, epoch, int(t))
        gen = torch.Generator().manual_seed(seed)
        idx = data.stocks(int(t), tc.max_stocks_per_day, gen)
        batches.append((seed, data.day(int(t), cfg.model.lookback, idx, gen if tc.shuffle_labels else None)))
    losses, rets = [], []
    for q, b in zip(_forward_days(fwd, batches, cfg, data.device), (b for _, b in batches), strict=True):
        losses.append(day_loss(q, b.y, b.mask, quantiles, w, tc.rank_weight, tc.rank_temperature))
        if tc.sharpe_weight:
            y = masked_standardize(torch.nan_to_num(b.y), b.mask)
            rets.append(long_short_return(q[..., quantiles.index(0.5)], y, b.mask))
    loss = torch.stack(losses).mean()
    if tc.sharpe_weight:  # Sharpe over this rank's days of the step (one day: the return itself)
        loss = loss + tc.sharpe_weight * (sharpe_loss(torch.stack(rets)) * w).sum()
    return loss, sum(len(b.idx) for _, b in batches)


def _forward_days(fwd: Any, batches: list[tuple[int, DayBatch]], cfg: Config, device: torch.device) -> list:
    """Each day's quantiles [n_t, H, Q] (float32). With train.stack_days the step's days go through one
    forward as one graph of disjoint days: the model mixes stocks only along edges, and no edge joins
    two days, so each day's output is what its own forward gives (dropout masks aside: they are drawn
    once, seeded by the step's first day, so 2 ranks x 1 day no longer equal 1 process x 2 days)."""
    if not cfg.train.stack_days or len(batches) == 1:
        out = []
        for seed, b in batches:
            torch.manual_seed(seed)  # dropout masks depend on the day, not on the process that runs it
            with _autocast(cfg, device):
                out.append(fwd(b.x, b.edge_index, b.edge_attr)[0].float())  # [n, H, Q]
        return out
    sizes = [len(b.idx) for _, b in batches]
    starts = np.cumsum([0, *sizes[:-1]])
    x = torch.cat([b.x for _, b in batches])  # [sum n, L, F]
    ei = torch.cat(
        [b.edge_index + int(o) for (_, b), o in zip(batches, starts, strict=True)], 1
    )  # [2, sum e]
    ea = torch.cat([b.edge_attr for _, b in batches])  # [sum e, 3]
    torch.manual_seed(batches[0][0])
    with _autocast(cfg, device):
        q = fwd(x, ei, ea)[0].float()  # [sum n, H, Q]
    return list(q.split(sizes))


def forward_fn(model: ATFTGATFAN, tc: Any) -> Any:
    """What the training steps call. train.compile: torch.compile, whole model with dynamic shapes in
    the default mode; in reduce-overhead / max-autotune mode (CUDA graphs) only the temporal encoder,
    the part whose shapes are fixed once the day's stocks are padded to a multiple of train.pad_stocks
    (edges vary by day, so the graph part stays eager). Padding rows are zeros, cut off after."""
    if not tc.compile:
        return model
    if tc.compile_mode == "default":
        return torch.compile(model, dynamic=True)
    encode = torch.compile(model.encode, mode=tc.compile_mode, dynamic=False)
    model.encode = padded(encode, tc.pad_stocks)  # an instance attribute: fit_atft removes it at the end
    return model


def padded(encode: Callable, multiple: int) -> Callable:
    """encode(x) with x's rows padded by zeros to a multiple of `multiple` (0: as is), outputs cut back
    and copied (a CUDA graph overwrites its outputs on the next replay, before this step's backward)."""

    def run(x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = x.shape[0]
        pad = (-n) % multiple if multiple > 0 else 0
        h, aux = encode(torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad)) if pad else x)
        return h[:n].clone(), {k: v[:n].clone() for k, v in aux.items()}

    return run
