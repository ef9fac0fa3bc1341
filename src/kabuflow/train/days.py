"""Training inputs: the panel and graph as device tensors and one-day batches sliced on device."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kabuflow.graph import Graph
from kabuflow.normalize import Panel


@dataclass
class DayBatch:
    """One trading day's cross-section, ready for the model."""

    t: int
    idx: Tensor  # [n] long: positions on the panel's code axis
    x: Tensor  # [n, L, F] float32
    y: Tensor  # [n, H] standardized labels (NaN = none)
    mask: Tensor  # [n, H] bool: label present
    edge_index: Tensor  # [2, e] long, local to the batch's n stocks
    edge_attr: Tensor  # [e, 3] float32


def day_seed(seed: int, epoch: int, t: int) -> int:
    """A per-(seed, epoch, day) RNG seed: dropout and subsampling do not depend on which process runs the day."""
    return ((seed * 1_000_003 + epoch) * 100_003 + t) % (2**63 - 1)


class DayData:
    """Panel and graph tensors on one device, holding dates up to `t_end` only.

    On CUDA the whole panel lives on the GPU and batches are sliced there (no DataLoader, no host
    round-trip). Nothing after `t_end` is copied, so a caller that passes the last date it may see
    cannot read past it.
    """

    def __init__(self, panel: Panel, graph: Graph | None, t_end: int, device: torch.device) -> None:
        sl = slice(0, t_end + 1)
        self.device, self.t_end = device, t_end
        # Which outputs the arrays come from (stage -> manifest sha256): a checkpoint's data fingerprint.
        self.lineage = {**panel.lineage, **(graph.lineage if graph is not None else {})}
        self.X = torch.from_numpy(np.array(panel.X[sl])).to(device)  # [T', N, F]
        self.Y = torch.from_numpy(np.array(panel.Y[sl])).to(device)  # [T', N, H]
        self.Y_raw = torch.from_numpy(np.array(panel.Y_raw[sl])).to(device)  # [T', N, H]
        self.valid = torch.from_numpy(np.array(panel.valid[sl])).to(device)  # [T', N]
        self.n_codes = self.X.shape[1]
        # Each day's valid stocks, CSR by date, so a step slices them with host offsets: valid[t].nonzero()
        # per day would stop the host until the GPU caught up (a host sync every step).
        self.day_stocks = self.valid.nonzero()[:, 1]  # [sum_t n_t], codes ascending within a day
        self.day_offsets = np.concatenate([[0], np.cumsum(panel.valid[sl].sum(1))]).astype(np.int64)
        self.graph = self.local_edges = None
        if graph is not None:
            e_end = int(graph.offsets[t_end + 1])
            self.graph = (
                torch.from_numpy(np.array(graph.edge_index[:, :e_end])).to(device).long(),  # [2, E']
                torch.from_numpy(np.array(graph.edge_attr[:e_end])).to(device).float(),  # [E', 3]
                np.asarray(graph.offsets[: t_end + 2]),
            )
            self.local_edges = self._local_edges()

    def upto(self, t_end: int) -> DayData:
        """A view holding dates <= t_end only (no copy): what a fit may see, cut from the full data."""
        assert t_end <= self.t_end, f"cannot extend {self.t_end} to {t_end}"
        view = copy.copy(self)
        view.t_end = t_end
        view.X, view.Y, view.Y_raw = self.X[: t_end + 1], self.Y[: t_end + 1], self.Y_raw[: t_end + 1]
        view.valid = self.valid[: t_end + 1]
        view.day_offsets = self.day_offsets[: t_end + 2]
        view.day_stocks = self.day_stocks[: int(view.day_offsets[-1])]
        if self.graph is not None:
            ei, ea, off = self.graph
            e_end = int(off[t_end + 1])
            view.graph = (ei[:, :e_end], ea[:e_end], off[: t_end + 2])
            view.local_edges = None if self.local_edges is None else self.local_edges[:, :e_end]
        return view

    def _local_edges(self) -> Tensor | None:
        """Every day's edges renumbered among that day's valid stocks ([2, E'], once for all days), or
        None when some edge has an end not valid on its day (then each day is renumbered and filtered)."""
        ei, _, off = self.graph
        day = torch.repeat_interleave(
            torch.arange(len(off) - 1, device=self.device), torch.from_numpy(np.diff(off)).to(self.device)
        )  # [E']
        ends_valid = self.valid[day, ei[0]] & self.valid[day, ei[1]]
        if not bool(ends_valid.all()):  # one host sync, at load time
            return None
        local = torch.cumsum(self.valid, 1) - 1  # [T', N]: a valid code's position among its day's
        return torch.stack([local[day, ei[0]], local[day, ei[1]]])

    def stocks(self, t: int, max_stocks: int = 0, gen: torch.Generator | None = None) -> Tensor:
        """Valid stocks of day t, optionally a random subset of at most max_stocks (sorted)."""
        idx = self.day_stocks[self.day_offsets[t] : self.day_offsets[t + 1]]  # [n]
        if max_stocks and len(idx) > max_stocks:
            pick = torch.randperm(len(idx), generator=gen)[:max_stocks].sort().values
            idx = idx[pick.to(idx.device)]
        return idx

    def day(self, t: int, lookback: int, idx: Tensor, shuffle_gen: torch.Generator | None = None) -> DayBatch:
        """Batch for day t over stocks idx; x uses X[t-L+1..t] only (zeros before the panel starts).

        shuffle_gen: permute the labels among the day's stocks (the shuffled-label control run).
        """
        assert 0 <= t <= self.t_end, f"day {t} outside the data this process holds (<= {self.t_end})"
        lo = max(0, t - lookback + 1)
        x = self.X[lo : t + 1, idx].float().permute(1, 0, 2)  # [n, l, F]
        if x.shape[1] < lookback:
            x = torch.nn.functional.pad(x, (0, 0, lookback - x.shape[1], 0))  # [n, L, F]
        y = self.Y[t, idx].float()  # [n, H]
        if shuffle_gen is not None:
            y = y[torch.randperm(len(idx), generator=shuffle_gen).to(y.device)]
        mask = ~torch.isnan(y)
        ei, ea = self._edges(t, idx)
        return DayBatch(t, idx, x.contiguous(), y, mask, ei, ea)

    def _edges(self, t: int, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Day t's edges among the stocks idx, renumbered 0..n-1 (edges to other stocks dropped)."""
        if self.graph is None:
            return torch.zeros(2, 0, dtype=torch.long, device=self.device), torch.zeros(
                0, 3, device=self.device
            )
        ei_all, ea_all, off = self.graph
        ei, ea = ei_all[:, off[t] : off[t + 1]], ea_all[off[t] : off[t + 1]]  # [2, e], [e, 3]
        whole = self.day_stocks[self.day_offsets[t] : self.day_offsets[t + 1]]
        if self.local_edges is not None and (idx.data_ptr(), len(idx)) == (whole.data_ptr(), len(whole)):
            # idx is stocks(t) itself (the same memory): day t's own numbering, no filter, no sync
            return self.local_edges[:, off[t] : off[t + 1]], ea
        local = torch.full((self.n_codes,), -1, dtype=torch.long, device=self.device)
        local[idx] = torch.arange(len(idx), device=self.device)
        src, dst = local[ei[0]], local[ei[1]]  # [e]
        keep = (src >= 0) & (dst >= 0)
        return torch.stack([src[keep], dst[keep]]), ea[keep]


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error the user can act on."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but no GPU is visible; use train.device=auto or cpu")
    return torch.device(name)


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels where torch has them (warn, not fail, where it has none), for the duration
    only: the flag is process-wide and other code in the process should not inherit it."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
