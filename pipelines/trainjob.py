"""Multi-GPU train-fold as a Kubeflow Trainer TrainJob: render the manifest, create it, watch it finish."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from importlib import resources
from typing import Any

from kabuflow.config import Config, ConfigError, load

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
# Object-storage credentials: the Secret's keys (k8s/base/secrets.yaml) and the variables
# kabuflow.storage reads. The pipeline's tasks use the same mapping.
S3_SECRET_ENV = {
    "access-key": "AWS_ACCESS_KEY_ID",
    "secret-key": "AWS_SECRET_ACCESS_KEY",
    "endpoint": "AWS_ENDPOINT_URL",
}
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class TrainJobFailed(RuntimeError):
    """The TrainJob reached its Failed condition; the message carries the controller's reason."""


def trainjob_name(run_id: str, fold: int, model: str) -> str:
    """An RFC 1035 label (the TrainJob webhook's rule): `kf-<model>-f<fold>-<run id prefix>`, ≤ 63 chars."""
    raw = f"kf-{model}-f{fold}-{run_id}".lower()
    name = re.sub(r"[^a-z0-9-]+", "-", raw)[:63].strip("-")
    if not DNS_LABEL.match(name):
        raise ConfigError(f"cannot make a TrainJob name from run {run_id!r}, fold {fold}, model {model!r}")
    return name


def config_args(cfg: Config) -> list[str]:
    """`--profile P --set k=v ...` that rebuild exactly `cfg` inside the trainer image.

    Only keys that differ from the profile are passed, as JSON (a subset of YAML, which the CLI parses),
    so strings such as "8Gi" or "true" keep their type. A profile given as a YAML path exists only where
    it was compiled, so then the packaged `local` profile is the base and every difference is spelled out."""
    profile = (
        cfg.profile
        if resources.files("kabuflow.profiles").joinpath(f"{cfg.profile}.yaml").is_file()
        else "local"
    )
    base = _flat(load(profile).to_dict())
    args = ["--profile", profile]
    for key, value in sorted(_flat(cfg.to_dict()).items()):
        if base.get(key) != value:
            args += ["--set", f"{key}={json.dumps(value)}"]
    return args


def _flat(tree: dict[str, Any]) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, sub in tree.items() if isinstance(sub, dict) for k, v in sub.items()}


def render_trainjob(
    cfg: Config,
    image: str,
    fold: int,
    model: str,
    panel_uri: str,
    graph_uri: str,
    folds_uri: str,
    out_uri: str,
    name: str,
    *,
    run_id: str = "",
) -> dict[str, Any]:
    """A `trainer.kubeflow.org/v1alpha1` TrainJob running `kabuflow train-fold` under torchrun.

    The torch-distributed runtime sets PET_NNODES / PET_NODE_RANK / PET_MASTER_ADDR ..., which torchrun
    reads, so the command carries no rendezvous flags. Inputs and output are object-storage URIs: the
    nodes share nothing else."""
    p = cfg.pipeline
    if p.trainjob_nodes < 1:
        raise ConfigError("pipeline.trainjob_nodes must be >= 1 to render a TrainJob")
    if not DNS_LABEL.match(name) or len(name) > 63:
        raise ConfigError(f"TrainJob name {name!r} is not an RFC 1035 label of at most 63 characters")
    stage_args = ["--panel", panel_uri, "--graph", graph_uri, "--folds", folds_uri]
    stage_args += ["--fold", str(fold), "--model", model, "--out", out_uri]
    command = ["torchrun", "--no-python", "kabuflow", "train-fold", *stage_args, *config_args(cfg)]
    env = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": p.s3_secret, "key": key, "optional": True}}}
        for key, var in S3_SECRET_ENV.items()
    ]
    env.append({"name": "KABUFLOW_TASK", "value": f"train-fold-{model}-{fold}"})
    if run_id:
        env.append({"name": "KABUFLOW_RUN_ID", "value": run_id})
    if p.pushgateway:
        env.append({"name": "PROMETHEUS_PUSHGATEWAY", "value": p.pushgateway})
    gpus = str(p.trainjob_gpus_per_node)
    trainer = {
        "image": image,
        "command": command,
        "env": env,
        "numNodes": p.trainjob_nodes,
        "numProcPerNode": p.trainjob_gpus_per_node,
        "resourcesPerNode": {
            "requests": {
                "cpu": p.train_cpu_request,
                "memory": p.train_memory_request,
                "nvidia.com/gpu": gpus,
            },
            "limits": {"cpu": p.train_cpu_limit, "memory": p.train_memory_limit, "nvidia.com/gpu": gpus},
        },
    }
    labels = {
        "app.kubernetes.io/part-of": "kabuflow",
        "kabuflow.io/model": model,
        "kabuflow.io/fold": str(fold),
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "runtimeRef": {"name": p.trainjob_runtime, "apiGroup": GROUP, "kind": "ClusterTrainingRuntime"},
            "trainer": trainer,
            p.trainjob_overrides: [_pod_override(cfg)],
        },
    }


def _pod_override(cfg: Config) -> dict[str, Any]:
    """GPU placement for the runtime's `node` job, in the shape of the configured Trainer API version."""
    p = cfg.pipeline
    spec = {
        "serviceAccountName": p.trainjob_service_account,
        "nodeSelector": {p.gpu_node_label: p.gpu_node_value},
        "tolerations": [{"key": p.gpu_toleration_key, "operator": "Exists", "effect": "NoSchedule"}],
        # NCCL and DDP share memory through /dev/shm; the container default of 64 MB stalls them.
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        "containers": [{"name": "node", "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}],
    }
    target = [{"name": "node"}]
    if p.trainjob_overrides == "podSpecOverrides":  # Trainer 2.0: fields inline
        return {"targetJobs": target, **spec}
    return {"targetJobs": target, "spec": spec}  # Trainer >= 2.1: PodTemplateOverride.spec


def current_namespace(default: str = "kubeflow") -> str:
    """The namespace this pod runs in (the ServiceAccount mount), else `default`."""
    try:
        with open(NAMESPACE_FILE) as f:
            return f.read().strip() or default
    except FileNotFoundError:
        return default


def _api_client() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def _state(obj: dict[str, Any]) -> tuple[str, str]:
    """("Complete" | "Failed" | "", message) from the TrainJob's status conditions."""
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return cond["type"], f"{cond.get('reason', '')}: {cond.get('message', '')}"
    return "", ""


def launch_trainjob(
    manifest: dict[str, Any], namespace: str, timeout: float, *, api_client: Any = None
) -> dict[str, Any]:
    """Create the TrainJob and watch it until Complete (returns the final object) or Failed (raises).

    On timeout the TrainJob is deleted, so its GPUs are freed, and TimeoutError is raised. `api_client`
    (a kubernetes.client.ApiClient) defaults to the in-cluster ServiceAccount, else ~/.kube/config."""
    from kubernetes import client, watch

    api = client.CustomObjectsApi(api_client or _api_client())
    obj = api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    name = obj["metadata"]["name"]
    log.info("TrainJob %s/%s created", namespace, name)
    deadline = time.monotonic() + timeout
    while True:
        state, message = _state(obj)
        if state == "Complete":
            log.info("TrainJob %s/%s complete", namespace, name)
            return obj
        if state == "Failed":
            raise TrainJobFailed(f"TrainJob {namespace}/{name} failed: {message}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            raise TimeoutError(
                f"TrainJob {namespace}/{name} did not finish within {timeout:.0f} s; deleted it"
            )
        window = max(1, int(min(remaining, 300)))
        obj = _watch_once(api, watch.Watch(), namespace, name, window) or api.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )


def _watch_once(api: Any, watcher: Any, namespace: str, name: str, seconds: int) -> dict[str, Any] | None:
    """The TrainJob once it has a verdict within one watch window of `seconds`, else None."""
    stream = watcher.stream(
        api.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        field_selector=f"metadata.name={name}",
        timeout_seconds=seconds,
    )
    with contextlib.closing(stream):
        for event in stream:
            if event["type"] == "DELETED":
                raise TrainJobFailed(f"TrainJob {namespace}/{name} was deleted before it finished")
            if _state(event["object"])[0]:
                return event["object"]
    return None
