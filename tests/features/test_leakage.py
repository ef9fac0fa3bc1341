"""Point in time: nothing after session D moves a feature dated ≤ D; the statement cut-off; label windows."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
from market_tables import bars, fins, margin, random_market, sessions, tiny

from kabuflow import calendar
from kabuflow.features import build

H = (1, 5, 10, 20)
N, DAY = 90, 63
DATES = sessions("2024-01-04", N)
D = DATES[DAY]


def _scaled(df: pl.DataFrame, when: pl.Expr, cols: list[str], seed: int) -> pl.DataFrame:
    """Multiply each of `cols` by its own random factors in [0.5, 1.5] on the rows where `when` holds."""
    rng = np.random.default_rng(seed)
    noise = {c: pl.Series(rng.uniform(0.5, 1.5, df.height)) for c in cols}
    return df.with_columns(*(pl.when(when).then(pl.col(c) * noise[c]).otherwise(pl.col(c)) for c in cols))


def perturbed(t: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Every input that becomes public after D's close, changed; plus new rows that appear after D."""
    out = dict(t)
    px = ["O", "H", "L", "C", "AdjO", "AdjH", "AdjL", "AdjC", "AdjVo", "Vo"]
    b = _scaled(t["equities_bars_daily"], pl.col("Date") > D, px, 1)
    late = b.filter((pl.col("Date") > D) & (pl.col("Code") == "13010")).head(5)["Date"]
    newcomer = bars({"99990": [10.0 + i for i in range(N - DAY - 1)]}, DATES[DAY + 1 :])
    out["equities_bars_daily"] = b.filter(~pl.col("Date").is_in(late.implode())).vstack(newcomer)
    m = t["equities_master"]
    # A sector that first appears after D and sorts before every existing one.
    out["equities_master"] = m.vstack(
        m.head(2).with_columns(
            Date=pl.lit(DATES[DAY + 1]), Code=pl.Series(["13010", "99990"]), S33=pl.lit("0001")
        )
    )
    out["indices_bars_daily_topix"] = _scaled(t["indices_bars_daily_topix"], pl.col("Date") > D, ["C"], 2)
    after_close = (pl.col("DiscDate") > D) | ((pl.col("DiscDate") == D) & (pl.col("DiscTime") >= "15:00"))
    f = _scaled(
        t["fins_summary"], after_close, ["Sales", "OP", "NP", "TA", "Eq", "FNP", "FOP", "FEPS", "BPS"], 3
    )
    extra = f.filter(pl.col("DiscDate") == D).with_columns(DiscTime=pl.lit("15:00:00"), NP=pl.lit(-1e6))
    out["fins_summary"] = f.vstack(extra)
    out["equities_investor_types"] = _scaled(
        t["equities_investor_types"], pl.col("PubDate") >= D, ["FrgnBal", "IndBal", "TrstBnkBal", "TotTot"], 4
    )
    # Rows without PubDate count as published 2 sessions after Date, usable the session after that.
    unpublished = pl.col("PubDate").is_null() & (pl.col("Date") >= DATES[DAY - 2])
    out["markets_margin_interest"] = _scaled(
        t["markets_margin_interest"], (pl.col("PubDate") >= D) | unpublished, ["LongVol", "ShrtVol"], 5
    )
    return out


@pytest.fixture(scope="module")
def both() -> tuple[pl.DataFrame, pl.DataFrame]:
    t = random_market(n_codes=4, n_sessions=N, seed=0)
    return build(t, H)[0], build(perturbed(t), H)[0]


def test_no_feature_dated_on_or_before_d_moves(both):
    base, moved = both
    feats = [c for c in base.columns if base.schema[c] == pl.Float32]
    assert {c.split("_")[0] for c in feats} >= {
        "ret",
        "vol",
        "tech",
        "liq",
        "mkt",
        "sec",
        "cs",
        "stmt",
        "flow",
        "margin",
    }
    upto = pl.col("date") <= D
    x, y = (
        base.filter(upto).select("code", "date", "s33", *feats),
        moved.filter(upto).select("code", "date", "s33", *feats),
    )
    assert x.height > 200 and x.equals(y)
    # The perturbation has teeth: after D, features did move.
    after = base.filter(~upto).join(moved.filter(~upto), on=["code", "date"], suffix="_p")
    live = [c for c in feats if after[c].null_count() < after.height and not c.startswith("flag_")]
    unchanged = [c for c in live if after[c].equals(after[f"{c}_p"])]
    # Random-walk closes never repeat (zero_ret stays 0) and two-stock sectors keep their turnover order.
    assert len(live) > 90 and set(unchanged) <= {"liq_zero_ret_20d", "sec_rank_liq_turnover_20d"}


def test_labels_change_only_when_their_window_reaches_past_d(both):
    base, moved = both
    pos = pl.DataFrame({"date": DATES, "i": list(range(N))})
    x = base.filter(pl.col("date") <= D).join(pos, on="date").sort("code", "date")
    y = moved.filter(pl.col("date") <= D).sort("code", "date")
    for h in H:
        inside = (x["i"] + 1 + h <= DAY).to_list()
        same = [a == b for a, b in zip(x[f"y_{h}d"].to_list(), y[f"y_{h}d"].to_list(), strict=True)]
        assert all(s for s, ok in zip(same, inside, strict=True) if ok), h
        assert not all(s for s, ok in zip(same, inside, strict=True) if not ok), h


@pytest.mark.parametrize(
    "day, time, counts_on",
    [
        (dt.date(2024, 1, 10), "14:59:00", dt.date(2024, 1, 10)),  # before the 15:00 close: same session
        (dt.date(2024, 1, 10), "15:01:00", dt.date(2024, 1, 11)),  # after the close: next session
        (dt.date(2024, 1, 10), "15:00:00", dt.date(2024, 1, 11)),  # at the close: not in that close's price
        (dt.date(2024, 1, 8), "10:00:00", dt.date(2024, 1, 9)),  # a holiday: next session
        (dt.date(2024, 1, 13), "10:00:00", dt.date(2024, 1, 15)),  # a Saturday: next session
        (dt.date(2024, 11, 5), "15:15:00", dt.date(2024, 11, 5)),  # close is 15:30 from 2024-11-05
        (dt.date(2024, 11, 1), "15:15:00", dt.date(2024, 11, 5)),  # ... but 15:00 before (11-04 holiday)
    ],
)
def test_statement_cutoff(day, time, counts_on):
    start = min(day, dt.date(2024, 1, 4)) if day.month == 1 else dt.date(2024, 10, 25)
    dates = calendar.sessions(start, start + dt.timedelta(days=20))
    t = tiny({"13010": [100.0] * len(dates)})
    t["equities_bars_daily"] = bars({"13010": [100.0 + i for i in range(len(dates))]}, dates)
    t["equities_master"] = t["equities_master"].with_columns(Date=pl.lit(dates[0]))
    row = {"DiscDate": day, "DiscTime": time, "Code": "13010", "CurPerType": "1Q", "Sales": 100.0, "OP": 7.0}
    t["fins_summary"] = fins([{**row, "NP": 5.0}])
    out = build(t, H)[0]
    margin_seen = out.filter(pl.col("stmt_op_margin").is_not_null())["date"]
    assert margin_seen.min() == counts_on
    assert out.filter(pl.col("date") == counts_on)["stmt_days_since"].item() == 0


def test_margin_rows_count_from_the_session_after_publication():
    t = tiny()
    dates = sessions("2024-01-04", 10)
    t["markets_margin_interest"] = margin(
        [{"PubDate": dates[5], "Date": dates[1], "Code": "13010", "LongVol": 10.0, "ShrtVol": 1.0}]
    )
    seen = build(t, H)[0].filter(pl.col("code") == "13010")["margin_ls_log_1w"].to_list()
    assert seen[:6] == [None] * 6 and seen[6] == pytest.approx(np.log(11 / 2))
