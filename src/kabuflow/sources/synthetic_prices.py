"""From latent returns to exchange prints: splits, tick sizes, daily price limits, OHLC, volume."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kabuflow.sources.synthetic_universe import Universe

# TSE daily price limits (yen) by base price: width applies below each bound.
LIMIT_BOUNDS = np.array(
    [100, 200, 500, 700, 1e3, 1.5e3, 2e3, 3e3, 5e3, 7e3, 1e4, 1.5e4, 2e4, 3e4, 5e4, 7e4, 1e5]
)
LIMIT_WIDTH = np.array(
    [30, 50, 80, 100, 150, 300, 400, 500, 700, 1e3, 1.5e3, 3e3, 4e3, 5e3, 7e3, 1e4, 1.5e4, 3e4]
)
# Tick sizes (yen) up to each bound (inclusive): the general table and the finer TOPIX500 one.
TICK_BOUNDS = np.array([3e3, 5e3, 3e4, 5e4, 3e5, 5e5, 3e6])
TICK = np.array([1, 5, 10, 50, 100, 500, 1e3, 5e3])
TICK500_BOUNDS = np.array([1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6])
TICK500 = np.array([0.1, 0.5, 1, 5, 10, 50, 100, 500, 1e3])
# Splits and consolidations: candidate board decisions ~0.2 per company-year; a high price (raw
# >= 3,000 yen) makes it a split, a low one (< 400 yen) a consolidation (mostly before the October
# 2018 move of every TSE stock to 100-share units, when 10:1 consolidations were common).
DECISIONS_PER_YEAR = 0.15
SPLIT_RATIOS, SPLIT_P = np.array([2, 3, 4, 5, 10]), np.array([0.55, 0.15, 0.1, 0.12, 0.08])
CONSOL_RATIOS, CONSOL_P = np.array([0.1, 0.2, 0.5]), np.array([0.65, 0.25, 0.1])
UNIT_UNIFICATION = np.datetime64("2018-10-01")


@dataclass(frozen=True)
class Prices:
    """Raw prints and share counts, [T, N] (NaN where there is no bar)."""

    o: np.ndarray
    h: np.ndarray
    lo: np.ndarray
    c: np.ndarray
    vo: np.ndarray
    upper: np.ndarray  # bool: the high touched the upper limit
    lower: np.ndarray
    mult: np.ndarray  # shares per first-bar share (splits multiply it): raw = adjusted-to-first / mult
    shares: np.ndarray  # raw shares outstanding


def _step(p: np.ndarray, bounds: np.ndarray, values: np.ndarray, side: str) -> np.ndarray:
    return values[np.searchsorted(bounds, p, side=side)]


def tick_size(p: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """Tick (yen) for price p: finer for TOPIX500 constituents."""
    return np.where(fine, _step(p, TICK500_BOUNDS, TICK500, "left"), _step(p, TICK_BOUNDS, TICK, "left"))


def limit_width(base: np.ndarray) -> np.ndarray:
    """Daily price limit (yen) around the base price (the previous close)."""
    return _step(base, LIMIT_BOUNDS, LIMIT_WIDTH, "right")


def latent_path(u: Universe, r: np.ndarray) -> np.ndarray:
    """Latent close per first-bar share, [T, N]: price0 on the first bar, compounding r after it."""
    t = np.arange(len(r))[:, None]
    g = np.where(t > u.list_start, np.log1p(r), 0.0)
    return u.price0 * np.exp(np.cumsum(g, axis=0))


def split_factors(
    u: Universe, q: np.ndarray, bar: np.ndarray, dates: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """[T, N] share multiplier per event day (2 = a 1:2 split, 0.1 = a 10:1 consolidation), else 1."""
    t_len, n = q.shape
    k = rng.poisson(DECISIONS_PER_YEAR * t_len / 245.0 * n)
    when, who = rng.integers(1, t_len, k), rng.integers(0, n, k)
    pick_split, pick_cons, later = (
        rng.choice(SPLIT_RATIOS, k, p=SPLIT_P),
        rng.choice(CONSOL_RATIOS, k, p=CONSOL_P),
        rng.random(k),
    )
    fac, cur = np.ones((t_len, n)), np.ones(n)
    for j in np.argsort(when, kind="stable"):
        t, i = when[j], who[j]
        if not bar[t, i] or not bar[t - 1, i] or t <= u.list_start[i] or fac[t, i] != 1:
            continue
        raw = q[t - 1, i] / cur[i]
        if raw >= 3000:
            ratio = min(pick_split[j], max(2, int(raw // 500)))
        elif raw < 400 and (dates[t] < UNIT_UNIFICATION or later[j] < 0.2):
            ratio = pick_cons[j]
        else:
            continue
        fac[t, i], cur[i] = ratio, cur[i] * ratio
    return fac


def _intraday(cl: np.ndarray, r: np.ndarray, sigma: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, ...]:
    """Latent open, high and low: the open lies ~40 % of the way from the previous close."""
    o = cl * np.exp(-0.6 * np.log1p(r) + 0.3 * sigma * noise[0])
    h = np.maximum(o, cl) * np.exp(0.5 * sigma * np.abs(noise[1]))
    lo = np.minimum(o, cl) * np.exp(-0.5 * sigma * np.abs(noise[2]))
    return o, h, lo


def prints(
    u: Universe,
    q: np.ndarray,
    r: np.ndarray,
    fac: np.ndarray,
    bar: np.ndarray,
    shocks_sigma: np.ndarray,
    intraday: np.ndarray,
    log_volume: np.ndarray,
) -> Prices:
    """Round to ticks and clip at the daily limits, session by session (the base is the last print).

    The latent path goes on through halts and limit days; prints catch up with it on the next
    sessions, so a limit day's excess move is carried forward, as on the exchange.
    """
    t_len, n = q.shape
    mult = np.cumprod(fac, axis=0)
    cl = q / mult
    latent = dict(zip(("o", "h", "lo"), _intraday(cl, r, shocks_sigma.astype(float), intraday), strict=True))
    latent["c"] = cl
    # Rounded latent prints: the tick depends on the price level alone, so it is vectorised.
    grid = {k: np.maximum(np.round(x / (tk := tick_size(x, u.topix500))) * tk, tk) for k, x in latent.items()}
    out = {k: np.full((t_len, n), np.nan) for k in grid}
    upper, lower = np.zeros((t_len, n), bool), np.zeros((t_len, n), bool)
    prev = np.full(n, np.nan)
    for t in range(t_len):  # the limits depend on the previous print: one session at a time
        b = bar[t]
        first = np.isnan(prev)
        base = np.where(first, cl[t], prev / fac[t])
        lim = np.where(first, np.inf, limit_width(base))
        lo_p, hi_p = np.maximum(base - lim, 1.0), base + lim
        for key in ("c", "o", "h", "lo"):
            out[key][t] = np.where(b, np.round(np.clip(grid[key][t], lo_p, hi_p), 1), np.nan)
        out["h"][t] = np.fmax(out["h"][t], np.fmax(out["o"][t], out["c"][t]))
        out["lo"][t] = np.fmin(out["lo"][t], np.fmin(out["o"][t], out["c"][t]))
        upper[t], lower[t] = b & (out["h"][t] >= hi_p), b & (out["lo"][t] <= lo_p) & ~first
        prev = np.where(b, out["c"][t], prev)
    vo = np.where(bar, np.maximum(np.round(np.exp(log_volume.astype(float)) * mult / 100) * 100, 100), np.nan)
    return Prices(out["o"], out["h"], out["lo"], out["c"], vo, upper, lower, mult, u.shares0 * mult)
