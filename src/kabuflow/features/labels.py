"""Labels y_h(t) = AdjC[t+1+h] / AdjC[t+1] - 1, located by XTKS session position, never by row offset."""

# The signal is formed after the close of t and traded at the close of t+1, so the label window starts
# at session t+1. A stock with no bar at session t+1 or t+1+h (halted, delisted, or past the data's
# end) gets a null label: counting rows instead would stretch the window over the gap.

from __future__ import annotations

import numpy as np
import polars as pl

from kabuflow.config import HORIZONS


def _bar_at(key: np.ndarray, close: np.ndarray, offset: int, scratch: np.ndarray) -> np.ndarray:
    """AdjC of the same stock `offset` sessions after each row, NaN where it has no bar that session.

    `key` = code index · 2^32 + session position, strictly increasing over the (code, date)-sorted
    frame, so a binary search finds the target (code, session) or proves it absent. `scratch` is
    int64 work space as long as `key`, shared between calls: fresh memory, not arithmetic, is what
    full-length temporaries cost.
    """
    n = len(key)
    out = np.full(n, np.nan)
    m = max(n - offset, 0)
    # Fast path: with no missing session in between, the target is exactly `offset` rows ahead.
    ahead = key[offset:] == np.add(key[:m], offset, out=scratch[:m])
    np.copyto(out[:m], close[offset:], where=ahead)
    # Otherwise (a halt, the stock's last rows) binary-search the few remaining rows.
    rest = np.concatenate([np.flatnonzero(~ahead), np.arange(m, n)])
    target = key[rest] + offset
    idx = np.minimum(np.searchsorted(key, target), n - 1)
    hit = key[idx] == target
    out[rest[hit]] = close[idx[hit]]
    return out


def labels(frame: pl.DataFrame, horizons: tuple[int, ...] = HORIZONS) -> pl.DataFrame:
    """Columns `y_{h}d` (Float64, null where unknown) for a frame sorted by (code, date) with `sess` and `c`."""
    assert frame["code"].is_sorted(), "labels need the frame sorted by (code, date)"
    code_id = pl.col("cid") if "cid" in frame.columns else pl.col("code").rle_id()
    key = frame.select(code_id.cast(pl.Int64) * 2**32 + pl.col("sess")).to_series().to_numpy()
    assert (key[1:] > key[:-1]).all(), "labels need rows sorted by (code, date) with one row per session"
    close = frame["c"].cast(pl.Float64).to_numpy()
    scratch = np.empty_like(key)
    entry = _bar_at(key, close, 1, scratch)
    cols = []
    for h in horizons:
        y = _bar_at(key, close, 1 + h, scratch)
        np.divide(y, entry, out=y)
        y -= 1.0
        cols.append(pl.Series(f"y_{h}d", y, dtype=pl.Float64, nan_to_null=True))
    return pl.DataFrame(cols)
