"""Features stage: hand-computed first features of every family, manifest contract, absent families, splits."""

import datetime as dt
import json
import math
import statistics

import polars as pl
import pytest
from market_tables import CLOSES, bars, fins, flows, margin, random_market, sessions, tiny

from kabuflow.config import Config, ConfigError
from kabuflow.features import FEATURES, build, features
from kabuflow.manifest import seal

H = (1, 5, 10, 20)
A, B, C = "13010", "13020", "13030"


def col(out: pl.DataFrame, code: str, name: str) -> list:
    return out.filter(pl.col("code") == code)[name].to_list()


@pytest.fixture(scope="module")
def tiny_out() -> pl.DataFrame:
    return build(tiny(), H)[0]


def test_ret_1d_and_5d(tiny_out):
    r1, r5 = col(tiny_out, A, "ret_1d"), col(tiny_out, A, "ret_5d")
    assert r1[0] is None and r1[1] == pytest.approx(102 / 100 - 1) and r1[2] == pytest.approx(101 / 102 - 1)
    assert r5[:5] == [None] * 5 and r5[5] == pytest.approx(102 / 100 - 1)


def test_vol_5d_is_sample_std_of_log_returns(tiny_out):
    c = CLOSES[A]
    logs = [math.log(c[i] / c[i - 1]) for i in range(1, 6)]
    v = col(tiny_out, A, "vol_5d")
    assert v[4] is None and v[5] == pytest.approx(statistics.stdev(logs), rel=1e-6)


def test_tech_sma_gap_5d(tiny_out):
    g = col(tiny_out, A, "tech_sma_gap_5d")
    assert g[3] is None and g[4] == pytest.approx(104 / ((100 + 102 + 101 + 103 + 104) / 5) - 1, rel=1e-6)


def test_liq_range_1d(tiny_out):
    # bars(): O = previous close, H = max(O, C)·1.01, L = min(O, C)·0.99
    assert col(tiny_out, A, "liq_range_1d")[1] == pytest.approx((102 * 1.01 - 100 * 0.99) / 102, rel=1e-6)


def test_mkt_ret_1d_equal_weight_proxy_without_topix(tiny_out):
    expected = ((102 / 100 - 1) + 0.0 + (198 / 200 - 1)) / 3
    for code in (A, B, C):
        assert col(tiny_out, code, "mkt_ret_1d")[1] == pytest.approx(expected, rel=1e-6)
    beta = col(tiny_out, A, "mkt_beta_60d")
    assert all(b is None for b in beta)  # 10 bars < 60: no beta, and none made up


def test_mkt_ret_1d_from_topix_when_present():
    t = tiny()
    dates = sessions("2024-01-04", 10)
    t["indices_bars_daily_topix"] = pl.DataFrame(
        {"Date": dates, "O": 1.0, "H": 1.0, "L": 1.0, "C": [2000.0 + 10 * i for i in range(10)]}
    )
    out, info = build(t, H)
    assert col(out, B, "mkt_ret_1d")[3] == pytest.approx(2030 / 2020 - 1, rel=1e-6)
    assert info["notes"]["mkt"]["market_source"] == "topix"


def test_sec_ret_1d_is_the_sector_mean(tiny_out):
    assert col(tiny_out, A, "sec_ret_1d")[1] == pytest.approx((0.02 + 0.0) / 2, rel=1e-6)
    assert col(tiny_out, C, "sec_ret_1d")[1] == pytest.approx(198 / 200 - 1, rel=1e-6)


def test_cs_rank_ret_1d(tiny_out):
    assert [col(tiny_out, k, "cs_rank_ret_1d")[1] for k in (A, B, C)] == [1.0, 0.5, 0.0]


def test_cs_family_run_by_date_equals_over_the_date():
    """The cs family runs in a group_by over dates (Family.by): the numbers `.over("date")` gives."""
    m = random_market(n_codes=6, n_sessions=40, seed=11)
    out = build({k: m[k] for k in ("equities_bars_daily", "equities_master")}, H)[0]
    x = pl.col("ret_5d").cast(pl.Float64)
    n = x.count().over("date")
    want = out.select(
        rank=pl.when(n > 1).then((x.rank("average").over("date") - 1) / (n - 1)),
        z=(x - x.mean().over("date")) / x.std().over("date"),
    )
    got = out.select(rank=pl.col("cs_rank_ret_5d"), z=pl.col("cs_z_ret_5d")).cast(pl.Float64)
    assert got.null_count().row(0) == want.null_count().row(0) == (5 * 6, 5 * 6)
    for c in ("rank", "z"):
        assert (got[c] - want[c]).abs().max() < 1e-6, c


def test_flag_warm_20d():
    closes = {A: [100.0 + i for i in range(25)]}
    out = build(tiny(closes), H)[0]
    assert col(out, A, "flag_warm_20d") == [0.0] * 19 + [1.0] * 6


def test_stmt_sales_growth_against_the_prior_year():
    t, dates = tiny(), sessions("2024-01-04", 10)
    t["fins_summary"] = fins(
        [
            {"DiscDate": dt.date(2023, 2, 10), "DiscTime": "15:00:00", "Code": A, "CurPerType": "FY",
             "CurFYEn": dt.date(2022, 12, 31), "Sales": 100.0, "OP": 10.0, "NP": 5.0},
            {"DiscDate": dates[4], "DiscTime": "13:00:00", "Code": A, "CurPerType": "FY",
             "CurFYEn": dt.date(2023, 12, 31), "Sales": 120.0, "OP": 15.0, "NP": 6.0},
        ]
    )  # fmt: skip
    out = build(t, H)[0]
    assert col(out, A, "stmt_sales_growth_1y") == [None] * 4 + [pytest.approx(0.2)] * 6
    assert col(out, A, "stmt_op_margin") == [pytest.approx(0.1)] * 4 + [pytest.approx(0.125)] * 6
    assert col(out, B, "stmt_op_margin") == [None] * 10


def test_flow_frgn_net_from_the_session_after_publication():
    t, dates = tiny(), sessions("2024-01-04", 10)
    t["equities_investor_types"] = flows(
        [{"PubDate": dates[3], "StDate": dates[0], "EnDate": dates[2], "Section": "TSEPrime",
          "TotTot": 1000.0, "FrgnBal": 50.0, "IndBal": -20.0, "TrstBnk": 0.0}]
    )  # fmt: skip
    out = build(t, H)[0]
    assert col(out, C, "flow_frgn_net_1w") == [None] * 4 + [pytest.approx(0.05)] * 6


def test_margin_ls_log_with_and_without_pubdate():
    t, dates = tiny(), sessions("2024-01-04", 10)
    t["markets_margin_interest"] = margin(
        [
            {"PubDate": dates[2], "Date": dates[0], "Code": A, "LongVol": 99.0, "ShrtVol": 9.0},
            # No PubDate: assumed published 2 sessions after Date (dates[5]), usable from dates[6].
            {"PubDate": None, "Date": dates[3], "Code": A, "LongVol": 9.0, "ShrtVol": 99.0},
        ]
    )
    out = build(t, H)[0]
    want = [None] * 3 + [pytest.approx(math.log(10))] * 3 + [pytest.approx(math.log(0.1))] * 4
    assert col(out, A, "margin_ls_log_1w") == want


def test_stage_writes_features_and_manifest(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, df in random_market(n_codes=3, n_sessions=40).items():
        df.write_parquet(raw / f"{name}.parquet")
    seal(raw, "ingest")
    manifest = features(Config(), raw, tmp_path / "out")
    out = pl.read_parquet(tmp_path / "out" / "features.parquet")
    assert manifest == json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["families_absent"] == [] and manifest["rows"] == out.height
    assert out.columns[:4] == ["date", "code", "s33", "mkt"] and out.columns[-4:] == [
        "y_1d",
        "y_5d",
        "y_10d",
        "y_20d",
    ]
    assert out.select("code", "date").equals(out.select("code", "date").sort("code", "date"))
    kinds = {f["name"]: f["kind"] for f in manifest["features"]}
    assert kinds["mkt_ret_1d"] == kinds["flow_frgn_net_1w"] == "market" and kinds["flag_warm_60d"] == "flag"
    assert kinds["ret_5d"] == kinds["stmt_roe"] == kinds["margin_ls_log_1w"] == "stock"
    for name in kinds:
        assert out.schema[name] == pl.Float32 and name.split("_")[0] in {f.name for f in FEATURES}
    assert all(out.schema[y] == pl.Float64 for y in ("y_1d", "y_20d"))
    assert manifest["config"]["features"]["horizons"] == [1, 5, 10, 20] and "code_version" in manifest


def test_absent_tables_mean_absent_families_not_zero_columns(tmp_path):
    out, info = build(tiny(), H)
    absent = {a["family"]: a["reason"] for a in info["families_absent"]}
    assert set(absent) == {"stmt", "flow", "margin"} and "fins_summary" in absent["stmt"]
    assert not [c for c in out.columns if c.startswith(("stmt_", "flow_", "margin_"))]
    assert info["notes"]["mkt"]["market_source"] == "proxy_equal_weight"


def test_split_keeps_returns_and_volatility_continuous():
    """A 2:1 split at session 5: raw prices halve, Adj prices (what features read) do not."""
    dates = sessions("2024-01-04", 30)
    adj = [100.0 * 1.01 ** (i % 7) for i in range(30)]
    b = bars({A: adj, B: [50.0] * 30}, dates)
    raw_scale = pl.when(pl.col("Date") < dates[15]).then(2.0).otherwise(1.0)
    split = b.with_columns(
        *(pl.col(k) * raw_scale for k in ("O", "H", "L", "C")), Vo=pl.col("Vo") / raw_scale
    )
    assert split.filter(pl.col("Code") == A)["C"].to_list()[14:16] == [adj[14] * 2, adj[15]]
    t = tiny({A: adj, B: [50.0] * 30})
    plain, with_split = build(t, H)[0], build({**t, "equities_bars_daily": split}, H)[0]
    for name in ("ret_1d", "ret_20d", "vol_5d", "vol_20d", "vol_yz_20d", "tech_atr_14d"):
        assert col(with_split, A, name) == col(plain, A, name), name
    assert col(with_split, A, "ret_1d")[15] == pytest.approx(adj[15] / adj[14] - 1, rel=1e-6)


def test_features_before_a_later_split_do_not_see_it():
    """Bars downloaded before a split (unadjusted) and after it (Adj prices halved before the split)
    give the same features on the pre-split dates: no level that a future split moves."""
    m = random_market(n_codes=3, n_sessions=60, seed=3)
    before = {k: m[k] for k in ("equities_bars_daily", "equities_master")}
    split_day = sessions("2024-01-04", 60)[40]
    scale = pl.when((pl.col("Code") == "13000") & (pl.col("Date") < split_day)).then(0.5).otherwise(1.0)
    adjusted = m["equities_bars_daily"].with_columns(
        *(pl.col(f"Adj{k}") * scale for k in ("O", "H", "L", "C")), AdjVo=pl.col("AdjVo") / scale
    )
    pre = pl.col("date") < split_day
    x = build(before, H)[0].filter(pre)
    y = build({**before, "equities_bars_daily": adjusted}, H)[0].filter(pre)
    feats = [c for c in x.columns if x.schema[c] == pl.Float32]
    assert len(feats) > 90 and x.select(feats).equals(y.select(feats))


def test_pandas_reference_agrees(tmp_path):
    """The benchmark's pandas reference computes the same numbers as the stage."""
    import pandas as pd

    from kabuflow.benchmarks.features import compare
    from kabuflow.benchmarks.features_pandas import pandas_features
    from kabuflow.features import _calendar

    m = random_market(n_codes=4, n_sessions=260, seed=5)
    t = {"equities_bars_daily": m["equities_bars_daily"], "equities_master": tiny_master(m)}
    out = build(t, H)[0]
    bars_pd = t["equities_bars_daily"].to_pandas()
    cal = _calendar.sessions(dt.date(2024, 1, 4), dt.date(2025, 2, 1)).to_pandas()
    bars_pd["Date"], cal["date"] = pd.to_datetime(bars_pd.Date), pd.to_datetime(cal.date)
    ref = pandas_features(bars_pd, t["equities_master"].to_pandas(), cal)
    ref["date"] = ref.date.dt.date
    out.write_parquet(tmp_path / "a.parquet")
    ref.to_parquet(tmp_path / "b.parquet")
    res = compare(tmp_path / "a.parquet", tmp_path / "b.parquet")
    assert res["columns_compared"] >= 100 and res["disagreeing_columns"] == {}, res


def tiny_master(m: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """One snapshot row per code dated after the bars (the real set's shape)."""
    from market_tables import master

    codes = m["equities_bars_daily"]["Code"].unique().sort().to_list()
    return master([(dt.date(2025, 3, 1), c, ["0050", "3050"][i % 2], "0111") for i, c in enumerate(codes)])


def test_masked_windows_equal_windows_over_each_code():
    """The ts_ helpers run whole-column windows masked by position; that is exactly `.over("code")`."""
    from kabuflow.features import base
    from kabuflow.features._ops import C, lag, ts_max, ts_std

    t = random_market(n_codes=5, n_sessions=50, seed=9)
    cal = base.calendar_for(t)
    frame = base.bars_frame(t["equities_bars_daily"], cal)[0]
    got = frame.select(a=lag(C, 3), b=ts_std(C.log(), 7), c=ts_max(ts_std(C, 5), 10))
    want = frame.select(
        a=C.shift(3).over("code"),
        b=C.log().rolling_std(7, min_samples=7).over("code"),
        c=C.rolling_std(5, min_samples=5).rolling_max(10, min_samples=10).over("code"),
    )
    assert got.equals(want) and got["c"].null_count() < got.height


@pytest.mark.parametrize("horizons", ["[]", "[5, 0]", "[-1]"])
def test_horizons_must_be_positive_and_present(tmp_path, horizons):
    with pytest.raises(ConfigError, match=r"features.horizons must be a non-empty list of sessions >= 1"):
        features(
            Config().with_overrides([f"features.horizons={horizons}"]), tmp_path / "raw", tmp_path / "out"
        )


def test_sector_and_market_are_the_master_row_valid_at_each_date():
    from market_tables import master

    t = tiny()
    days = sorted(t["equities_bars_daily"]["Date"].unique().to_list())
    # A moves from 0050 to 3050 on the 4th session; B's only row comes on the 3rd (unknown before it).
    t["equities_master"] = master(
        [(days[0], A, "0050", "0111"), (days[3], A, "3050", "0112"), (days[2], B, "3200", "0111")]
    )
    out, info = build(t, H)
    assert col(out, A, "s33")[:5] == ["0050"] * 3 + ["3050"] * 2
    assert col(out, A, "mkt")[:5] == ["0111"] * 3 + ["0112"] * 2
    assert col(out, B, "s33")[:4] == [None, None, "3200", "3200"]
    assert info["master"]["mode"] == "as_of"


def test_one_snapshot_master_is_flagged_as_a_look_ahead():
    t = tiny()
    t["equities_master"] = tiny_master(t)
    _, info = build(t, H)
    assert info["master"]["mode"] == "snapshot" and info["master"]["lookahead_before"] == "2025-03-01"
    assert info["master"]["codes_backfilled"] == t["equities_bars_daily"]["Code"].n_unique()
