"""The audit's cut: each raw table keeps exactly what was public at the close of session D."""

import datetime as dt

import polars as pl

from kabuflow.audit.truncate import truncate

D = dt.date(2024, 3, 13)  # a Wednesday session
DAY = [dt.date(2024, 3, d) for d in (11, 12, 13, 14, 15)]


def _bars(codes=("10010",), days=DAY) -> pl.DataFrame:
    return pl.DataFrame({"Date": [d for _ in codes for d in days], "Code": [c for c in codes for _ in days]})


def test_bars_by_date_statements_by_the_close_weekly_tables_by_publication():
    fins = pl.DataFrame(
        {
            "DiscDate": [DAY[1], D, D, DAY[3]],
            "DiscTime": ["16:00:00", "14:59:00", "15:00:00", "09:00:00"],
            "Code": ["10010"] * 4,
            "DiscNo": ["1", "2", "3", "4"],
        }
    )
    flows = pl.DataFrame({"PubDate": [DAY[1], D, DAY[4]], "Section": ["TSEPrime"] * 3})
    margin = pl.DataFrame(
        {
            # published before D; published on D (counts from D+1); no PubDate, recorded 3 and 2 sessions
            # before D: assumed published 2 sessions later, counting the session after that
            "PubDate": [DAY[1], D, None, None],
            "Date": [DAY[0], DAY[1], dt.date(2024, 3, 8), DAY[0]],
            "Code": ["10010"] * 4,
        }
    )
    master = pl.DataFrame({"Date": [DAY[0], DAY[3]], "Code": ["10010", "10010"], "S33": ["3050", "3100"]})
    tables = {
        "equities_bars_daily": _bars(),
        "fins_summary": fins,
        "equities_investor_types": flows,
        "markets_margin_interest": margin,
        "equities_master": master,
    }
    cut, notes = truncate(tables, D)
    assert cut["equities_bars_daily"]["Date"].max() == D and cut["equities_bars_daily"].height == 3
    # 16:00 the day before counts at D; 14:59 on D counts at D; 15:00 on D counts from the next session
    assert cut["fins_summary"]["DiscNo"].to_list() == ["1", "2"]
    assert cut["equities_investor_types"]["PubDate"].to_list() == [DAY[1]]
    assert cut["markets_margin_interest"]["Date"].to_list() == [DAY[0], dt.date(2024, 3, 8)]
    assert cut["equities_master"]["S33"].to_list() == ["3050"]  # a master history: as of D
    assert notes["fins_summary"] == "2 of 4 rows"


def test_a_single_master_snapshot_dated_after_first_bars_is_kept_whole():
    master = pl.DataFrame({"Date": [DAY[4]], "Code": ["10010"], "S33": ["3050"]})
    cut, notes = truncate({"equities_bars_daily": _bars(), "equities_master": master}, D)
    assert cut["equities_master"].equals(master)
    assert "one snapshot per code" in notes["equities_master"]
