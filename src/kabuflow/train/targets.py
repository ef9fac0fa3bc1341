"""The training target every model fits (`train.target`): a per-date transform of the raw labels."""

from __future__ import annotations

import dataclasses

import numpy as np

from kabuflow.normalize import Panel
from kabuflow.scaling import label_z, rank_gauss

# rank: Gaussianised cross-sectional rank, Phi^-1((rank - 0.5) / n). The metric is a rank correlation,
# and real returns are right-skewed: a mean-fitting target (z, raw) learns "volatile stocks earn more
# on average" while their median (and their rank) falls with volatility (docs/baselines.md).
TARGETS = ("rank", "z", "raw")


def train_target(y_raw: np.ndarray, valid: np.ndarray, kind: str, clip: float) -> np.ndarray:
    """[T, N, H] float32 target from raw labels y_raw [T, N, H] over the valid stocks of each date
    (NaN elsewhere). Same-date values only: the labels look ahead by definition, nothing else does."""
    if kind not in TARGETS:
        raise ValueError(f"train.target must be one of {', '.join(TARGETS)}, got {kind!r}")
    if kind == "z":
        return label_z(y_raw, valid, clip)
    yv = np.where(valid[..., None], y_raw, np.nan).astype(np.float32)  # [T, N, H]
    if kind == "raw":
        return yv
    ranked = rank_gauss(np.moveaxis(yv, 1, 2), clip)  # [T, H, N]: rank over the stocks of a date
    return np.ascontiguousarray(np.moveaxis(ranked, 2, 1), dtype=np.float32)


def with_target(panel: Panel, kind: str, clip: float) -> Panel:
    """The panel with Y replaced by the chosen target (Y_raw, which evaluation scores, is untouched)."""
    y = train_target(np.asarray(panel.Y_raw), np.asarray(panel.valid), kind, clip)
    return dataclasses.replace(panel, Y=y)
