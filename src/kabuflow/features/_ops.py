"""Expression helpers: `ts_*` run over each stock's own rows (by its code), `cs_*` over one date."""

# Every time-series helper looks backwards only (shift by a positive n, trailing rolling windows,
# recursive EMAs), so a value at row t is a function of rows ≤ t of the same stock. Rows are sorted by
# (code, date) before any of these run; windows count the stock's own bars.
#
# How "over the stock's rows" is computed: on the (code, date)-sorted frame, a shift by n or a full
# w-row window at a row whose position within its code (`pos`) is ≥ n (≥ w-1) contains only rows of
# that code, and is exactly what `.over("code")` would give; below that it is nulled, which is also
# what `.over("code")` gives (not enough rows). So shifts and rolling windows run once over the whole
# column and are masked by `pos` — the same numbers as `.over("code")` (tests/test_features.py checks
# it) at a fraction of the cost of evaluating the expression tree once per stock. Recursive EWMs have
# no such window and do run `.over(CODE)`.

from __future__ import annotations

import math

import polars as pl

# The base frame's split-adjusted prices and volumes (AdjO..AdjVo); `va` is the turnover value in yen.
O, H, L, C, V, VA = (pl.col(c) for c in ("o", "h", "l", "c", "v", "va"))  # noqa: E741
LN2 = math.log(2.0)
# `pos`: row number within the stock (0 = its first bar). Partition keys: `cid` is the code as a dense
# integer (same partition as "code", cheaper to hash); `dsec` is one integer per (date, 33-sector),
# null where the sector is unknown.
POS = pl.col("pos")
CODE, DATE, DATE_SECTOR = "cid", "date", "dsec"


def div(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """a / b, null where b is 0 or null: a NaN or inf would poison every rolling window it enters."""
    return pl.when(b != 0).then(a / b)


def lag(e: pl.Expr, n: int = 1) -> pl.Expr:
    """The stock's value n bars earlier; null on its first n bars."""
    return pl.when(POS >= n).then(e.shift(n))


def _window(e: pl.Expr, w: int, how: str) -> pl.Expr:
    """Trailing w-bar `rolling_<how>` of the stock's own rows (all w required; null on its first w-1 bars)."""
    return getattr(e, f"rolling_{how}")(w, min_samples=w).over(CODE)


def ts_ret(e: pl.Expr, n: int) -> pl.Expr:
    """e[t] / e[t-n] - 1 over the stock's rows."""
    return div(e, lag(e, n)) - 1.0


def ts_mean(e: pl.Expr, w: int) -> pl.Expr:
    """Trailing mean over the stock's last w bars."""
    return _window(e, w, "mean")


def ts_std(e: pl.Expr, w: int) -> pl.Expr:
    """Trailing sample standard deviation (ddof=1) over the stock's last w bars."""
    return _window(e, w, "std")


def ts_var(e: pl.Expr, w: int) -> pl.Expr:
    """Trailing sample variance (ddof=1) over the stock's last w bars."""
    return _window(e, w, "var")


def ts_max(e: pl.Expr, w: int) -> pl.Expr:
    """Trailing maximum over the stock's last w bars."""
    return _window(e, w, "max")


def ts_min(e: pl.Expr, w: int) -> pl.Expr:
    """Trailing minimum over the stock's last w bars."""
    return _window(e, w, "min")


def ts(e: pl.Expr) -> pl.Expr:
    """Evaluate a recursive (EWM) expression separately for each stock, over its rows in date order."""
    return e.over(CODE)


def ema(e: pl.Expr, span: int) -> pl.Expr:
    """Recursive EMA with alpha = 2/(span+1), first value = first observation; null until `span` values.

    Only inside `ts(...)`. Inputs must have no interior nulls (leading ones are fine): pandas and
    polars weight a gap differently, and the pandas reference has to agree.
    """
    return e.ewm_mean(span=span, adjust=False, min_samples=span)


def wilder(e: pl.Expr, n: int) -> pl.Expr:
    """Wilder's smoothing (alpha = 1/n), as in RSI, ATR and ADX; null until n values. Only inside `ts(...)`."""
    return e.ewm_mean(alpha=1.0 / n, adjust=False, min_samples=n)


def cs_rank(e: pl.Expr) -> pl.Expr:
    """Rank within the date scaled to [0, 1]: (rank - 1) / (n - 1), ties averaged; null when n < 2."""
    n = e.count().over(DATE)
    return pl.when(n > 1).then((e.rank("average").over(DATE) - 1.0) / (n - 1))


def cs_z(e: pl.Expr) -> pl.Expr:
    """(e - mean) / std (ddof=1) within the date; null when the std is 0 or undefined."""
    return div(e - e.mean().over(DATE), e.std().over(DATE))


def grp_mean(e: pl.Expr, key: str = DATE_SECTOR) -> pl.Expr:
    """Mean within a group (default date × sector); null for rows whose group key is null."""
    return pl.when(pl.col(key).is_not_null()).then(e.mean().over(key))


def grp_z(e: pl.Expr, key: str = DATE_SECTOR) -> pl.Expr:
    """In-group z-score (ddof=1); null for a null key or a constant group."""
    return pl.when(pl.col(key).is_not_null()).then(div(e - e.mean().over(key), e.std().over(key)))


def grp_rank(e: pl.Expr, key: str = DATE_SECTOR) -> pl.Expr:
    """In-group rank scaled to [0, 1] like cs_rank; null for a null key or a group of fewer than 2."""
    n = e.count().over(key)
    return pl.when(pl.col(key).is_not_null() & (n > 1)).then((e.rank("average").over(key) - 1.0) / (n - 1))


def f64(name: str) -> pl.Expr:
    """A computed feature column read back at full precision (features are stored as Float32)."""
    return pl.col(name).cast(pl.Float64)
