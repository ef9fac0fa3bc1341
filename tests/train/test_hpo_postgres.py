"""Many `kabuflow hpo` workers on one study in a real PostgreSQL (started here): trials add up, a killed
worker's trial is failed and retried by a survivor, and the password is in no artifact or output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from pg_server import postgres
from test_hpo import TINY
from tiny_market import make_market

from kabuflow.config import ConfigError, HPOConfig
from kabuflow.train.study import PASSWORD_ENV, load_study, resolve_url

# Heartbeats every second; a trial silent for 3 s belongs to a dead worker.
FAST = [*TINY, "hpo.heartbeat_seconds=1", "hpo.grace_seconds=3"]


@pytest.fixture(scope="module")
def server():
    with postgres() as s:
        yield s


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return make_market(tmp_path_factory.mktemp("market"), t=90, n=16)


def worker(server, market, out: Path, study: str, trials: int, k: int, *sets: str) -> subprocess.Popen:
    """One `kabuflow hpo` process; the password reaches it only through the environment."""
    cmd = [sys.executable, "-m", "kabuflow.cli", "hpo", "--panel", str(market["panel"])]
    cmd += ["--graph", str(market["graph"]), "--folds", str(market["folds"]), "--trials", str(trials)]
    cmd += ["--storage", server.url, "--worker", str(k), "--out", str(out)]
    for s in [*FAST, f"hpo.study={study}", *sets]:
        cmd += ["--set", s]
    env = {**os.environ, PASSWORD_ENV: server.password}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def study_of(server, name: str) -> optuna.Study:
    os.environ[PASSWORD_ENV] = server.password
    try:
        return load_study(HPOConfig(study=name), server.url)
    finally:
        del os.environ[PASSWORD_ENV]


def finish(proc: subprocess.Popen) -> str:
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    return stdout + stderr


def test_two_concurrent_workers_add_up_with_no_duplicate_numbers(server, market, tmp_path):
    procs = [worker(server, market, tmp_path / f"w{k}", "concurrent", 2, k) for k in (0, 1)]
    logs = [finish(p) for p in procs]
    trials = study_of(server, "concurrent").get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4  # the workers' seeds differ
    saved = [json.loads((tmp_path / f"w{k}" / "hpo.json").read_text()) for k in (0, 1)]
    assert max(s["n_trials"] for s in saved) == 4  # the later finisher saw all four
    assert min(s["n_trials"] for s in saved) >= 2 and {s["storage"] for s in saved} == {server.url}
    _no_password_anywhere(server.password, tmp_path, logs)


def _no_password_anywhere(password: str, root: Path, logs: list[str]) -> None:
    assert password not in "".join(logs)
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix != ".db"]
    assert files and not [p for p in files if password.encode() in p.read_bytes()]


def test_a_killed_workers_trial_is_failed_and_retried_by_a_survivor(server, market, tmp_path):
    victim = worker(server, market, tmp_path / "victim", "preempted", 3, 0, "hpo.epochs=8")
    running = None
    while running is None and victim.poll() is None:  # until a trial has reported its first epoch
        time.sleep(0.2)
        live = study_of(server, "preempted").get_trials(states=(optuna.trial.TrialState.RUNNING,))
        running = next((t for t in live if t.intermediate_values), None)
    assert running is not None, victim.communicate()[1][-3000:]
    victim.send_signal(signal.SIGKILL)  # preemption: no cleanup, the trial stays RUNNING
    victim.wait()
    time.sleep(4)  # the dead worker's heartbeat goes stale (hpo.grace_seconds=3)
    survivor = worker(server, market, tmp_path / "survivor", "preempted", 1, 1)
    finish(survivor)
    trials = {t.number: t for t in study_of(server, "preempted").get_trials()}
    assert trials[running.number].state == optuna.trial.TrialState.FAIL
    (retry,) = [t for t in trials.values() if t.system_attrs.get("failed_trial") == running.number]
    assert retry.params == running.params and retry.state.is_finished()
    assert retry.state != optuna.trial.TrialState.FAIL
    assert not [t for t in trials.values() if t.state == optuna.trial.TrialState.RUNNING]
    saved = json.loads((tmp_path / "survivor" / "hpo.json").read_text())
    done = [t for t in trials.values() if t.state.name in ("COMPLETE", "PRUNED")]
    assert saved["n_trials"] == len(done) and saved["n_fail"] == 1  # the killed trial is not counted


def test_a_password_in_the_url_or_a_missing_one_is_refused(server, monkeypatch):
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        resolve_url(f"postgresql://optuna:{server.password}@127.0.0.1:{server.port}/optuna", ".")
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"{PASSWORD_ENV} is not set"):
        load_study(HPOConfig(study="x"), server.url)
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with pytest.raises(ConnectionError, match="cannot connect"):
        load_study(HPOConfig(study="x", connect_deadline_seconds=1.0), server.url)
