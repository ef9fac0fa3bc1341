"""The `kabuflow` commands: each loads the config, moves remote data at the edges and runs one stage."""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from kabuflow.config import Config, load

REMOTE = ("s3://", "gs://")
# `--pipeline`: its name on the server (pipelineInfo.name) and the default compiled file.
PIPELINES = {"kabuflow": "kabuflow", "hpo": "kabuflow-hpo", "audit": "kabuflow-audit"}
PACKAGES = {"kabuflow": "pipeline.yaml", "hpo": "pipeline-hpo.yaml", "audit": "pipeline-audit.yaml"}


@contextlib.contextmanager
def local_input(uri: str) -> Iterator[str]:
    """A local directory for `uri`: the path itself, or a temporary download of an s3:// or gs:// prefix."""
    if not uri.startswith(REMOTE):
        yield uri.removeprefix("file://")
        return
    from kabuflow import storage

    with tempfile.TemporaryDirectory(prefix="kabuflow-in-") as tmp:
        storage.download_dir(uri, tmp)  # the listed files only, each checked against the manifest
        yield tmp


@contextlib.contextmanager
def local_output(uri: str) -> Iterator[str]:
    """A local directory to write into; for a remote `uri` it is uploaded only after the stage succeeds,
    and checked for writability before the stage computes anything."""
    if not uri.startswith(REMOTE):
        Path(uri.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        yield uri.removeprefix("file://")
        return
    from kabuflow import storage

    storage.check_writable(uri)
    with tempfile.TemporaryDirectory(prefix="kabuflow-out-") as tmp:
        yield str(Path(tmp) / "out")
        storage.upload_dir(Path(tmp) / "out", uri)


def _config(args: argparse.Namespace) -> Config:
    from kabuflow import storage

    sets = list(args.set or [])
    for flag in ("source", "path", "start", "end"):
        value = getattr(args, flag, None)
        if value:
            sets.append(f"data.{flag}={value}")
    cfg = load(args.profile, sets)
    storage.configure(cfg.storage)  # timeouts and verify policy for the downloads before the stage
    return cfg


def cmd_run(args: argparse.Namespace) -> None:
    """Whole pipeline through a KFP local runner (subprocesses, or containers of the project image)."""
    from pipelines.local import run_local

    cfg = _config(args)
    if args.hpo:  # the best trial's settings, and its trial count for the deflated Sharpe
        from kabuflow.train.hpo import apply_best, read_best

        cfg = apply_best(cfg, read_best(args.hpo))
    run_local(cfg, Path(args.out), args.runner, args.image, args.verbose, pipeline=args.pipeline)


def cmd_audit(args: argparse.Namespace) -> None:
    """Look-ahead audit: rerun the stages on the data cut after each D; exit 2 when a value moved."""
    from kabuflow.audit import audit
    from kabuflow.audit.report import text

    cfg = _config(args)
    if args.cut:
        cfg = cfg.with_overrides([f"audit.cuts=[{', '.join(args.cut)}]"])
    with local_output(args.out) as out:
        report = audit(cfg, out)
    print(text(report, cfg.audit.worst))
    print(f"audit: wrote {args.out}/audit.json and audit.html")
    if not report["passed"]:
        raise SystemExit(2)


def cmd_ingest(args: argparse.Namespace) -> None:
    """Raw tables from one source."""
    from kabuflow.ingest import ingest

    cfg = _config(args)  # first: it sets the storage timeouts the output's writability probe uses
    with local_output(args.out) as out:
        m = ingest(cfg, out)
    print(f"ingest {m['source']} {m['start']}..{m['end']} -> {args.out}")
    for name, info in m["tables"].items():
        print(f"  {name:<28} {info['rows']:>10,} rows")
    for drop in m["dropped"]:
        print(f"  dropped {drop['rows']:,} rows of {drop['table']}: {drop['reason']}")


def stage_command(module: str, name: str, *inputs: str) -> Callable[[argparse.Namespace], None]:
    """The command of a stage that takes only directories: `module.name(cfg, *inputs, out)`, each input
    a flag named like the argument; imported when the command runs, not when the parser is built."""

    def run(args: argparse.Namespace) -> None:
        import importlib

        stage = getattr(importlib.import_module(module), name)
        cfg = _config(args)
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(local_output(args.out))
            dirs = [stack.enter_context(local_input(getattr(args, i))) for i in inputs]
            stage(cfg, *dirs, out)
        print(f"{name}: wrote {args.out}")

    run.__doc__ = f"{module}.{name}"
    return run


def cmd_train_fold(args: argparse.Namespace) -> None:
    """One fold × one model."""
    from kabuflow.train import train_fold

    cfg = _config(args)
    with (
        local_output(args.out) as out,
        local_input(args.panel) as panel,
        local_input(args.graph) as graph,
        local_input(args.folds) as folds,
    ):
        m = train_fold(cfg, panel, graph, folds, args.fold, args.model, out)
    print(json.dumps(m.get("metrics", {}), indent=1, default=str))


def cmd_ablate(args: argparse.Namespace) -> None:
    """ATFT variants (lookback 1, no graph, no rank term, each target) on the same folds and seeds."""
    from kabuflow.ablate import ablate, markdown

    names = tuple(n for n in (args.variants or "").split(",") if n)
    with local_input(args.panel) as panel, local_input(args.graph) as graph, local_output(args.out) as out:
        result = ablate(_config(args), panel, graph, args.folds, out, args.seeds, names)
    print(markdown(result))


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Metrics, backtest, report and gate over fold predictions."""
    from kabuflow.evaluate import evaluate
    from kabuflow.evaluate.report import summary_table

    cfg = _config(args)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(local_output(args.out))
        dirs = [stack.enter_context(local_input(p)) for p in args.predictions]
        raw = stack.enter_context(local_input(args.raw)) if args.raw else None
        evaluate(cfg, dirs, out, raw=raw)
        print(summary_table(json.loads((Path(out) / "metrics.json").read_text())))


def cmd_hpo(args: argparse.Namespace) -> None:
    """Optuna study on validation RankIC."""
    from kabuflow.train.hpo import run_hpo

    cfg = _config(args)
    with local_input(args.panel) as panel, local_input(args.graph) as graph:
        storage = args.storage or cfg.hpo.storage
        result = run_hpo(cfg, panel, graph, args.folds, args.trials, storage, args.out, worker=args.worker)
    print(json.dumps(result, indent=1, default=str))


def cmd_hpo_summary(args: argparse.Namespace) -> None:
    """Best settings, trial table, importance and plots of a study."""
    from kabuflow.train.hpo_summary import hpo_summary

    cfg = _config(args)
    if args.storage:
        cfg = cfg.with_params({"hpo.storage": args.storage})
    with local_output(args.out) as out:
        hpo_summary(cfg, out)
        print((Path(out) / "summary.md").read_text())


def cmd_compile(args: argparse.Namespace) -> None:
    """Pipeline YAML for the cluster."""
    from pipelines.compile import compile_pipeline

    path = compile_pipeline(_config(args), args.image, args.out or PACKAGES[args.pipeline], args.pipeline)
    print(f"compiled {args.pipeline} pipeline {path} (image {args.image})")


def cmd_submit(args: argparse.Namespace) -> None:
    """Upload the compiled pipeline as a version and start a run (or a recurring run)."""
    from pipelines.submit import submit

    result = submit(
        host=args.host,
        package_path=args.package or PACKAGES[args.pipeline],
        experiment=args.experiment,
        recurring_cron=args.recurring,
        pipeline=PIPELINES[args.pipeline],
    )
    print(result["url"])


def cmd_predict(args: argparse.Namespace) -> None:
    """Ranked list for the next session."""
    import polars as pl

    from kabuflow.predict import predict

    table = predict(_config(args), args.model, args.date, args.out, args.run)
    with pl.Config(tbl_rows=30, tbl_cols=12, tbl_width_chars=160):
        print(table.head(30))


def cmd_bench(args: argparse.Namespace) -> None:
    """The performance suite."""
    from kabuflow.benchmarks.suite import run_suite

    run_suite(args.only, args.out)
