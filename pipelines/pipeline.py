"""The kabuflow DAG, built by a factory because image, parallelism and fold count are fixed at compile time."""

import json

from kfp import dsl, kubernetes
from kfp.dsl import Dataset

import components
from kabuflow import redact
from kabuflow.config import Config, ConfigError


def build_pipeline(cfg: Config, image: str) -> dsl.graph_component.GraphComponent:
    """ingest → features → normalize → graph → folds → ParallelFor(fold × model) → evaluate → If(gate) promote."""
    check_models(cfg)
    op = components.load(image)

    # The compiled YAML is uploaded and shared: credentials in settings (hpo.storage) are masked in it;
    # the cluster fills them from Kubernetes Secrets as environment variables.
    default = json.dumps(redact.tree(cfg.to_dict()), sort_keys=True)

    @dsl.pipeline(name="kabuflow", description="ATFT-GAT-FAN walk-forward training on J-Quants data")
    def kabuflow(config: str = default) -> Dataset:
        raw, inputs = data_stages(op, cfg, config)
        return train_and_gate(op, cfg, image, config, raw.outputs["raw"], inputs).outputs["evaluation"]

    return kabuflow


def check_models(cfg: Config) -> None:
    """The training DAG needs ATFT: the gate promotes it."""
    if "atft" not in cfg.pipeline.models:
        raise ConfigError("pipeline.models must include 'atft' (the model the gate promotes)")


def data_stages(op: dict, cfg: Config, config: object) -> tuple[dsl.PipelineTask, dict]:
    """ingest → features → normalize → graph, folds: the ingest task and the training inputs."""
    p = cfg.pipeline
    raw = _cpu(op["ingest"](config=config), p).set_caching_options(False)
    kubernetes.use_secret_as_env(
        raw, secret_name=p.jquants_secret, secret_key_to_env={"api-key": "JQUANTS_API_KEY"}, optional=True
    )
    feats = _cpu(op["features"](config=config, raw=raw.outputs["raw"]), p)
    panel = _cpu(op["normalize"](config=config, features=feats.outputs["features"]), p)
    graph = _cpu(op["graph"](config=config, panel=panel.outputs["panel"]), p)
    folds = _cpu(op["folds"](config=config, panel=panel.outputs["panel"]), p)
    return raw, {
        "panel": panel.outputs["panel"],
        "graph": graph.outputs["graph"],
        "folds": folds.outputs["folds"],
    }


def train_and_gate(
    op: dict, cfg: Config, image: str, config: object, raw: object, inputs: dict
) -> dsl.PipelineTask:
    """ParallelFor(fold × model) → evaluate → If(gate) promote; returns the evaluate task. `config` is
    the config parameter, `raw` the ingest artifact; `cfg` fixes the DAG's shape."""
    p = cfg.pipeline
    atft_items = [{"fold": k, "model": "atft"} for k in range(cfg.folds.n_folds)]
    baseline_items = [
        {"fold": k, "model": m} for k in range(cfg.folds.n_folds) for m in p.models if m != "atft"
    ]
    if p.gpu or p.trainjob_nodes > 0:  # ATFT folds on GPU nodes (or TrainJobs), baselines on CPU
        with dsl.ParallelFor(atft_items, parallelism=p.parallelism, name="atft-folds") as item:
            if p.trainjob_nodes > 0:  # multi-node DDP: this task only launches and watches a TrainJob
                deep = _cpu(op["train_fold_trainjob"](config=config, image=image, spec=item, **inputs), p)
            else:
                deep = _train_task(op["train_fold"](config=config, spec=item, **inputs), p)
        with dsl.ParallelFor(baseline_items, parallelism=p.parallelism, name="baseline-folds") as item:
            base = _cpu(op["train_fold"](config=config, spec=item, **inputs), p)
        ev = op["evaluate"](
            config=config,
            raw=raw,
            atft=dsl.Collected(deep.outputs["result"]),
            baselines=dsl.Collected(base.outputs["result"]),
        )
    else:
        # CPU only: one fan-out, the long ATFT folds first, so the baselines fill the cores the last
        # ATFT folds leave idle. The local runner runs two loops one after the other: with 3 folds on
        # 2 cores the third ATFT fold trained alone for ~3 minutes while the baselines waited.
        with dsl.ParallelFor(atft_items + baseline_items, parallelism=p.parallelism, name="folds") as item:
            fold = _train_task(op["train_fold"](config=config, spec=item, **inputs), p)
        ev = op["evaluate_all"](config=config, raw=raw, predictions=dsl.Collected(fold.outputs["result"]))
    ev = _cpu(ev, p)
    with dsl.If(ev.outputs["Output"] == True, name="gate"):  # noqa: E712 - KFP condition, not Python
        _cpu(op["promote"](evaluation=ev.outputs["evaluation"]), p)
    return ev


def _common(task: dsl.PipelineTask, p: object) -> dsl.PipelineTask:
    """Retries with backoff, object-storage credentials, telemetry grouping: every task gets these."""
    task.set_retry(num_retries=p.retries, backoff_duration=p.retry_backoff, backoff_factor=2.0)
    kubernetes.use_secret_as_env(
        task,
        secret_name=p.s3_secret,
        secret_key_to_env={
            "access-key": "AWS_ACCESS_KEY_ID",
            "secret-key": "AWS_SECRET_ACCESS_KEY",
            "endpoint": "AWS_ENDPOINT_URL",
        },
        optional=True,
    )
    task.set_env_variable("KABUFLOW_RUN_ID", dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    task.set_env_variable("KABUFLOW_TASK", task.name)
    if p.pushgateway:  # kabuflow.telemetry pushes stage and epoch metrics there (k8s/base/pushgateway.yaml)
        task.set_env_variable("PROMETHEUS_PUSHGATEWAY", p.pushgateway)
    return task


def _cpu(task: dsl.PipelineTask, p: object) -> dsl.PipelineTask:
    """A CPU-only stage: requests and limits from the profile, no accelerator."""
    task.set_cpu_request(p.cpu_request).set_cpu_limit(p.cpu_limit)
    task.set_memory_request(p.memory_request).set_memory_limit(p.memory_limit)
    return _common(task, p)


def _train_task(task: dsl.PipelineTask, p: object) -> dsl.PipelineTask:
    """A training task (train-fold, hpo-worker): the training requests and limits, and (the one place
    that asks for a GPU) one A100 when the profile says pipeline.gpu; a CPU-only profile's get the same
    CPU and memory."""
    task.set_cpu_request(p.train_cpu_request).set_cpu_limit(p.train_cpu_limit)
    task.set_memory_request(p.train_memory_request).set_memory_limit(p.train_memory_limit)
    if p.gpu:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
        kubernetes.add_node_selector(task, label_key=p.gpu_node_label, label_value=p.gpu_node_value)
        kubernetes.add_toleration(task, key=p.gpu_toleration_key, operator="Exists", effect="NoSchedule")
        # PyTorch shares tensors between processes through /dev/shm; the container default is 64 MB.
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory")
    return _common(task, p)
