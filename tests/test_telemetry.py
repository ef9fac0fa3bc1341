"""kabuflow.telemetry against a real Prometheus Pushgateway started here (Debian's prometheus-pushgateway)."""

import json
import logging
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kabuflow import telemetry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pushgateway():
    binary = shutil.which("prometheus-pushgateway")
    if not binary:
        pytest.fail("prometheus-pushgateway not found: run `make sysdeps` (scripts/sysdeps.sh installs it)")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):  # until it answers /-/ready (it starts in well under a second)
        if proc.poll() is not None:
            pytest.fail(f"prometheus-pushgateway exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.05)
    else:
        pytest.fail("prometheus-pushgateway did not become ready")
    yield url
    proc.terminate()
    proc.wait()


@pytest.fixture
def env(monkeypatch, pushgateway):
    monkeypatch.setenv("PROMETHEUS_PUSHGATEWAY", pushgateway)
    monkeypatch.setenv("KABUFLOW_RUN_ID", "run-7f3a")
    monkeypatch.setenv("KABUFLOW_TASK", "features")
    monkeypatch.setenv("KABUFLOW_INSTANCE", "features-pod-1")
    monkeypatch.delenv("KABUFLOW_METRICS_FILE", raising=False)
    return pushgateway


def scrape(url: str) -> dict[tuple, float]:
    """Every sample on the gateway's /metrics: {(name, sorted labels): value}."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def sample(samples: dict, name: str, /, **labels: str) -> float:
    group = {"job": "kabuflow", "run_id": "run-7f3a", "task": "features", "instance": "features-pod-1"}
    key = (name, tuple(sorted({**group, **labels}.items())))
    assert key in samples, f"{name}{labels} not on the gateway"
    return samples[key]


def test_stage_pushes_rows_duration_and_success(env):
    with telemetry.stage("features-ok") as rec:
        rec.rows_in = 1234
        rec.rows_out = 1200
        rec.extra["families_absent"] = 2
    got = scrape(env)
    assert sample(got, "kabuflow_stage_rows", stage="features-ok", direction="in") == 1234
    assert sample(got, "kabuflow_stage_rows", stage="features-ok", direction="out") == 1200
    assert sample(got, "kabuflow_stage_value", stage="features-ok", name="families_absent") == 2
    assert sample(got, "kabuflow_stage_duration_seconds", stage="features-ok") == pytest.approx(rec.seconds)
    assert rec.seconds > 0 and not rec.failed
    assert sample(got, "kabuflow_stage_last_success_timestamp_seconds", stage="features-ok") > 1.7e9
    # The gateway stamps each group with the time of its last successful push.
    assert sample(got, "push_time_seconds") > 1.7e9


def test_a_failing_stage_is_counted_pushed_and_reraised(env):
    with pytest.raises(ValueError, match="column 'Close' missing"):
        with telemetry.stage("features-bad") as rec:
            rec.rows_in = 10
            raise ValueError("column 'Close' missing")
    got = scrape(env)
    assert rec.failed
    assert sample(got, "kabuflow_stage_failures_total", stage="features-bad") == 1
    assert sample(got, "kabuflow_stage_rows", stage="features-bad", direction="in") == 10
    assert not any(
        name == "kabuflow_stage_last_success_timestamp_seconds" and ("stage", "features-bad") in labels
        for name, labels in got
    )


def test_epochs_are_pushed_per_model_and_fold(env, monkeypatch):
    monkeypatch.setenv("KABUFLOW_TASK", "features")  # same group as above; labels tell the folds apart
    telemetry.record_epoch(
        "atft", 0, epoch=3, train_loss=0.412, val_rank_ic=0.0731, stock_days_per_s=125000.0
    )
    telemetry.record_epoch("atft", 1, epoch=5, train_loss=0.398, val_rank_ic=0.0654, gpu_mem_bytes=6.5e9)
    got = scrape(env)
    assert sample(got, "kabuflow_train_epoch", model="atft", fold="0") == 3
    assert sample(got, "kabuflow_train_loss", model="atft", fold="0") == pytest.approx(0.412)
    assert sample(got, "kabuflow_val_rank_ic", model="atft", fold="0") == pytest.approx(0.0731)
    assert sample(got, "kabuflow_train_stock_days_per_second", model="atft", fold="0") == 125000
    assert sample(got, "kabuflow_val_rank_ic", model="atft", fold="1") == pytest.approx(0.0654)
    assert sample(got, "kabuflow_gpu_memory_peak_bytes", model="atft", fold="1") == 6.5e9


def test_unknown_epoch_metric_is_an_error(env):
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['val_rankic'\]"):
        telemetry.record_epoch("atft", 0, val_rankic=0.05)


def test_unreachable_gateway_warns_and_the_stage_still_succeeds(monkeypatch, caplog):
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there: connection refused
    monkeypatch.setenv("PROMETHEUS_PUSHGATEWAY", dead)
    before = telemetry.REGISTRY.get_sample_value("kabuflow_push_failures_total")
    with caplog.at_level(logging.WARNING, logger="kabuflow.telemetry"):
        with telemetry.stage("graph-offline") as rec:
            rec.rows_out = 5
        assert telemetry.push() is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(dead in w and f"after {telemetry.PUSH_ATTEMPTS} attempts" in w for w in warnings)
    assert telemetry.REGISTRY.get_sample_value("kabuflow_push_failures_total") == before + 2


def test_metrics_file_without_a_gateway(monkeypatch, tmp_path):
    monkeypatch.delenv("PROMETHEUS_PUSHGATEWAY", raising=False)
    path = tmp_path / "metrics.prom"
    monkeypatch.setenv("KABUFLOW_METRICS_FILE", str(path))
    with telemetry.stage("normalize-local") as rec:
        rec.rows_in, rec.rows_out = 800, 790
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(path.read_text())
        for s in fam.samples
    }
    assert samples[("kabuflow_stage_rows", (("direction", "out"), ("stage", "normalize-local")))] == 790
    assert telemetry.push() is False  # no gateway: kept local, nothing pushed


def test_gateway_rejection_is_a_warning_not_a_crash(env, monkeypatch, caplog):
    # An HTTP error from the gateway (here 404: a path prefix it does not serve) is handled like a
    # network fault: retried, then one warning naming the gateway and the status.
    bad = env + "/no-such-prefix"
    monkeypatch.setenv("PROMETHEUS_PUSHGATEWAY", bad)
    with caplog.at_level(logging.WARNING, logger="kabuflow.telemetry"):
        assert telemetry.push() is False
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bad in warning and "404" in warning


def test_stage_events_reach_stderr_only_when_asked(monkeypatch, capsys):
    monkeypatch.delenv("PROMETHEUS_PUSHGATEWAY", raising=False)
    monkeypatch.delenv("KABUFLOW_METRICS_FILE", raising=False)
    monkeypatch.delenv(telemetry.EVENTS_ENV, raising=False)
    with telemetry.stage("graph") as rec:
        rec.rows_out = 1880
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(telemetry.EVENTS_ENV, "1")
    with telemetry.stage("train-fold") as rec:
        rec.rows_out = 10
        rec.extra["test_rank_ic"] = 0.0521
        rec.labels = {"fold": "1", "model": "atft"}
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(telemetry.EVENT_MARK)
    event = json.loads(line.removeprefix(telemetry.EVENT_MARK))
    assert event["kind"] == "stage" and event["stage"] == "train-fold" and event["failed"] is False
    assert (event["fold"], event["model"], event["rows_out"]) == ("1", "atft", 10)
    assert event["extra"] == {"test_rank_ic": 0.0521}


def test_profile_file_gets_one_line_per_stage_with_cpu_and_rss(monkeypatch, tmp_path):
    monkeypatch.delenv("PROMETHEUS_PUSHGATEWAY", raising=False)
    path = tmp_path / "profile.jsonl"
    monkeypatch.setenv("KABUFLOW_PROFILE", str(path))
    with telemetry.stage("graph", label="all") as rec:
        rec.rows_in = 7
        sum(i * i for i in range(200_000))  # some CPU to count
    with pytest.raises(ValueError), telemetry.stage("train-fold", label="atft/1"):
        raise ValueError("boom")
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["stage"] == "graph" and first["label"] == "all" and first["rows_in"] == 7
    assert first["cpu_seconds"] > 0 and first["peak_rss_gb"] > 0.01 and not first["failed"]
    assert first["seconds"] == pytest.approx(rec.seconds)
    assert second["label"] == "atft/1" and second["failed"]
