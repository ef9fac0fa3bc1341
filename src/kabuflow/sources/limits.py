"""TSE daily price limits (制限値幅) and whether a move fits them: the guard's yardstick."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# TSE daily price limits (制限値幅), yen, by base price (the previous close): base < bound -> width.
# Source: JPX, 「制限値幅」 https://www.jpx.co.jp/equities/trading/domestic/06.html (the current table,
# checked against a broker's copy of it; the table of years before 2016 was not checked). Above the
# last bound the width is 10,000,000 yen.
LIMIT_TABLE: tuple[tuple[float, float], ...] = (
    (100, 30), (200, 50), (500, 80), (700, 100), (1_000, 150), (1_500, 300), (2_000, 400),
    (3_000, 500), (5_000, 700), (7_000, 1_000), (10_000, 1_500), (15_000, 3_000), (20_000, 4_000),
    (30_000, 5_000), (50_000, 7_000), (70_000, 10_000), (100_000, 15_000), (150_000, 30_000),
    (200_000, 40_000), (300_000, 50_000), (500_000, 70_000), (700_000, 100_000),
    (1_000_000, 150_000), (1_500_000, 300_000), (2_000_000, 400_000), (3_000_000, 500_000),
    (5_000_000, 700_000), (7_000_000, 1_000_000), (10_000_000, 1_500_000), (15_000_000, 3_000_000),
    (20_000_000, 4_000_000), (30_000_000, 5_000_000), (50_000_000, 7_000_000),
)  # fmt: skip
LAST_WIDTH = 10_000_000.0
_BOUNDS = np.array([b for b, _ in LIMIT_TABLE])
_WIDTHS = np.array([w for _, w in LIMIT_TABLE] + [LAST_WIDTH])
# TSE broadens one side of a stock's limit after consecutive untraded limit days: x2 (3 days) until
# 2020-07-31, x4 (2 days) from 2020-08-03 (JPX, 制限値幅の拡大運用の見直し). Prices do not show the order
# book, so a close at its limit is taken to open the broadened side for the next move.
BROADEN_X4_FROM = np.datetime64("2020-08-03")
EPS = 1e-9  # a move of exactly the limit (3,740 from 4,440) must not fail on rounding
AT_LIMIT = 0.98  # a move of at least this share of the limit closed at it (ticks round the last yen)
# Raw closes unknown (guard.raw_unknown): the true raw close is taken to lie within 10x either way of
# the adjusted one (a 1:10 split or 10:1 consolidation later); the widest limit over that range applies.
RAW_SCALE = 10.0


def limit_width(base: np.ndarray) -> np.ndarray:
    """Daily price limit (yen) for a base price (LIMIT_TABLE): e.g. 99 -> 30, 100 -> 50, 3,000 -> 700."""
    return _WIDTHS[np.searchsorted(_BOUNDS, base, side="right")]


@dataclass(frozen=True)
class Rule:
    """How strictly moves are judged: `tol` widens every limit by that share; `scale` > 1 when raw
    closes are unknown (C = AdjC, AdjFactor 1 everywhere: the real raw close lies somewhere in
    [C / scale, C * scale]), and then the widest limit share over that range applies."""

    tol: float = 0.05
    scale: float = 1.0


def share(base_raw: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The limit as a share of the base price; with scale > 1, the largest over [base/scale, base*scale]."""
    base = np.asarray(base_raw, dtype=float)
    out = limit_width(base) / base
    if scale > 1.0:
        # A band's share peaks at its lower bound: the most over the range is at its low end or at
        # one of the bounds inside it, read from a table of range maxima over the bounds.
        lo = base / scale
        i0 = np.searchsorted(_BOUNDS, lo, side="right")
        i1 = np.searchsorted(_BOUNDS, base * scale, side="right")
        out = np.maximum(np.maximum(out, limit_width(lo) / lo), _RANGE_MAX[i0, i1])
    return out


def _range_max() -> np.ndarray:
    """[k, m] = the largest share at bounds k..m-1 (0 when empty)."""
    at = _WIDTHS[1:] / _BOUNDS  # the share just at each bound
    n = at.size
    table = np.zeros((n + 1, n + 1))
    for k in range(n):
        table[k, k + 1 :] = np.maximum.accumulate(at[k:])
    return table


_RANGE_MAX = _range_max()


def legal(
    base_raw: np.ndarray, move: np.ndarray, gap: np.ndarray, rule: Rule, up_x: Any = 1.0, down_x: Any = 1.0
) -> np.ndarray:
    """Whether an adjusted move (a share of the previous close) over `gap` sessions fits the limits:
    the previous raw close's width as a share of it, times up_x / down_x on a broadened side, widened
    by rule.tol, compounded over the gap."""
    s = share(base_raw, rule.scale) * (1.0 + rule.tol) + EPS
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        up = (1.0 + s * up_x) ** gap - 1.0
        down = 1.0 - np.maximum(1.0 - s * down_x, 0.0) ** gap
    # A move that is not a number (a missing price) cannot be judged here; the sources drop those rows.
    return ~np.isfinite(move) | ((move <= up) & (move >= -down))


def broaden(dates: np.ndarray) -> np.ndarray:
    """The broadened width's multiple on each date: 2 before 2020-08-03, 4 from then on."""
    return np.where(dates.astype("datetime64[D]") >= BROADEN_X4_FROM, 4.0, 2.0)


def side_x(
    prev_move: np.ndarray, prev_share: np.ndarray, dates: np.ndarray, gap: Any = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(up_x, down_x) for moves whose previous move was `prev_move` against a limit of `prev_share`,
    over `gap` sessions: a close at the limit opens that side; missing sessions in between (untraded
    days, which is how a stock at an unfilled limit shows in the bars) open both."""
    x = broaden(dates)
    skipped = np.asarray(gap) > 1
    up = np.where((prev_move >= AT_LIMIT * prev_share) | skipped, x, 1.0)
    down = np.where((prev_move <= -AT_LIMIT * prev_share) | skipped, x, 1.0)
    return up, down
