"""The hpo pipeline through KFP's local runner on a small synthetic market: two workers share one SQLite
(WAL) study, hpo-summary reports it, and the training DAG runs with the winner, its DSR deflated for the
study's trials."""

import csv
import json
import subprocess
import sys

import pytest
from test_local import SMALL

HPO = [
    "hpo.workers=2",
    "hpo.trials=1",
    "hpo.epochs=1",
    "hpo.space.model.hidden={choices: [16]}",
    "model.members=1",
    "hpo.then_train=true",
    "pipeline.models=[atft, ridge]",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("hpo-run")
    cmd = [sys.executable, "-m", "kabuflow.cli", "run", "--pipeline", "hpo", "--out", str(out)]
    for s in [*SMALL, *HPO]:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_two_workers_fill_one_study_and_the_summary_reports_it(run_dir):
    out, stdout = run_dir
    hpo = json.loads((out / "hpo.json").read_text())
    assert (hpo["n_trials"], hpo["n_complete"], hpo["n_fail"], hpo["n_running"]) == (2, 2, 0, 0)
    assert hpo["storage"] == f"sqlite:///{out / 'optuna.db'}" and hpo["stage"] == "hpo-summary"
    with open(out / "hpo" / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    assert sorted(int(t["number"]) for t in trials) == [0, 1]
    best = max(trials, key=lambda t: float(t["value"]))
    assert int(best["number"]) == hpo["best_trial"] and float(best["value"]) == pytest.approx(
        hpo["best_value"]
    )
    assert json.loads(best["train.lr"]) == hpo["best_params"]["train.lr"]
    page = (out / "hpo-report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 2 and "Best settings" in page
    assert "## Best trials" in stdout  # the Markdown summary, as the dashboard shows it
    config = json.loads((out / "hpo" / "best_config.json").read_text())
    assert config["train"]["lr"] == hpo["best_params"]["train.lr"] and config["evaluate"]["hpo_trials"] == 2


def test_then_train_uses_the_winner_and_deflates_for_its_trials(run_dir):
    out, _ = run_dir
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {"atft", "ridge"}
    assert metrics["data"]["hpo_trials"] == 2 and metrics["data"]["dsr_trials"] == 4
    assert "DSR deflated for 4 trials (2 HPO trials × 2 models)" in (out / "report.md").read_text()
    hpo = json.loads((out / "hpo.json").read_text())
    atft = json.loads(next((out / "kfp").glob("*/for-loop-*/train-fold/result/manifest.json")).read_text())
    assert atft["config"]["train"]["lr"] == hpo["best_params"]["train.lr"]
