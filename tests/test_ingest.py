"""The ingest stage on the files source: written tables, manifest with drop reasons, atomicity, no look-ahead."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import polars as pl
import pytest
from raw_files import BARS_CSV, cfg_for, make_dir

from kabuflow import calendar, schema, telemetry
from kabuflow.ingest import ingest
from kabuflow.manifest import open_dir, seal
from kabuflow.schema import SchemaError


def test_ingest_writes_tables_and_manifest(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "fins_summary.parquet").write_bytes(b"stale: from an earlier jquants run")
    seal(out, "ingest")  # a complete earlier output: replaced as a unit, its extra table goes with it
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


def test_failed_ingest_leaves_the_old_output_whole(tmp_path):
    root = make_dir(tmp_path / "raw")
    out = tmp_path / "out"
    ingest(cfg_for(root), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (root / "equities_bars_daily.csv").write_text(
        BARS_CSV.replace("2024-01-10,9984,52", "2024-01-10,9984,x52")
    )
    with pytest.raises(SchemaError, match="column 'O'"):
        ingest(cfg_for(root), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old output, untouched
    assert open_dir(out).manifest["source"] == "files"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]  # no partial directory, no .tmp


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


def _csv_rows(code: str, days: list[dt.date], closes: list[float], vols: list[float]) -> str:
    return "".join(
        f"{d},{code},{c},{c},{c},{c},{v},1,{c},{c},{c},{c},{v}\n"
        for d, c, v in zip(days, closes, vols, strict=True)
    )


def _guard_dir(root, master_rows: str):
    """Three codes over 30 sessions: 1111 with a missed 1:2 split, 2222 with a bad print, 3333 clean but
    ending 25 sessions early (a delisting)."""
    days = calendar.sessions(dt.date(2024, 1, 4), dt.date(2024, 3, 1))[:30]
    wiggle = [1000.0, 1010, 990, 1005, 995]
    rows = _csv_rows("1111", days, wiggle * 3 + [c / 2 for c in wiggle] * 3, [1000.0] * 15 + [2000.0] * 15)
    rows += _csv_rows("2222", days, [800.0] * 12 + [80.0] + [800.0] * 17, [500.0] * 30)
    rows += _csv_rows("3333", days[:5], [300.0] * 5, [100.0] * 5)
    root.mkdir()
    (root / "equities_bars_daily.csv").write_text(
        "Date,Code,O,H,L,C,Vo,AdjFactor,AdjO,AdjH,AdjL,AdjC,AdjVo\n" + rows
    )
    (root / "equities_master.csv").write_text("Date,Code,S33,Mkt\n" + master_rows)
    return root, days


@pytest.mark.parametrize("mode", ["repair", "mask", "keep"])
def test_guard_events_counts_survivorship_and_master_in_the_manifest(tmp_path, mode):
    snapshot = "2024-02-01,1111,3700,0111\n2024-02-01,2222,3700,0111\n2024-02-01,3333,3700,0111\n"
    root, days = _guard_dir(tmp_path / "raw", snapshot)
    manifest = ingest(cfg_for(root, f"data.bad_moves={mode}"), tmp_path / "out")
    g = manifest["guard"]
    assert [(e["code"], e["date"], e["verdict"]) for e in g["events"]] == [
        ("11110", str(days[15]), "missed_split"),
        ("22220", str(days[12]), "bad_print"),
    ]
    assert g["counts"] == {"missed_split": 1, "bad_print": 1, "level_shift": 0} and g["mode"] == mode
    bars = pl.read_parquet(tmp_path / "out" / "equities_bars_daily.parquet")
    one = bars.filter(pl.col("Code") == "11110")
    drops = {d["reason"]: d["rows"] for d in manifest["dropped"]}
    if mode == "repair":
        assert one["AdjC"][:15].to_list() == [c / 2 for c in [1000.0, 1010, 990, 1005, 995] * 3]
        assert one["AdjFactor"][15] == 0.5 and drops == {"guard_bad_print": 1}
    elif mode == "mask":
        assert one.height == 15 and drops == {"guard_missed_split": 15, "guard_bad_print": 1}
    else:
        assert bars.height == 65 and drops == {}
    assert bars.filter(pl.col("Code") == "22220").height == (30 if mode == "keep" else 29)
    assert (
        manifest["survivorship"]["codes_ending_early"] == 1 and not manifest["survivorship"]["survivors_only"]
    )
    master = manifest["master"]
    assert master["mode"] == "snapshot" and master["lookahead_before"] == "2024-02-01"
    assert master["bars_before_snapshot"] == bars.filter(pl.col("Date") < dt.date(2024, 2, 1)).height


def test_a_master_history_and_a_survivors_only_set_are_told_apart(tmp_path):
    history = "2024-01-04,1111,3700,0111\n2024-02-01,1111,3650,0111\n2024-01-04,2222,3700,0111\n"
    root, _ = _guard_dir(tmp_path / "raw", history)
    bars = (root / "equities_bars_daily.csv").read_text().splitlines()
    (root / "equities_bars_daily.csv").write_text("\n".join(b for b in bars if ",3333," not in b) + "\n")
    manifest = ingest(cfg_for(root), tmp_path / "out")
    assert manifest["master"]["mode"] == "history" and manifest["master"]["dates"] == 2
    s = manifest["survivorship"]
    assert s["survivors_only"] and s["codes_ending_early"] == 0 and "survivors only" in s["note"]


def test_every_source_the_config_allows_has_a_module():
    import typing

    from kabuflow.config import Source
    from kabuflow.ingest import SOURCES

    assert set(SOURCES) == set(typing.get_args(Source)) == {"synthetic", "jquants", "files"}
