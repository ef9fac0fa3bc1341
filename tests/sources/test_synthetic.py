"""The embedded synthetic market: J-Quants shape, determinism, market mechanics, realism, planted signals."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import numpy as np
import polars as pl
import pytest

from kabuflow import calendar, schema
from kabuflow.config import Config, ConfigError, SyntheticConfig
from kabuflow.sources import synthetic as syn
from kabuflow.sources import synthetic_facts as facts
from kabuflow.sources.synthetic_fins import SURPRISE_SCALE
from kabuflow.sources.synthetic_market import skewed_shock, static_drift
from kabuflow.sources.synthetic_prices import limit_width
from kabuflow.sources.synthetic_signals import HORIZONS, SIGNALS
from kabuflow.sources.synthetic_universe import SECTORS

SMALL = SyntheticConfig(n_stocks=150, start="2021-01-04", end="2023-12-29", seed=3)
# Large enough for the statistics: 300 stocks x 4 years.
MID = SyntheticConfig(n_stocks=300, start="2017-01-04", end="2020-12-30", seed=11)


def _cfg(s: SyntheticConfig) -> Config:
    return dataclasses.replace(Config(), synthetic=s)


@pytest.fixture(scope="module")
def small():
    return syn.load(_cfg(SMALL))


@pytest.fixture(scope="module")
def small_market():
    return syn.simulate(SMALL)


@pytest.fixture(scope="module")
def mid_bars():
    return syn.build_tables(syn.simulate(MID))["equities_bars_daily"]


def test_tables_have_the_raw_schema_and_keys(small):
    assert set(small.tables) == set(schema.RAW)
    for name, df in small.tables.items():
        schema.check(df, schema.RAW[name], name)
        assert df.height > 0, name
    oracle = schema.check(small.extra["oracle"], schema.ORACLE, "oracle")
    bars = small.tables["equities_bars_daily"]
    assert oracle.select("Date", "Code").equals(bars.select("Date", "Code"))
    assert bars.equals(bars.sort("Code", "Date"))
    assert bars.select(pl.col("Code").str.contains(r"^\d{4}0$").all()).item()
    master = small.tables["equities_master"]
    assert set(master["S33"]) <= {s[0] for s in SECTORS} and master["S33"].n_unique() >= 25
    assert set(master["Mkt"]) == {"0111", "0112", "0113"}
    assert set(master["ScaleCat"]) <= {
        "TOPIX Core30",
        "TOPIX Large70",
        "TOPIX Mid400",
        "TOPIX Small 1",
        "TOPIX Small 2",
        "-",
    }
    assert set(master["Code"]) == set(bars["Code"])
    # As-of rows: the yearly TOPIX review moves some codes to another size category.
    assert master.group_by("Code").len()["len"].max() > 1


def test_calendar_is_xtks(small):
    sessions = calendar.sessions(SMALL.start, SMALL.end)
    cal = small.tables["markets_calendar"]
    assert cal.filter(pl.col("HolDiv") == "1")["Date"].to_list() == sessions
    assert cal.height == (dt.date(2023, 12, 29) - dt.date(2021, 1, 4)).days + 1
    assert set(small.tables["equities_bars_daily"]["Date"]) <= set(sessions)
    assert cal.filter(pl.col("Date") == dt.date(2023, 1, 9))["HolDiv"].item() == "0"  # Coming-of-Age Day


def _parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf, compression="zstd", statistics=True)
    return buf.getvalue()


def test_same_seed_gives_identical_bytes(small):
    again = syn.load(_cfg(SMALL))
    for name in small.tables:
        assert _parquet_bytes(small.tables[name]) == _parquet_bytes(again.tables[name]), name
    assert _parquet_bytes(small.extra["oracle"]) == _parquet_bytes(again.extra["oracle"])
    other = syn.build_tables(syn.simulate(dataclasses.replace(SMALL, seed=4)))["equities_bars_daily"]
    assert not other.equals(small.tables["equities_bars_daily"])


def test_data_range_overrides_and_errors_name_the_setting():
    cfg = Config().with_overrides(["data.start=2019-01-04", "data.end=2020-06-30"])
    s = syn.resolve(cfg)
    assert (s.start, s.end) == ("2019-01-04", "2020-06-30")
    bad = {
        "synthetic.n_stocks": ["synthetic.n_stocks=5"],
        "synthetic.start": ["synthetic.start=2020-01-01", "synthetic.end=2019-01-01"],
        "synthetic.pead": ["synthetic.pead=-0.1"],
        "data.start": ["data.start=2020-13-01"],
    }
    for key, overrides in bad.items():
        with pytest.raises(ConfigError, match=key.split(".")[1]):
            syn.resolve(Config().with_overrides(overrides))


def _with_prev(bars: pl.DataFrame) -> pl.DataFrame:
    return bars.with_columns(
        prev_c=pl.col("C").shift(1).over("Code"),
        prev_adj=pl.col("AdjC").shift(1).over("Code"),
        later=pl.col("AdjFactor").reverse().cum_prod().reverse().over("Code") / pl.col("AdjFactor"),
    )


def test_splits_adjust_raw_and_adjusted_columns_consistently(mid_bars):
    b = _with_prev(mid_bars)
    # AdjX = X * product of AdjFactor of later ex-dates; AdjVo = Vo / that product.
    assert np.allclose(b["AdjC"], b["C"] * b["later"], rtol=1e-9)
    assert np.allclose(b["AdjVo"], b["Vo"] / b["later"], rtol=1e-9)
    ex = b.filter(pl.col("AdjFactor") != 1.0)
    assert ex.height >= 20
    # On an ex-date the raw price jumps by the ratio while the adjusted series stays continuous.
    raw_jump = (ex["C"] / ex["prev_c"]).log() - ex["AdjFactor"].log()
    adj_move = (ex["AdjC"] / ex["prev_adj"]).log()
    assert np.allclose(raw_jump, adj_move, atol=1e-9)
    assert (adj_move.abs() < 0.3).all() and ((ex["C"] / ex["prev_c"]).log().abs() > 0.4).all()


def test_prices_respect_daily_limits_and_ticks(mid_bars):
    b = _with_prev(mid_bars).filter(pl.col("prev_c").is_not_null())
    base = (b["prev_c"] * b["AdjFactor"]).to_numpy()  # the previous close in today's share units
    width = limit_width(base)
    for col in ("C", "H", "L", "O"):
        assert (np.abs(b[col].to_numpy() - base) <= width + 1e-6).all(), col
    assert (b["L"] <= b["C"]).all() and (b["C"] <= b["H"]).all() and (b["L"] <= b["O"]).all()
    assert (b["O"] <= b["H"]).all()
    hits = b.filter(pl.col("UL") == "1").with_columns(base=pl.col("prev_c") * pl.col("AdjFactor"))
    assert hits.height > 0
    assert np.allclose(hits["H"], hits["base"] + limit_width(hits["base"].to_numpy()))
    small_ticks = b.filter(pl.col("C") < 3000)["C"]
    assert (small_ticks * 10 % 1 == 0).all()  # 1 yen, or 0.1 yen for TOPIX500 stocks


def test_ipos_delistings_and_halts(small, small_market):
    bars = small.tables["equities_bars_daily"]
    sessions = small.tables["markets_calendar"].filter(pl.col("HolDiv") == "1")["Date"]
    span = bars.group_by("Code").agg(first=pl.col("Date").min(), last=pl.col("Date").max(), n=pl.len())
    assert span.filter(pl.col("first") > sessions[0]).height >= 5  # IPOs
    assert span.filter(pl.col("last") < sessions[-1]).height >= 3  # delistings
    pos = sessions.search_sorted(span["first"]).to_numpy(), sessions.search_sorted(span["last"]).to_numpy()
    gaps = (pos[1] - pos[0] + 1) - span["n"].to_numpy()
    assert gaps.sum() >= 20  # halted sessions: missing rows inside the listed span
    assert small_market.bar.sum() == bars.height


def test_statements_timing_and_public_surprise(small, small_market):
    fins = small.tables["fins_summary"]
    assert fins.select(pl.col("DiscTime").str.contains(r"^\d\d:\d\d:\d\d$").all()).item()
    assert 0.4 < (fins["DiscTime"] >= "15:00:00").mean() < 0.8
    sessions = set(small.tables["markets_calendar"].filter(pl.col("HolDiv") == "1")["Date"])
    next_day = fins["DiscDate"] + dt.timedelta(days=1)
    before_holiday = fins.filter((next_day.dt.weekday() <= 5) & ~next_day.is_in(list(sessions)))
    assert before_holiday.filter(pl.col("DiscTime") >= "15:00:00").height >= 3
    # The planted surprise is public: (NP * 4/q - forecast in force) / previous Eq = SURPRISE_SCALE * z.
    f = fins.sort("Code", "DiscDate").with_columns(
        q=pl.col("CurPerType").replace_strict({"1Q": 1, "2Q": 2, "3Q": 3, "FY": 4}, return_dtype=pl.Float64),
        fc=pl.coalesce("FNP", "NxFNp").shift(1).over("Code"),
        eq_prev=pl.col("Eq").shift(1).over("Code"),
    )
    f = f.with_columns(surprise=(pl.col("NP") * 4 / pl.col("q") - pl.col("fc")) / pl.col("eq_prev"))
    m, u = small_market, small_market.universe
    s = m.schedule
    rows = np.flatnonzero(
        ~s.first & (s.eff >= 0) & (s.eff < len(m.dates)) & m.bar[np.clip(s.eff, 0, None), s.stock]
    )
    z = m.shocks.z[s.eff[rows], s.stock[rows]]
    keys = pl.DataFrame({"Code": u.codes[s.stock[rows]], "DiscDate": s.disc[rows], "z": z.astype(float)})
    got = keys.join(f, on=["Code", "DiscDate"], how="left")
    assert got.height > 500
    assert np.corrcoef(got["surprise"], got["z"])[0, 1] > 0.99
    assert np.allclose(got["surprise"], SURPRISE_SCALE * got["z"], atol=1e-4)


def test_weekly_tables(small):
    inv = small.tables["equities_investor_types"]
    assert (inv["PubDate"] > inv["EnDate"]).all() and (inv["StDate"] <= inv["EnDate"]).all()
    assert {"TSEPrime", "TSEStandard", "TSEGrowth", "TSE1st"} <= set(inv["Section"])
    assert (inv["TotBal"] == 0).all() and np.allclose(inv["FrgnTot"], inv["FrgnSell"] + inv["FrgnBuy"])
    mi = small.tables["markets_margin_interest"]
    assert (mi["PubDate"] > mi["Date"]).all() and (mi["LongVol"] == mi["LongNegVol"] + mi["LongStdVol"]).all()
    assert (mi.filter(pl.col("IssType") == "1")["ShrtStdVol"] == 0).all()
    topix = small.tables["indices_bars_daily_topix"]
    assert (topix["L"] <= topix["C"]).all() and (topix["C"] <= topix["H"]).all()


# Ranges of the median-stock statistics on real TSE data: stylized_facts() on ../shared/data/jpx-2463
# (2,463 stocks, 2016-01-04..2024-12-25; measured while writing the synthetic source, see
# benchmarks/synthetic.py). Full sample: vol 0.0220, kurt 8.2, acf_abs 0.240, corr 0.225,
# dispersion 0.0209, zero_share 0.033, mkt_vol 0.0108. Over the six 4-year windows 2016-19 .. 2021-24:
# vol 0.0200-0.0225, kurt 5.5-9.2, acf_abs 0.201-0.223, corr 0.202-0.263, dispersion 0.0203-0.0217,
# zero_share 0.028-0.037, mkt_vol 0.0098-0.0114. The bands below widen those windows for the sampling
# spread of a 300-stock, 4-year synthetic market.
REAL_RANGES = {
    "vol": (0.017, 0.028),
    "kurt": (4.0, 14.0),
    "acf_abs": (0.13, 0.33),
    "corr": (0.15, 0.32),
    "dispersion": (0.016, 0.026),
    "zero_share": (0.015, 0.06),
    "mkt_vol": (0.0075, 0.015),
}


def test_stylized_facts_fall_inside_real_ranges(mid_bars):
    got = facts.stylized_facts(mid_bars)
    for key, (lo, hi) in REAL_RANGES.items():
        assert lo <= got[key] <= hi, f"{key}={got[key]:.4f} outside the real range [{lo}, {hi}]"


def test_skew_grows_with_volatility_as_on_real_data(mid_bars):
    # skew_by_volatility on jpx-2463 over the 4-year windows 2016-19, 2018-21, 2020-23: top-minus-bottom
    # quintile of 60-day vol, mean 5-day return +0.09 .. +0.23 %, median -0.33 .. -0.47 %; median daily
    # skewness 0.09 .. 0.23 (calm quintile) and 0.73 .. 0.86 (volatile). The synthetic market gets the
    # sign of each (the mean gap is smaller: docs/baselines.md says why).
    got = facts.skew_by_volatility(mid_bars)
    assert 0.0 <= got["skew_low"] <= 0.35 and 0.6 <= got["skew_high"] <= 1.3, got
    assert got["median_gap"] < -0.0015, got  # volatile stocks' median falls ...
    assert got["mean_gap"] > got["median_gap"] + 0.002, got  # ... well below their mean


def test_skewed_shock_keeps_mean_and_variance_and_skews_by_its_weight():
    rng = np.random.default_rng(0)
    xi, g = rng.standard_normal(400_000), rng.standard_normal(400_000).astype(np.float32)
    sig = np.full(xi.shape, 0.02)
    assert skewed_shock(xi, g, sig, 0.02, 0.0) is xi  # skew 0: the symmetric shock itself
    for w in (0.3, 0.8):
        e = skewed_shock(xi, g, sig, 0.02, w)  # sig = ref: the weight is the setting itself
        assert abs(e.mean()) < 0.01 and abs(e.var() - 1) < 0.02
        skewness = ((e - e.mean()) ** 3).mean() / e.std() ** 3
        assert skewness == pytest.approx(2 * np.sqrt(2) * w**3, abs=0.05)  # xi symmetric: w^3 x chi2(1)'s
        assert np.median(e) < -skewness / 12  # the median falls below the mean of 0
    capped = skewed_shock(xi, g, 10 * sig, 0.02, 0.5)  # weight 5 is capped at SKEW_CAP
    assert abs(capped.var() - 1) < 0.02


def test_split_ratio_distribution(mid_bars):
    # No AdjFactor in jpx-2463 (1.0 everywhere), so the bands come from JPX notices as reported: about
    # 95-125 splits a year among ~3,900 listed companies in 2022-2023 (Matsui Securities' count, i.e.
    # ~25-32 per 1,000 stock-years), 1:2 the most common ratio, then 1:3-1:5; consolidations (mostly
    # 10:1) cluster before the October 2018 move of every TSE stock to 100-share trading units.
    ratios = facts.split_ratios(mid_bars)
    assert set(ratios) <= set(facts.SPLIT_NAMES.values())
    splits = {k: v for k, v in ratios.items() if k.startswith("1:")}
    assert max(splits, key=splits.get) == "1:2"
    assert 0.35 <= splits["1:2"] / sum(splits.values()) <= 0.8
    stock_years = mid_bars.height / 245
    assert 12 <= 1000 * mid_bars.filter(pl.col("AdjFactor") < 1).height / stock_years <= 60
    consol = mid_bars.filter(pl.col("AdjFactor") > 1)
    assert consol.height > 0 and (consol["Date"] < dt.date(2018, 10, 1)).mean() > 0.5


def test_stylized_facts_on_a_tiny_hand_made_frame():
    day = [dt.date(2024, 1, d) for d in (4, 5, 9, 10)]
    bars = pl.DataFrame(
        {"Date": day * 2, "Code": ["10000"] * 4 + ["20000"] * 4, "AdjC": [100.0, 110.0, 110.0, 99.0, 50.0, 50.0, 50.0, 55.0],
         "Vo": [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0], "AdjFactor": [1.0] * 8}
    )  # fmt: skip
    r = facts.daily_returns(bars)
    # The zero-volume row (a holiday filled in by a download) is dropped, not counted as a zero return.
    assert np.allclose(r.filter(pl.col("Code") == "10000")["r"], [np.log(1.1), np.log(0.9)])
    assert np.allclose(r.filter(pl.col("Code") == "20000")["r"], [0.0, 0.0, np.log(1.1)])


# Signals: unit-strength oracle parts, Fama-MacBeth slopes of realised labels on them.
def _signal_slopes(s: SyntheticConfig, horizon: int) -> tuple[np.ndarray, np.ndarray, syn.Market]:
    m = syn.simulate(s, keep_parts=True)
    k = HORIZONS.index(horizon)
    y = facts.forward_labels(syn.adjusted_close(m), HORIZONS)[k]
    xs = [np.where(m.bar, m.parts[name][k], np.nan) for name in SIGNALS]
    b, se = facts.fama_macbeth(y, xs, lags=2 * horizon + 5)
    return b, se, m


def test_oracle_rank_ic_by_horizon_at_default_strengths():
    m = syn.simulate(dataclasses.replace(MID, seed=12))
    ic = syn.oracle_rank_ic(m)
    # Defaults aim at ~0.05 (1d) and ~0.10 (5d): real-signal territory, not a toy.
    bands = {"1d": (0.035, 0.085), "5d": (0.065, 0.14), "10d": (0.07, 0.16), "20d": (0.06, 0.18)}
    for h, (lo, hi) in bands.items():
        assert lo <= ic[h] <= hi, f"oracle RankIC {h} = {ic[h]:.4f} outside [{lo}, {hi}]"
    # It is the conditional expectation: realised labels load on it one for one.
    y = facts.forward_labels(syn.adjusted_close(m), HORIZONS)
    b, se = facts.fama_macbeth(y[0], [np.where(m.bar, m.oracle[0], np.nan)])
    assert abs(b[0] - 1) < max(3 * se[0], 0.15)


def test_each_signal_is_where_its_strength_says():
    # Three times the defaults so that 300 stocks x 4 years measure each slope to ~10 %.
    tripled = dataclasses.replace(MID, seed=13, **{n: 3 * getattr(MID, n) for n in SIGNALS})
    b, se, _ = _signal_slopes(tripled, 5)
    for j, name in enumerate(SIGNALS):
        strength = getattr(tripled, name)
        assert b[j] / se[j] > 4, f"{name}: slope {b[j]:.4f} (se {se[j]:.4f}) not significant"
        assert abs(b[j] - strength) < max(3.5 * se[j], 0.15 * strength), f"{name}: {b[j]:.4f} vs {strength}"
        assert 0.6 < b[j] / strength < 1.4, f"{name}: slope {b[j]:.4f} vs strength {strength}"


def test_zero_strength_removes_a_signal():
    off = dataclasses.replace(MID, seed=14, leadlag=0.0, pead=0.0, volume_shock=0.0)
    b, se, _ = _signal_slopes(off, 1)
    for name in ("leadlag", "pead", "volume_shock"):
        j = SIGNALS.index(name)
        assert abs(b[j]) < 3 * se[j] and abs(b[j]) < 0.35 * getattr(MID, name), (
            f"{name}: {b[j]:.4f} ± {se[j]:.4f}"
        )
    j = SIGNALS.index("reversal")
    assert b[j] > 4 * se[j]  # the others are still there


def test_oracle_is_the_mean_over_alternative_futures():
    # Monte Carlo: from one state at the close of t0, 40 redraws of everything after t0. Averaged over
    # them, each stock's 5-day label lines up one for one with the oracle (cross-sectionally: the
    # market's common move is one draw per future and does not average out over 40).
    s = dataclasses.replace(SMALL, end="2021-12-30", **{n: 3 * getattr(SMALL, n) for n in SIGNALS})
    t0, k = 150, HORIZONS.index(5)
    m = syn.simulate(s)
    runs = [syn.simulate(s, perturb_from=t0 + 1, variant=v) for v in range(1, 41)]
    y = np.array([facts.forward_labels(syn.adjusted_close(r), HORIZONS)[k, t0] for r in runs])
    ok = m.bar[t0] & ~np.isnan(y).any(axis=0)
    o, mean = m.oracle[k, t0, ok], y[:, ok].mean(axis=0)
    assert all(np.array_equal(r.oracle[:, : t0 + 1], m.oracle[:, : t0 + 1]) for r in runs[:3])
    slope = np.polyfit(o - o.mean(), mean - mean.mean(), 1)[0]
    assert 0.8 < slope < 1.2 and np.corrcoef(o, mean)[0, 1] > 0.8


def test_no_look_ahead_in_the_generator(small_market):
    t0 = 400
    other = syn.simulate(SMALL, perturb_from=t0 + 1)
    m = small_market
    # Everything dated <= t0 is unchanged when every draw after t0 changes ...
    assert np.array_equal(m.oracle[:, : t0 + 1], other.oracle[:, : t0 + 1])
    assert np.array_equal(m.prices.c[: t0 + 1], other.prices.c[: t0 + 1], equal_nan=True)
    assert all(np.array_equal(m.impulses[k][: t0 + 1], other.impulses[k][: t0 + 1]) for k in m.impulses)
    # ... and the perturbation is real: the oracle after t0 moves.
    assert not np.allclose(m.oracle[:, t0 + 2], other.oracle[:, t0 + 2])


def test_oracle_carries_each_signal_term_at_the_gate_horizon(small, small_market):
    oracle = small.extra["oracle"]
    parts = [f"part_{name}_5d" for name in SIGNALS]
    schema.check(oracle, schema.oracle_spec(oracle.columns), "oracle")
    assert [c for c in oracle.columns if c.startswith("part_")] == parts  # the gate horizon only
    # oracle_5d = sum over signals of strength x unit part + 5 x static drift, row by row
    u = small_market.universe
    drift = static_drift(u, SMALL.lottery)
    drift = oracle["Code"].replace_strict(dict(zip(u.codes, drift.tolist(), strict=True)))
    total = oracle.select(pl.sum_horizontal(parts)).to_series() + 5 * drift
    np.testing.assert_allclose(total.to_numpy(), oracle["oracle_5d"].to_numpy(), rtol=0, atol=1e-15)
    m = syn.simulate(SMALL, keep_parts=True)
    k = HORIZONS.index(5)
    for name in SIGNALS:
        unit = m.parts[name][k].T[m.bar.T]  # the (Code, Date) order of the table
        np.testing.assert_array_equal(oracle[f"part_{name}_5d"].to_numpy(), getattr(SMALL, name) * unit)
        assert oracle[f"part_{name}_5d"].std() > 1e-4, name  # every default signal is on


def test_oracle_terms_follow_the_gate_horizon_and_switched_off_signals_are_zero():
    tiny = dataclasses.replace(SMALL, n_stocks=20, end="2021-09-30", leadlag=0.0)
    cfg = _cfg(tiny).with_overrides(["evaluate.gate_horizon=10d"])
    oracle = syn.load(cfg).extra["oracle"]
    assert [c for c in oracle.columns if c.startswith("part_")] == [f"part_{n}_10d" for n in SIGNALS]
    assert oracle["part_leadlag_10d"].abs().max() == 0.0 and oracle["part_reversal_10d"].abs().max() > 0
    with pytest.raises(ConfigError, match="evaluate.gate_horizon must be one of 1d, 5d, 10d, 20d, got '3d'"):
        syn.load(_cfg(tiny).with_overrides(["evaluate.gate_horizon=3d"]))
