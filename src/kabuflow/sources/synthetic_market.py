"""The synthetic market's return engine: factor model, volatility clustering, regimes, volume, shocks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from kabuflow.sources.synthetic_universe import CLUSTER_VOL, MKT_VOL, SECTOR_VOL, SECTORS, STYLE_VOL, Universe

# Market factor: GARCH(1,1) with Student-t(5) shocks and a two-state Markov regime (calm / turbulent:
# a turbulent spell every ~1.3 years on average, lasting ~6 weeks, with 2.5x the volatility).
MKT_GARCH = (0.12, 0.86)
P_CALM_TO_TURB, P_TURB_TO_CALM, TURB_MULT = 0.003, 0.03, 2.5
MKT_DRIFT = 0.0002  # expected daily market return, in the oracle through each stock's beta
IDIO_GARCH = (0.12, 0.86)
IDIO_DF, FACTOR_DF = 5.0, 5.0
MAX_VOL_MULT = 5.0  # conditional vols stay below 5x their long-run level
# Idiosyncratic news jumps: ~2.5 a year, 4 residual vols on average (they make the fat tails).
JUMP_RATE, JUMP_SIZE = 0.01, 4.0
IDIO_MKT_SHARE = 0.7  # share of idiosyncratic variance that scales with market volatility
# A slow log-variance level per stock (AR(1), half-life ~7 months, SD 0.6): months of calm or stress.
SLOW_VOL_AR, SLOW_VOL_SD = 0.995, 0.6
MOM_STYLE_WINDOW = 120
# Statement day: the price reacts to the surprise (REACT residual vols per SD) and volume jumps.
REACT, ANN_VOLUME = 1.2, 0.8
# Log volume: AR(1) liquidity state, response to the day's |residual move| and to market volatility,
# attention and idiosyncratic noise. Attention is a unit-variance AR(1) driven by the shocks nu; the
# volume-shock signal spreads each nu over later returns with the same decay, so the expected return
# it adds is proportional to yesterday's attention, which volume shows.
VOL_AR, VOL_AR_SD, VOL_ABS, VOL_MKT, VOL_NU, VOL_NOISE = 0.9, 0.1, 0.3, 0.5, 0.6, 0.2
ATTENTION_AR = 0.93
SKEW_CAP = 0.9  # the largest weight of the skewed component (skewness 2 sqrt(2) w^3 of one shock)


@dataclass(frozen=True)
class Shocks:
    """Zero-mean shocks of every session and the states they drive, [T, N] unless noted."""

    e: np.ndarray  # total return shock (float64): beta * market + residual
    u: np.ndarray  # residual (non-market) shock: what the return-based signals feed on
    mkt: np.ndarray  # [T] market factor shock
    vol_state: np.ndarray  # [T] market volatility relative to its calm long-run level
    sigma: np.ndarray  # conditional daily vol of the idiosyncratic part
    log_volume: np.ndarray  # log shares traded, in first-bar share units
    nu: np.ndarray  # attention shock (N(0,1)): raises volume and expected returns, both decaying
    slow_noise: (
        np.ndarray
    )  # N(0,1) innovations of each stock's slow log-variance level (the low-risk impulse)
    z: np.ndarray  # statement surprise draw (used where a statement becomes public)
    w: np.ndarray  # forecast revision noise
    intraday: np.ndarray  # [3, T, N] N(0,1) draws for open, high and low


def day_rng(seed: int, t: int, perturb_from: int | None, variant: int = 1) -> np.random.Generator:
    """The generator for session t: one stream per day, so draws after a date can be swapped alone.

    `perturb_from` replaces the streams of every session >= it by alternative `variant` (>= 1) ones:
    the lever of the no-look-ahead test and of Monte Carlo checks of the oracle.
    """
    tag = variant if perturb_from is not None and t >= perturb_from else 0
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x5EED, t, tag])))


def _t(rng: np.random.Generator, df: float, size: int | tuple[int, ...]) -> np.ndarray:
    """Student-t draws scaled to unit variance and clipped at 8 SD (symmetric: still mean zero)."""
    return np.clip(rng.standard_t(df, size) / np.sqrt(df / (df - 2)), -8, 8)


# Rows of the per-day normal block: what each stock draws every session.
# "skew" comes last: appending a row leaves every earlier draw of the day unchanged.
NORMALS = ("nu", "z", "w", "open", "high", "low", "vol_ar", "vol_noise", "jump", "slow", "skew")


def _draws(
    n: int, n_factors: int, t_len: int, seed: int, perturb_from: int | None, variant: int
) -> dict[str, np.ndarray]:
    """Every random number of every session, each session from its own stream (day_rng)."""
    out = {
        "regime": np.empty(t_len),
        "mkt": np.empty(t_len),
        "factors": np.empty((t_len, n_factors)),
        "xi": np.empty((t_len, n), np.float32),
        "jump_u": np.empty((t_len, n), np.float32),
        "normal": np.empty((t_len, len(NORMALS), n), np.float32),
    }
    for t in range(t_len):
        rng = day_rng(seed, t, perturb_from, variant)
        out["regime"][t], out["mkt"][t] = rng.random(), _t(rng, FACTOR_DF, 1)[0]
        out["factors"][t] = _t(rng, FACTOR_DF, n_factors)
        out["xi"][t] = _t(rng, IDIO_DF, n)
        out["jump_u"][t] = rng.random(n, dtype=np.float32)
        out["normal"][t] = rng.standard_normal((len(NORMALS), n), dtype=np.float32)
    return out


def _market(regime_u: np.ndarray, zeta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Market factor shock and volatility state [T]: GARCH(1,1) times a two-state Markov regime."""
    a, b = MKT_GARCH
    omega, h, turb, cap = MKT_VOL**2 * (1 - a - b), MKT_VOL**2, False, (MAX_VOL_MULT * MKT_VOL) ** 2
    m, vs = np.empty(len(zeta)), np.empty(len(zeta))
    for t, (p, z) in enumerate(zip(regime_u, zeta, strict=True)):
        turb = turb != (p < (P_TURB_TO_CALM if turb else P_CALM_TO_TURB))
        mult = TURB_MULT if turb else 1.0
        base = np.sqrt(h) * z
        m[t], vs[t] = mult * base, np.sqrt(h) * mult / MKT_VOL
        h = min(omega + a * base**2 + b * h, cap)
    return m, vs


def _idio_vol(u: Universe, xi: np.ndarray, slow_noise: np.ndarray, vs: np.ndarray) -> np.ndarray:
    """Conditional idiosyncratic vol [T, N]: GARCH(1,1) x a slow log-vol level x the market's state."""
    a, b = IDIO_GARCH
    omega, h = u.idio_vol**2 * (1 - a - b), u.idio_vol**2
    garch = np.empty(xi.shape)
    for t in range(len(xi)):
        garch[t] = h
        h = omega + (a * xi[t] ** 2 + b) * h
    slow = lfilter([SLOW_VOL_SD * np.sqrt(1 - SLOW_VOL_AR**2)], [1.0, -SLOW_VOL_AR], slow_noise, axis=0)
    level = np.exp(slow - SLOW_VOL_SD**2 / 2)  # mean-one variance multiplier
    sig = np.sqrt(garch * level * (1 - IDIO_MKT_SHARE + IDIO_MKT_SHARE * vs[:, None] ** 2))
    return np.minimum(sig, MAX_VOL_MULT * u.idio_vol)


def skewed_shock(xi: np.ndarray, g: np.ndarray, sig: np.ndarray, ref: float, skew: float) -> np.ndarray:
    """Unit-variance, zero-mean idiosyncratic shock whose right skew grows with volatility:
    sqrt(1 - w^2) xi + w (g^2 - 1) / sqrt(2), w = min(skew x sig / ref, SKEW_CAP).

    xi (the fat-tailed draw), g ~ N(0, 1) and w are independent, so the mean stays 0 and the variance 1
    whatever w is: the vols, the signals and the oracle (an expectation) are untouched. But a volatile
    stock's median move falls below its mean, as on the TSE (issue #12: by 60-day-vol quintile the mean
    5-day return rises while the median falls), so a model fitted to means and one fitted to ranks
    disagree about volatile stocks. skew 0 returns xi itself.
    """
    if skew == 0:
        return xi
    w = np.minimum(skew * sig / ref, SKEW_CAP)
    return np.sqrt(1 - w**2) * xi + w * (g.astype(np.float64) ** 2 - 1) / np.sqrt(2)


def _momentum_exposure(resid: np.ndarray) -> np.ndarray:
    """Cross-sectional z-score of each stock's residual return over the previous 120 sessions."""
    c = np.cumsum(np.vstack([np.zeros((1, resid.shape[1])), resid]), axis=0)  # c[t] = sum of rows < t
    lo = np.maximum(np.arange(len(resid)) - MOM_STYLE_WINDOW, 0)
    past = c[:-1] - c[lo]
    sd = past.std(axis=1, keepdims=True)
    return np.where(sd > 0, (past - past.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0), 0.0)


def draw_shocks(
    u: Universe,
    ann: np.ndarray,
    seed: int,
    perturb_from: int | None = None,
    variant: int = 1,
    skew: float = 0.0,
) -> Shocks:
    """All shocks of T sessions; `ann` [T, N] marks the sessions a statement surprise goes public;
    `skew` sets how right-skewed the idiosyncratic shocks of volatile stocks are (skewed_shock)."""
    t_len, n = ann.shape
    n_cl = max(1, int(u.cluster.max()) + 1)
    d = _draws(n, len(SECTORS) + n_cl + 3, t_len, seed, perturb_from, variant)
    g = {name: d["normal"][:, k] for k, name in enumerate(NORMALS)}
    m, vs = _market(d["regime"], d["mkt"])
    sig = _idio_vol(u, d["xi"], g["slow"], vs)
    f = d["factors"] * vs[:, None]
    f_sec, f_cl = SECTOR_VOL * f[:, : len(SECTORS)], CLUSTER_VOL * f[:, len(SECTORS) : len(SECTORS) + n_cl]
    f_style = STYLE_VOL * f[:, -3:]
    jump = (d["jump_u"] < JUMP_RATE) * JUMP_SIZE * u.resid_vol * g["jump"]
    resid = (
        u.sector_load * f_sec[:, u.sector]
        + np.where(u.cluster >= 0, u.cluster_load * f_cl[:, np.maximum(u.cluster, 0)], 0.0)
        + f_style[:, :2] @ u.style.T
        + sig * skewed_shock(d["xi"], g["skew"], sig, float(np.median(u.idio_vol)), skew)
        + jump
        + ann * REACT * u.resid_vol * g["z"]
    )
    resid += _momentum_exposure(resid) * f_style[:, 2:3]
    ar = lfilter([VOL_AR_SD], [1.0, -VOL_AR], g["vol_ar"], axis=0)
    abs_move = np.minimum(np.abs(resid) / u.resid_vol, 10.0)
    log_volume = (
        np.log(u.turnover * u.shares0) + ar + VOL_ABS * (abs_move - 0.8) + VOL_MKT * np.log(vs)[:, None]
    )
    attention = lfilter([np.sqrt(1 - ATTENTION_AR**2)], [1.0, -ATTENTION_AR], g["nu"], axis=0)
    log_volume += VOL_NU * attention + ANN_VOLUME * ann + VOL_NOISE * g["vol_noise"]
    f32 = np.float32
    return Shocks(
        e=u.beta * m[:, None] + resid,
        u=resid.astype(f32),
        mkt=m,
        vol_state=vs,
        sigma=sig.astype(f32),
        log_volume=log_volume.astype(f32),
        nu=g["nu"],
        slow_noise=g["slow"],
        z=g["z"],
        w=g["w"],
        intraday=np.stack([g["open"], g["high"], g["low"]]),
    )


def static_drift(u: Universe, lottery: float) -> np.ndarray:
    """Each stock's constant expected daily return [N]: the market drift through beta, plus the lottery
    premium lottery x (long-run idio vol - its median): volatile stocks earn more on average.

    With skewed_shock the premium is paid in the right tail: a volatile stock's mean rises while its
    median (and its rank) falls, the trap of issue #12 that a mean-fitting (z, L2) model falls into.
    """
    return u.beta * MKT_DRIFT + lottery * (u.idio_vol - np.median(u.idio_vol))


def returns(u: Universe, shocks: Shocks, mu: np.ndarray, drift: np.ndarray) -> np.ndarray:
    """Simple daily returns r = mu + drift + e of the latent (un-rounded, un-limited) adjusted price, [T, N].

    Shocks are martingale differences, so E[r_s | state at s-1] = mu_s + drift exactly; mu carries the
    planted signals, drift (static_drift) the market drift through beta and the lottery premium.
    """
    r = mu + drift + shocks.e
    return np.maximum(r, -0.95)


def listed_mask(u: Universe, t_len: int, halted: np.ndarray) -> np.ndarray:
    """[T, N] True where a stock has a bar: listed and not halted."""
    t = np.arange(t_len)[:, None]
    return (t >= u.list_start) & (t <= u.list_end) & ~halted


def halts(u: Universe, t_len: int, rng: np.random.Generator) -> np.ndarray:
    """[T, N] trading halts: about 0.3 episodes per stock-year of 1-3 sessions (missing rows)."""
    n = u.n
    k = rng.poisson(0.3 * t_len / 245.0 * n)
    who, when, length = rng.integers(0, n, k), rng.integers(1, t_len, k), rng.integers(1, 4, k)
    out = np.zeros((t_len, n), bool)
    for d in range(3):
        keep = d < length
        out[np.minimum(when[keep] + d, t_len - 1), who[keep]] = True
    return out
