"""Technical family (`tech_*`): moving-average gaps and ratios, RSI, MACD, Bollinger, ATR, stochastic, ADX."""

# Everything is a ratio to the current Adj price or bounded in [0, 1]: a level in yen of an Adj series
# would move when a split happens later, which is the future leaking into the past.

from __future__ import annotations

import polars as pl

from kabuflow.features._ops import C, H, L, div, ema, lag, ts, ts_max, ts_mean, ts_min, ts_std, wilder
from kabuflow.features.spec import Family, Feature

MA_WINDOWS = (5, 20, 60, 200)
MACD_FAST, MACD_SLOW, MACD_SIGNAL, ADX_N = 12, 26, 9, 14  # the inputs passes fix these periods
SMA_WINDOWS, RSI_WINDOWS = (5, 20, 50, 60, 200), (2, 14)


def tech_sma_gap(w: int) -> pl.Expr:
    """AdjC / SMA_w - 1."""
    return (div(C, sma(w)) - 1.0).alias(f"tech_sma_gap_{w}d")


def tech_ema_gap(w: int) -> pl.Expr:
    """AdjC / EMA_w - 1 (EMA seeded at the stock's first bar, valid after w bars)."""
    return (div(C, ts(ema(C, w))) - 1.0).alias(f"tech_ema_gap_{w}d")


def tech_sma_ratio(short: int, long: int) -> pl.Expr:
    """SMA_short / SMA_long - 1: the classic crossover signal as a number."""
    return (div(sma(short), sma(long)) - 1.0).alias(f"tech_sma_ratio_{short}d_{long}d")


def inputs() -> list[dict[str, pl.Expr]]:
    """Window inputs in three passes: per-bar moves; the windows features share; MACD signal and DX."""
    prev = lag(C)
    up, down = H - lag(H), lag(L) - L
    first = prev.is_null()  # no previous bar: no move, no directional movement
    bar = {
        "_gain": (C - prev).clip(lower_bound=0.0),
        "_loss": (prev - C).clip(lower_bound=0.0),
        # True range; H - L on a stock's first bar (max_horizontal skips the null terms).
        "_tr": pl.max_horizontal(H - L, (H - prev).abs(), (L - prev).abs()),
        "_dmp": pl.when(~first).then(pl.when((up > down) & (up > 0)).then(up).otherwise(0.0)),
        "_dmm": pl.when(~first).then(pl.when((down > up) & (down > 0)).then(down).otherwise(0.0)),
    }
    smooth = {
        "_macd": (ts(ema(C, MACD_FAST)) - ts(ema(C, MACD_SLOW))) / C,
        "_pdm": ts(wilder(pl.col("_dmp"), ADX_N)),
        "_mdm": ts(wilder(pl.col("_dmm"), ADX_N)),
        # Windows several features share, computed once.
        **{f"_sma{w}": ts_mean(C, w) for w in SMA_WINDOWS},
        "_sd20": ts_std(C, 20),
        "_lo14": ts_min(L, 14),
        "_hi14": ts_max(H, 14),
        **{f"_up{n}": ts(wilder(pl.col("_gain"), n)) for n in RSI_WINDOWS},
        **{f"_down{n}": ts(wilder(pl.col("_loss"), n)) for n in RSI_WINDOWS},
    }
    pdm, mdm = pl.col("_pdm"), pl.col("_mdm")
    last = {
        "_macd_signal": ts(ema(pl.col("_macd"), MACD_SIGNAL)),
        # DI+ and DI- share the ATR denominator, so DX = |DM+ - DM-| / (DM+ + DM-) of the smoothed
        # moves; 0 on bars where neither direction has moved at all.
        "_dx": pl.when(pdm + mdm > 0).then((pdm - mdm).abs() / (pdm + mdm)).when(pdm.is_not_null()).then(0.0),
    }
    return [bar, smooth, last]


def sma(w: int) -> pl.Expr:
    """The w-bar simple moving average of AdjC (an inputs column)."""
    return pl.col(f"_sma{w}")


def tech_rsi(n: int) -> pl.Expr:
    """Wilder RSI in [0, 1]: avg gain / (avg gain + avg loss); 0.5 when the price has not moved at all."""
    up, down = pl.col(f"_up{n}"), pl.col(f"_down{n}")
    return (
        pl.when(up + down > 0).then(up / (up + down)).when(up.is_not_null()).then(0.5).alias(f"tech_rsi_{n}d")
    )


def tech_macd() -> pl.Expr:
    """MACD line (EMA_12 - EMA_26) scaled by the price."""
    return pl.col("_macd").alias(f"tech_macd_{MACD_SLOW}d")


def tech_macd_signal() -> pl.Expr:
    """EMA_9 of the scaled MACD line."""
    return pl.col("_macd_signal").alias(f"tech_macd_signal_{MACD_SIGNAL}d")


def tech_macd_hist() -> pl.Expr:
    """Scaled MACD line minus its signal."""
    return (pl.col("_macd") - pl.col("_macd_signal")).alias(f"tech_macd_hist_{MACD_SIGNAL}d")


def tech_bb_pctb() -> pl.Expr:
    """Bollinger %b over 20 bars: (AdjC - (SMA - 2 sd)) / (4 sd)."""
    return div(C - (sma(20) - 2 * pl.col("_sd20")), 4 * pl.col("_sd20")).alias("tech_bb_pctb_20d")


def tech_bb_width() -> pl.Expr:
    """Bollinger band width over 20 bars: 4 sd / SMA."""
    return div(4 * pl.col("_sd20"), sma(20)).alias("tech_bb_width_20d")


def tech_atr(n: int = 14) -> pl.Expr:
    """Wilder ATR / AdjC."""
    return (ts(wilder(pl.col("_tr"), n)) / C).alias(f"tech_atr_{n}d")


def tech_stoch_k(n: int = 14) -> pl.Expr:  # n: an inputs window (14)
    """Stochastic %K: (AdjC - lowest low) / (highest high - lowest low) over n bars."""
    lo, hi = pl.col(f"_lo{n}"), pl.col(f"_hi{n}")
    return div(C - lo, hi - lo).alias(f"tech_stoch_k_{n}d")


def tech_adx() -> pl.Expr:
    """Wilder ADX in [0, 1]: the smoothed DX of the inputs pass."""
    return ts(wilder(pl.col("_dx"), ADX_N)).alias(f"tech_adx_{ADX_N}d")


def features() -> list[Feature]:
    """The family's features, in output order."""
    exprs = [tech_sma_gap(w) for w in MA_WINDOWS] + [tech_ema_gap(w) for w in MA_WINDOWS]
    exprs += [tech_sma_ratio(5, 20), tech_sma_ratio(20, 60), tech_sma_ratio(50, 200)]
    exprs += [*(tech_rsi(n) for n in RSI_WINDOWS), tech_macd(), tech_macd_signal(), tech_macd_hist()]
    exprs += [tech_bb_pctb(), tech_bb_width(), tech_atr(), tech_stoch_k(), tech_adx()]
    return [Feature(e) for e in exprs]


FAMILY = Family("tech", features, inputs=inputs)
