"""The long–short backtest by hand: 3 stocks × 4 days, daily and overlapping 2-day books, costs, turnover."""

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from kabuflow.evaluate import backtest, stats

DAYS = [dt.date(2024, 1, 4) + dt.timedelta(days=i) for i in range(4)]

# Scores: d0 ranks A > B > C, d1 C > B > A, d2 and d3 A > C > B. With 3 quantiles of 3 names the top
# name is long (+1) and the bottom one short (−1): cohorts C0 = (+1, 0, −1), C1 = (−1, 0, +1),
# C2 = C3 = (+1, −1, 0) over (A, B, C).
SCORES = {
    DAYS[0]: {"A": 3.0, "B": 2.0, "C": 1.0},
    DAYS[1]: {"A": 1.0, "B": 2.0, "C": 3.0},
    DAYS[2]: {"A": 3.0, "B": 1.0, "C": 2.0},
    DAYS[3]: {"A": 3.0, "B": 1.0, "C": 2.0},
}
# 1-day labels y_1d(s, i); none on d3 (its window has not finished).
RETURNS = {
    DAYS[0]: {"A": 0.01, "B": 0.00, "C": -0.02},
    DAYS[1]: {"A": 0.02, "B": 0.01, "C": -0.01},
    DAYS[2]: {"A": -0.01, "B": 0.03, "C": 0.00},
}


def _scores() -> pl.DataFrame:
    rows = [(d, c, s) for d, m in SCORES.items() for c, s in m.items()]
    return pl.DataFrame(rows, schema={"date": pl.Date, "code": pl.String, "score": pl.Float64}, orient="row")


def _returns() -> pl.DataFrame:
    rows = [(d, c, r) for d, m in RETURNS.items() for c, r in m.items()]
    return pl.DataFrame(rows, schema={"date": pl.Date, "code": pl.String, "ret": pl.Float64}, orient="row")


def test_quantile_weights_top_minus_bottom():
    w = backtest.quantile_weights(_scores(), n_quantiles=3).sort("date", "code")
    d0 = w.filter(pl.col("date") == DAYS[0])
    assert dict(zip(d0["code"], d0["weight"], strict=True)) == {"A": 1.0, "C": -1.0}
    # 6 names, 3 quantiles: 2 long at +1/2, 2 short at −1/2; ties broken by code
    six = pl.DataFrame(
        {"date": [DAYS[0]] * 6, "code": list("UVWXYZ"), "score": [5.0, 1.0, 1.0, 3.0, 4.0, 2.0]}
    )
    w6 = backtest.quantile_weights(six, 3)
    assert dict(zip(w6["code"], w6["weight"], strict=True)) == {"U": 0.5, "Y": 0.5, "V": -0.5, "W": -0.5}
    assert backtest.quantile_weights(six.head(2), 3).height == 0  # fewer names than quantiles: no book


def test_daily_book_by_hand():
    ls = backtest.long_short(
        backtest.quantile_weights(_scores(), 3), _returns(), DAYS, horizon=1, cost_bp=10.0
    )
    # d0: +A −C → 0.01 + 0.02 = 0.03, trades 2 units (from cash)          → net 0.03 − 0.002
    # d1: +C −A → −0.01 − 0.02 = −0.03, trades 4 units (every leg flips)  → net −0.03 − 0.004
    # d2: +A −B → −0.01 − 0.03 = −0.04, trades |2| + |−1| + |−1| = 4      → net −0.04 − 0.004
    # d3: no realised returns yet → not a P&L day
    assert ls.dates == DAYS[:3]
    assert ls.gross == pytest.approx([0.03, -0.03, -0.04])
    assert ls.net == pytest.approx([0.028, -0.034, -0.044])
    assert ls.turnover == pytest.approx([0.5, 1.0, 1.0])  # Σ|ΔW| / (2 × gross book of 2)


def test_overlapping_two_day_book_by_hand():
    ls = backtest.long_short(
        backtest.quantile_weights(_scores(), 3), _returns(), DAYS, horizon=2, cost_bp=10.0
    )
    # W_s = (C_s + C_{s−1}) / 2: W0 = (.5, 0, −.5), W1 = (0, 0, 0), W2 = (0, −.5, .5)
    # r0 = .5·0.01 − .5·(−0.02) = 0.015; r1 = 0 (the book is flat, still a P&L day); r2 = −.5·0.03 = −0.015
    # Cohort view: C0 earns 0.03 on d0 and 0.03 on d1, C1 −0.03 on d1 and 0.01 on d2, C2 −0.04 on d2,
    # each with half the capital: d0 0.015, d1 0, d2 −0.015. Trades: 1 unit each day.
    assert ls.dates == DAYS[:3]
    assert ls.gross == pytest.approx([0.015, 0.0, -0.015])
    assert ls.net == pytest.approx([0.014, -0.001, -0.016])
    assert ls.turnover == pytest.approx([0.25, 0.25, 0.25])


def test_missing_return_earns_zero_and_formation_ignores_labels():
    # B has no 1-day label on d2 (suspended): the d2 long in A and short in B still forms (which names will
    # have labels is not known at the signal date); B's leg earns 0 that day.
    rets = _returns().filter(~((pl.col("date") == DAYS[2]) & (pl.col("code") == "B")))
    ls = backtest.long_short(backtest.quantile_weights(_scores(), 3), rets, DAYS, horizon=1, cost_bp=0.0)
    assert ls.gross == pytest.approx([0.03, -0.03, -0.01])


def test_summarise_by_hand():
    ls = backtest.LongShort(
        dates=DAYS,
        gross=np.array([0.02, -0.01, 0.03, 0.0]),
        net=np.array([0.01, -0.02, 0.02, -0.01]),
        turnover=np.array([0.5, 0.25, 0.25, 0.0]),
    )
    s = backtest.summarise(ls)
    sd = math.sqrt((0.01**2 + 0.02**2 + 0.02**2 + 0.01**2) / 3)  # net: mean 0, deviations .01 −.02 .02 −.01
    assert s["ls_sharpe_net"] == pytest.approx(0.0)
    assert s["ls_ann_vol_net"] == pytest.approx(sd * math.sqrt(252))
    assert s["ls_sharpe_gross"] == pytest.approx(0.01 / math.sqrt(0.001 / 3) * math.sqrt(252))
    assert s["ls_ann_return_net"] == pytest.approx(0.0)
    assert s["ls_ann_return_gross"] == pytest.approx(0.01 * 252)
    assert s["turnover"] == pytest.approx(0.25)
    # equity 1.01, 0.9898, 1.009596, 0.99950004: worst is 0.9898 / 1.01 − 1 = −2 %
    assert s["max_drawdown"] == pytest.approx(0.02)
    assert s["psr"] == pytest.approx(0.5)  # SR 0 against SR* 0
    assert s["n_days"] == 4


def test_run_all_one_axis_for_every_model():
    scores = _scores()
    frame = pl.concat(
        [
            scores.with_columns(pl.lit("good").alias("model"), pl.lit(1, dtype=pl.Int32).alias("horizon")),
            scores.with_columns(
                (-pl.col("score")).alias("score"),
                pl.lit("bad").alias("model"),
                pl.lit(1, dtype=pl.Int32).alias("horizon"),
            ),
        ]
    )
    pnl = backtest.run_all(frame, _returns(), n_quantiles=3, cost_bp=0.0)
    good = backtest.from_frame(pnl, "good", 1)
    bad = backtest.from_frame(pnl, "bad", 1)
    assert good.gross == pytest.approx([0.03, -0.03, -0.04])
    assert bad.gross == pytest.approx(-good.gross)  # the mirror book
    assert stats.sharpe(good.gross) == pytest.approx(-stats.sharpe(bad.gross))


def test_no_look_ahead_in_the_book():
    # Leakage test: change every score and return dated after D; the P&L of days ≤ D must not move.
    rng = np.random.default_rng(0)
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(40)]
    codes = [f"{1000 + i}0" for i in range(15)]
    grid = {"date": np.repeat(np.array(days, dtype="datetime64[D]"), 15), "code": np.tile(codes, 40)}
    scores = pl.DataFrame({**grid, "score": rng.standard_normal(600)})
    rets = pl.DataFrame({**grid, "ret": 0.01 * rng.standard_normal(600)})
    cut = dt.date(2024, 1, 25)
    later = pl.col("date") > cut
    scores2 = scores.with_columns(
        pl.when(later).then(-pl.col("score")).otherwise(pl.col("score")).alias("score")
    )
    rets2 = rets.with_columns(
        pl.when(later).then(pl.col("ret") * 3 + 0.05).otherwise(pl.col("ret")).alias("ret")
    )
    for h in (1, 5, 10):
        a = backtest.long_short(backtest.quantile_weights(scores, 5), rets, days, h, 10.0)
        b = backtest.long_short(backtest.quantile_weights(scores2, 5), rets2, days, h, 10.0)
        upto = sum(d <= cut for d in a.dates)
        assert a.dates[:upto] == b.dates[:upto]
        assert a.net[:upto] == pytest.approx(b.net[:upto], abs=1e-15)
        assert a.turnover[:upto] == pytest.approx(b.turnover[:upto], abs=1e-15)
        assert not np.allclose(a.net[upto:], b.net[upto:])  # the perturbation did reach the later days
