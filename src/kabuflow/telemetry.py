"""Prometheus metrics for stages and training; pushed to a Pushgateway when PROMETHEUS_PUSHGATEWAY is set."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway

REGISTRY = CollectorRegistry()
STAGE_SECONDS = Gauge("kabuflow_stage_seconds", "Wall time of a stage", ["stage"], registry=REGISTRY)
STAGE_ROWS = Gauge("kabuflow_stage_rows", "Rows in/out of a stage", ["stage", "direction"], registry=REGISTRY)
STAGE_FAILURES = Counter("kabuflow_stage_failures", "Failed stage runs", ["stage"], registry=REGISTRY)
TRAIN = Gauge("kabuflow_train", "Training progress by epoch", ["model", "fold", "metric"], registry=REGISTRY)


@dataclass
class StageRecord:
    """What one stage run reports: rows in and out (set by the stage), wall time (set on exit)."""

    stage: str
    rows_in: int = 0
    rows_out: int = 0
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def _grouping() -> dict[str, str]:
    return {
        "run_id": os.environ.get("KABUFLOW_RUN_ID", "local"),
        "task": os.environ.get("KABUFLOW_TASK", "local"),
    }


def push(job: str = "kabuflow") -> bool:
    """Push the registry to the Pushgateway named by PROMETHEUS_PUSHGATEWAY; False when none is set."""
    gateway = os.environ.get("PROMETHEUS_PUSHGATEWAY", "")
    if not gateway:
        return False
    push_to_gateway(gateway, job=job, grouping_key=_grouping(), registry=REGISTRY, timeout=10)
    return True


@contextlib.contextmanager
def stage(name: str) -> Iterator[StageRecord]:
    """Time a stage and record its rows and failures; the metrics are pushed on exit either way."""
    rec = StageRecord(stage=name)
    t0 = time.perf_counter()
    try:
        yield rec
    except BaseException:
        STAGE_FAILURES.labels(name).inc()
        raise
    finally:
        rec.seconds = time.perf_counter() - t0
        STAGE_SECONDS.labels(name).set(rec.seconds)
        STAGE_ROWS.labels(name, "in").set(rec.rows_in)
        STAGE_ROWS.labels(name, "out").set(rec.rows_out)
        push()


def record_epoch(model: str, fold: int, **values: float) -> None:
    """Record one epoch's numbers (epoch, train_loss, val_rank_ic, stock_days_per_s, gpu_mem_bytes ...)."""
    for metric, value in values.items():
        TRAIN.labels(model, str(fold), metric).set(float(value))
    push()
