"""The synthetic market's return engine: factor model, volatility clustering, regimes, volume, shocks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kabuflow.sources.synthetic_universe import CLUSTER_VOL, MKT_VOL, SECTOR_VOL, SECTORS, STYLE_VOL, Universe

# Market factor: GARCH(1,1) with Student-t(5) shocks and a two-state Markov regime (calm / turbulent,
# turbulence roughly once a year for about six weeks, doubling volatility).
MKT_GARCH = (0.12, 0.86)
P_CALM_TO_TURB, P_TURB_TO_CALM, TURB_MULT = 0.003, 0.03, 2.5
MKT_DRIFT = 0.0002  # expected daily market return, in the oracle through each stock's beta
IDIO_GARCH = (0.12, 0.86)
IDIO_DF, FACTOR_DF = 5.0, 5.0
MAX_VOL_MULT = 5.0  # conditional vols stay below 5x their long-run level
# Idiosyncratic news jumps: ~2.5 a year, 4 residual vols on average (they make the fat tails).
JUMP_RATE, JUMP_SIZE = 0.01, 4.0
IDIO_MKT_SHARE = 0.7  # share of idiosyncratic variance that scales with market volatility
# A slow log-volatility level per stock (AR(1), half-life ~5 months, SD ~0.3): months of calm or stress.
SLOW_VOL_AR, SLOW_VOL_SD = 0.995, 0.6
MOM_STYLE_WINDOW = 120
# Statement day: the price reacts to the surprise (REACT residual vols per SD) and volume jumps.
REACT, ANN_VOLUME = 1.2, 0.8
# Log volume: AR(1) liquidity state, response to the day's |residual move| and to market volatility,
# the attention shock nu (the volume-shock signal's impulse) and idiosyncratic noise.
VOL_AR, VOL_AR_SD, VOL_ABS, VOL_MKT, VOL_NU, VOL_NOISE = 0.9, 0.12, 0.35, 0.5, 0.5, 0.2


@dataclass(frozen=True)
class Shocks:
    """Everything the day loop draws: zero-mean shocks and the states they drive, [T, N] unless noted."""

    e: np.ndarray  # total return shock (float64): beta * market + residual
    u: np.ndarray  # residual (non-market) shock: what the return-based signals feed on
    mkt: np.ndarray  # [T] market factor shock
    vol_state: np.ndarray  # [T] market volatility relative to its calm long-run level
    sigma: np.ndarray  # conditional daily vol of the idiosyncratic part
    log_volume: np.ndarray  # log shares traded, in first-bar share units
    nu: np.ndarray  # attention shock (N(0,1)): raises volume today, returns over the next days
    z: np.ndarray  # statement surprise draw (used where a statement becomes public)
    w: np.ndarray  # forecast revision noise
    intraday: np.ndarray  # [3, T, N] N(0,1) draws for open, high and low


def day_rng(seed: int, t: int, perturb_from: int | None) -> np.random.Generator:
    """The generator for session t: one stream per day, so draws after a date can be swapped alone.

    `perturb_from` replaces the streams of every session >= it (the no-look-ahead test's lever).
    """
    tag = 1 if perturb_from is not None and t >= perturb_from else 0
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x5EED, t, tag])))


def _t(rng: np.random.Generator, df: float, size: int) -> np.ndarray:
    """Student-t draws scaled to unit variance and clipped at 8 SD (symmetric: still mean zero)."""
    return np.clip(rng.standard_t(df, size) / np.sqrt(df / (df - 2)), -8, 8)


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


class _Loop:
    """Mutable state of the day loop (market GARCH, regime, idio GARCH, volume AR, momentum sums)."""

    def __init__(self, u: Universe, t_len: int) -> None:
        self.u = u
        n = u.n
        a, b = MKT_GARCH
        self.m_omega = MKT_VOL**2 * (1 - a - b)
        self.m_h, self.turb = MKT_VOL**2, False
        ai, bi = IDIO_GARCH
        self.i_omega = u.idio_vol**2 * (1 - ai - bi)
        self.i_h = u.idio_vol**2
        self.ar = np.zeros(n)
        self.slow = np.zeros(n)
        self.mom_sum = np.zeros(n)
        self.n_clusters = int(u.cluster.max()) + 1
        self.cl = np.where(u.cluster >= 0, u.cluster, 0)
        self.log_base = np.log(u.turnover * u.shares0)

    def step(self, rng: np.random.Generator, ann: np.ndarray, out: dict, t: int) -> None:
        """Advance one session: draw, write row t of every output array, update the states."""
        u, n = self.u, self.u.n
        flip = rng.random() < (P_TURB_TO_CALM if self.turb else P_CALM_TO_TURB)
        self.turb = self.turb != flip
        mult = TURB_MULT if self.turb else 1.0
        zeta = _t(rng, FACTOR_DF, 1)[0]
        m = np.sqrt(self.m_h) * zeta
        vs = np.sqrt(self.m_h) * mult / MKT_VOL
        a, b = MKT_GARCH
        self.m_h = min(self.m_omega + a * m**2 + b * self.m_h, (MAX_VOL_MULT * MKT_VOL) ** 2)
        f_sec = SECTOR_VOL * vs * _t(rng, FACTOR_DF, len(SECTORS))
        f_cl = CLUSTER_VOL * vs * _t(rng, FACTOR_DF, max(1, self.n_clusters))
        f_style = STYLE_VOL * vs * rng.standard_normal(3)
        xi = _t(rng, IDIO_DF, n)
        nu, z, w = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n)
        noise = rng.standard_normal((7, n))
        self.slow = SLOW_VOL_AR * self.slow + SLOW_VOL_SD * np.sqrt(1 - SLOW_VOL_AR**2) * noise[6]
        jump = (rng.random(n) < JUMP_RATE) * JUMP_SIZE * u.resid_vol * noise[5]
        level = np.exp(self.slow - SLOW_VOL_SD**2 / 2)  # mean-one variance multiplier
        sig = np.sqrt(self.i_h * level * (1 - IDIO_MKT_SHARE + IDIO_MKT_SHARE * vs**2))
        sig = np.minimum(sig, MAX_VOL_MULT * u.idio_vol)
        ai, bi = IDIO_GARCH
        self.i_h = self.i_omega + ai * self.i_h * xi**2 + bi * self.i_h
        mom_expo = _zscore(self.mom_sum)
        resid = (
            u.sector_load * f_sec[u.sector]
            + np.where(u.cluster >= 0, u.cluster_load * f_cl[self.cl], 0.0)
            + u.style @ f_style[:2]
            + mom_expo * f_style[2]
            + sig * xi
            + jump
            + ann * REACT * u.resid_vol * z
        )
        self.mom_sum += resid
        if t >= MOM_STYLE_WINDOW:
            self.mom_sum -= out["u"][t - MOM_STYLE_WINDOW]
        self.ar = VOL_AR * self.ar + VOL_AR_SD * noise[3]
        abs_move = np.minimum(np.abs(resid) / u.resid_vol, 10.0)
        logv = self.log_base + self.ar + VOL_ABS * (abs_move - 0.8) + VOL_MKT * np.log(vs)
        logv += VOL_NU * nu + ANN_VOLUME * ann + VOL_NOISE * noise[4]
        out["e"][t] = u.beta * mult * m + resid
        out["mkt"][t], out["vol_state"][t] = mult * m, vs
        for key, val in (("u", resid), ("sigma", sig), ("log_volume", logv), ("nu", nu), ("z", z), ("w", w)):
            out[key][t] = val
        out["intraday"][:, t] = noise[:3]


def draw_shocks(u: Universe, ann: np.ndarray, seed: int, perturb_from: int | None = None) -> Shocks:
    """Run the day loop over T sessions (vectorised across stocks); `ann` [T, N] marks statement days."""
    t_len, n = ann.shape
    out = {k: np.zeros((t_len, n), np.float32) for k in ("u", "sigma", "log_volume", "nu", "z", "w")}
    out["e"] = np.zeros((t_len, n))
    out["mkt"], out["vol_state"] = np.zeros(t_len), np.zeros(t_len)
    out["intraday"] = np.zeros((3, t_len, n), np.float32)
    loop = _Loop(u, t_len)
    for t in range(t_len):
        loop.step(day_rng(seed, t, perturb_from), ann[t], out, t)
    return Shocks(**out)


def returns(u: Universe, shocks: Shocks, mu: np.ndarray) -> np.ndarray:
    """Simple daily returns r = mu + e of the latent (un-rounded, un-limited) adjusted price, [T, N].

    Shocks are martingale differences, so E[r_s | state at s-1] = mu_s exactly; mu carries the
    market drift through beta and the planted signals.
    """
    r = mu + u.beta * MKT_DRIFT + shocks.e
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
