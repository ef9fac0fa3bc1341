"""pipelines.submit against a local KFP v2beta1 API server (tests/support/kfp_server.py) through the real kfp.Client."""

from pathlib import Path

import kfp
import pytest
import yaml
from kfp import compiler, dsl
from kfp_server import KFPServer

from kabuflow.cli import main
from kabuflow.config import ConfigError
from pipelines.submit import resolve_token, submit

SHA = "3f9c2b7e1d5a4c6b8e0f2a4c6e8b0d2f4a6c8e0b"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.kabuflow-ci"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def _step(x: int) -> int:
    return x + 1


@dsl.pipeline(name="kabuflow")
def _tiny(x: int = 1):
    _step(x=x)


@pytest.fixture
def package(tmp_path):
    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(_tiny, str(path))
    return path


@pytest.fixture
def kfp_server(monkeypatch, tmp_path):
    # kfp.Client reads ~/.config/kfp/context.json; point HOME at an empty directory.
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("KF_PIPELINES_TOKEN", "KF_PIPELINES_SA_TOKEN_PATH", "KF_PIPELINES_UI_ENDPOINT", "GITHUB_SHA"):
        monkeypatch.delenv(var, raising=False)
    server = KFPServer().start()
    yield server
    server.stop()


def test_run_from_a_version_named_by_the_sha(kfp_server, package, monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    result = submit(kfp_server.url, package, "kabuflow-ci", version_name=SHA)
    store = kfp_server.store
    (pipeline,) = store.pipelines.values()
    (version,) = store.versions.values()
    (experiment,) = store.experiments.values()
    (run,) = store.runs.values()
    assert pipeline["display_name"] == "kabuflow"
    assert version["display_name"] == SHA and version["pipeline_id"] == pipeline["pipeline_id"]
    assert version["pipeline_spec"]["pipelineInfo"]["name"] == "kabuflow"  # the uploaded package itself
    assert experiment["display_name"] == "kabuflow-ci"
    assert run["pipeline_version_reference"] == {
        "pipeline_id": pipeline["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert run["experiment_id"] == experiment["experiment_id"]
    assert run["display_name"] == "kabuflow-3f9c2b7e1d5a"
    assert result == {
        "pipeline_id": pipeline["pipeline_id"],
        "pipeline_name": "kabuflow",
        "version_id": version["pipeline_version_id"],
        "version_name": SHA,
        "experiment_id": experiment["experiment_id"],
        "run_id": run["run_id"],
        "url": f"{kfp_server.url}/#/runs/details/{run['run_id']}",
    }
    # Every call, healthz included, carried the bearer token.
    assert kfp_server.requests
    assert {r.headers.get("authorization") for r in kfp_server.requests} == {f"Bearer {TOKEN}"}
    upload = [r for r in kfp_server.requests if r.path.endswith("/upload_version")]
    assert [(r.query["name"], r.query["pipelineid"]) for r in upload] == [(SHA, pipeline["pipeline_id"])]


def test_resubmitting_reuses_pipeline_experiment_and_an_existing_version(kfp_server, package):
    first = submit(kfp_server.url, package, "kabuflow-ci", version_name=SHA)
    again = submit(kfp_server.url, package, "kabuflow-ci", version_name=SHA)
    other = submit(kfp_server.url, package, "kabuflow-ci", version_name="0" * 40)
    store = kfp_server.store
    assert len(store.pipelines) == 1 and len(store.experiments) == 1 and len(store.runs) == 3
    assert again["version_id"] == first["version_id"] != other["version_id"]
    assert sorted(v["display_name"] for v in store.versions.values()) == sorted([SHA, "0" * 40])
    assert sum(r.path.endswith("/upload_version") for r in kfp_server.requests) == 2
    assert all("authorization" not in r.headers for r in kfp_server.requests)  # no token anywhere: none sent


def test_recurring_run_is_one_at_a_time_without_catchup(kfp_server, package):
    result = submit(
        kfp_server.url, package, "nightly", recurring_cron="0 30 18 * * 1-5", token=TOKEN, version_name=SHA
    )
    (rec,) = kfp_server.store.recurring_runs.values()
    assert not kfp_server.store.runs
    (sent,) = [r.body for r in kfp_server.requests if r.path.endswith("/recurringruns")]
    assert sent["max_concurrency"] == 1 and sent["no_catchup"] is True
    assert sent["trigger"] == {"cron_schedule": {"cron": "0 30 18 * * 1-5"}}
    assert sent["mode"] == "ENABLE"
    assert rec["max_concurrency"] == "1" and rec["status"] == "ENABLED"
    assert result["recurring_run_id"] == rec["recurring_run_id"]
    assert result["url"] == f"{kfp_server.url}/#/recurringrun/details/{rec['recurring_run_id']}"


def test_bad_cron_is_refused_before_any_request(kfp_server, package):
    with pytest.raises(ConfigError, match="6 fields"):
        submit(kfp_server.url, package, "nightly", recurring_cron="0 3 * * *")
    assert kfp_server.requests == []


def test_token_from_the_service_account_file(kfp_server, package, tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("sa-token-from-projected-volume\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    assert resolve_token() == "sa-token-from-projected-volume"
    submit(kfp_server.url, package, "kabuflow", version_name=SHA)
    assert {r.headers["authorization"] for r in kfp_server.requests} == {
        "Bearer sa-token-from-projected-volume"
    }
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_token()


def test_cli_prints_the_run_url_and_names_the_version_by_github_sha(kfp_server, package, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_SHA", SHA)
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    rc = main(["submit", "--host", kfp_server.url + "/", "--package", str(package), "--experiment", "ci"])
    assert rc == 0
    (run,) = kfp_server.store.runs.values()
    (version,) = kfp_server.store.versions.values()
    assert version["display_name"] == SHA
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"{kfp_server.url}/#/runs/details/{run['run_id']}"


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_server_rejects_what_the_real_backend_rejects(kfp_server, package):
    # The local server is strict where KFP is: a duplicate version name is 409 AlreadyExists.
    client = kfp.Client(host=kfp_server.url)
    pid = client.upload_pipeline(str(package), pipeline_name="dup").pipeline_id
    client.upload_pipeline_version(str(package), pipeline_version_name="v1", pipeline_id=pid)
    with pytest.raises(Exception, match="409"):
        client.upload_pipeline_version(str(package), pipeline_version_name="v1", pipeline_id=pid)
    # upload_pipeline made the pipeline and its first version (named like the pipeline), then v1 once.
    names = sorted(v["display_name"] for v in kfp_server.store.versions.values() if v["pipeline_id"] == pid)
    assert names == ["dup", "v1"]


def test_retrain_workflow_tests_builds_the_sha_image_compiles_and_submits():
    wf = yaml.safe_load((Path(__file__).resolve().parents[2] / ".github/workflows/retrain.yml").read_text())
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert triggers["push"]["branches"] == ["main"] and triggers["schedule"][0]["cron"]
    jobs = wf["jobs"]
    assert jobs["image"]["needs"] == "test" and jobs["submit"]["needs"] == "image"
    runs = {job: [s.get("run", "") for s in spec["steps"]] for job, spec in jobs.items()}
    assert "make test" in runs["test"]
    (build,) = [s for s in jobs["image"]["steps"] if s.get("uses", "").startswith("docker/build-push-action")]
    assert build["with"]["tags"] == "${{ env.IMAGE }}:${{ github.sha }}" and build["with"]["push"] is True
    assert build["with"]["file"] == "docker/Dockerfile" and build["with"]["target"] == "gpu"
    submit_runs = " ".join(runs["submit"])
    assert "kabuflow compile --profile a100 --image ${{ env.IMAGE }}:${{ github.sha }}" in submit_runs
    assert "kabuflow submit --host ${{ secrets.KFP_HOST }}" in submit_runs
    (step,) = [s for s in jobs["submit"]["steps"] if "kabuflow submit" in s.get("run", "")]
    assert step["env"]["KF_PIPELINES_TOKEN"] == "${{ secrets.KFP_TOKEN }}"
