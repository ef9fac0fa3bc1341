"""Metric functions on hand-computed examples: Newey–West, PSR/DSR, drawdown, daily IC, deciles, control."""

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import norm

from kabuflow.evaluate import metrics, stats

D0, D1 = dt.date(2024, 1, 4), dt.date(2024, 1, 5)


# ---------------------------------------------------------------- Newey–West


def test_newey_west_variance_by_hand():
    # x = [2, 4, 1, 3, 6, 2], mean 3, deviations d = [-1, 1, -2, 0, 3, -1]
    # γ0 = Σd²/6 = 16/6;  γ1 = (d2d1 + d3d2 + d4d3 + d5d4 + d6d5)/6 = (-1 - 2 + 0 + 0 - 3)/6 = -1
    # γ2 = (d3d1 + d4d2 + d5d3 + d6d4)/6 = (2 + 0 - 6 + 0)/6 = -4/6
    # L=1: S = γ0 + 2·(1/2)·γ1 = 16/6 - 1 = 10/6
    # L=2: S = γ0 + 2·(2/3)·γ1 + 2·(1/3)·γ2 = 24/9 - 12/9 - 4/9 = 8/9
    x = np.array([2, 4, 1, 3, 6, 2], dtype=float)
    assert stats.newey_west_variance(x, 0) == pytest.approx(16 / 6)
    assert stats.newey_west_variance(x, 1) == pytest.approx(10 / 6)
    assert stats.newey_west_variance(x, 2) == pytest.approx(8 / 9)
    # t = mean / sqrt(S / T): 3 / sqrt(16/36) = 4.5 ; 3 / sqrt(10/36) ; 3 / sqrt(8/54)
    assert stats.nw_tstat(x, 0) == pytest.approx(4.5)
    assert stats.nw_tstat(x, 1) == pytest.approx(3 / math.sqrt(10 / 36))
    assert stats.nw_tstat(x, 2) == pytest.approx(3 / math.sqrt(8 / 54))


def test_newey_west_matches_statsmodels():
    # statsmodels 0.15.0: OLS(y, ones).fit(cov_type="HAC", cov_kwds={"maxlags": L, "use_correction": False})
    # gave t = 1.6388505668768363 (L=3) and 1.7234954372546727 (L=5) for this series.
    y = np.array(
        [0.2241, -0.2356, 0.0618, -0.0368, -0.0253, -0.0016, -0.182, -0.0032, -0.0665, 0.3523]
        + [0.0426, -0.0153, -0.0081, -0.0468, -0.0855, -0.0191, 0.0682, -0.0039, 0.1158, 0.0]
        + [0.0224, 0.1746, 0.0745, -0.0305, 0.0017, 0.0741, 0.2135, -0.007, -0.0044, 0.1202]
        + [-0.0686, -0.0092, 0.1083, 0.078, 0.0292, 0.087, -0.2628, 0.1221, -0.076, -0.1469]
        + [0.0476, 0.0901, -0.0245, -0.0876, 0.0226, 0.0147, 0.1606, 0.0947, 0.0394, 0.1312]
    )
    assert stats.nw_tstat(y, 3) == pytest.approx(1.6388505668768363, rel=1e-10)
    assert stats.nw_tstat(y, 5) == pytest.approx(1.7234954372546727, rel=1e-10)


def test_nw_lags_cover_the_label_overlap():
    assert stats.nw_lags(480, 1) == 5  # floor(4 · 4.8^(2/9)) = floor(5.66)
    assert stats.nw_lags(480, 20) == 20  # h-day labels overlap h-1 days: at least h lags
    assert stats.nw_lags(6, 5) == 5 and stats.nw_lags(3, 20) == 2  # never more than n - 1


# ---------------------------------------------------------------- Sharpe family


def test_probabilistic_sharpe_gaussian_by_hand():
    # Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier", J. of Risk 15(2), eq. for PSR:
    # PSR = Φ((SR − SR*)·√(n−1) / √(1 − γ3·SR + (γ4 − 1)/4·SR²)). Gaussian returns (γ3 = 0, γ4 = 3),
    # SR = 0.1 per day over n = 253 days: z = 0.1·√252/√(1 + 0.5·0.01) = 1.58350..., PSR = 0.943346.
    assert stats.probabilistic_sharpe(0.1, 253, 0.0, 3.0) == pytest.approx(0.943346, abs=1e-6)
    # At SR = SR* the probability is exactly one half, whatever the moments.
    assert stats.probabilistic_sharpe(0.2, 100, -1.0, 8.0, sr_benchmark=0.2) == pytest.approx(0.5)
    # Negative skew and fat tails widen the band: same SR, lower PSR.
    assert stats.probabilistic_sharpe(0.1, 253, -2.0, 10.0) < stats.probabilistic_sharpe(0.1, 253, 0.0, 3.0)


def test_deflated_sharpe_paper_example():
    # Bailey & López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest
    # Overfitting and Non-Normality", J. Portfolio Management 40(5), numerical example: N = 100 trials,
    # V[SR_n] = 1/2 (annualised), best SR = 2.5 annualised over T = 1250 daily returns (250 a year),
    # γ3 = −3, γ4 = 10  →  SR0 ≈ 0.1132 (daily) and DSR ≈ 0.9004.
    sr, var = 2.5 / math.sqrt(250), 0.5 / 250
    assert stats.expected_max_sharpe(100, var) == pytest.approx(0.1132, abs=5e-5)
    assert stats.deflated_sharpe(sr, 1250, -3.0, 10.0, 100, var) == pytest.approx(0.9004, abs=5e-4)
    # One trial: nothing to deflate, the DSR is the PSR against 0.
    assert stats.deflated_sharpe(sr, 1250, -3.0, 10.0, 1, var) == stats.probabilistic_sharpe(
        sr, 1250, -3.0, 10.0
    )


def test_sharpe_moments_drawdown_by_hand():
    r = np.array([0.01, -0.02, 0.03, 0.0])
    # mean 0.005, sample std sqrt((0.005² + 0.025² + 0.025² + 0.005²)/3) = sqrt(0.0013/3)
    assert stats.sharpe(r) == pytest.approx(0.005 / math.sqrt(0.0013 / 3))
    assert stats.sharpe(r, 252) == pytest.approx(0.005 / math.sqrt(0.0013 / 3) * math.sqrt(252))
    skew, kurt = stats.moments(np.array([1.0, 2.0, 3.0, 10.0]))
    # deviations -3, -2, -1, 6: m2 = 50/4, m3 = (-27 - 8 - 1 + 216)/4 = 45, m4 = (81 + 16 + 1 + 1296)/4
    assert skew == pytest.approx(45 / 12.5**1.5)
    assert kurt == pytest.approx(348.5 / 12.5**2)
    # equity 1.1, 0.55, 0.66, 0.99: worst fall is 0.55 against the 1.1 peak
    assert stats.max_drawdown(np.array([0.1, -0.5, 0.2, 0.5])) == pytest.approx(0.5)
    assert stats.max_drawdown(np.array([0.01, 0.02])) == 0.0


def test_one_sided_p():
    assert stats.one_sided_p(1.6448536269514722) == pytest.approx(0.05)
    assert math.isnan(stats.one_sided_p(float("nan")))


# ---------------------------------------------------------------- daily IC


def _frame(rows):
    df = pl.DataFrame(rows, schema=["date", "code", "score", "label"], orient="row")
    return df.with_columns(
        pl.lit("m").alias("model"),
        pl.lit(1, dtype=pl.Int32).alias("horizon"),
        pl.lit(0, dtype=pl.Int32).alias("fold"),
    )


def test_daily_ic_by_hand():
    frame = _frame(
        [
            (D0, "A", 1.0, 0.01),
            (D0, "B", 2.0, 0.05),
            (D0, "C", 3.0, 0.02),
            (D0, "D", None, 0.09),  # no score: not part of the cross-section
            (D1, "A", 3.0, 0.01),
            (D1, "B", 2.0, 0.02),
            (D1, "C", 1.0, 0.03),
        ]
    )
    daily = metrics.daily_ic(frame)
    # D0: score deviations (-1, 0, 1), label deviations (-1/60, 7/300, -1/150): cov·3 = 0.01,
    # Pearson = 0.01 / (√2 · √0.000866...) = 0.240192; ranks (1,2,3) vs (1,3,2): Spearman 0.5
    assert daily["n"].to_list() == [3, 3]
    assert daily["ic"][0] == pytest.approx(0.01 / (math.sqrt(2) * math.sqrt(0.0026 / 3)))
    assert daily["rank_ic"].to_list() == pytest.approx([0.5, -1.0])
    assert daily["ic"][1] == pytest.approx(-1.0)


def test_constant_score_counts_as_zero_not_missing():
    frame = _frame([(D0, c, 1.0, r) for c, r in zip("ABC", (0.01, 0.02, 0.03), strict=True)])
    daily = metrics.daily_ic(frame)
    assert daily["rank_ic"].to_list() == [0.0] and daily["ic"].to_list() == [0.0]


def test_summarise_ic():
    s = metrics.summarise_ic(np.array([0.1, 0.0, 0.2, 0.1]), np.array([0.5, -1.0, 0.2, 0.3]), horizon=1)
    assert s["rank_ic"] == pytest.approx(0.0)
    assert s["ic"] == pytest.approx(0.1)
    assert s["hit_rate"] == pytest.approx(0.75)
    # IC deviations 0, -0.1, 0.1, 0: std = sqrt(0.02/3)
    assert s["icir"] == pytest.approx(0.1 / math.sqrt(0.02 / 3))
    assert s["nw_lags"] == 1 and s["n_dates"] == 4
    assert s["rank_ic_tstat"] == pytest.approx(0.0)


def test_deciles_and_monotonicity():
    rows = [(d, f"{i:04d}0", float(i), 0.001 * i) for d in (D0, D1) for i in range(20)]
    dec = metrics.deciles(_frame(rows))
    # 20 names in 10 buckets: bucket b holds scores 2b and 2b+1, mean label 0.001·(2b + 0.5)
    assert dec["bucket"].to_list() == list(range(10))
    assert dec["mean_return"].to_list() == pytest.approx([0.001 * (2 * b + 0.5) for b in range(10)])
    summary = metrics.decile_summary(dec)["m"]["1d"]
    assert summary["monotonicity"] == pytest.approx(1.0)
    assert summary["spread"] == pytest.approx(0.018)


def test_shuffled_control_is_null_and_reproducible():
    rng = np.random.default_rng(0)
    dates = [D0 + dt.timedelta(days=i) for i in range(150)]
    rows = [(d, f"{i:04d}0", y, y) for d in dates for i, y in enumerate(rng.standard_normal(40))]
    frame = _frame(rows)  # score = label: a perfect ranking
    assert metrics.daily_ic(frame)["rank_ic"].mean() == pytest.approx(1.0)
    a = metrics.shuffled_control(frame, seed=0)
    b = metrics.shuffled_control(frame, seed=0)
    assert a["rank_ic"].to_list() == b["rank_ic"].to_list()
    # 150 independent permutations of 40 names: mean RankIC ~ N(0, 1/(39·150)), sd ≈ 0.013
    assert abs(a["rank_ic"].mean()) < 0.04
    assert abs(stats.nw_tstat(a["rank_ic"].to_numpy(), 5)) < 3.5


def test_psr_matches_normal_cdf_form():
    z = 0.05 * math.sqrt(999) / math.sqrt(1 + 0.5 * 0.05**2)
    assert stats.probabilistic_sharpe(0.05, 1000, 0.0, 3.0) == pytest.approx(norm.cdf(z))


def test_deciles_are_the_same_bits_whatever_the_row_order():
    """group_by's output order varies from call to call, and a mean summed in another order differs in
    the last bit: deciles sorts before its mean over dates, so shuffled inputs give identical numbers."""
    rng = np.random.default_rng(3)
    n_dates, n_codes = 400, 20
    dates = np.array([dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n_dates)], "datetime64[D]")
    frame = pl.DataFrame(
        {
            "model": "m",
            "horizon": 5,
            "date": np.repeat(dates, n_codes),
            "code": np.tile([f"{c:04d}0" for c in range(n_codes)], n_dates),
            "score": rng.normal(size=n_dates * n_codes),
            "label": rng.normal(size=n_dates * n_codes) * 0.01,
        }
    )
    s = frame["score"].to_numpy().reshape(n_dates, n_codes)
    y = frame["label"].to_numpy().reshape(n_dates, n_codes)
    bucket = np.argsort(np.argsort(s, axis=1, kind="stable"), axis=1) * 10 // n_codes  # [T, N]
    want = [np.mean([y[t][bucket[t] == b].mean() for t in range(n_dates)]) for b in range(10)]
    first = metrics.deciles(frame)["mean_return"].to_list()
    np.testing.assert_allclose(first, want, rtol=1e-12)
    for seed in range(5):
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
        assert metrics.deciles(shuffled)["mean_return"].to_list() == first
