"""Comparison of a cut run's panel and graph with the full run's on every date <= D, keyed by (date, code)."""

# The cut panel's code axis holds only the codes that had a row by D; the full panel's holds them all
# (sorted, so the cut's codes map onto it monotonically). A code the cut run lacks compares as what the
# panel holds for a stock without a row: X 0, not valid, R NaN, sector and market unknown.

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from kabuflow.audit.compare import Tally, differs
from kabuflow.graph import ATTRS
from kabuflow.normalize import Panel, load_panel

DATE_BLOCK = 32  # dates of X compared at a time


def _axes(full: Panel, cut: Panel, d: dt.date) -> tuple[int, np.ndarray, np.ndarray]:
    """(T: dates <= D, both panels agree on them; code index map cut -> full; epoch day per date)."""
    dates = [x for x in full.meta["dates"] if x <= d.isoformat()]
    if cut.meta["dates"] != dates:
        lost = sorted(set(dates) ^ set(cut.meta["dates"]))
        raise AssertionError(
            f"audit: the cut panel's dates differ from the full panel's <= {d} at {lost[:3]}"
        )
    pos = {c: i for i, c in enumerate(full.codes)}
    stray = [c for c in cut.codes if c not in pos]
    if stray:
        raise AssertionError(f"audit: the cut panel has codes the full panel lacks: {stray[:5]}")
    when = np.array(dates, dtype="datetime64[D]").astype(np.int64)
    return len(dates), np.array([pos[c] for c in cut.codes], dtype=np.int64), when


def _spread(block: np.ndarray, idx: np.ndarray, n: int, fill: float | int | bool) -> np.ndarray:
    """A cut array [t, n_cut, ...] laid onto the full code axis [t, n, ...], `fill` where the cut has no code."""
    out = np.full((block.shape[0], n, *block.shape[2:]), fill, dtype=block.dtype)
    out[:, idx] = block
    return out


def _names(arr: np.ndarray, vocab: list[str]) -> np.ndarray:
    """Sector/market indices as their names ('' unknown): the vocabularies of two panels may differ."""
    lookup = np.array([*vocab, ""], dtype=object)
    return lookup[np.where(arr >= 0, arr, len(vocab))]


def _tally2d(name: str, full: np.ndarray, cut: np.ndarray, when: np.ndarray, codes: list[str]) -> Tally:
    """A [T, N] array compared value by value."""
    moved = differs(full, cut)
    t = Tally(name)
    n = full.shape[1]
    stamp = np.repeat(when, n)
    t.add(full.size, moved, stamp, lambda i: (int(when[i // n]), codes[i % n], full.flat[i], cut.flat[i]))
    return t


def compare_panel(full_dir: Path, cut_dir: Path, d: dt.date) -> list[Tally]:
    """Tallies for every feature of X and for valid, R, sector and market on dates <= D."""
    full, cut = load_panel(full_dir), load_panel(cut_dir)
    if cut.feature_names != full.feature_names:
        raise AssertionError(
            f"audit: the cut panel's features differ: {sorted(set(full.feature_names) ^ set(cut.feature_names))[:5]}"
        )
    t_n, idx, when = _axes(full, cut, d)
    n, codes, names = len(full.codes), full.codes, full.feature_names
    x_tallies = [Tally(f"X:{f}") for f in names]
    for t0 in range(0, t_n, DATE_BLOCK):
        t1 = min(t0 + DATE_BLOCK, t_n)
        a = np.asarray(full.X[t0:t1])
        b = _spread(np.asarray(cut.X[t0:t1]), idx, n, 0)
        stamp = np.repeat(when[t0:t1], n)
        for j, tally in enumerate(x_tallies):
            fa, fb = a[:, :, j], b[:, :, j]
            tally.add(
                fa.size,
                differs(fa, fb),
                stamp,
                lambda i, fa=fa, fb=fb, t0=t0: (int(when[t0 + i // n]), codes[i % n], fa.flat[i], fb.flat[i]),
            )
    others = [
        _tally2d(
            "valid", np.asarray(full.valid[:t_n]), _spread(np.asarray(cut.valid), idx, n, False), when, codes
        ),
        _tally2d("R", np.asarray(full.R[:t_n]), _spread(np.asarray(cut.R), idx, n, np.nan), when, codes),
    ]
    for name, vocab in (("sector", "sectors"), ("market", "markets")):
        a = _names(np.asarray(getattr(full, name)[:t_n]), full.meta[vocab])
        b = _spread(_names(np.asarray(getattr(cut, name)), cut.meta[vocab]), idx, n, "")
        others.append(_tally2d(name, a, b, when, codes))
    return [*others, *x_tallies]


def _edges(graph: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.load(graph / f"{f}.npy", mmap_mode="r") for f in ("offsets", "edge_index", "edge_attr"))


def _one_date(
    t: int, day: int, full: tuple, cut: tuple, idx: np.ndarray, codes: list[str], tallies: list[Tally]
) -> None:
    """Add date t's edges to the tallies: edge presence, then each attribute of the edges both have."""
    (of, ef, af), (oc, ec, ac), n = full, cut, len(codes)
    kf = np.asarray(ef[0, of[t] : of[t + 1]], np.int64) * n + ef[1, of[t] : of[t + 1]]
    kc = idx[ec[0, oc[t] : oc[t + 1]]] * n + idx[ec[1, oc[t] : oc[t + 1]]]
    common, i_f, i_c = np.intersect1d(kf, kc, assume_unique=True, return_indices=True)
    lone = np.setxor1d(kf, kc, assume_unique=True)

    def pair(k: int) -> str:
        return f"{codes[k // n]}->{codes[k % n]}"

    in_full = np.isin(lone, kf)
    tallies[0].add(
        len(common) + len(lone),
        np.ones(len(lone), bool),
        np.full(len(lone), day),
        lambda i: (day, pair(lone[i]), bool(in_full[i]), not in_full[i]),
    )
    a, b = np.asarray(af[of[t] : of[t + 1]])[i_f], np.asarray(ac[oc[t] : oc[t + 1]])[i_c]
    for j, tally in enumerate(tallies[1:]):
        tally.add(
            len(common),
            a[:, j] != b[:, j],
            np.full(len(common), day),
            lambda i, j=j: (day, pair(common[i]), a[i, j], b[i, j]),
        )


def compare_graph(
    full_dir: Path, cut_dir: Path, full_panel: Path, cut_panel: Path, d: dt.date
) -> list[Tally]:
    """Tallies for the edge set (an edge only one run has: example values say which) and each edge
    attribute of the edges both have, per date <= D; edges are keyed by (source code, target code)."""
    full, cut = load_panel(full_panel), load_panel(cut_panel)
    t_n, idx, when = _axes(full, cut, d)
    tallies = [Tally("edge"), *(Tally(a) for a in ATTRS)]
    ef, ec = _edges(full_dir), _edges(cut_dir)
    for t in range(t_n):
        _one_date(t, int(when[t]), ef, ec, idx, full.codes, tallies)
    return tallies
