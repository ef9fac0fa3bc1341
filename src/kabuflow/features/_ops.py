"""Expression helpers: `ts_*` run over a stock's own rows (`.over` its code), `cs_*` over one date."""

# Every time-series helper looks backwards only (shift by a positive n, trailing rolling windows,
# recursive EMAs), so a value at row t is a function of rows ≤ t of the same stock. Rows are sorted by
# (code, date) before any of these run; windows count the stock's own bars.

from __future__ import annotations

import math

import polars as pl

# The base frame's split-adjusted prices and volumes (AdjO..AdjVo); `va` is the turnover value in yen.
O, H, L, C, V, VA = (pl.col(c) for c in ("o", "h", "l", "c", "v", "va"))  # noqa: E741
LN2 = math.log(2.0)
# Partition keys. `cid` is the code as a dense integer (same partition as "code"; hashing an integer
# instead of a string makes `.over` ~3x faster). `dsec` is one integer per (date, 33-sector), null
# where the sector is unknown.
CODE, DATE, DATE_SECTOR = "cid", "date", "dsec"


def div(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """a / b, null where b is 0 or null: a NaN or inf would poison every rolling window it enters."""
    return pl.when(b != 0).then(a / b)


def lag(e: pl.Expr, n: int = 1) -> pl.Expr:
    """The value n rows earlier (within a ts_ wrapper: n bars earlier of the same stock)."""
    return e.shift(n)


def ts(e: pl.Expr) -> pl.Expr:
    """Evaluate a row-wise/rolling expression separately for each stock, over its own rows in date order."""
    return e.over(CODE)


def ts_ret(e: pl.Expr, n: int) -> pl.Expr:
    """e[t] / e[t-n] - 1 over the stock's rows."""
    return ts(div(e, lag(e, n)) - 1.0)


def ts_mean(e: pl.Expr, w: int) -> pl.Expr:
    """Trailing mean over w rows (all w required)."""
    return ts(e.rolling_mean(w, min_samples=w))


def ts_std(e: pl.Expr, w: int) -> pl.Expr:
    """Trailing sample standard deviation (ddof=1) over w rows (all w required)."""
    return ts(e.rolling_std(w, min_samples=w))


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
