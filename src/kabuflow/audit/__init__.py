"""`kabuflow audit`: rerun the stages on the data cut after D and prove that nothing dated <= D moved."""

from __future__ import annotations

import contextlib
import datetime as dt
import resource
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kabuflow import artifacts
from kabuflow.audit.arrays import compare_graph, compare_panel
from kabuflow.audit.compare import compare_features, result
from kabuflow.audit.truncate import truncate
from kabuflow.config import Config, ConfigError
from kabuflow.features import features
from kabuflow.graph import graph
from kabuflow.ingest import read_source, write_raw
from kabuflow.normalize import load_panel, normalize
from kabuflow.sources import SourceResult

STAGES = ("ingest", "features", "normalize", "graph")


class Cost:
    """Wall and CPU seconds per (run, stage): what the audit costs on top of one pipeline run."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def __call__(self, run: str, stage: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.rows.append(
            {
                "run": run,
                "stage": stage,
                "seconds": round(time.perf_counter() - wall, 2),
                "cpu_seconds": round(time.process_time() - cpu, 2),
            }
        )

    def summary(self) -> dict[str, Any]:
        """Totals and the peak resident memory of this process (Linux reports KiB)."""
        return {
            "stages": self.rows,
            "seconds": round(sum(r["seconds"] for r in self.rows), 1),
            "cpu_seconds": round(sum(r["cpu_seconds"] for r in self.rows), 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        }


def resolve_cuts(cuts: tuple[str, ...], dates: list[dt.date]) -> list[dt.date]:
    """The cut sessions: each given date rolled back to the last session with data on or before it
    (strictly inside the data, or nothing after it would be cut), or three spread over the range."""
    if not cuts:
        return sorted({dates[len(dates) * k // 4] for k in (1, 2, 3)})
    out = []
    for text in cuts:
        try:
            d = dt.date.fromisoformat(str(text))
        except ValueError:
            raise ConfigError(f"audit cut {text!r} is not an ISO date (YYYY-MM-DD)") from None
        before = [x for x in dates if x <= d]
        if not before or before[-1] >= dates[-1]:
            raise ConfigError(
                f"audit cut {d} is outside the data's sessions {dates[0]}..{dates[-1]} (exclusive end)"
            )
        out.append(before[-1])
    return sorted(set(out))


def _stages(cfg: Config, root: Path, cost: Cost, run: str) -> None:
    """features -> normalize -> graph over root/raw: the pipeline's own stage functions."""
    with cost(run, "features"):
        features(cfg, root / "raw", root / "features")
    with cost(run, "normalize"):
        normalize(cfg, root / "features", root / "panel")
    with cost(run, "graph"):
        graph(cfg, root / "panel", root / "graph")


def _compare(full: Path, cut_root: Path, d: dt.date, cost: Cost) -> list[dict[str, Any]]:
    """The three stage verdicts for one cut."""
    out = []
    for stage, run in (
        ("features", lambda: compare_features(full / "features", cut_root / "features", d)),
        ("panel", lambda: compare_panel(full / "panel", cut_root / "panel", d)),
        (
            "graph",
            lambda: compare_graph(full / "graph", cut_root / "graph", full / "panel", cut_root / "panel", d),
        ),
    ):
        t0 = time.perf_counter()
        with cost(f"cut {d}", f"compare {stage}"):
            tallies = run()
        out.append(result(stage, d, tallies, time.perf_counter() - t0))
    return out


def _cut(cfg: Config, full: Path, work: Path, d: dt.date, tables: dict, cost: Cost) -> dict[str, Any]:
    """Truncate the raw tables after D, write them through ingest's checks, run the stages on them."""
    root = work / f"cut-{d}"
    cut_tables, notes = truncate(tables["raw"], d)
    cut_extra, _ = truncate(tables["extra"], d)
    with cost(f"cut {d}", "ingest"):
        write_raw(cfg, SourceResult(tables=cut_tables, extra=cut_extra), root / "raw")
    _stages(cfg, root, cost, f"cut {d}")
    return notes


def _scores(scores: Any, root: Path, d: dt.date, first: bool, cost: Cost) -> dict[str, Any]:
    """The scores verdict for one cut; at the first (earliest) cut the ATFT fold is trained first."""
    if first:
        with cost(f"cut {d}", "train"):
            scores.train(root)
    t0 = time.perf_counter()
    with cost(f"cut {d}", "compare scores"):
        tallies = scores.compare(root, d)
    return result("scores", d, tallies, time.perf_counter() - t0)


def audit(cfg: Config, out: str | Path, work: str | Path | None = None) -> dict[str, Any]:
    """Full run once, then per cut D: truncate every raw table, rerun the stages, compare dates <= D;
    the models' scores likewise, and the statistical check on the full run's out-of-sample scores.

    Writes out/audit.json and out/audit.html; returns the report. `passed` is False when any value moved.
    The stage outputs go under `work` (default out/work): the full run's stay, each cut's are removed.
    """
    from kabuflow.audit.report import write_report
    from kabuflow.audit.scores import Scores

    out = Path(out)
    work, cost = Path(work) if work else out / "work", Cost()
    full = work / "full"
    with cost("full", "ingest"):
        # The source's own tables, before ingest's checks and repairs: those run again on every cut, so a
        # repair that reads later bars (e.g. a bad print told by the days after it) shows as moved values.
        cfg, source = read_source(cfg, full / "raw")
        write_raw(cfg, source, full / "raw")
    _stages(cfg, full, cost, "full")
    tables = {"raw": source.tables, "extra": dict(source.extra)}
    dates = load_panel(full / "panel").dates
    cuts = resolve_cuts(cfg.audit.cuts, dates)
    stages, notes, scores = [], {}, Scores(cfg, full, work / "models")
    if scores.models:
        scores.plan(cuts[0])
    for i, d in enumerate(cuts):
        notes[d.isoformat()] = _cut(cfg, full, work, d, tables, cost)
        stages += _compare(full, work / f"cut-{d}", d, cost)
        if scores.models:
            stages.append(_scores(scores, work / f"cut-{d}", d, i == 0, cost))
        if not cfg.audit.keep:
            shutil.rmtree(work / f"cut-{d}", ignore_errors=True)
    report = {
        "passed": all(s["moved"] == 0 for s in stages),
        "source": cfg.data.source,
        "start": dates[0].isoformat(),
        "end": dates[-1].isoformat(),
        "cuts": [d.isoformat() for d in cuts],
        "truncation": notes,
        "stages": stages,
        "lookahead": scores.lookahead(cfg.evaluate.leak_rank_ic_1d, cfg.evaluate.lookahead_min_margin)
        if scores.models
        else {},
        "cost": cost.summary(),
        **artifacts.stamp(cfg, stage="audit"),
    }
    write_report(report, out, cfg.audit.worst)
    return report
