"""Technical family (`tech_*`): moving-average gaps and ratios, RSI, MACD, Bollinger, ATR, stochastic, ADX."""

# Everything is a ratio to the current Adj price or bounded in [0, 1]: a level in yen of an Adj series
# would move when a split happens later, which is the future leaking into the past.

from __future__ import annotations

import polars as pl

from kabuflow.features._ops import C, H, L, div, ema, lag, ts, ts_max, ts_mean, ts_min, ts_std, wilder
from kabuflow.features.spec import Family, Feature

MA_WINDOWS = (5, 20, 60, 200)


def tech_sma_gap(w: int) -> pl.Expr:
    """AdjC / SMA_w - 1."""
    return (div(C, ts_mean(C, w)) - 1.0).alias(f"tech_sma_gap_{w}d")


def tech_ema_gap(w: int) -> pl.Expr:
    """AdjC / EMA_w - 1 (EMA seeded at the stock's first bar, valid after w bars)."""
    return (div(C, ts(ema(C, w))) - 1.0).alias(f"tech_ema_gap_{w}d")


def tech_sma_ratio(short: int, long: int) -> pl.Expr:
    """SMA_short / SMA_long - 1: the classic crossover signal as a number."""
    return (div(ts_mean(C, short), ts_mean(C, long)) - 1.0).alias(f"tech_sma_ratio_{short}d_{long}d")


def true_range() -> pl.Expr:
    """max(H - L, |H - C[t-1]|, |L - C[t-1]|); H - L on a stock's first bar."""
    prev = lag(C)
    return pl.max_horizontal(H - L, (H - prev).abs(), (L - prev).abs())


def tech_rsi(n: int) -> pl.Expr:
    """Wilder RSI in [0, 1]: avg gain / (avg gain + avg loss); 0.5 when the price has not moved at all."""
    d = C - lag(C)
    # Two simple per-stock windows combined row-wise: cheaper than one compound expression per stock.
    up, down = ts(wilder(d.clip(lower_bound=0.0), n)), ts(wilder((-d).clip(lower_bound=0.0), n))
    return (
        pl.when(up + down > 0).then(up / (up + down)).when(up.is_not_null()).then(0.5).alias(f"tech_rsi_{n}d")
    )


def macd_line(fast: int = 12, slow: int = 26) -> pl.Expr:
    """(EMA_fast - EMA_slow) / AdjC; only inside ts(...)."""
    return (ema(C, fast) - ema(C, slow)) / C


def tech_macd(fast: int = 12, slow: int = 26) -> pl.Expr:
    """MACD line scaled by the price."""
    return ts(macd_line(fast, slow)).alias(f"tech_macd_{slow}d")


def tech_macd_signal(n: int = 9) -> pl.Expr:
    """EMA_n of the scaled MACD line."""
    return ts(ema(macd_line(), n)).alias(f"tech_macd_signal_{n}d")


def tech_macd_hist(n: int = 9) -> pl.Expr:
    """Scaled MACD line minus its signal."""
    return ts(macd_line() - ema(macd_line(), n)).alias(f"tech_macd_hist_{n}d")


def _bollinger(w: int) -> tuple[pl.Expr, pl.Expr]:
    return ts_mean(C, w), ts_std(C, w)


def tech_bb_pctb(w: int = 20) -> pl.Expr:
    """Bollinger %b: (AdjC - (SMA - 2 sd)) / (4 sd)."""
    sma, sd = _bollinger(w)
    return div(C - (sma - 2 * sd), 4 * sd).alias(f"tech_bb_pctb_{w}d")


def tech_bb_width(w: int = 20) -> pl.Expr:
    """Bollinger band width 4 sd / SMA."""
    sma, sd = _bollinger(w)
    return div(4 * sd, sma).alias(f"tech_bb_width_{w}d")


def tech_atr(n: int = 14) -> pl.Expr:
    """Wilder ATR / AdjC."""
    return ts(wilder(true_range(), n) / C).alias(f"tech_atr_{n}d")


def tech_stoch_k(n: int = 14) -> pl.Expr:
    """Stochastic %K: (AdjC - lowest low) / (highest high - lowest low) over n bars."""
    lo, hi = ts_min(L, n), ts_max(H, n)
    return div(C - lo, hi - lo).alias(f"tech_stoch_k_{n}d")


def tech_adx(n: int = 14) -> pl.Expr:
    """Wilder ADX in [0, 1]; DX is 0 on bars where neither direction has moved (both DIs are 0)."""
    up, down = H - lag(H), lag(L) - L
    plus = pl.when((up > down) & (up > 0)).then(up).otherwise(0.0)
    minus = pl.when((down > up) & (down > 0)).then(down).otherwise(0.0)
    first = lag(C).is_null()  # no previous bar: no directional movement is defined
    # DI+ and DI- share the ATR denominator, so DX = |DM+ - DM-| / (DM+ + DM-) of the smoothed moves.
    pdm, mdm = wilder(pl.when(~first).then(plus), n), wilder(pl.when(~first).then(minus), n)
    dx = pl.when(pdm + mdm > 0).then((pdm - mdm).abs() / (pdm + mdm)).when(pdm.is_not_null()).then(0.0)
    return ts(wilder(dx, n)).alias(f"tech_adx_{n}d")


def features() -> list[Feature]:
    """The family's features, in output order."""
    exprs = [tech_sma_gap(w) for w in MA_WINDOWS] + [tech_ema_gap(w) for w in MA_WINDOWS]
    exprs += [tech_sma_ratio(5, 20), tech_sma_ratio(20, 60), tech_sma_ratio(50, 200)]
    exprs += [tech_rsi(2), tech_rsi(14), tech_macd(), tech_macd_signal(), tech_macd_hist()]
    exprs += [tech_bb_pctb(), tech_bb_width(), tech_atr(), tech_stoch_k(), tech_adx()]
    return [Feature(e) for e in exprs]


FAMILY = Family("tech", features)
