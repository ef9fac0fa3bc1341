"""A local Kubeflow Pipelines API server (v2beta1 REST, the calls kfp.Client makes when submitting).

It keeps pipelines, versions, experiments, runs and recurring runs in memory, answers with the JSON
shapes of the real backend (snake_case fields, int64 as strings, google.rpc.Status errors) and records
every request (method, path, query, headers, body) so tests can assert what the client sent."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

NOW = "2026-01-05T09:00:00Z"
API = "/apis/v2beta1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased: HTTP header names are case-insensitive
    body: Any = None


@dataclass
class Store:
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring_runs: dict[str, dict] = field(default_factory=dict)


class ApiError(Exception):
    """Becomes a google.rpc.Status body: {error, code (gRPC), message, details}."""

    def __init__(self, http: int, grpc: int, message: str):
        super().__init__(message)
        self.http, self.grpc = http, grpc


def _matches(obj: dict, filter_json: str | None) -> bool:
    """The subset of filter.proto used by kfp.Client: EQUALS predicates on string fields."""
    if not filter_json:
        return True
    for p in json.loads(filter_json).get("predicates", []):
        if p.get("operation") not in (1, "EQUALS"):
            raise ApiError(400, 3, f"unsupported filter operation {p.get('operation')!r}")
        value = p.get("stringValue", p.get("string_value"))
        if obj.get(p["key"]) != value:
            return False
    return True


def _new_id() -> str:
    return str(uuid.uuid4())


class KFPServer(ThreadingHTTPServer):
    """Start with `with KFPServer() as s: s.start(); ...`; `s.url` is the host for kfp.Client."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.store = Store()
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> KFPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    # ---- the API, one method per route ----

    def healthz(self, q: dict, body: Any) -> dict:
        return {"multi_user": False, "pipeline_store": "database"}

    def list_pipelines(self, q: dict, body: Any) -> dict:
        found = [p for p in self.store.pipelines.values() if _matches(p, q.get("filter"))]
        return {"pipelines": found, "total_size": len(found)} if found else {"total_size": 0}

    def create_pipeline(self, q: dict, body: dict) -> dict:
        if any(p["display_name"] == body["display_name"] for p in self.store.pipelines.values()):
            raise ApiError(
                409, 6, f"Failed to create a pipeline: pipeline {body['display_name']!r} already exists"
            )
        pid = _new_id()
        name = body.get("name") or re.sub(r"[^a-z0-9-]", "-", body["display_name"].lower())
        pipe = {"pipeline_id": pid, "display_name": body["display_name"], "name": name, "created_at": NOW}
        pipe["namespace"] = body.get("namespace") or ""
        self.store.pipelines[pid] = pipe
        return pipe

    def upload_pipeline(self, q: dict, package: bytes) -> dict:
        pipe = self.create_pipeline(q, {"display_name": q["name"], "namespace": q.get("namespace")})
        self._add_version(pipe["pipeline_id"], q["name"], package)
        return pipe

    def upload_pipeline_version(self, q: dict, package: bytes) -> dict:
        if q.get("pipelineid") not in self.store.pipelines:
            raise ApiError(404, 5, f"Pipeline {q.get('pipelineid')!r} not found")
        return self._add_version(q["pipelineid"], q["name"], package)

    def _add_version(self, pipeline_id: str, name: str, package: bytes) -> dict:
        spec = next(yaml.safe_load_all(package))
        if not isinstance(spec, dict) or "pipelineInfo" not in spec:
            raise ApiError(400, 3, "Failed to upload a pipeline version: invalid pipeline spec")
        if any(
            v["pipeline_id"] == pipeline_id and v["display_name"] == name
            for v in self.store.versions.values()
        ):
            raise ApiError(409, 6, f"Failed to create a pipeline version: {name!r} already exists")
        vid = _new_id()
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": vid, "display_name": name, "name": name}
        version.update(created_at=NOW, pipeline_spec=spec)
        self.store.versions[vid] = version
        return version

    def list_versions(self, q: dict, body: Any, pipeline_id: str) -> dict:
        found = [
            v
            for v in self.store.versions.values()
            if v["pipeline_id"] == pipeline_id and _matches(v, q.get("filter"))
        ]
        return {"pipeline_versions": found, "total_size": len(found)} if found else {"total_size": 0}

    def list_experiments(self, q: dict, body: Any) -> dict:
        found = [e for e in self.store.experiments.values() if _matches(e, q.get("filter"))]
        return {"experiments": found, "total_size": len(found)} if found else {"total_size": 0}

    def create_experiment(self, q: dict, body: dict) -> dict:
        eid = _new_id()
        exp = {
            "experiment_id": eid,
            "display_name": body["display_name"],
            "namespace": body.get("namespace") or "",
        }
        exp.update(created_at=NOW, storage_state="AVAILABLE", last_run_created_at="1970-01-01T00:00:00Z")
        self.store.experiments[eid] = exp
        return exp

    def _check_refs(self, body: dict) -> None:
        if body.get("experiment_id") not in self.store.experiments:
            raise ApiError(404, 5, f"Experiment {body.get('experiment_id')!r} not found")
        ref = body.get("pipeline_version_reference") or {}
        version = self.store.versions.get(ref.get("pipeline_version_id"))
        if version is None or version["pipeline_id"] != ref.get("pipeline_id"):
            raise ApiError(
                400,
                3,
                "a run needs an existing pipeline_version_reference {pipeline_id, pipeline_version_id}",
            )

    def create_run(self, q: dict, body: dict) -> dict:
        self._check_refs(body)
        rid = _new_id()
        run = {**body, "run_id": rid, "state": "PENDING", "created_at": NOW, "storage_state": "AVAILABLE"}
        run["state_history"] = [{"update_time": NOW, "state": "PENDING"}]
        self.store.runs[rid] = run
        return run

    def create_recurring_run(self, q: dict, body: dict) -> dict:
        self._check_refs(body)
        if "cron_schedule" not in (body.get("trigger") or {}) and "periodic_schedule" not in (
            body.get("trigger") or {}
        ):
            raise ApiError(400, 3, "a recurring run needs a trigger")
        rid = _new_id()
        rec = {**body, "recurring_run_id": rid, "created_at": NOW, "updated_at": NOW}
        rec["max_concurrency"] = str(body.get("max_concurrency", "1"))  # int64: a string in proto JSON
        rec["status"] = "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED"
        self.store.recurring_runs[rid] = rec
        return rec


ROUTES = [
    ("GET", re.compile(rf"{API}/healthz$"), "healthz"),
    ("GET", re.compile(rf"{API}/pipelines$"), "list_pipelines"),
    ("POST", re.compile(rf"{API}/pipelines$"), "create_pipeline"),
    ("POST", re.compile(rf"{API}/pipelines/upload$"), "upload_pipeline"),
    ("POST", re.compile(rf"{API}/pipelines/upload_version$"), "upload_pipeline_version"),
    ("GET", re.compile(rf"{API}/pipelines/([^/]+)/versions$"), "list_versions"),
    ("GET", re.compile(rf"{API}/experiments$"), "list_experiments"),
    ("POST", re.compile(rf"{API}/experiments$"), "create_experiment"),
    ("POST", re.compile(rf"{API}/runs$"), "create_run"),
    ("POST", re.compile(rf"{API}/recurringruns$"), "create_recurring_run"),
]


class _Handler(BaseHTTPRequestHandler):
    server: KFPServer

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + raw
            )
            parts = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
            if "uploadfile" not in parts:
                raise ApiError(400, 3, "multipart form has no uploadfile")
            return parts["uploadfile"].get_payload(decode=True)
        return json.loads(raw) if raw else None

    def _handle(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            body = self._body()
            with self.server.lock:
                self.server.requests.append(
                    Request(
                        self.command, url.path, query, {k.lower(): v for k, v in self.headers.items()}, body
                    )
                )
                for method, pattern, handler in ROUTES:
                    m = pattern.match(url.path)
                    if m and method == self.command:
                        reply = getattr(self.server, handler)(query, body, *m.groups())
                        break
                else:
                    raise ApiError(404, 5, f"no route for {self.command} {url.path}")
            self._send(200, reply)
        except ApiError as err:
            self._send(err.http, {"error": str(err), "code": err.grpc, "message": str(err), "details": []})

    def _send(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _handle
