"""The compiled pipeline (KFP IR YAML, a100 profile): GPU placement, retries, caching, fan-out, secrets,
pinned image, and a golden file so any change to the DAG shows in review.

Regenerate the golden file after an intended change: UPDATE_GOLDEN=1 pytest tests/pipelines/test_compile.py"""

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from kabuflow.config import ConfigError, load
from pipelines.compile import compile_pipeline
from pipelines.trainjob import S3_SECRET_ENV

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "pipeline_a100.yaml"
IMAGE = "ghcr.io/kabuflow/kabuflow@sha256:" + "0123456789abcdef" * 4


def _compile(tmp_path: Path, profile: str = "a100", *overrides: str) -> tuple[str, dict, dict]:
    out = compile_pipeline(
        load(profile, list(overrides)), IMAGE, tmp_path / f"{profile}-{len(overrides)}.yaml"
    )
    text = out.read_text()
    spec, platform = yaml.safe_load_all(text)  # exactly two documents: the IR, then platforms.kubernetes
    return text, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def a100(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("compile"))


def tasks(spec: dict) -> dict[str, dict]:
    """Every task of every DAG (root, loops, conditions), by task name, with `_executor` and `_loop` added."""
    found = {}

    def walk(dag: dict, loop: dict | None) -> None:
        for name, task in dag["tasks"].items():
            comp = spec["components"][task["componentRef"]["name"]]
            if "dag" in comp:
                walk(comp["dag"], task if "parameterIterator" in task else loop)
            found[name] = {**task, "_executor": comp.get("executorLabel"), "_loop": loop}

    walk(spec["root"]["dag"], None)
    return found


def loop_models(loop: dict) -> set[str]:
    return {item["model"] for item in json.loads(loop["parameterIterator"]["items"]["raw"])}


def executors_of(spec: dict) -> dict[str, dict]:
    return spec["deploymentSpec"]["executors"]


def test_two_documents_and_every_executor_runs_the_given_image(a100):
    _, spec, _ = a100
    assert spec["pipelineInfo"]["name"] == "kabuflow"
    images = {name: e["container"]["image"] for name, e in executors_of(spec).items()}
    assert images and set(images.values()) == {IMAGE}, images


def test_dag_shape(a100):
    _, spec, _ = a100
    t = tasks(spec)
    deps = {name: set(task.get("dependentTasks", [])) for name, task in t.items()}
    assert deps["features"] == {"ingest"} and deps["normalize"] == {"features"}
    assert deps["graph"] == {"normalize"} and deps["folds"] == {"normalize"}
    loops = [name for name, task in t.items() if "parameterIterator" in task]
    assert len(loops) == 2 and all(deps[name] == {"folds", "graph", "normalize"} for name in loops)
    assert deps["evaluate"] >= set(loops)
    (gate,) = [task for task in t.values() if task["taskInfo"]["name"] == "gate"]
    assert "evaluate-Output" in gate["triggerPolicy"]["condition"]
    assert t["promote"]["_executor"] == "exec-promote"


def test_atft_train_fold_asks_for_one_a100_and_nothing_else_asks_for_a_gpu(a100):
    _, spec, platform = a100
    gpu_execs = set()
    for task in tasks(spec).values():
        if task["_loop"] is not None and loop_models(task["_loop"]) == {"atft"}:
            gpu_execs.add(task["_executor"])
    assert gpu_execs == {"exec-train-fold"}
    for name, ex in executors_of(spec).items():
        accel = ex["container"].get("resources", {}).get("accelerator")
        k8s = platform.get(name, {})
        if name in gpu_execs:
            assert accel["resourceType"] == "nvidia.com/gpu" and accel["resourceCount"] == "1"
            assert k8s["nodeSelector"] == {
                "labels": {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
            }
            assert k8s["tolerations"] == [
                {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
            ]
            assert k8s["emptyDirMounts"] == [
                {"medium": "Memory", "mountPath": "/dev/shm", "volumeName": "dshm"}
            ]
        else:
            assert accel is None, name
            assert not {"nodeSelector", "tolerations", "emptyDirMounts"} & set(k8s), name


def test_cpu_and_memory_requests_and_limits_from_the_profile(a100):
    _, spec, _ = a100
    p = load("a100").pipeline
    for name, ex in executors_of(spec).items():
        res = ex["container"]["resources"]
        got = [
            res[k]
            for k in (
                "resourceCpuRequest",
                "resourceCpuLimit",
                "resourceMemoryRequest",
                "resourceMemoryLimit",
            )
        ]
        if name == "exec-train-fold":
            assert got == [
                p.train_cpu_request,
                p.train_cpu_limit,
                p.train_memory_request,
                p.train_memory_limit,
            ]
            assert got == ["8", "12", "48Gi", "80Gi"]
        else:
            assert got == [p.cpu_request, p.cpu_limit, p.memory_request, p.memory_limit], name


def test_every_task_retries_and_ingest_is_never_cached(a100):
    _, spec, _ = a100
    p = load("a100").pipeline
    leaf = {name: task for name, task in tasks(spec).items() if task["_executor"]}
    assert len(leaf) == len(executors_of(spec)) == 9
    for name, task in leaf.items():
        assert task["retryPolicy"]["maxRetryCount"] == p.retries, name
        assert task["retryPolicy"]["backoffDuration"] == p.retry_backoff, name
    assert leaf["ingest"]["cachingOptions"].get("enableCache", False) is False
    assert leaf["features"]["cachingOptions"]["enableCache"] is True  # everything downstream may cache


def test_parallelism_is_the_profiles(a100):
    _, spec, _ = a100
    loops = [task for task in tasks(spec).values() if "parameterIterator" in task]
    assert [loop["iteratorPolicy"]["parallelismLimit"] for loop in loops] == [4, 4]
    n_folds = load("a100").folds.n_folds
    assert sorted(len(json.loads(loop["parameterIterator"]["items"]["raw"])) for loop in loops) == sorted(
        [n_folds, n_folds * (len(load("a100").pipeline.models) - 1)]
    )


def test_secrets_come_as_env_from_the_k8s_templates(a100):
    _, spec, platform = a100
    templates = {
        s["metadata"]["name"]: set(s["stringData"])
        for s in yaml.safe_load_all((ROOT / "k8s" / "base" / "secrets.yaml").read_text())
    }
    s3 = {"kabuflow-s3": {key: var for key, var in S3_SECRET_ENV.items()}}
    jquants = {"kabuflow-jquants": {"api-key": "JQUANTS_API_KEY"}}
    for name in executors_of(spec):
        got = {
            s["secretName"]: {kv["secretKey"]: kv["envVar"] for kv in s["keyToEnv"]}
            for s in platform[name]["secretAsEnv"]
        }
        assert got == ({**s3, **jquants} if name == "exec-ingest" else s3), name
        for secret, keys in got.items():
            assert set(keys) <= templates[secret], (secret, keys)  # a key the template does not have


def test_telemetry_grouping_env_on_every_executor(a100):
    _, spec, _ = a100
    for name, ex in executors_of(spec).items():
        env = {e["name"]: e["value"] for e in ex["container"].get("env", [])}
        assert env["KABUFLOW_RUN_ID"] == "{{$.pipeline_job_uuid}}", name
        assert env["KABUFLOW_TASK"], name


def test_pushgateway_from_the_config_reaches_every_task(tmp_path):
    gateway = "http://pushgateway.kabuflow.svc:9091"
    _, spec, _ = _compile(tmp_path, "a100", f"pipeline.pushgateway={gateway}")
    for name, ex in executors_of(spec).items():
        env = {e["name"]: e["value"] for e in ex["container"]["env"]}
        assert env["PROMETHEUS_PUSHGATEWAY"] == gateway, name


def test_gpu_node_label_and_toleration_follow_the_config(tmp_path):
    _, _, platform = _compile(
        tmp_path,
        "a100",
        "pipeline.gpu_node_label=nvidia.com/gpu.product",
        "pipeline.gpu_node_value=NVIDIA-A100-SXM4-80GB",
        "pipeline.gpu_toleration_key=dedicated",
    )
    k8s = platform["exec-train-fold"]
    assert k8s["nodeSelector"] == {"labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}}
    assert k8s["tolerations"][0]["key"] == "dedicated"


def test_local_profile_asks_for_no_gpu(tmp_path):
    _, spec, platform = _compile(tmp_path, "local")
    assert all("accelerator" not in e["container"].get("resources", {}) for e in executors_of(spec).values())
    assert not any("nodeSelector" in ex for ex in platform.values())


def test_cpu_profile_trains_atft_and_baselines_in_one_fan_out_atft_first(tmp_path):
    """Without GPUs the folds share one loop, ATFT's first, so baselines fill cores ATFT leaves idle."""
    _, spec, _ = _compile(tmp_path, "local")
    found = tasks(spec)
    train = [t for t in found.values() if t["_executor"] == "exec-train-fold"]
    assert len(train) == 1
    items = json.loads(train[0]["_loop"]["parameterIterator"]["items"]["raw"])
    models = [i["model"] for i in items]
    assert models[:3] == ["atft"] * 3 and set(models[3:]) == {
        "lightgbm",
        "ridge",
        "reversal_5d",
        "momentum_60d",
        "low_vol_60d",
    }
    assert len(items) == 18 and len({(i["fold"], i["model"]) for i in items}) == 18
    ev = [t for t in found.values() if t["_executor"] == "exec-evaluate-all"]
    assert len(ev) == 1 and "predictions" in ev[0]["inputs"]["artifacts"]


def test_a_mutable_image_tag_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="pinned"):
        compile_pipeline(load("a100"), "ghcr.io/kabuflow/kabuflow:latest", tmp_path / "p.yaml")


def normalise(text: str) -> str:
    """Drop what changes without the pipeline changing: the SDK version stamp."""
    return re.sub(r"(?m)^sdkVersion: kfp-\S+$", "sdkVersion: kfp-<version>", text)


def test_golden_file(a100, tmp_path):
    text, _, _ = a100
    again, _, _ = _compile(tmp_path)
    assert again == text  # compiling is deterministic, so a diff below is a real change
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(normalise(text))
    assert GOLDEN.exists(), "no golden file: run UPDATE_GOLDEN=1 pytest tests/pipelines/test_compile.py"
    assert normalise(text) == GOLDEN.read_text(), (
        "the compiled pipeline changed; review the diff of tests/golden/pipeline_a100.yaml after "
        "UPDATE_GOLDEN=1 pytest tests/pipelines/test_compile.py"
    )


def test_trainjob_mode_launches_from_a_cpu_pod(tmp_path):
    """With pipeline.trainjob_nodes > 0 the ATFT folds run as TrainJobs: the launching pod holds no GPU."""
    _, spec, platform = _compile(tmp_path, "a100", "pipeline.trainjob_nodes=2")
    found = tasks(spec)
    launcher = [t for t in found.values() if t["_executor"] == "exec-train-fold-trainjob"]
    assert len(launcher) == 1 and loop_models(launcher[0]["_loop"]) == {"atft"}
    resources = executors_of(spec)["exec-train-fold-trainjob"]["container"]["resources"]
    assert "accelerator" not in resources
    assert "nodeSelector" not in platform.get("exec-train-fold-trainjob", {})
    # the baselines still train in ordinary CPU pods
    baseline = [t for t in found.values() if t["_executor"] == "exec-train-fold"]
    assert loop_models(baseline[0]["_loop"]) == {
        "lightgbm",
        "ridge",
        "reversal_5d",
        "momentum_60d",
        "low_vol_60d",
    }
