"""The files source on tiny hand-made parquet/CSV directories with hand-counted drops."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from raw_files import BARS_CSV, cfg_for, make_dir, master

from kabuflow import config, schema
from kabuflow.schema import SchemaError
from kabuflow.sources import files

D = dt.date


def test_reads_checks_and_drops_with_reasons(tmp_path):
    result = files.load(cfg_for(make_dir(tmp_path / "raw")))
    assert set(result.tables) == {"equities_bars_daily", "equities_master", "indices_bars_daily_topix"}
    for table, df in result.tables.items():
        schema.check(df, schema.RAW[table], table)
    bars = result.tables["equities_bars_daily"]
    assert bars.select("Code", "Date").rows() == [
        ("72030", D(2024, 1, 4)),
        ("72030", D(2024, 1, 5)),
        ("72030", D(2024, 1, 9)),
        ("99840", D(2024, 1, 10)),
    ]
    assert bars["C"].to_list() == [105.0, 110.0, 112.0, 53.0]
    assert bars["Va"].null_count() == 4  # absent in the file: typed nulls
    assert result.dropped == [
        {"table": "equities_bars_daily", "reason": "not_session", "rows": 1},
        {"table": "equities_bars_daily", "reason": "duplicate", "rows": 1},
        {"table": "equities_bars_daily", "reason": "zero_volume", "rows": 1},
        {"table": "equities_bars_daily", "reason": "bad_price", "rows": 2},  # null prices, C = -1
        {"table": "equities_master", "reason": "bad_code", "rows": 1},
        {"table": "indices_bars_daily_topix", "reason": "not_session", "rows": 1},
        {"table": "indices_bars_daily_topix", "reason": "bad_price", "rows": 1},
    ]
    assert result.tables["equities_master"]["S33"].to_list() == ["3700", "5250", "0050"]
    assert result.notes["filled_columns"]["equities_bars_daily"] == ["Va"]
    assert "CoNameEn" in result.notes["filled_columns"]["equities_master"]
    assert result.notes["files"]["indices_bars_daily_topix"] == "indices_bars_daily_topix.csv.gz"
    assert result.notes["ignored_files"] == ["notes.txt"]


def test_respects_start_and_end_but_keeps_the_master(tmp_path):
    result = files.load(cfg_for(make_dir(tmp_path / "raw"), "data.start=2024-01-05", "data.end=2024-01-09"))
    bars = result.tables["equities_bars_daily"]
    assert bars["Date"].to_list() == [D(2024, 1, 5), D(2024, 1, 9)]
    assert result.tables["equities_master"].height == 3  # a 2024-03-29 snapshot: reference data
    assert {d["reason"]: d["rows"] for d in result.dropped if d["table"] == "equities_bars_daily"} == {
        "not_session": 1,
        "duplicate": 1,
        "bad_price": 2,
    }


def test_bad_column_type_names_file_and_column(tmp_path):
    root = make_dir(tmp_path / "raw")
    (root / "equities_bars_daily.csv").write_text(
        BARS_CSV.replace("2024-01-10,9984,52,53,51,53", "2024-01-10,9984,52,53,51,abc")
    )
    with pytest.raises(
        SchemaError, match=r"equities_bars_daily\.csv: column 'C' cannot be read as Float64 .*'abc'"
    ):
        files.load(cfg_for(root))
    pl.DataFrame({"Date": ["2024-01-04"], "Code": ["72030"], "S33": [1.5], "Mkt": ["0111"]}).write_parquet(
        root / "equities_master.parquet"
    )
    (root / "equities_bars_daily.csv").write_text(BARS_CSV)
    with pytest.raises(SchemaError, match=r"equities_master\.parquet: column 'S33' has dtype Float64"):
        files.load(cfg_for(root))


def test_bad_dates_and_missing_columns_are_named(tmp_path):
    root = make_dir(tmp_path / "raw")
    (root / "equities_bars_daily.csv").write_text(BARS_CSV.replace("2024-01-10", "10/01/2024"))
    with pytest.raises(SchemaError, match=r"column 'Date' cannot be read as Date .*'10/01/2024'"):
        files.load(cfg_for(root))
    (root / "equities_bars_daily.csv").write_text(BARS_CSV.replace(",AdjC,", ",AdjClose,"))
    with pytest.raises(SchemaError, match=r"equities_bars_daily\.csv: missing required column 'AdjC'"):
        files.load(cfg_for(root))


def test_missing_required_table_and_duplicates(tmp_path):
    root = make_dir(tmp_path / "raw")
    (root / "equities_master.csv").write_text("Date,Code,S33,Mkt\n2024-03-29,7203,3700,0111\n")
    with pytest.raises(SchemaError, match="equities_master is given twice"):
        files.load(cfg_for(root))
    (root / "equities_master.csv").unlink()
    (root / "equities_master.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="lacks required table.*equities_master"):
        files.load(cfg_for(root))
    with pytest.raises(ValueError, match="data.path"):
        files.load(config.Config().with_overrides(["data.source=files"]))
    with pytest.raises(config.ConfigError, match="data.start='soon' is not an ISO date"):
        files.load(cfg_for(make_dir(tmp_path / "again"), "data.start=soon"))


def test_statement_times_and_codes_normalised():
    df = pl.DataFrame(
        {
            "DiscDate": ["2024-11-01", "20241105"],
            "DiscTime": ["15:00", ""],
            "Code": ["7203", "130A0"],
            "DocType": ["x", "y"],
            "EPS": ["-", " 12.5"],  # "-" is how some exports write "no value"
        }
    )
    out, filled = files.coerce(df, "fins_summary", "test")
    assert out["DiscTime"].to_list() == ["15:00:00", None]
    assert out["DiscDate"].to_list() == [D(2024, 11, 1), D(2024, 11, 5)]
    assert out["Code"].to_list() == ["72030", "130A0"]
    assert out["EPS"].to_list() == [None, 12.5]
    assert "Sales" in filled and out["Sales"].dtype == pl.Float64


HEAD = "Date,Code,O,H,L,C,Vo,Va,AdjFactor,AdjO,AdjH,AdjL,AdjC,AdjVo\n"


def _bars_dir(root: Path, rows: str) -> Path:
    root.mkdir()
    (root / "equities_bars_daily.csv").write_text(HEAD + rows)
    master().write_parquet(root / "equities_master.parquet")
    return root


def test_broken_bars_are_dropped_and_counted_by_reason(tmp_path):
    rows = (
        "2024-01-04,7203,100,110,90,105,1000,,1,100,110,90,105,1000\n"
        "2024-01-05,7203,100,90,110,105,1000,,1,100,90,110,105,1000\n"  # high below low
        "2024-01-09,7203,100,110,90,111,1000,,1,100,110,90,111,1000\n"  # close above the high
        "2024-01-10,7203,89,110,90,100,1000,,1,89,110,90,100,1000\n"  # open below the low
        "2024-01-11,7203,100,110,90,105,-5,,1,100,110,90,105,-5\n"  # negative volume
        "2024-01-12,7203,100,110,90,105,10,-1,1,100,110,90,105,10\n"  # negative turnover
        "2024-01-12,9984,50,55,45,52,300,,1,50,55,45,52,300\n"
        "2024-01-12,9984,50,55,45,52,300,,1,50,55,45,52,300\n"  # an identical duplicate: dropped
    )
    result = files.load(cfg_for(_bars_dir(tmp_path / "raw", rows)))
    assert result.tables["equities_bars_daily"].select("Code", "Date").rows() == [
        ("72030", D(2024, 1, 4)),
        ("99840", D(2024, 1, 12)),
    ]
    got = {d["reason"]: d["rows"] for d in result.dropped if d["table"] == "equities_bars_daily"}
    assert got == {"high_below_low": 1, "open_close_outside_range": 2, "negative_volume": 2, "duplicate": 1}


def test_duplicates_that_disagree_are_an_error_naming_code_and_date(tmp_path):
    rows = (
        "2024-01-09,7203,100,110,90,105,1000,,1,100,110,90,105,1000\n"
        "2024-01-09,7203,100,110,90,106,1000,,1,100,110,90,106,1000\n"
    )
    with pytest.raises(
        SchemaError, match="equities_bars_daily.csv: 1 duplicated keys .* first Code 72030, Date 2024-01-09"
    ):
        files.load(cfg_for(_bars_dir(tmp_path / "raw", rows)))


def test_bars_dated_after_today_are_an_error(tmp_path):
    later = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    rows = (
        f"2024-01-09,7203,100,110,90,105,1000,,1,100,110,90,105,1000\n{later},7203,1,1,1,1,1,,1,1,1,1,1,1\n"
    )
    with pytest.raises(SchemaError, match=f"1 bars dated after today .* first Code 72030 on {later}"):
        files.load(cfg_for(_bars_dir(tmp_path / "raw", rows)))


@pytest.mark.parametrize("content", [HEAD.encode(), b"PAR1\x00\x01truncated"])
def test_a_parquet_file_that_is_not_one_names_the_file(tmp_path, content):
    root = make_dir(tmp_path / "raw")
    (root / "equities_master.parquet").write_bytes(content)  # a CSV named .parquet; a cut-off download
    with pytest.raises(SchemaError, match=r"equities_master.parquet: not a readable parquet file"):
        files.load(cfg_for(root))
