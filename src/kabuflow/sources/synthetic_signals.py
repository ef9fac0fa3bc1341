"""Planted sources of predictability and the oracle: impulses, decay kernels, expected returns.

Every signal is an *impulse* x_j[t, i] observed at the close of t and built from zero-mean shocks of
day t (so E[x_j[t] | state at t-1] = 0), spread over later days by a fixed kernel k_j(L), L >= 1:

    mu[s, i] = sum_j strength_j * sign_j * resid_vol_i * sum_{L>=1} k_j(L) * x_j[s - L, i]

Kernels are normalised so that sum_L k_j(L)^2 = 1 / (share of days the impulse is active): a
strength is then the standard deviation of the signal's daily expected return in units of the
stock's residual (non-market) volatility. The oracle for horizon h at t is the expected sum of the
daily returns of sessions t+2 .. t+1+h (the label window) given the state at the close of t: the
contributions of impulses dated <= t plus h x the static drift (beta x market drift + lottery premium). Impulses dated after t have zero
expectation by construction, so they add nothing. It omits only the compounding cross terms of the
label (second order, ~1e-4 at 5d against an oracle spread of ~5e-3).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from kabuflow.sources.synthetic_market import ATTENTION_AR, SLOW_VOL_AR, Shocks
from kabuflow.sources.synthetic_universe import CLUSTER_VOL, Universe

HORIZONS = (1, 5, 10, 20)
SIGNALS = ("reversal", "momentum", "leadlag", "pead", "volume_shock", "vol_interaction", "low_risk")
# name -> (sign, kind, parameter): geometric kernels k(L) ~ rho^(L-1); windows are flat over lags [a, b].
KERNELS: dict[str, tuple[float, str, tuple[float, ...]]] = {
    "reversal": (-1.0, "geometric", (0.8,)),  # a residual move partly reverses over ~a week
    "momentum": (1.0, "window", (21, 120)),  # the residual return of months -6..-1 persists
    "leadlag": (1.0, "geometric", (0.9,)),  # peers' move today diffuses into the stock over ~2 weeks
    "pead": (1.0, "geometric", (0.96,)),  # drift after a statement surprise, half-life ~17 sessions
    "volume_shock": (1.0, "geometric", (ATTENTION_AR,)),  # attention (abnormal volume) earns a premium
    "vol_interaction": (-1.0, "geometric", (0.9,)),  # volatile stocks reverse, calm ones continue
    # The low-risk anomaly: a stock earns less while its slow volatility level is high. The impulse is
    # that level's N(0,1) innovation and the kernel its own AR(1) decay, so c * sum_m rho^m x[t-1-m] is
    # exactly the level at t-1 over its SD, and the oracle's geometric sum is exact.
    "low_risk": (-1.0, "geometric", (SLOW_VOL_AR,)),
}
STATEMENT_SHARE = 4 / 245  # share of stock-days that carry a statement (PEAD impulse active)
VOL_WINDOW, VOL_MIN_OBS = 20, 10
IMPULSE_CLIP = 4.0  # residual-vol units


def _peer_mean(x: np.ndarray, bar: np.ndarray, u: Universe) -> np.ndarray:
    """Mean of x over a stock's cluster peers with a bar that day (self excluded), / its long-run SD."""
    member = u.cluster >= 0
    if not member.any():
        return np.zeros_like(x)
    k = int(u.cluster.max()) + 1
    onehot = np.zeros((u.n, k))
    onehot[np.flatnonzero(member), u.cluster[member]] = 1.0
    cl = np.where(member, u.cluster, 0)
    total, count = (x @ onehot)[:, cl] - x, (bar @ onehot)[:, cl] - bar
    mean = np.where(member & (count > 0), total / np.maximum(count, 1), 0.0)
    # Long-run variance of an equal-weight mean of standardized peers that share the cluster factor.
    a = np.where(member, u.cluster_load * CLUSTER_VOL / u.resid_vol, 0.0)
    sa, sa2, m = (onehot.T @ a)[cl] - a, (onehot.T @ a**2)[cl] - a**2, onehot.sum(0)[cl] - 1
    var = (sa**2 - sa2 + m) / np.maximum(m, 1) ** 2
    return mean / np.sqrt(np.where(member & (m > 0), var, 1.0))


def _vol_z(x_u: np.ndarray, bar: np.ndarray) -> np.ndarray:
    """Cross-sectional z-score of log trailing 20-session residual vol, known at the close of t."""
    zero = np.zeros((1, x_u.shape[1]))
    c2 = np.cumsum(np.vstack([zero, x_u**2]), axis=0)
    cn = np.cumsum(np.vstack([zero, bar]), axis=0)
    lo = np.maximum(np.arange(1, len(x_u) + 1) - VOL_WINDOW, 0)
    s2, cnt = c2[1:] - c2[lo], cn[1:] - cn[lo]
    ok = bar & (cnt >= VOL_MIN_OBS) & (s2 > 0)
    lv = np.where(ok, 0.5 * np.log(np.where(ok, s2, 1.0) / np.maximum(cnt, 1)), 0.0)
    k = np.maximum(ok.sum(axis=1, keepdims=True), 1)
    mean = lv.sum(axis=1, keepdims=True) / k
    var = (np.where(ok, lv - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / k
    z = np.where(ok & (var > 0), (lv - mean) / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
    return np.clip(z, -3, 3)


def impulses(u: Universe, shocks: Shocks, ann: np.ndarray, bar: np.ndarray) -> dict[str, np.ndarray]:
    """Each signal's impulse [T, N], zero where the stock has no bar (nothing public to react to)."""
    resid = np.where(bar, shocks.u.astype(np.float64), 0.0)
    # Clipping a symmetric zero-mean shock keeps it zero-mean: impulses stay unpredictable.
    x_rev = np.clip(resid / u.resid_vol, -IMPULSE_CLIP, IMPULSE_CLIP)
    zvol = _vol_z(resid, bar)
    zvol_prev = np.vstack([np.zeros((1, u.n)), zvol[:-1]])  # known at the close of t-1
    return {
        "reversal": x_rev,
        "momentum": x_rev,
        "leadlag": _peer_mean(x_rev, bar.astype(float), u),
        "pead": np.where(ann & bar, shocks.z, 0.0),
        "volume_shock": np.where(bar, shocks.nu, 0.0),
        "vol_interaction": x_rev * zvol_prev,
        "low_risk": low_risk_impulse(shocks),
    }


def low_risk_impulse(shocks: Shocks) -> np.ndarray:
    """The slow log-variance innovations of every stock-day, bar or not: the level they drive moves
    whether or not the stock trades (a halted stock's risk does not stand still)."""
    return shocks.slow_noise.astype(np.float64)


def _shift(a: np.ndarray, k: int) -> np.ndarray:
    """a[t - k] along time, zeros where t - k < 0 (k >= 0)."""
    out = np.zeros_like(a)
    out[k:] = a[: len(a) - k]
    return out


Terms = list[tuple[float, np.ndarray]]  # sum of coefficient * array: how a kernel's sums are returned


def _geometric(x: np.ndarray, rho: float, active: float) -> tuple[Terms, list[Terms]]:
    """Daily expected-return kernel sum and oracle sums for k(L) = c * rho^(L-1), L >= 1."""
    c = np.sqrt((1 - rho**2) / active)
    y = lfilter([1.0], [1.0, -rho], x, axis=0)  # y[t] = sum_m rho^m x[t - m]
    return [(c, _shift(y, 1))], [[(c * rho * (1 - rho**h) / (1 - rho), y)] for h in HORIZONS]


def _window(x: np.ndarray, a: int, b: int) -> tuple[Terms, list[Terms]]:
    """The same for a flat kernel over lags a..b (a > max horizon: all of it is known at t).

    With S the running sum of x and C the running sum of S, day t+1+d gets w * (S[t+1+d-a] - S[t+d-b]),
    so the label window's sum is w * (C[t+1+h-a] - C[t+1-a] - C[t+h-b] + C[t-b]).
    """
    assert a > max(HORIZONS), "a momentum window must start after the longest label window"
    w, t_len, pad = 1.0 / np.sqrt(b - a + 1), len(x), np.zeros((b + 1, x.shape[1]))
    s = np.vstack([pad, np.cumsum(x, axis=0)])  # s[b + 1 + j] = S[j], zeros before
    c = np.vstack([pad, np.cumsum(s[b + 1 :], axis=0)])

    def lag(arr: np.ndarray, k: int) -> np.ndarray:  # arr[t - k] for every t
        return arr[b + 1 - k : b + 1 - k + t_len]

    orc = [
        [(w, lag(c, a - 1 - h)), (-w, lag(c, a - 1)), (-w, lag(c, b - h)), (w, lag(c, b))] for h in HORIZONS
    ]
    return [(w, lag(s, a)), (-w, lag(s, b + 1))], orc


def apply_kernel(name: str, x: np.ndarray) -> tuple[Terms, list[Terms]]:
    """Terms of mu [T, N] and of the oracle per horizon for one signal at unit strength, in residual-vol
    units and without the sign."""
    _, kind, par = KERNELS[name]
    active = STATEMENT_SHARE if name == "pead" else 1.0
    return _geometric(x, par[0], active) if kind == "geometric" else _window(x, int(par[0]), int(par[1]))


def _combine(terms: Terms, scale: np.ndarray) -> np.ndarray:
    """sum of coefficient * array, times a per-stock scale."""
    out = terms[0][1] * (terms[0][0] * scale)
    for coef, arr in terms[1:]:
        out += arr * (coef * scale)
    return out


def expected_returns(
    u: Universe,
    x: dict[str, np.ndarray],
    strength: dict[str, float],
    drift: np.ndarray,
    keep: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """mu [T, N] (signals only), oracle [H, T, N] (signals plus h x the static drift [N]) and, if
    `keep`, each signal's unit-strength oracle part."""
    t_len, n = next(iter(x.values())).shape
    mu, oracle, parts = np.zeros((t_len, n)), np.zeros((len(HORIZONS), t_len, n)), {}
    for name in SIGNALS:
        if strength[name] == 0 and not keep:
            continue
        mu_terms, orc_terms = apply_kernel(name, x[name])
        unit = KERNELS[name][0] * u.resid_vol
        mu += _combine(mu_terms, strength[name] * unit)
        if keep:
            parts[name] = np.stack([_combine(terms, unit) for terms in orc_terms])
            oracle += strength[name] * parts[name]
        else:
            for k, terms in enumerate(orc_terms):
                oracle[k] += _combine(terms, strength[name] * unit)
    for k, h in enumerate(HORIZONS):
        oracle[k] += h * drift
    return mu, oracle, parts
