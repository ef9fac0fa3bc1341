"""Mean daily RankIC of a fixed set of rows, fast enough to score every boosting round, and the round it picks."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

MIN_NAMES = 3  # as evaluate.metrics: a day with fewer labelled names has no cross-sectional correlation


class DailyRankIC:
    """Scores vectors aligned with rows (day t [R], label [R]) by the mean over days of the Spearman
    correlation (average ranks) of score and label, as `evaluate.metrics.daily_ic` does: rows without a
    label are left out, days with fewer than 3 names are skipped, a constant score counts as 0.

    The rows are laid out once as a dense [D, n_max] grid (NaN padding), so one call is two rankings
    of that grid instead of a Python loop over days.
    """

    def __init__(self, t: np.ndarray, label: np.ndarray) -> None:
        ok = np.isfinite(label)
        self.rows = np.flatnonzero(ok)
        days, day = np.unique(np.asarray(t)[ok], return_inverse=True)
        counts = np.bincount(day, minlength=len(days))
        order = np.argsort(day, kind="stable")
        pos = np.empty(len(day), np.int64)
        pos[order] = np.arange(len(day)) - np.repeat(np.cumsum(counts) - counts, counts)
        self.cell = (day, pos)
        self.keep = counts >= MIN_NAMES  # [D]
        self.shape = (len(days), int(counts.max()) if len(days) else 0)
        self.label_rank = self._centred_ranks(np.asarray(label, np.float64)[self.rows])

    def _centred_ranks(self, values: np.ndarray) -> np.ndarray:
        """Per-day average ranks minus their day mean, on the grid [D, n_max] (0 in the padding)."""
        grid = np.full(self.shape, np.nan)
        grid[self.cell] = values
        r = rankdata(grid, axis=1, nan_policy="omit")
        r = r - np.nanmean(r, axis=1, keepdims=True)
        return np.nan_to_num(r, nan=0.0)

    def daily(self, score: np.ndarray) -> np.ndarray:
        """Spearman correlation per kept day [D'] (0 where the score is constant on the day)."""
        rs = self._centred_ranks(np.asarray(score, np.float64)[self.rows])
        num = (rs * self.label_rank).sum(1)
        den = np.sqrt((rs**2).sum(1) * (self.label_rank**2).sum(1))
        ic = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        return ic[self.keep]

    def __call__(self, score: np.ndarray) -> float:
        ic = self.daily(score)
        return float(ic.mean()) if ic.size else float("nan")


def pick_round(scores: list[float], min_rounds: int, patience: int) -> tuple[int, bool]:
    """(best round, stop now) for validation scores of rounds 1..len(scores), higher is better.

    The best round is the first maximum among rounds >= min_rounds (the last round while fewer have
    run); stop once `patience` rounds after it brought nothing better. patience <= 0 never stops.
    """
    n = len(scores)
    if n < max(min_rounds, 1):
        return n, False
    lo = max(min_rounds, 1) - 1
    tail = np.asarray(scores[lo:], dtype=np.float64)
    best = lo + int(np.nanargmax(tail)) + 1 if np.isfinite(tail).any() else n
    return best, patience > 0 and n - best >= patience
