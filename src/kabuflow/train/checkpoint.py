"""ATFT fit checkpoints: everything a killed run needs to resume bit-exactly, written atomically every epoch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from kabuflow.artifacts import atomic_write
from kabuflow.model.atft_gat_fan import ATFTGATFAN


@dataclass
class FitState:
    """Everything besides model/optimizer/scheduler that a resumed run needs (kept in the checkpoint)."""

    epoch: int = 0  # epochs completed
    best_score: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    ema_state: dict[str, torch.Tensor] | None = None


def save(path: Path, model: ATFTGATFAN, opt: Any, sched: Any, st: FitState, fingerprint: str) -> None:
    """Atomic checkpoint: a killed run leaves the previous epoch's file intact."""
    blob = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng_torch": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "fingerprint": fingerprint,
        **{k: v for k, v in st.__dict__.items()},
    }
    atomic_write(path, lambda p: torch.save(blob, p))


def resume(
    ckpt: Path | None, model: ATFTGATFAN, opt: Any, sched: Any, fingerprint: str, rank: int, world: int
) -> FitState:
    """Restore from rank 0's checkpoint, if it has one; under DDP rank 0 sends it to every rank, so nodes
    that do not share rank 0's disk resume from the same state."""
    blob = None
    if rank == 0 and ckpt is not None and ckpt.exists():
        blob = torch.load(ckpt, map_location="cpu", weights_only=True)
        if blob["fingerprint"] != fingerprint:
            raise RuntimeError(
                f"checkpoint {ckpt} was written by a different config, fold or data (panel/graph); "
                "delete it to start over"
            )
    if world > 1:
        box = [blob]
        dist.broadcast_object_list(box, src=0)
        blob = box[0]
    if blob is None:
        return FitState()
    model.load_state_dict(blob["model"])
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng_torch"])
    if blob["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["rng_cuda"])
    return FitState(**{k: blob[k] for k in FitState.__dataclass_fields__})
