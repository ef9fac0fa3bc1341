"""Config sections for where stages run and artifacts live: the KFP cluster (pipeline) and object stores."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from kabuflow.config.models import ModelName


@dataclass(frozen=True)
class PipelineConfig:
    models: tuple[ModelName, ...] = typing.get_args(ModelName)
    parallelism: int = 2
    gpu: bool = False
    gpu_node_label: str = "cloud.google.com/gke-accelerator"
    gpu_node_value: str = "nvidia-tesla-a100"
    gpu_toleration_key: str = "nvidia.com/gpu"
    train_cpu_request: str = "2"
    train_cpu_limit: str = "4"
    train_memory_request: str = "8Gi"
    train_memory_limit: str = "16Gi"
    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "4Gi"
    memory_limit: str = "8Gi"
    retries: int = 2
    retry_backoff: str = "60s"
    trainjob_nodes: int = 0  # >0: train atft folds as a Kubeflow Trainer TrainJob with this many nodes
    trainjob_gpus_per_node: int = 1  # torchrun processes per node, one per GPU
    trainjob_runtime: str = "torch-distributed"  # ClusterTrainingRuntime the TrainJob references
    # Where node selector/tolerations go: podSpecOverrides (Trainer 2.0, the KFP docs' example) or
    # podTemplateOverrides (Trainer >= 2.1 renamed it); a wrong choice is pruned silently by the API server.
    trainjob_overrides: Literal["podSpecOverrides", "podTemplateOverrides"] = "podSpecOverrides"
    trainjob_service_account: str = "kabuflow"  # k8s/base: no API permissions, no token mounted
    trainjob_timeout: int = 86400  # seconds to wait for Complete/Failed before deleting the TrainJob
    pushgateway: str = ""  # e.g. http://pushgateway.kabuflow.svc:9091; set as PROMETHEUS_PUSHGATEWAY on tasks
    s3_secret: str = "kabuflow-s3"
    jquants_secret: str = "kabuflow-jquants"
    optuna_secret: str = "kabuflow-optuna-db"  # key `password` -> $KABUFLOW_HPO_DB_PASSWORD on hpo tasks


@dataclass(frozen=True)
class StorageConfig:
    """Object-store clients and artifact checks (kabuflow.storage, kabuflow.manifest)."""

    connect_timeout: float = 10.0  # seconds to open a connection to the S3/GCS endpoint
    read_timeout: float = 30.0  # seconds of silence on an open connection before the attempt fails
    # Seconds per operation (one object) after which no new attempt starts; a transfer in progress is
    # bounded by read_timeout instead, so a large upload on a slow link is never cut off mid-way.
    deadline: float = 300.0
    attempts: int = 5  # tries per operation on transient errors, within the deadline
    verify: Literal["auto", "hash", "size"] = "auto"  # inputs: sizes always, sha256 up to 256 MiB (auto)
