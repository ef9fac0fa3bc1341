"""The whole DAG through KFP's local runner on a small synthetic market: what `make run` does, smaller."""

import json
import subprocess
import sys

import polars as pl
import pytest

from kabuflow.config import HORIZONS
from kabuflow.schema import PREDICTIONS

PASSWORD = "run-Pa55-7c1d"
SMALL = [
    "synthetic.n_stocks=80",
    "synthetic.start=2019-01-04",
    "synthetic.end=2021-12-30",
    "folds.n_folds=2",
    "folds.val_days=60",
    "folds.test_days=60",
    "folds.min_train_days=250",
    "train.epochs=1",
    "lightgbm.n_estimators=30",
]
# A user who writes the database password into a setting (instead of $KABUFLOW_HPO_DB_PASSWORD): the run
# must still not leak it. Only this module's run gets it: the hpo pipeline refuses such a URL outright.
LEAKY = f"hpo.storage=postgresql://optuna:{PASSWORD}@optuna-db:5432/optuna"
METRICS = (
    "ic rank_ic icir rank_icir rank_ic_tstat hit_rate ls_sharpe_gross ls_sharpe_net "
    "ls_ann_return_net max_drawdown turnover psr dsr oracle_share"
).split()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cmd = [sys.executable, "-m", "kabuflow.cli", "run", "--out", str(out)]
    for s in [*SMALL, LEAKY]:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert PASSWORD not in proc.stdout + proc.stderr  # no log line carries it
    return out, proc.stdout


def test_no_artifact_of_the_run_holds_the_password(run_dir):
    out, _ = run_dir
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 50  # every stage's outputs, the KFP local runner's files, the champion
    assert [p for p in files if PASSWORD.encode() in p.read_bytes()] == []
    assert "optuna:***@optuna-db" in (out / "raw" / "manifest.json").read_text()  # masked, still told


def test_run_leaves_the_contracted_outputs(run_dir):
    out, stdout = run_dir
    for name in ("metrics.json", "report.html", "predictions.parquet", "raw", "features", "panel", "graph"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {
        "atft",
        "lightgbm",
        "ridge",
        "reversal_5d",
        "momentum_60d",
        "low_vol_60d",
    }
    for model, by_h in metrics["models"].items():
        assert set(by_h) == {f"{h}d" for h in HORIZONS}, model
        for h, values in by_h.items():
            missing = set(METRICS) - set(values)
            assert not missing, (model, h, missing)
    assert set(metrics["oracle"]) == {f"{h}d" for h in HORIZONS}
    assert metrics["oracle"]["5d"]["rank_ic"] > 0.02  # the planted signal is there to find
    assert metrics["gate"]["promote"] is True  # first run: no champion yet
    assert "rank_ic" in stdout.lower() and "report" in stdout


def test_the_console_is_one_line_per_task_and_the_full_log_is_a_file(run_dir):
    out, stdout = run_dir
    lines = stdout.splitlines()
    first = lines[0]
    assert first.startswith("kabuflow run: subprocess runner; the full KFP log: ")
    log = first.rsplit(" ", 1)[1]
    assert log.startswith(str(out / "logs")) and "Executing task" in open(log).read()
    rows = [ln.split()[0] for ln in lines[1:] if ln.startswith("  ") and not ln.startswith("  folds [")]
    stages = ["ingest", "features", "normalize", "graph", "folds", "evaluate-all", "promote"]
    assert (
        sorted(set(rows)) == sorted([*stages, "train-fold"]) and rows.count("train-fold") == 2 * 6
    )  # 2 folds x the 6 default models
    assert all(rows.count(s) == 1 for s in stages)
    assert "Got executor_input" not in stdout and len(lines) < 40
    bars = [ln for ln in lines if ln.startswith("  folds [")]  # the folds' epoch events reached the console
    assert bars and all(" | atft/" in ln for ln in bars)


def test_stitched_predictions_are_out_of_sample_and_unique(run_dir):
    out, _ = run_dir
    preds = pl.read_parquet(out / "predictions.parquet")
    assert set(PREDICTIONS) <= set(preds.columns)
    models = preds.filter(pl.col("model") != "oracle")
    assert models["split"].unique().to_list() == ["test"]
    dup = models.group_by("model", "horizon", "date", "code").len().filter(pl.col("len") > 1)
    assert dup.height == 0
    folds = json.loads((out / "folds" / "folds.json").read_text())  # a stage output directory
    first_test = min(f["test_start"] for f in folds["folds"])
    assert str(models["date"].min()) >= first_test


def _predict(out, *args):
    cmd = [sys.executable, "-m", "kabuflow.cli", "predict", "--run", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_predict_ranks_the_last_session_with_the_champion(run_dir):
    out, _ = run_dir
    last = json.loads((out / "panel" / "meta.json").read_text())["dates"][-1]
    proc = _predict(out, "--model", str(out / "models" / "champion"), "--date", last)
    assert proc.returncode == 0, proc.stderr
    ranking = pl.read_parquet(out / "predict" / f"ranking_{last}.parquet")
    assert ranking["rank"].to_list() == list(range(1, ranking.height + 1))
    assert ranking.height >= 60  # nearly the whole universe of 80 is scored
    scores = ranking["score_5d"].to_list()
    assert scores == sorted(scores, reverse=True)
    assert {"code", "name", "sector", "score_1d", "q10_20d", "q90_20d"} <= set(ranking.columns)


def test_predict_refuses_dates_it_cannot_score(run_dir):
    out, _ = run_dir
    champion = str(out / "models" / "champion")
    proc = _predict(out, "--model", champion, "--date", "2021-01-01")  # New Year's Day: no session
    assert proc.returncode == 1 and "is not an XTKS session" in proc.stderr
    proc = _predict(out, "--model", champion, "--date", "2023-03-01")
    assert proc.returncode == 1 and "is not in the panel" in proc.stderr
    assert proc.stderr.count("\n") == 1  # one line, no traceback
