"""The ingest stage on the files source: written tables, manifest with drop reasons, atomicity, no look-ahead."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import polars as pl
import pytest
from test_files import BARS_CSV, cfg_for, make_dir

from kabuflow import schema, telemetry
from kabuflow.ingest import ingest
from kabuflow.schema import SchemaError


def test_ingest_writes_tables_and_manifest(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "fins_summary.parquet").write_bytes(b"stale: from an earlier jquants run")
    manifest = ingest(cfg_for(make_dir(tmp_path / "raw")), out)
    assert not (out / "fins_summary.parquet").exists()
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == "files" and manifest["stage"] == "ingest"
    assert (manifest["start"], manifest["end"]) == ("2024-01-04", "2024-01-10")
    assert manifest["config"]["data"]["source"] == "files" and manifest["code_version"]
    assert {n: t["rows"] for n, t in manifest["tables"].items()} == {
        "equities_bars_daily": 4,
        "equities_master": 3,
        "indices_bars_daily_topix": 1,
    }
    assert {(d["table"], d["reason"]): d["rows"] for d in manifest["dropped"]} == {
        ("equities_bars_daily", "not_session"): 1,
        ("equities_bars_daily", "duplicate"): 1,
        ("equities_bars_daily", "zero_volume"): 1,
        ("equities_bars_daily", "bad_price"): 2,
        ("equities_master", "bad_code"): 1,
        ("indices_bars_daily_topix", "not_session"): 1,
        ("indices_bars_daily_topix", "bad_price"): 1,
    }
    assert manifest["notes"]["filled_columns"]["equities_bars_daily"] == ["Va"]
    for name, info in manifest["tables"].items():
        path = out / f"{name}.parquet"
        assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        df = pl.read_parquet(path)
        schema.check(df, schema.RAW[name], name)
        assert df.columns == info["columns"]
    bars = pl.read_parquet(out / "equities_bars_daily.parquet")
    assert bars.select("Code", "Date").rows() == sorted(bars.select("Code", "Date").rows())
    rows = telemetry.REGISTRY.get_sample_value("kabuflow_stage_rows", {"stage": "ingest", "direction": "out"})
    assert rows == 4 + 3 + 1
    assert sorted(p.name for p in out.iterdir()) == [
        "equities_bars_daily.parquet",
        "equities_master.parquet",
        "indices_bars_daily_topix.parquet",
        "manifest.json",
    ]


def test_failed_ingest_leaves_no_manifest(tmp_path):
    root = make_dir(tmp_path / "raw")
    out = tmp_path / "out"
    ingest(cfg_for(root), out)
    (root / "equities_bars_daily.csv").write_text(
        BARS_CSV.replace("2024-01-10,9984,52", "2024-01-10,9984,x52")
    )
    with pytest.raises(SchemaError, match="column 'O'"):
        ingest(cfg_for(root), out)
    assert not (out / "manifest.json").exists()  # the old manifest no longer vouches for this directory
    assert not list(out.glob("*.tmp"))


def test_rows_up_to_d_do_not_move_when_later_data_changes(tmp_path):
    """Leakage: perturbing (and adding) rows after D leaves every written row dated <= D unchanged."""
    cut = dt.date(2024, 1, 5)
    base = make_dir(tmp_path / "a")
    ingest(cfg_for(base), tmp_path / "out_a")
    other = make_dir(tmp_path / "b")
    later = BARS_CSV.replace("2024-01-09,7203,110,115,108,112", "2024-01-09,7203,210,215,208,212")
    later += "2024-01-11,6758,10,11,9,10,50,1,10,11,9,10,50\n"  # a new stock, after D
    (other / "equities_bars_daily.csv").write_text(later)
    ingest(cfg_for(other), tmp_path / "out_b")
    for name in ("equities_bars_daily", "indices_bars_daily_topix"):
        a, b = (
            pl.read_parquet(tmp_path / o / f"{name}.parquet").filter(pl.col("Date") <= cut)
            for o in ("out_a", "out_b")
        )
        assert a.equals(b), name


def test_every_source_the_config_allows_has_a_module():
    import typing

    from kabuflow.config import Source
    from kabuflow.ingest import SOURCES

    assert set(SOURCES) == set(typing.get_args(Source)) == {"synthetic", "jquants", "files"}
