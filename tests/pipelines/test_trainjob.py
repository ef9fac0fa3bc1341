"""TrainJob manifests (structure checked by hand: kubernetes-validate knows no CRDs) and the launch/watch
loop against a local HTTP server speaking the Kubernetes custom-objects API, watch streams included."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from kubernetes import client

from kabuflow.config import ConfigError, load
from pipelines.trainjob import (
    S3_SECRET_ENV,
    TrainJobFailed,
    config_args,
    launch_trainjob,
    render_trainjob,
    trainjob_name,
)

IMAGE = "ghcr.io/kabuflow/kabuflow@sha256:" + "ab" * 32
URIS = dict(
    panel_uri="s3://kabuflow/runs/r1/panel",
    graph_uri="s3://kabuflow/runs/r1/graph",
    folds_uri="s3://kabuflow/runs/r1/folds/folds.json",
    out_uri="s3://kabuflow/runs/r1/train/atft-3",
)


def _render(*overrides: str, name: str = "kf-atft-f3-r1", **kw):
    cfg = load("a100", ["pipeline.trainjob_nodes=2", "pipeline.trainjob_gpus_per_node=8", *overrides])
    return cfg, render_trainjob(cfg, IMAGE, 3, "atft", **URIS, name=name, **kw)


def test_render_trainjob_fields_survive_yaml():
    cfg, m = _render("pipeline.pushgateway=http://pushgateway.kabuflow.svc:9091", run_id="run-42")
    assert yaml.safe_load(yaml.safe_dump(m)) == m
    assert m["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and m["kind"] == "TrainJob"
    assert m["metadata"]["name"] == "kf-atft-f3-r1"
    assert m["metadata"]["labels"] == {
        "app.kubernetes.io/part-of": "kabuflow",
        "kabuflow.io/model": "atft",
        "kabuflow.io/fold": "3",
    }
    spec = m["spec"]
    assert spec["runtimeRef"] == {
        "name": "torch-distributed",
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
    }
    tr = spec["trainer"]
    assert tr["image"] == IMAGE
    assert tr["numNodes"] == 2 and tr["numProcPerNode"] == 8
    assert tr["resourcesPerNode"] == {
        "requests": {"cpu": "8", "memory": "48Gi", "nvidia.com/gpu": "8"},
        "limits": {"cpu": "12", "memory": "80Gi", "nvidia.com/gpu": "8"},
    }
    cmd = tr["command"]
    assert cmd[:4] == ["torchrun", "--no-python", "kabuflow", "train-fold"]
    pairs = dict(zip(cmd[4:16:2], cmd[5:16:2], strict=True))
    assert pairs == {
        "--panel": URIS["panel_uri"],
        "--graph": URIS["graph_uri"],
        "--folds": URIS["folds_uri"],
        "--fold": "3",
        "--model": "atft",
        "--out": URIS["out_uri"],
    }
    env = {e["name"]: e for e in tr["env"]}
    for key, var in S3_SECRET_ENV.items():
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "kabuflow-s3", "key": key, "optional": True}
    assert env["KABUFLOW_TASK"]["value"] == "train-fold-atft-3"
    assert env["KABUFLOW_RUN_ID"]["value"] == "run-42"
    assert env["PROMETHEUS_PUSHGATEWAY"]["value"] == "http://pushgateway.kabuflow.svc:9091"
    (ov,) = spec["podSpecOverrides"]
    assert ov["targetJobs"] == [{"name": "node"}]
    assert ov["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    assert ov["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert ov["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    assert ov["containers"] == [{"name": "node", "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}]
    assert ov["serviceAccountName"] == "kabuflow"


def test_trainer_2_1_moves_the_pod_fields_under_spec():
    _, m = _render(
        "pipeline.trainjob_overrides=podTemplateOverrides",
        "pipeline.gpu_node_label=nvidia.com/gpu.product",
        "pipeline.gpu_node_value=NVIDIA-A100-SXM4-80GB",
    )
    assert "podSpecOverrides" not in m["spec"]
    (ov,) = m["spec"]["podTemplateOverrides"]
    assert ov["targetJobs"] == [{"name": "node"}]
    assert ov["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert ov["spec"]["volumes"][0]["emptyDir"] == {"medium": "Memory"}


def test_command_rebuilds_the_exact_config():
    cfg, m = _render("pipeline.train_memory_limit=96Gi", "train.epochs=7", "pipeline.models=[atft, ridge]")
    cmd = m["spec"]["trainer"]["command"]
    rest = cmd[16:]
    assert rest[:2] == ["--profile", "a100"]
    sets = rest[3::2]
    assert all(flag == "--set" for flag in rest[2::2])
    assert 'pipeline.train_memory_limit="96Gi"' in sets and "train.epochs=7" in sets
    assert load(rest[1], sets) == cfg
    assert config_args(load("a100")) == ["--profile", "a100"]


def test_a_profile_file_is_spelled_out_against_the_packaged_local_profile(tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text(
        "profile: team\npipeline:\n  parallelism: 3\n  trainjob_nodes: 2\nmodel:\n  hidden: 128\n"
    )
    cfg = load(str(path))
    args = config_args(cfg)
    assert args[:2] == ["--profile", "local"]
    rebuilt = load("local", args[3::2])
    assert rebuilt.to_dict() == {**cfg.to_dict(), "profile": "local"}


def test_render_refuses_what_the_cluster_would_reject():
    with pytest.raises(ConfigError, match="trainjob_nodes"):
        render_trainjob(load("a100"), IMAGE, 0, "atft", **URIS, name="kf-atft-f0")
    with pytest.raises(ConfigError, match="RFC 1035"):
        _render(name="Kabuflow_Fold")
    name = trainjob_name("8f2c0d7e-1a2b-4c3d-9e8f-0123456789ab" * 2, 12, "atft")
    assert len(name) <= 63 and name.startswith("kf-atft-f12-8f2c0d7e")


# ---- a Kubernetes API server for TrainJobs: records every request; a scripted "controller" ----


class K8sServer(ThreadingHTTPServer):
    """Custom-objects endpoints for trainjobs. The label test/outcome picks the watch script."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), K8sHandler)
        self.jobs: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


PREFIX = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/"


def _cond(kind: str, reason: str, message: str) -> dict:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


class K8sHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _json(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> tuple[str, str, dict]:
        url = urlparse(self.path)
        assert url.path.startswith(PREFIX), url.path
        ns, plural, *name = url.path[len(PREFIX) :].split("/")
        assert plural == "trainjobs"
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.requests.append((self.command, url.path, query))
        return ns, (name[0] if name else ""), query

    def do_POST(self):
        ns, _, _ = self._route()
        obj = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        obj["metadata"].update(namespace=ns, uid="uid-" + obj["metadata"]["name"], resourceVersion="1")
        with self.server.lock:
            self.server.jobs[obj["metadata"]["name"]] = obj
        self._json(201, obj)

    def do_DELETE(self):
        _, name, _ = self._route()
        with self.server.lock:
            self.server.jobs.pop(name)
        self._json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def do_GET(self):
        _, name, query = self._route()
        if name:
            return self._json(200, self.server.jobs[name])
        assert query["watch"].lower() == "true"  # the Python client sends "True"; Go's ParseBool takes both
        job_name = query["fieldSelector"].removeprefix("metadata.name=")
        job = self.server.jobs[job_name]
        outcome = job["metadata"]["labels"]["test/outcome"]
        script = [("ADDED", [])]
        if outcome == "complete":
            script += [("MODIFIED", [_cond("Created", "JobsCreated", "")])]
            script += [
                ("MODIFIED", [_cond("Created", "JobsCreated", ""), _cond("Complete", "JobsCompleted", "")])
            ]
        elif outcome == "fail":
            script += [("MODIFIED", [_cond("Failed", "BackoffLimitExceeded", "node-0-0 exited with code 1")])]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        for rv, (kind, conditions) in enumerate(script, start=2):
            obj = json.loads(json.dumps(job))
            obj["metadata"]["resourceVersion"] = str(rv)
            if conditions:
                obj["status"] = {"conditions": conditions}
            self.wfile.write((json.dumps({"type": kind, "object": obj}) + "\n").encode())
            self.wfile.flush()
        if outcome == "hang":  # a real API server holds the watch open for timeoutSeconds
            time.sleep(int(query["timeoutSeconds"]))


@pytest.fixture
def k8s():
    server = K8sServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    conf = client.Configuration()
    conf.host = server.url
    api_client = client.ApiClient(conf)
    yield server, api_client
    api_client.close()
    server.shutdown()
    server.server_close()


def _manifest(outcome: str) -> dict:
    _, m = _render(name=f"kf-atft-f3-{outcome}")
    m["metadata"]["labels"]["test/outcome"] = outcome
    return m


def test_launch_returns_the_completed_trainjob(k8s):
    server, api_client = k8s
    final = launch_trainjob(_manifest("complete"), "team-quant", timeout=600, api_client=api_client)
    assert [c["type"] for c in final["status"]["conditions"]] == ["Created", "Complete"]
    assert final["metadata"]["namespace"] == "team-quant"
    methods = [(m, p.rsplit("/", 1)[-1], q.get("fieldSelector")) for m, p, q in server.requests]
    assert methods == [("POST", "trainjobs", None), ("GET", "trainjobs", "metadata.name=kf-atft-f3-complete")]
    sent = server.jobs["kf-atft-f3-complete"]
    assert sent["spec"]["trainer"]["image"] == IMAGE  # what was created is the rendered manifest


def test_launch_raises_with_the_controllers_reason(k8s):
    _, api_client = k8s
    with pytest.raises(TrainJobFailed, match="BackoffLimitExceeded: node-0-0 exited with code 1"):
        launch_trainjob(_manifest("fail"), "team-quant", timeout=600, api_client=api_client)


def test_launch_deletes_a_trainjob_that_outlives_its_timeout(k8s):
    server, api_client = k8s
    with pytest.raises(TimeoutError, match="kf-atft-f3-hang did not finish"):
        launch_trainjob(_manifest("hang"), "team-quant", timeout=1, api_client=api_client)
    assert server.requests[-1][:2] == ("DELETE", PREFIX + "team-quant/trainjobs/kf-atft-f3-hang")
    assert server.jobs == {}
