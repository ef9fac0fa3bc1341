"""Data-parallel ATFT training: 2 gloo ranks x 1 day per step == 1 process x 2 days per step."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny_market import make_market

from kabuflow.config import Config
from kabuflow.folds import fold_days, read_fold
from kabuflow.graph import load_graph
from kabuflow.normalize import load_panel
from kabuflow.train.days import DayData
from kabuflow.train.loop import fit_atft

TINY = [
    "model.hidden=16",
    "model.heads=2",
    "model.gat_heads=2",
    "model.lookback=6",
    "model.dropout=0.1",
    "train.epochs=2",
    "train.patience=0",
    "train.device=cpu",
    "train.days_per_epoch=16",
    "train.max_stocks_per_day=12",
    "train.warmup_steps=2",
]


def _fit(root: Path, days_per_step: int, rank: int = 0, world: int = 1, ckpt: Path | None = None) -> dict:
    cfg = Config().with_overrides([*TINY, f"train.days_per_step={days_per_step}"])
    panel, graph = load_panel(root / "panel"), load_graph(root / "graph")
    days = fold_days(read_fold(root / "folds.json", 0), panel.dates)
    data = DayData(panel, graph, int(days["val"][-1]), torch.device("cpu"))
    res = fit_atft(cfg, data, days, ckpt, rank=rank, world=world)
    return {k: v.detach().clone() for k, v in res.model.state_dict().items()}


def _rank(rank: int, world: int, root: Path, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        weights = _fit(root, days_per_step=1, rank=rank, world=world, ckpt=root / "ckpt.pt")
        torch.save(weights, root / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_match_one_process(tmp_path):
    make_market(tmp_path, t=80, n=16)
    mp.spawn(_rank, args=(2, tmp_path, _free_port()), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # the ranks never drift apart
    torch.set_num_threads(1)
    single = _fit(tmp_path, days_per_step=2)
    assert all(torch.allclose(single[k], r0[k], atol=1e-5) for k in single)
    assert (tmp_path / "ckpt.pt").exists()  # rank 0 checkpoints
    other = _fit(tmp_path, days_per_step=1)  # one day per step: a different optimisation path
    assert not all(torch.allclose(other[k], r0[k], atol=1e-5) for k in other)
