"""Expression helpers: `ts_*` run over each stock's own rows (by its code), `cs_*` within one date."""

# Every time-series helper looks backwards only (shift by a positive n, trailing rolling windows,
# recursive EMAs), so a value at row t is a function of rows ≤ t of the same stock. Rows are sorted by
# (code, date) before any of these run; windows count the stock's own bars.
#
# How "over the stock's rows" is computed. Rolling sums, moments and EWMs run `.over(CODE)`: each
# stock's kernel starts from scratch, so not even rounding residue crosses from one stock into another
# (a whole-column running sum would carry it). Shifts (`lag`) and rolling max/min need no partition: on
# the (code, date)-sorted frame, a shift by n at a row whose position within its code (`pos`) is ≥ n
# lands on the same code, as does a full w-bar window at pos ≥ w-1; below that it is nulled. That is
# exactly what `.over("code")` gives (tests/features/test_features.py checks it; a max has no running state to
# carry), without splitting the column by stock. Window inputs are best plain columns (Family.inputs):
# an expression inside `.over` is evaluated once per stock.

from __future__ import annotations

import math

import polars as pl

# The base frame's split-adjusted prices and volumes (AdjO..AdjVo); `va` is the turnover value in yen.
O, H, L, C, V, VA = (pl.col(c) for c in ("o", "h", "l", "c", "v", "va"))  # noqa: E741
LN2 = math.log(2.0)
# `pos`: row number within the stock (0 = its first bar). Partition keys: `cid` is the code as a dense
# integer (same partition as "code", cheaper to hash); `dsec` is date × SECTOR_SLOTS + a sector id that
# depends on the S33 value alone (not on which other sectors exist, which later data could change),
# NO_SECTOR where the as-of sector is unknown; never null, so sorting by it also sorts by date.
POS = pl.col("pos")
CODE, DATE, DATE_SECTOR = "cid", "date", "dsec"
SECTOR_SLOTS, NO_SECTOR = 2**32, 2**31


def div(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """a / b, null where b is 0 or null: a NaN or inf would poison every rolling window it enters.

    `b` appears once, so a window in the denominator is computed once (the in-memory engine does not
    merge repeated sub-expressions).
    """
    return a / b.replace(0, None)


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
    """Trailing maximum over the stock's last w bars (a whole-column window, masked like `lag`)."""
    return pl.when(POS >= w - 1).then(e.rolling_max(w, min_samples=w))


def ts_min(e: pl.Expr, w: int) -> pl.Expr:
    """Trailing minimum over the stock's last w bars (a whole-column window, masked like `lag`)."""
    return pl.when(POS >= w - 1).then(e.rolling_min(w, min_samples=w))


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
    """Rank within the group scaled to [0, 1]: (rank - 1) / (n - 1), ties averaged; null when n < 2.

    In-group: only in a family run `by` the date (Family.by), where it ranks among the date's stocks.
    """
    return div(e.rank("average") - 1.0, e.count().cast(pl.Float64) - 1.0)


def cs_z(e: pl.Expr) -> pl.Expr:
    """(e - mean) / std (ddof=1) within the group, like cs_rank; null when the std is 0 or undefined."""
    return div(e - e.mean(), e.std())


def _keyed(e: pl.Expr, key: str) -> pl.Expr:
    return e if key == DATE else pl.when(pl.col(key) % SECTOR_SLOTS != NO_SECTOR).then(e)


def grp_mean(e: pl.Expr, key: str = DATE_SECTOR) -> pl.Expr:
    """Mean within a group (default date × sector); null for stocks of no known sector."""
    return _keyed(e.mean().over(key), key)


def grp_z(e: pl.Expr, key: str = DATE_SECTOR) -> pl.Expr:
    """In-group z-score (ddof=1); null for no known sector or a constant group."""
    return _keyed(div(e - e.mean().over(key), e.std().over(key)), key)


def grp_rank(e: pl.Expr, key: str = DATE_SECTOR) -> pl.Expr:
    """In-group rank scaled to [0, 1] like cs_rank; null for no known sector or a group of fewer than 2."""
    n = e.count().over(key).cast(pl.Float64)
    return _keyed(div(e.rank("average").over(key) - 1.0, n - 1.0), key)


def f64(name: str) -> pl.Expr:
    """A computed feature column read back at full precision (features are stored as Float32)."""
    return pl.col(name).cast(pl.Float64)
