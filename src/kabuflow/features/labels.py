"""Labels y_h(t) = AdjC[t+1+h] / AdjC[t+1] - 1, located by XTKS session position, never by row offset."""

# The signal is formed after the close of t and traded at the close of t+1, so the label window starts
# at session t+1. A stock with no bar at session t+1 or t+1+h (halted, delisted, or past the data's
# end) gets a null label: counting rows instead would stretch the window over the gap.

from __future__ import annotations

import numpy as np
import polars as pl

from kabuflow.config import HORIZONS


def _bar_at(key: np.ndarray, close: np.ndarray, offset: int) -> np.ndarray:
    """AdjC of the same stock `offset` sessions after each row, NaN where it has no bar that session.

    `key` = code index · 2^32 + session position, strictly increasing over the (code, date)-sorted
    frame, so a binary search finds the target (code, session) or proves it absent.
    """
    n = len(key)
    target = key + offset
    # Fast path: with no missing session in between, the target is exactly `offset` rows ahead.
    idx = np.minimum(np.arange(n) + offset, n - 1)
    miss = key[idx] != target
    # Otherwise (a halt, the stock's last rows) binary-search the few remaining rows.
    idx[miss] = np.minimum(np.searchsorted(key, target[miss]), n - 1)
    hit = key[idx] == target
    out = np.full(n, np.nan)
    out[hit] = close[idx[hit]]
    return out


def labels(frame: pl.DataFrame, horizons: tuple[int, ...] = HORIZONS) -> pl.DataFrame:
    """Columns `y_{h}d` (Float64, null where unknown) for a frame sorted by (code, date) with `sess` and `c`."""
    assert frame["code"].is_sorted(), "labels need the frame sorted by (code, date)"
    code_id = (
        frame.select(pl.col("code").rle_id()).to_series() if "cid" not in frame.columns else frame["cid"]
    )
    code_id = code_id.to_numpy().astype(np.int64)
    key = (code_id << 32) + frame["sess"].to_numpy().astype(np.int64)
    assert np.all(np.diff(key) > 0), "labels need rows sorted by (code, date) with one row per session"
    close = frame["c"].to_numpy().astype(np.float64)
    entry = _bar_at(key, close, 1)
    cols = [
        pl.Series(f"y_{h}d", _bar_at(key, close, 1 + h) / entry - 1.0, dtype=pl.Float64, nan_to_null=True)
        for h in horizons
    ]
    return pl.DataFrame(cols)
