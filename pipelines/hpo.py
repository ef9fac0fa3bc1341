"""The hpo DAG: one Optuna study shared by a fan-out of workers, then optionally training with the winner."""

import json

from kfp import dsl, kubernetes
from kfp.dsl import Artifact, Dataset

import components
from kabuflow.config import Config
from kabuflow.train.study import PASSWORD_ENV
from pipelines.pipeline import _cpu, _train_task, check_models, data_stages, train_and_gate


def build_hpo_pipeline(cfg: Config, image: str) -> dsl.graph_component.GraphComponent:
    """ingest → features → normalize → graph, folds → ParallelFor(workers) hpo-worker → hpo-summary
    [→ ParallelFor(fold × model) → evaluate → If(gate) promote, with the best settings, when hpo.then_train]."""
    if cfg.hpo.then_train:
        check_models(cfg)
    op = components.load(image)
    p, h = cfg.pipeline, cfg.hpo

    # The training DAG as a sub-pipeline whose config is its own input: KFP's local runner hands a
    # ParallelFor the loop item in place of a parameter produced by an upstream task.
    @dsl.pipeline(name="train-with-best", description="the training DAG with the best trial's settings")
    def train(config: str, raw: Dataset, panel: Dataset, graph: Dataset, folds: Artifact) -> Dataset:
        inputs = {"panel": panel, "graph": graph, "folds": folds}
        return train_and_gate(op, cfg, image, config, raw, inputs).outputs["evaluation"]

    @dsl.pipeline(name="kabuflow-hpo", description="Optuna search over ATFT-GAT-FAN settings, many workers")
    def kabuflow_hpo(config: str = json.dumps(cfg.to_dict(), sort_keys=True)) -> Dataset:
        raw, inputs = data_stages(op, cfg, config)
        # Every worker runs hpo.trials trials of the one study at hpo.storage; a preempted worker is
        # retried by KFP, and its RUNNING trial is failed and enqueued again by whichever worker beats next.
        with dsl.ParallelFor(list(range(h.workers)), parallelism=h.workers, name="hpo-workers") as worker:
            work = _database(_train_task(op["hpo_worker"](config=config, worker=worker, **inputs), p), p)
        summary = _database(
            _cpu(op["hpo_summary"](config=config, workers=dsl.Collected(work.outputs["result"])), p), p
        )
        if h.then_train:  # the same panel, graph and folds: the study tuned model and train settings only
            train(config=summary.outputs["Output"], raw=raw.outputs["raw"], **inputs)
        return summary.outputs["summary"]

    return kabuflow_hpo


def _database(task: dsl.PipelineTask, p: object) -> dsl.PipelineTask:
    """The study's database password as an environment variable from its Secret: never in the config,
    the storage URL or this pipeline's YAML."""
    kubernetes.use_secret_as_env(
        task, secret_name=p.optuna_secret, secret_key_to_env={"password": PASSWORD_ENV}, optional=True
    )
    return task
