"""The audit pipeline: compiled for the cluster (Metrics, HTML, no cache, the training resources) and run
by KFP's local runner on the embedded market."""

import pytest
import yaml
from test_audit import CUT, SMALL

from kabuflow.config import ConfigError, load
from pipelines.compile import compile_pipeline
from pipelines.local import run_audit_local

IMAGE = "ghcr.io/kabuflow/kabuflow@sha256:" + "0123456789abcdef" * 4


def test_the_audit_pipeline_compiles_with_its_metrics_and_report(tmp_path):
    path = compile_pipeline(load("a100"), IMAGE, tmp_path / "audit.yaml", pipeline="audit")
    spec, platform = yaml.safe_load_all(path.read_text())
    assert spec["pipelineInfo"]["name"] == "kabuflow-audit"  # its own pipeline on the server, schedulable
    (task,) = spec["root"]["dag"]["tasks"].values()
    assert task["cachingOptions"] == {} and task["retryPolicy"]["maxRetryCount"] == 2
    outputs = spec["components"]["comp-audit"]["outputDefinitions"]["artifacts"]
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs["report"]["artifactType"]["schemaTitle"] == "system.HTML"
    (executor,) = spec["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == IMAGE
    assert (
        executor["container"]["resources"]["memoryLimit"] == 80 * 2**30 / 1e9
    )  # train_memory_limit 80Gi, in GB
    secrets = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    (env,) = secrets.values()
    assert {s["secretName"] for s in env["secretAsEnv"]} == {"kabuflow-s3", "kabuflow-jquants"}
    with pytest.raises(ConfigError, match="unknown pipeline 'hpo2'"):
        compile_pipeline(load("a100"), IMAGE, tmp_path / "x.yaml", pipeline="hpo2")


def test_the_local_runner_runs_the_audit_pipeline(tmp_path):
    report = run_audit_local(load("local", [*SMALL, f"audit.cuts=[{CUT}]", "audit.scores=false"]), tmp_path)
    assert report["passed"] and report["cuts"] == [CUT]
    assert [s["stage"] for s in report["stages"]] == ["features", "panel", "graph"]
    assert all(s["compared"] > 0 and s["moved"] == 0 for s in report["stages"])
    assert "PASSED" in (tmp_path / "audit.html").read_text()
