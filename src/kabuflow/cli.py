"""`kabuflow <command>`: thin shells over the stage functions; a failure exits non-zero with one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import typing
from collections.abc import Callable

from kabuflow.commands import (
    PIPELINES,
    cmd_ablate,
    cmd_audit,
    cmd_bench,
    cmd_compile,
    cmd_evaluate,
    cmd_hpo,
    cmd_hpo_summary,
    cmd_ingest,
    cmd_predict,
    cmd_run,
    cmd_submit,
    cmd_train_fold,
    stage_command,
)
from kabuflow.config import ModelName, Source


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", default="local", help="local | a100 | path to a YAML profile")
    common.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="type-checked override")
    p = argparse.ArgumentParser(prog="kabuflow", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], None], *flags: tuple) -> None:
        sp = sub.add_parser(name, parents=[common], help=func.__doc__)
        for names, kw in flags:
            sp.add_argument(*names, **kw)
        sp.set_defaults(func=func)

    src = [
        (("--source",), {"choices": list(typing.get_args(Source))}),
        (("--path",), {"help": "directory for --source files"}),
        (("--start",), {}),
        (("--end",), {}),
    ]
    req = {"required": True}
    which = (("--pipeline",), {"choices": list(PIPELINES), "default": "kabuflow"})
    add(
        "run",
        cmd_run,
        *src,
        (("--out",), {"default": "runs/local"}),
        (("--runner",), {"choices": ["subprocess", "docker"], "default": "subprocess"}),
        (("--image",), {"default": "", "help": "--runner docker: default localhost/kabuflow:cpu-<sha>"}),
        (("--verbose",), {"action": "store_true", "help": "stream the KFP runner's full log"}),
        (("--pipeline",), {"choices": ["kabuflow", "hpo"], "default": "kabuflow"}),  # audit: `kabuflow audit`
        (("--hpo",), {"metavar": "PATH|URI", "help": "hpo.json whose best settings and trial count to use"}),
    )
    add("ingest", cmd_ingest, *src, (("--out",), req))
    cut = {"action": "append", "metavar": "D", "help": "cut date (repeatable); default: 3 over the range"}
    add("audit", cmd_audit, *src, (("--cut",), cut), (("--out",), {"default": "runs/audit"}))
    add(
        "features",
        stage_command("kabuflow.features", "features", "raw"),
        (("--raw",), req),
        (("--out",), req),
    )
    add(
        "normalize",
        stage_command("kabuflow.normalize", "normalize", "features"),
        (("--features",), req),
        (("--out",), req),
    )
    add("graph", stage_command("kabuflow.graph", "graph", "panel"), (("--panel",), req), (("--out",), req))
    add(
        "folds",
        stage_command("kabuflow.folds", "build_folds", "panel"),
        (("--panel",), req),
        (("--out",), req),
    )
    trainer = [(("--panel",), req), (("--graph",), req), (("--folds",), req)]
    add(
        "train-fold",
        cmd_train_fold,
        *trainer,
        (("--fold",), {"type": int, "required": True}),
        (
            ("--model",),
            {
                "required": True,
                "choices": list(typing.get_args(ModelName)),
            },
        ),
        (("--out",), req),
    )
    add(
        "ablate",
        cmd_ablate,
        *trainer,
        (("--seeds",), {"type": int, "default": 3}),
        (("--variants",), {"help": "comma-separated subset (default: all); configured always runs"}),
        (("--out",), {"default": "runs/ablate"}),
    )
    add(
        "evaluate",
        cmd_evaluate,
        (("--predictions",), {"nargs": "+", "required": True}),
        (("--raw",), {"help": "raw dir (oracle.parquet on synthetic data, manifests)"}),
        (("--out",), req),
    )
    add(
        "hpo",
        cmd_hpo,
        *trainer,
        (("--trials",), {"type": int, "required": True}),
        (
            ("--storage",),
            {"help": "sqlite:///... or postgresql://user@host/db (password: $KABUFLOW_HPO_DB_PASSWORD)"},
        ),
        (("--worker",), {"type": int, "default": 0, "help": "this worker's index: seeds its sampler apart"}),
        (("--out",), {"default": "runs/hpo"}),
    )
    add(
        "hpo-summary",
        cmd_hpo_summary,
        (("--storage",), {"help": "the study's storage URL (default hpo.storage)"}),
        (("--out",), req),
    )
    add(
        "compile",
        cmd_compile,
        (("--image",), req),
        (("--out",), {"help": "default pipeline[-hpo].yaml"}),
        which,
    )
    add(
        "submit",
        cmd_submit,
        (("--host",), req),
        (("--experiment",), {"default": "kabuflow"}),
        (("--recurring",), {"metavar": "CRON", "help": "6-field KFP cron, e.g. '0 0 3 * * *'"}),
        (("--package",), {"help": "default pipeline[-hpo].yaml"}),
        which,
    )
    add(
        "predict",
        cmd_predict,
        (("--model",), req),
        (("--date",), req),
        (("--run",), {"default": "runs/local", "help": "run directory holding panel/, graph/, raw/"}),
        (("--out",), {"default": "", "help": "where the ranking parquet goes (default RUN/predict)"}),
    )
    add("bench", cmd_bench, (("--only",), {"nargs": "*", "default": []}), (("--out",), {"default": ".bench"}))
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one command; any error becomes a one-line message and exit status 1."""
    from kabuflow import redact

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    redact.install_log_filter()
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("kabuflow: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI's contract: one line, non-zero status
        if os.environ.get("KABUFLOW_DEBUG"):
            raise
        # redact: an exception may carry a URL password or a header value (an API key with a CR/LF)
        line = " ".join(redact.text(f"{type(err).__name__}: {err}").split())
        print(f"kabuflow {args.command}: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
