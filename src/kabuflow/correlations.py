"""Pairwise-complete return correlations over a trailing window: rolling sums (float64) and the reference."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from kabuflow.config import GraphConfig

REL_VAR = 1e-5  # a pair's variance under this share of its sum of squares is a constant series


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with n torch intra-op threads (0: every core this process may use), restored on exit."""
    old = torch.get_num_threads()
    torch.set_num_threads(n if n > 0 else len(os.sched_getaffinity(0)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


TILE = 256  # [TILE, TILE] float64 blocks: a tile's dozen temporaries stay in cache


class RollingCorr:
    """Masked sums over the sessions in the window, for every pair of the n columns (x = 0 where missing):

    count[i, j] = sum_s m_i m_j, sum[i, j] = sum_s x_i m_j, square[i, j] = sum_s x_i^2 m_j,
    cross[i, j] = sum_s x_i x_j. A session that enters adds its outer products, one that leaves
    subtracts them: O(n^2 * sessions moved) per step instead of O(n^2 * window) per recompute.

    `step` works tile by tile over the upper triangle: it folds the moved sessions into a tile's sums
    and turns them into rho while they are in cache, so each sum is read and written once a step
    (count and cross are symmetric: only their upper tiles are kept). Tiles run on `threads` Python
    threads, each op on its own thread: torch's intra-op pool on ops this small spin-waits at every
    barrier, which on a loaded 2-core box cost 13x the CPU of one thread. float64 keeps the drift negligible:
    each add/subtract rounds at ~1e-16 of the sum (tests/test_correlations.py checks a long run against
    a from-scratch rho); counts are integers well under 2^53, hence exact.
    """

    def __init__(self, n: int, threads: int = 1, tile: int = TILE) -> None:
        self.n, self.threads = n, max(1, threads)
        self._msq = torch.zeros(3, n, n, dtype=torch.float64)  # count, sum, square
        self._cross = torch.zeros(n, n, dtype=torch.float64)
        cuts = list(range(0, n, tile)) + [n]
        self._spans = [slice(lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]

    def step(
        self, enter: np.ndarray, leave: np.ndarray, valid: np.ndarray, min_obs: int, scale: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add sessions `enter` [k, n], remove `leave` [j, n] (NaN = missing); then rho [n, n] float32
        times `scale` (the graph's shrinkage), and its ranking score |rho| with -1 where rho is NaN.

        rho is Pearson's over each pair's complete sessions, NaN where they are fewer than min_obs,
        where either series is (near-)constant on them, on the diagonal, and in the row and column of
        every column not `valid` [n]: the definition of `pairwise_corr` over the window. The score is
        made here, tile by tile in cache, rather than in two more passes over [n, n] after.
        """
        rows = np.concatenate([enter, leave]).astype(np.float64)
        mask = torch.from_numpy(np.isfinite(rows)).to(torch.float64)  # [k, n]
        x = torch.from_numpy(np.nan_to_num(rows, nan=0.0))
        sign = torch.ones(len(rows), 1, dtype=torch.float64)
        sign[len(enter) :] = -1.0  # leaving sessions subtract their products
        left = torch.stack([mask, x, x * x]) * sign  # [3, k, n]: count, sum, square terms
        ok_col = torch.from_numpy(np.array(valid, bool))
        rho = torch.empty(self.n, self.n, dtype=torch.float32)
        score = torch.empty(self.n, self.n, dtype=torch.float32)

        def work(ab: tuple[slice, slice]) -> None:
            a, b = ab
            if len(rows):
                self._fold(left, mask, x, a, b)
            keep = ok_col[a, None] & ok_col[None, b]
            tile = self._tile_rho(a, b, min_obs).mul_(scale).masked_fill_(~keep, torch.nan)
            rank = tile.abs().nan_to_num_(nan=-1.0)
            rho[a, b], rho[b, a], score[a, b], score[b, a] = tile, tile.T, rank, rank.T

        tiles = [(a, b) for i, a in enumerate(self._spans) for b in self._spans[i:]]
        with torch_threads(1), ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(work, tiles))  # tiles touch disjoint blocks of every tensor
        return rho.fill_diagonal_(torch.nan), score.fill_diagonal_(-1.0)

    def _fold(self, left: torch.Tensor, mask: torch.Tensor, x: torch.Tensor, a: slice, b: slice) -> None:
        """Add the moved sessions' products to tile (a, b) of every sum, and to (b, a) of sum/square."""
        self._msq[:, a, b].baddbmm_(left[:, :, a].transpose(1, 2), mask[:, b].expand(3, -1, -1))
        if a != b:
            self._msq[1:, b, a].baddbmm_(left[1:, :, b].transpose(1, 2), mask[:, a].expand(2, -1, -1))
        self._cross[a, b].addmm_(left[1, :, a].T, x[:, b])

    def _tile_rho(self, a: slice, b: slice, min_obs: int) -> torch.Tensor:
        """rho of tile (a, b) from its sums: cov = cross - sum_i sum_j / count, var likewise; float64 up
        to cov and var (where the cancellation is), float32 after (what rho is stored in)."""
        cnt, s_i, q_i = self._msq[:, a, b]
        s_j, q_j = self._msq[1:, b, a].transpose(1, 2).contiguous()  # strided reads cost 2x in every op
        inv = cnt.clamp(min=1.0).reciprocal_()
        mean_i = s_i * inv
        cov = torch.addcmul(self._cross[a, b], mean_i, s_j, value=-1.0)
        var_i = torch.addcmul(q_i, mean_i, s_i, value=-1.0)  # count * variance over the pair's sessions
        var_j = torch.addcmul(q_j, s_j * inv, s_j, value=-1.0)
        ok = (cnt >= min_obs) & (var_i > REL_VAR * q_i) & (var_j > REL_VAR * q_j)
        rho = cov.to(torch.float32) * (var_i * var_j).to(torch.float32).rsqrt_()
        return rho.clamp_(-1.0, 1.0).masked_fill_(~ok, torch.nan)


def _masked_rows(x: torch.Tensor, m: torch.Tensor, rows: torch.Tensor, min_obs: int) -> torch.Tensor:
    """Pairwise-complete Pearson rho of columns `rows` against every column: [len(rows), n].

    Each pair uses only the sessions both observed: with xc = x centred by its own mean and 0 where
    missing, counts = M_r^T M, sums = Xc_r^T M, M_r^T Xc, squares likewise, cross = Xc_r^T Xc.
    """
    xc = torch.where(m, x - torch.nanmean(x, 0), 0.0)
    mf = m.to(x.dtype)
    a, b = xc[:, rows], mf[:, rows]
    cnt = b.T @ mf
    si, sj, sij = a.T @ mf, b.T @ xc, a.T @ xc
    sii, sjj = (a * a).T @ mf, b.T @ (xc * xc)
    cnt_ = cnt.clamp(min=1)
    vi, vj = sii - si * si / cnt_, sjj - sj * sj / cnt_
    # Centring by the own mean keeps the cancellation small; a (near-)constant pair stays NaN.
    ok = (cnt >= min_obs) & (vi > REL_VAR * sii) & (vj > REL_VAR * sjj)
    rho = (sij - si * sj / cnt_) / torch.sqrt(vi.clamp(min=1e-30) * vj.clamp(min=1e-30))
    return torch.where(ok, rho.clamp(-1.0, 1.0), torch.nan)


def pairwise_corr(x: torch.Tensor, min_obs: int) -> torch.Tensor:
    """Pearson correlation of the columns of x [W, n] (NaN = missing) over pairwise-complete sessions.

    NaN where a pair shares fewer than `min_obs` sessions or a series is constant; NaN diagonal.
    Columns observed on every session (the common case) take one standardized matrix product Z^T Z;
    only the rows and columns of the rest go through the masked products (`_masked_rows`).
    """
    w, n = x.shape
    m = torch.isfinite(x)
    cnt = m.sum(0)
    varies = torch.where(m, x, -torch.inf).amax(0) > torch.where(m, x, torch.inf).amin(0)
    full = (cnt == w) & (w >= min_obs) & varies
    xf = torch.where(full, x, 0.0)
    sd = xf.std(0, correction=0).clamp(min=1e-30)
    # A NaN column in z makes its whole row and column of Z^T Z NaN: no masking pass over [n, n].
    z = torch.where(full, (xf - xf.mean(0)) / (sd * w**0.5), torch.nan)
    rho = z.T @ z  # [n, n]
    part = torch.nonzero(~full & (cnt >= min_obs) & varies).flatten()
    if len(part):
        rows = _masked_rows(x, m, part, min_obs)
        rho[part] = rows
        rho[:, part] = rows.T
        rho[part[:, None], part] = (rows[:, part] + rows[:, part].T) / 2  # exactly symmetric
    rho.fill_diagonal_(torch.nan)
    return rho


METHODS = ("rolling", "reference")


def varies(window: np.ndarray) -> np.ndarray:
    """[n] bool: the column takes two different values on the window's sessions (NaN = missing)."""
    if not len(window):
        return np.zeros(window.shape[1], bool)
    return np.fmax.reduce(window, axis=0) > np.fmin.reduce(window, axis=0)  # fmax/fmin skip NaN


def correlations(
    r: np.ndarray, valid: np.ndarray, g: GraphConfig, method: str = "rolling"
) -> Iterator[tuple[int, np.ndarray, torch.Tensor, torch.Tensor | None]]:
    """(t, nodes, rho_s, score) on every g.every-th session t: rho_s [len(nodes)]^2 the shrunk pairwise-complete rho
    among `nodes` over sessions t - window + 1 .. t of r, NaN in the row and column of a node not valid
    at t (`reference` passes only the valid nodes, `rolling` every column); score = |rho_s| with -1
    where NaN (`rolling` makes it in its tiles; None from `reference`).

    `rolling` keeps running sums and moves them by the sessions that entered and left since the last
    recompute (`RollingCorr`, float64); `reference` recomputes every window from scratch in float32
    (the algorithm before 2026-12-03, kept for the benchmark and the tests). Both see nothing after t.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    roll = RollingCorr(r.shape[1], torch.get_num_threads()) if method == "rolling" else None
    entered = left = 0  # sessions [0, entered) have been added, [0, left) removed
    for t in range(0, r.shape[0], g.every):
        lo = max(0, t - g.window + 1)
        nodes = np.flatnonzero(valid[t])
        if roll is None:
            rho = pairwise_corr(torch.from_numpy(np.asarray(r[lo : t + 1, nodes], np.float32)), g.min_obs)
            rho, score = rho * (1 - g.shrinkage), None
        else:  # a session that would enter and leave in the same step is skipped altogether
            enter, leave = r[max(entered, lo) : t + 1], r[left : min(lo, entered)]
            entered, left, nodes = t + 1, lo, np.arange(r.shape[1])
            # Sums of a series that is constant on its window are rounding residue, not zero (what
            # entered and left is summed in different orders): its constancy is read off the window.
            use = valid[t] & varies(r[lo : t + 1])
            rho, score = roll.step(enter, leave, use, g.min_obs, 1 - g.shrinkage)  # NaN off today's stocks
        yield t, nodes, rho, score
