"""The compiled hpo pipeline (a100 profile): the worker fan-out, GPUs on workers only, the database
password from its Secret and nowhere in the YAML, the summary's fan-in, and training with the winner."""

import json

import pytest
import yaml
from test_compile import IMAGE, executors_of, loop_models, tasks

from kabuflow.config import ConfigError, load
from kabuflow.train.study import PASSWORD_ENV
from pipelines.compile import compile_pipeline

SECRET = "kabuflow-optuna-db"


def _compile(tmp_path, *overrides):
    out = compile_pipeline(load("a100", list(overrides)), IMAGE, tmp_path / "hpo.yaml", pipeline="hpo")
    text = out.read_text()
    spec, platform = yaml.safe_load_all(text)
    return text, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _gpu_executors(spec):
    return {
        n for n, e in executors_of(spec).items() if e["container"].get("resources", {}).get("accelerator")
    }


def _db_secret(platform, name):
    return [s for s in platform.get(name, {}).get("secretAsEnv", []) if s["secretName"] == SECRET]


@pytest.fixture(scope="module")
def hpo(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("hpo"))


def test_workers_fan_out_and_the_summary_collects_them(hpo):
    _, spec, _ = hpo
    assert spec["pipelineInfo"]["name"] == "kabuflow-hpo"
    found = tasks(spec)
    ((loop_name, loop),) = [(n, t) for n, t in found.items() if "parameterIterator" in t]
    workers = load("a100").hpo.workers
    assert json.loads(loop["parameterIterator"]["items"]["raw"]) == list(range(workers)) == [0, 1, 2, 3]
    assert loop["iteratorPolicy"]["parallelismLimit"] == workers
    assert set(loop["dependentTasks"]) == {"folds", "graph", "normalize"}
    assert (
        found["hpo-worker"]["_loop"]["componentRef"] == loop["componentRef"]
        and loop["taskInfo"]["name"] == "hpo-workers"
    )
    summary = found["hpo-summary"]
    assert summary["_loop"] is None and "workers" in summary["inputs"]["artifacts"]
    assert loop_name in summary["dependentTasks"]  # the fan-in waits for every worker
    assert not [t for t in found.values() if t["_executor"] == "exec-train-fold"]  # then_train is off


def test_only_workers_ask_for_a_gpu_and_only_hpo_tasks_get_the_password(hpo):
    _, spec, platform = hpo
    assert _gpu_executors(spec) == {"exec-hpo-worker"}
    assert platform["exec-hpo-worker"]["nodeSelector"] == {
        "labels": {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    }
    for name in executors_of(spec):
        got = _db_secret(platform, name)
        if name in ("exec-hpo-worker", "exec-hpo-summary"):
            assert [kv for s in got for kv in s["keyToEnv"]] == [
                {"secretKey": "password", "envVar": PASSWORD_ENV}
            ]
        else:
            assert got == [], name


def test_the_password_is_in_no_compiled_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-pw-71")  # as on a machine that also runs workers
    text, spec, _ = _compile(tmp_path)
    assert "s3cret-pw-71" not in text
    config = json.loads(spec["root"]["inputDefinitions"]["parameters"]["config"]["defaultValue"])
    assert config["hpo"]["storage"] == "postgresql+psycopg://optuna@optuna-db.kabuflow.svc:5432/optuna"


@pytest.mark.parametrize(
    "storage, message",
    [
        ("", "share one study through"),
        ("sqlite:////tmp/optuna.db", "share one study through"),
        ("postgresql://optuna:pw@db:5432/optuna", "must not hold a password"),
    ],
)
def test_storage_the_cluster_cannot_share_is_refused(tmp_path, storage, message):
    with pytest.raises(ConfigError, match=message):
        _compile(tmp_path, f"hpo.storage={storage}")


def test_then_train_adds_the_training_dag_fed_by_the_best_config(tmp_path):
    _, spec, _ = _compile(tmp_path, "hpo.then_train=true")
    found = tasks(spec)
    (fold,) = [t for t in found.values() if t["_executor"] == "exec-train-fold"]
    assert loop_models(fold["_loop"]) == {"atft"}  # baselines train on CPU in their own loop
    train = found["train-with-best"]  # the training DAG as a sub-pipeline, config from the summary
    assert train["inputs"]["parameters"]["config"]["taskOutputParameter"] == {
        "outputParameterKey": "Output",
        "producerTask": "hpo-summary",
    }
    assert set(train["inputs"]["artifacts"]) == {"raw", "panel", "graph", "folds"}
    assert _gpu_executors(spec) == {"exec-hpo-worker", "exec-train-fold"}
    assert {"evaluate", "promote"} <= set(found)
