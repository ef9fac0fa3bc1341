"""Small, dependency-free statistics for evaluation: Newey–West, Sharpe, PSR/DSR, drawdown, moments."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm, rankdata

TRADING_DAYS = 252
EULER_GAMMA = 0.5772156649015329


def nw_lags(n: int, horizon: int = 1) -> int:
    """Lags for a HAC variance: at least `horizon` (h-day labels overlap, so daily ICs are MA(h-1)),
    and at least the Newey–West (1994) rule of thumb floor(4 (n/100)^(2/9)); never more than n - 1."""
    rule = math.floor(4.0 * (max(n, 1) / 100.0) ** (2.0 / 9.0))
    return max(0, min(max(horizon, rule), n - 1))


def newey_west_variance(x: np.ndarray, lags: int) -> float:
    """Long-run variance of a series with the Bartlett kernel (Newey & West 1987):

    S = γ0 + 2 Σ_{l=1..L} (1 − l/(L+1)) γ_l,   γ_l = (1/T) Σ_{t>l} (x_t − x̄)(x_{t−l} − x̄).

    Var(x̄) = S / T. No small-sample (T/(T−k)) correction, as statsmodels' HAC with use_correction=False.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n < 2:
        return math.nan
    d = x - x.mean()
    s = float(d @ d) / n
    for lag in range(1, min(lags, n - 1) + 1):
        gamma = float(d[lag:] @ d[:-lag]) / n
        s += 2.0 * (1.0 - lag / (lags + 1.0)) * gamma
    return s


def nw_tstat(x: np.ndarray, lags: int) -> float:
    """t-statistic of the mean of x with a Newey–West standard error; NaN when undefined."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return math.nan
    var = newey_west_variance(x, lags)
    if not var > 0.0:
        return math.nan
    return float(x.mean() / math.sqrt(var / x.size))


def one_sided_p(t: float) -> float:
    """P(Z > t) under the normal approximation; NaN in, NaN out."""
    return float(norm.sf(t)) if math.isfinite(t) else math.nan


def sharpe(returns: np.ndarray, periods: int = 1) -> float:
    """mean / std (ddof=1) × √periods; NaN when there are fewer than 2 returns or no variance."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return math.nan
    sd = float(r.std(ddof=1))
    return float(r.mean() / sd * math.sqrt(periods)) if sd > 0 else math.nan


def moments(returns: np.ndarray) -> tuple[float, float]:
    """Skewness and (non-excess) kurtosis with population moments, as in Bailey & López de Prado."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 3:
        return 0.0, 3.0
    d = r - r.mean()
    m2 = float(np.mean(d**2))
    if m2 <= 0:
        return 0.0, 3.0
    return float(np.mean(d**3) / m2**1.5), float(np.mean(d**4) / m2**2)


def probabilistic_sharpe(sr: float, n: int, skew: float, kurt: float, sr_benchmark: float = 0.0) -> float:
    """PSR (Bailey & López de Prado 2012): P(true SR > SR*) given a per-period (not annualised) SR
    estimated from n returns with skewness γ3 and kurtosis γ4:

    PSR = Φ( (SR − SR*) √(n − 1) / √(1 − γ3 SR + (γ4 − 1)/4 SR²) ).
    """
    if not (math.isfinite(sr) and n > 1):
        return math.nan
    denom = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if denom <= 0:
        return math.nan
    return float(norm.cdf((sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(denom)))


def expected_max_sharpe(n_trials: int, var_trials: float) -> float:
    """E[max SR] of n_trials independent zero-skill trials whose SRs have variance var_trials
    (Bailey & López de Prado 2014, eq. 4; per-period units like var_trials):

    SR0 = √V ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e))),  γ = Euler–Mascheroni.
    """
    if n_trials <= 1 or not (var_trials > 0):
        return 0.0
    z = (1 - EULER_GAMMA) * norm.ppf(1 - 1 / n_trials) + EULER_GAMMA * norm.ppf(1 - 1 / (n_trials * math.e))
    return float(math.sqrt(var_trials) * z)


def deflated_sharpe(sr: float, n: int, skew: float, kurt: float, n_trials: int, var_trials: float) -> float:
    """DSR (Bailey & López de Prado 2014): the PSR against the Sharpe a lucky best-of-N would show."""
    return probabilistic_sharpe(sr, n, skew, kurt, expected_max_sharpe(n_trials, var_trials))


def max_drawdown(returns: np.ndarray) -> float:
    """Largest fall of compounded equity below its running peak (starting equity 1), as a positive fraction."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size == 0:
        return math.nan
    equity = np.concatenate([[1.0], np.cumprod(1.0 + r)])
    peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peak))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation with average ranks for ties; NaN when either side is constant."""

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return math.nan
    rx, ry = rankdata(x[ok]), rankdata(y[ok])
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])
