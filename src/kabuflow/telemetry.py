"""Prometheus metrics for stages and training; pushed to a Pushgateway when PROMETHEUS_PUSHGATEWAY is set.

Every stage records its wall time, rows in and out, and its outcome (`stage(name)`); training records one
line of numbers per epoch (`record_epoch`). Task pods are short-lived, so the numbers are pushed, not
scraped: to $PROMETHEUS_PUSHGATEWAY, grouped by job="kabuflow", run_id ($KABUFLOW_RUN_ID, the KFP run),
task ($KABUFLOW_TASK, the KFP task name) and instance ($KABUFLOW_INSTANCE, else the pod's host name, so the
parallel train-fold pods of one task do not overwrite each other's group). With $KABUFLOW_METRICS_FILE
the same numbers are also written to that file in the text exposition format (local runs, CI artifacts).
With $KABUFLOW_EVENTS set (by `kabuflow run`), each stage's end and each training epoch also print one
JSON line on stderr (`event`), which the local runners stream to its console (pipelines/console.py).

Failure policy (decided here, relied on by every stage): metrics are observability, so a push never
fails or crashes a stage. A network fault is retried briefly (PUSH_ATTEMPTS tries, doubling from
PUSH_BACKOFF_SECONDS), then logged as a WARNING that names the gateway and the error, and counted in
kabuflow_push_failures_total, which the next successful push delivers. A stage's own exception is always
recorded as a failure and re-raised, never swallowed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway, write_to_textfile

log = logging.getLogger(__name__)

JOB = "kabuflow"
PUSH_ATTEMPTS = 3
PUSH_BACKOFF_SECONDS = 0.25
PUSH_TIMEOUT_SECONDS = 5.0
EVENTS_ENV = "KABUFLOW_EVENTS"
EVENT_MARK = "kabuflow-event "

REGISTRY = CollectorRegistry()
_STAGE = ["stage"]
_FIT = ["model", "fold"]
STAGE_SECONDS = Gauge(
    "kabuflow_stage_duration_seconds", "Wall time of the stage's last run", _STAGE, registry=REGISTRY
)
STAGE_ROWS = Gauge(
    "kabuflow_stage_rows",
    "Rows the stage read (direction=in) and wrote (out)",
    ["stage", "direction"],
    registry=REGISTRY,
)
STAGE_FAILURES = Counter("kabuflow_stage_failures", "Stage runs that raised", _STAGE, registry=REGISTRY)
STAGE_LAST_SUCCESS = Gauge(
    "kabuflow_stage_last_success_timestamp_seconds",
    "Unix time the stage last succeeded",
    _STAGE,
    registry=REGISTRY,
)
STAGE_EXTRA = Gauge(
    "kabuflow_stage_value", "Stage-specific numbers (StageRecord.extra)", ["stage", "name"], registry=REGISTRY
)
PUSH_FAILURES = Counter("kabuflow_push_failures", "Pushes that failed after retries", registry=REGISTRY)

# record_epoch's keywords: one gauge each, labelled by model and fold. Unknown keywords are an error
# (a typo would otherwise vanish into a metric nobody charts).
EPOCH_GAUGES = {
    key: Gauge(name, doc, _FIT, registry=REGISTRY)
    for key, name, doc in [
        ("epoch", "kabuflow_train_epoch", "Last finished epoch (0-based)"),
        ("train_loss", "kabuflow_train_loss", "Mean training loss of the epoch"),
        ("val_loss", "kabuflow_val_loss", "Validation loss after the epoch"),
        ("val_rank_ic", "kabuflow_val_rank_ic", "Validation RankIC after the epoch (early-stopping metric)"),
        ("val_ic", "kabuflow_val_ic", "Validation IC after the epoch"),
        ("stock_days_per_s", "kabuflow_train_stock_days_per_second", "Training throughput of the epoch"),
        ("gpu_mem_bytes", "kabuflow_gpu_memory_peak_bytes", "Peak CUDA memory allocated so far"),
        ("lr", "kabuflow_train_learning_rate", "Learning rate at the end of the epoch"),
        ("epoch_seconds", "kabuflow_train_epoch_seconds", "Wall time of the epoch"),
    ]
}


@dataclass
class StageRecord:
    """What one stage run reports: rows in and out and any extra numbers (set by the stage), wall time
    and outcome (set on exit)."""

    stage: str
    label: str = ""  # which run of the stage (train-fold: "<model>/<fold>"), for the profile
    rows_in: int = 0
    rows_out: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + system, every thread of the process
    peak_rss_gb: float = 0.0  # the process's peak so far (a task is one process)
    failed: bool = False
    extra: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # which run of the stage (train-fold: fold, model)


def grouping() -> dict[str, str]:
    """The Pushgateway group of this process: run, task and instance (see the module docstring)."""
    return {
        "run_id": os.environ.get("KABUFLOW_RUN_ID") or "local",
        "task": os.environ.get("KABUFLOW_TASK") or "local",
        "instance": os.environ.get("KABUFLOW_INSTANCE") or socket.gethostname(),
    }


def push() -> bool:
    """Write $KABUFLOW_METRICS_FILE if set; push to $PROMETHEUS_PUSHGATEWAY if set. True when pushed.

    Never raises on a network fault: retries, then logs a warning naming the gateway."""
    path = os.environ.get("KABUFLOW_METRICS_FILE")
    if path:
        write_to_textfile(path, REGISTRY)
    gateway = os.environ.get("PROMETHEUS_PUSHGATEWAY")
    if not gateway:
        return False
    error: OSError | None = None
    for attempt in range(PUSH_ATTEMPTS):
        try:
            push_to_gateway(
                gateway, job=JOB, grouping_key=grouping(), registry=REGISTRY, timeout=PUSH_TIMEOUT_SECONDS
            )
            return True
        except OSError as err:  # URLError and HTTPError are OSErrors: refused, DNS, timeout, 4xx/5xx
            error = err
            if attempt + 1 < PUSH_ATTEMPTS:
                time.sleep(PUSH_BACKOFF_SECONDS * 2**attempt)
    PUSH_FAILURES.inc()
    log.warning("metrics not pushed to Pushgateway %s after %d attempts: %s", gateway, PUSH_ATTEMPTS, error)
    return False


def _cpu_seconds() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _profile(rec: StageRecord) -> None:
    """One JSON line per stage run appended to $KABUFLOW_PROFILE (the bench's per-stage table reads it).

    One short O_APPEND write per line: the train-fold tasks running side by side do not interleave."""
    path = os.environ.get("KABUFLOW_PROFILE")
    if not path:
        return
    line = {k: getattr(rec, k) for k in ("stage", "label", "seconds", "cpu_seconds", "peak_rss_gb", "failed")}
    line |= {"rows_in": rec.rows_in, "rows_out": rec.rows_out}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


@contextlib.contextmanager
def stage(name: str, label: str = "") -> Iterator[StageRecord]:
    """Time a stage (wall, CPU, peak RSS) and record its rows, extra numbers and outcome; push on exit
    either way, and append it to $KABUFLOW_PROFILE when set.

    An exception from the stage is counted as a failure and re-raised unchanged."""
    rec = StageRecord(stage=name, label=label)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    try:
        yield rec
    except BaseException:
        rec.failed = True
        raise
    finally:
        rec.seconds, rec.cpu_seconds = time.perf_counter() - t0, _cpu_seconds() - c0
        rec.peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        _profile(rec)
        STAGE_SECONDS.labels(name).set(rec.seconds)
        STAGE_ROWS.labels(name, "in").set(rec.rows_in)
        STAGE_ROWS.labels(name, "out").set(rec.rows_out)
        for key, value in rec.extra.items():
            STAGE_EXTRA.labels(name, key).set(float(value))
        if rec.failed:
            STAGE_FAILURES.labels(name).inc()
        else:
            STAGE_LAST_SUCCESS.labels(name).set(time.time())
        push()
        event(
            "stage",
            stage=name,
            seconds=rec.seconds,
            rows_in=rec.rows_in,
            rows_out=rec.rows_out,
            failed=rec.failed,
            extra=rec.extra,
            **rec.labels,
        )


def event(kind: str, **fields: object) -> None:
    """One `kabuflow-event {json}` line on stderr when $KABUFLOW_EVENTS is set, else nothing.

    Why a line on stderr: KFP's local runners stream every task's output to the parent, from a subprocess
    and from a container alike, so the console learns what each task did without reading its artifacts."""
    if os.environ.get(EVENTS_ENV):
        line = json.dumps({"kind": kind, **fields}, default=float, sort_keys=True)
        print(EVENT_MARK + line, file=sys.stderr, flush=True)


def gpu_memory_bytes() -> int | None:
    """Peak CUDA memory allocated by this process, when torch is already in use with CUDA; else None."""
    torch = sys.modules.get("torch")  # never import torch just for a metric
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.max_memory_allocated())


def record_epoch(model: str, fold: int, **values: float) -> None:
    """Record one epoch's numbers and push them. Keywords: the keys of EPOCH_GAUGES (epoch, train_loss,
    val_loss, val_rank_ic, val_ic, stock_days_per_s, gpu_mem_bytes, lr, epoch_seconds); gpu_mem_bytes
    is filled in from torch.cuda when omitted on a GPU."""
    unknown = sorted(set(values) - set(EPOCH_GAUGES))
    if unknown:
        raise ValueError(f"record_epoch: unknown metric(s) {unknown}; known: {sorted(EPOCH_GAUGES)}")
    if "gpu_mem_bytes" not in values and (mem := gpu_memory_bytes()) is not None:
        values = {**values, "gpu_mem_bytes": mem}
    for key, value in values.items():
        EPOCH_GAUGES[key].labels(model, str(fold)).set(float(value))
    push()
