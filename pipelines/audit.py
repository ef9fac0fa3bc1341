"""The audit DAG: one task that reruns the stages on cut data and publishes the verdict (Metrics, HTML)."""

import json

from kfp import dsl, kubernetes
from kfp.dsl import Dataset

import components
from kabuflow.config import Config
from pipelines.pipeline import _cpu


def build_audit_pipeline(cfg: Config, image: str) -> dsl.graph_component.GraphComponent:
    """audit (ingest once, then features → normalize → graph per cut and in full, compared in one task).

    One task: the comparison reads the full run's and every cut's artifacts side by side, and the cut
    copies are deleted as soon as they are compared, so nothing large crosses object storage. It asks
    for the training resources (it fits one ATFT fold and the baselines). Schedule it with `kabuflow
    submit --package audit.yaml --recurring CRON`.
    """
    op = components.load(image)
    p = cfg.pipeline

    @dsl.pipeline(name="kabuflow-audit", description="Look-ahead audit of every stage on the user's own data")
    def kabuflow_audit(config: str = json.dumps(cfg.to_dict(), sort_keys=True)) -> Dataset:
        task = _cpu(op["audit"](config=config), p).set_caching_options(False)
        task.set_cpu_request(p.train_cpu_request).set_cpu_limit(p.train_cpu_limit)
        task.set_memory_request(p.train_memory_request).set_memory_limit(p.train_memory_limit)
        kubernetes.use_secret_as_env(
            task,
            secret_name=p.jquants_secret,
            secret_key_to_env={"api-key": "JQUANTS_API_KEY"},
            optional=True,
        )
        return task.outputs["result"]

    return kabuflow_audit
