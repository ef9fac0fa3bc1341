"""k8s/: every overlay renders with kustomize, every object passes the Kubernetes 1.32 schema (strict),
no Secret carries a value, RBAC is exactly the least set, the launcher config points where it should."""

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from pipelines.trainjob import S3_SECRET_ENV

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("minio", "gke")
K8S_VERSION = "1.32.0"


@cache
def render(overlay: str) -> tuple[dict, ...]:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.fail("kubectl not found: the k8s tests render overlays with `kubectl kustomize`")
    proc = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def by_kind(objs: tuple[dict, ...], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_passes_the_kubernetes_schema(overlay):
    objs = render(overlay)
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(
        ["Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Secret", "Secret", "Secret"]
        + ["Service", "Service", "Deployment", "StatefulSet"]
    )
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)  # raises on any schema violation
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "kabuflow", obj["metadata"]["name"]


def test_the_validator_rejects_an_unknown_field():
    (deploy,) = by_kind(render("minio"), "Deployment").values()
    bad = yaml.safe_load(yaml.safe_dump(deploy))
    bad["spec"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_carries_a_value(overlay):
    secrets = by_kind(render(overlay), "Secret")
    assert set(secrets) == {"kabuflow-s3", "kabuflow-jquants", "kabuflow-optuna-db"}
    for name, secret in secrets.items():
        values = {**secret.get("data", {}), **secret.get("stringData", {})}
        assert values, name
        assert all(v in ("", None) for v in values.values()), name
    # The keys the pipeline and the TrainJob read are exactly the template's keys.
    assert set(secrets["kabuflow-s3"]["stringData"]) == set(S3_SECRET_ENV)
    assert set(secrets["kabuflow-jquants"]["stringData"]) == {"api-key"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_is_the_least_set(overlay):
    objs = render(overlay)
    assert not by_kind(objs, "ClusterRole") and not by_kind(objs, "ClusterRoleBinding")
    (role,) = by_kind(objs, "Role").values()
    assert [{k: sorted(v) for k, v in rule.items()} for rule in role["rules"]] == [
        {
            "apiGroups": ["trainer.kubeflow.org"],
            "resources": ["trainjobs"],
            "verbs": ["create", "delete", "get", "list", "watch"],
        }
    ]
    (binding,) = by_kind(objs, "RoleBinding").values()
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "default-editor", "namespace": "kabuflow"}
    ]
    # The workload ServiceAccount has no binding and mounts no token.
    sa = by_kind(objs, "ServiceAccount")["kabuflow"]
    assert sa["automountServiceAccountToken"] is False


def test_launcher_config_minio_is_path_style_s3_with_secret_credentials():
    objs = render("minio")
    data = by_kind(objs, "ConfigMap")["kfp-launcher"]["data"]
    assert data["defaultPipelineRoot"] == "s3://kabuflow/pipeline-root"
    s3 = yaml.safe_load(data["providers"])["s3"]["default"]
    assert s3["endpoint"] == "minio-service.kubeflow:9000"
    assert s3["disableSSL"] is True and s3["forcePathStyle"] is True and s3["region"] == "us-east-1"
    ref = s3["credentials"]["secretRef"]
    assert s3["credentials"]["fromEnv"] is False
    secret = by_kind(objs, "Secret")[ref["secretName"]]
    assert {ref["accessKeyKey"], ref["secretKeyKey"]} <= set(secret["stringData"])


def test_launcher_config_gke_is_gcs_with_workload_identity():
    objs = render("gke")
    data = by_kind(objs, "ConfigMap")["kfp-launcher"]["data"]
    assert data["defaultPipelineRoot"] == "gs://kabuflow-artifacts/pipeline-root"
    assert yaml.safe_load(data["providers"]) == {"gs": {"default": {"credentials": {"fromEnv": True}}}}
    sa = by_kind(objs, "ServiceAccount")["kabuflow"]
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(
        ".iam.gserviceaccount.com"
    )
    (db,) = by_kind(objs, "StatefulSet").values()
    assert db["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "standard-rwo"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_are_pinned_bounded_and_non_root(overlay):
    objs = render(overlay)
    workloads = {**by_kind(objs, "Deployment"), **by_kind(objs, "StatefulSet")}
    assert set(workloads) == {"pushgateway", "optuna-db"}
    for name, obj in workloads.items():
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "kabuflow"
        for c in containers(obj):
            # an exact release (PostgreSQL numbers releases major.minor) or a digest, never latest
            assert re.search(r":v?\d+\.\d+(\.\d+)?(-\w+)?$|@sha256:[0-9a-f]{64}$", c["image"]), c["image"]
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) == {"cpu", "memory"}, (name, kind)
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert sc["readOnlyRootFilesystem"] is True


def test_pushgateway_and_optuna_db_are_reachable_by_name():
    objs = render("minio")
    services = by_kind(objs, "Service")
    assert services["pushgateway"]["spec"]["ports"][0]["port"] == 9091
    assert services["optuna-db"]["spec"]["ports"][0]["port"] == 5432
    assert services["optuna-db"]["spec"]["clusterIP"] == "None"
    for name in ("pushgateway", "optuna-db"):
        selector = services[name]["spec"]["selector"]
        (workload,) = [
            o for o in objs if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == name
        ]
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    (db,) = by_kind(objs, "StatefulSet").values()
    assert db["spec"]["serviceName"] == "optuna-db"
    env = {e["name"]: e for e in containers(db)[0]["env"]}
    ref = env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] in by_kind(objs, "Secret")[ref["name"]]["stringData"]
    claim = db["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert {m["name"] for m in containers(db)[0]["volumeMounts"]} >= {claim["metadata"]["name"]}
