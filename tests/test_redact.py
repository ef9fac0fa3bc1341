"""Secrets never stamped: URL passwords and credential values out of artifacts, logs, YAML and errors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from kabuflow import redact
from kabuflow.artifacts import stamp
from kabuflow.config import Config
from pipelines.compile import compile_pipeline

PASSWORD = "Pa55-w0rd-7f3c9e"
DB = f"postgresql://optuna:{PASSWORD}@optuna-db.kabuflow.svc:5432/optuna"


def test_text_masks_url_passwords_query_secrets_and_secret_env(monkeypatch):
    assert (
        redact.text(f"storage {DB} down")
        == "storage postgresql://optuna:***@optuna-db.kabuflow.svc:5432/optuna down"
    )
    assert redact.text("http://u:p@h/x?token=abc&n=1") == "http://u:***@h/x?token=***&n=1"
    assert redact.text("s3://bucket/key and https://host/path") == "s3://bucket/key and https://host/path"
    monkeypatch.setenv("JQUANTS_API_KEY", "abc\r\ndef-key")
    # requests' InvalidHeader shows the value as repr() does: the escaped spelling is masked too
    assert redact.text("Invalid return character in header value: 'abc\\r\\ndef-key'") == (
        "Invalid return character in header value: '***'"
    )


def test_tree_masks_credential_settings_and_keeps_secret_names():
    tree = {"hpo": {"storage": DB}, "x": {"api_key": "k-123", "s3_secret": "kabuflow-s3"}, "n": [DB, 3]}
    assert redact.tree(tree) == {
        "hpo": {"storage": "postgresql://optuna:***@optuna-db.kabuflow.svc:5432/optuna"},
        "x": {"api_key": "***", "s3_secret": "kabuflow-s3"},  # a Kubernetes Secret's name, not its value
        "n": ["postgresql://optuna:***@optuna-db.kabuflow.svc:5432/optuna", 3],
    }


def test_stamp_and_log_lines_carry_no_password(caplog):
    cfg = Config().with_overrides([f"hpo.storage={DB}"])
    assert PASSWORD not in json.dumps(stamp(cfg, stage="folds"))
    handler = logging.StreamHandler()
    handler.addFilter(redact.LogFilter())
    record = logging.LogRecord("kabuflow", logging.INFO, __file__, 1, "connecting to %s", (DB,), None)
    handler.filter(record)
    assert PASSWORD not in record.getMessage() and "optuna:***@" in record.getMessage()


def test_compiled_pipeline_holds_no_password(tmp_path):
    cfg = Config().with_overrides([f"hpo.storage={DB}"])
    out = compile_pipeline(cfg, "ghcr.io/kabuflow/kabuflow:0123456789abcdef", tmp_path / "pipeline.yaml")
    text = out.read_text()
    assert PASSWORD not in text
    assert "optuna:***@optuna-db.kabuflow.svc" in text  # masked, not dropped: the YAML says what was set


def test_cli_errors_are_redacted(tmp_path, monkeypatch):
    """An API key with a CR/LF (a bad paste): a one-line error that names the problem, not the key."""
    monkeypatch.setenv("JQUANTS_API_KEY", "abc\r\nSECRETPART-9x")
    monkeypatch.setenv("JQUANTS_API_URL", "http://127.0.0.1:9")
    cmd = [
        sys.executable,
        "-m",
        "kabuflow.cli",
        "ingest",
        "--source",
        "jquants",
        "--out",
        str(tmp_path / "raw"),
    ]
    cmd += ["--set", f"jquants.cache_uri={tmp_path / 'cache'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1 and "SECRETPART" not in proc.stderr + proc.stdout
    assert "JQUANTS_API_KEY contains a line break" in proc.stderr.strip().splitlines()[-1]
