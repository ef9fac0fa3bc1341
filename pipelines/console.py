"""`kabuflow run`'s console: one line per task, a progress bar while folds train, the full KFP log in a file."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from kabuflow.telemetry import EVENT_MARK

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
FOLD_TASK = "train-fold"
STAGE_OF_TASK = {"evaluate-all": "evaluate"}  # task name -> the telemetry stage it runs, where they differ


@dataclass(frozen=True)
class Plan:
    """What the run will train, for the bar's denominator: ATFT folds x members x epochs."""

    atft_folds: int
    members: int
    epochs: int
    fold_tasks: int

    @property
    def units(self) -> int:
        return max(1, self.atft_folds * self.members * self.epochs)


def _fmt_count(e: dict, key: str = "rows_out") -> str:
    return f"{int(e[key]):,}"


def _figure_evaluate(e: dict) -> str:
    x = e["extra"]
    rank_ic = next((v for k, v in x.items() if k.endswith("_rank_ic")), None)
    share = next((v for k, v in x.items() if k.endswith("_oracle_share")), None)
    parts = [f"atft RankIC {rank_ic:+.4f}" if rank_ic is not None else ""]
    parts += [f"{share:.0%} of the oracle" if share is not None else ""]
    parts += ["gate: promote" if x.get("gate_promote") else "gate: keep the champion"]
    return ", ".join(p for p in parts if p)


# The key figure of each stage, from its `stage` event (kabuflow.telemetry.stage).
FIGURES: dict[str, Callable[[dict], str]] = {
    "ingest": lambda e: f"{_fmt_count(e)} rows",
    "features": lambda e: f"{int(e['extra']['features'])} features, {_fmt_count(e)} rows",
    "normalize": lambda e: f"{_fmt_count(e)} valid stock-days",
    "graph": lambda e: f"{e['extra']['edges_per_day']:,.0f} edges/day",
    "folds": lambda e: f"{int(e['rows_out'])} folds",
    FOLD_TASK: lambda e: f"test RankIC {e['extra']['test_rank_ic']:+.4f} at {e['horizon']}",
    "evaluate": _figure_evaluate,
}


def figure(stage: str, e: dict | None) -> str:
    """The stage's key figure, or '' when the event lacks it (a figure never fails a run)."""
    try:
        return FIGURES[stage](e) if e else ""
    except (KeyError, TypeError, ValueError):
        return ""


@dataclass
class _Fold:
    done: int = 0  # epochs finished, over all members
    started: float = 0.0
    member: int = 0
    epoch: int = 0


@dataclass
class _State:
    running: dict[str, float] = field(default_factory=dict)  # non-fold task -> start time
    stages: dict[str, dict] = field(default_factory=dict)  # last stage event per stage
    folds: dict[int, _Fold] = field(default_factory=dict)  # running ATFT folds
    units_done: int = 0  # epochs finished in ATFT folds that ended
    fold_tasks_done: int = 0
    first_epoch_at: float | None = None


class Console(io.TextIOBase):
    """Stands in for sys.stdout and sys.stderr while the KFP local runner runs.

    Everything written goes to `log` unchanged. `term` gets one line per finished task (name, seconds,
    key figure) and, below them, one status line: the running task, or while folds train a bar over the
    ATFT epochs with each running fold's member and epoch and an ETA. On a terminal the status line is
    rewritten in place; elsewhere (CI, a pipe) the bar is printed when the ATFT epochs first pass each
    of `marks` (0 %, 25 %, ... by default), so the console's length does not grow with the run's time.
    """

    def __init__(
        self,
        log: TextIO,
        term: TextIO,
        plan: Plan,
        tty: bool,
        marks: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log, self.term, self.plan, self.tty, self.marks, self.clock = log, term, plan, tty, marks, clock
        self.state = _State()
        self._buf = ""
        self._lock = threading.Lock()  # the runner prints from one thread per parallel task
        self._status = ""
        self._last_mark = -1
        self.lines_printed = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        with self._lock:
            self.log.write(s)
            self._buf += s
            *lines, self._buf = self._buf.split("\n")
            for line in lines:
                self._line(ANSI.sub("", line).strip())
        return len(s)

    def flush(self) -> None:
        self.log.flush()
        self.term.flush()

    def close_status(self) -> None:
        """End the live status line (before the final table is printed)."""
        if self.tty and self._status:
            self.term.write("\r\x1b[K")
        self._status = ""
        self.flush()

    # --- parsing -------------------------------------------------------------------------------------
    def _line(self, text: str) -> None:
        if (i := text.find(EVENT_MARK)) >= 0:
            try:
                event = json.loads(text[i + len(EVENT_MARK) :])
            except json.JSONDecodeError:
                return
            self._event(event)
        elif m := FINISHED.search(text):
            self._finished(m.group(1), m.group(2))
        elif m := STARTED.search(text):
            if m.group(1) != FOLD_TASK:
                self.state.running[m.group(1)] = self.clock()
            self._show_status()

    def _event(self, e: dict) -> None:
        st, now = self.state, self.clock()
        if e.get("kind") == "epoch" and e.get("model") == "atft":
            fold = st.folds.setdefault(int(e["fold"]), _Fold(started=now))
            fold.member, fold.epoch = int(e["member"]), int(e["epoch"])
            fold.done = int(e["member"]) * self.plan.epochs + int(e["epoch"])
            if int(e["epoch"]) > 0 and st.first_epoch_at is None:
                st.first_epoch_at = min(f.started for f in st.folds.values())
            self._show_status()
        elif e.get("kind") == "stage":
            st.stages[e["stage"]] = e
            if e["stage"] == FOLD_TASK and not e.get("failed"):
                if e.get("model") == "atft":
                    st.folds.pop(int(e.get("fold", -1)), None)
                    st.units_done += self.plan.members * self.plan.epochs
                name = f"{FOLD_TASK} {e.get('model')}/{e.get('fold')}"
                self._print(_row(name, float(e["seconds"]), figure(FOLD_TASK, e)))

    def _finished(self, task: str, status: str) -> None:
        st = self.state
        if task == FOLD_TASK:
            st.fold_tasks_done += 1
            if status != "SUCCESS":
                self._print(_row(task, None, f"{status}: see the log"))
            self._show_status()
            return
        started = st.running.pop(task, None)
        seconds = self.clock() - started if started is not None else None
        stage = STAGE_OF_TASK.get(task, task)
        text = figure(stage, st.stages.get(stage)) if status == "SUCCESS" else f"{status}: see the log"
        self._print(_row(task, seconds, text))

    # --- output --------------------------------------------------------------------------------------
    def _print(self, line: str) -> None:
        if self.tty and self._status:
            self.term.write("\r\x1b[K")
        self.term.write(line + "\n")
        self.lines_printed += 1
        if self.tty:  # redrawn from the state now: the line just printed may have ended what it showed
            self._status = self.status_text()
            self.term.write(self._status)
        self.term.flush()

    def _show_status(self) -> None:
        status = self.status_text()
        if self.tty:
            self._status = status
            self.term.write("\r\x1b[K" + status)
            self.term.flush()
        elif status and self.state.folds and (mark := int(self._fraction() * self.marks)) > self._last_mark:
            self._last_mark = mark
            self._print(status)

    def _done(self) -> int:
        return self.state.units_done + sum(f.done for f in self.state.folds.values())

    def _fraction(self) -> float:
        return min(1.0, self._done() / self.plan.units)

    def status_text(self) -> str:
        """'folds [####......] 40% 6/15 tasks | atft/0 m2/3 e1/4 | ETA 1 min 20 s', or the running task."""
        st, now = self.state, self.clock()
        if not st.folds and st.running:
            name, t0 = next(iter(st.running.items()))
            return f"  {name} ... {now - t0:.0f} s"
        if not st.folds:
            return ""
        done = self._done()
        frac = self._fraction()
        bar = "#" * round(20 * frac) + "." * (20 - round(20 * frac))
        running = " ".join(
            f"atft/{k} m{f.member + 1}/{self.plan.members} e{min(f.epoch + 1, self.plan.epochs)}/{self.plan.epochs}"
            for k, f in sorted(st.folds.items())
        )
        eta = ""
        if st.first_epoch_at is not None and done > 0:
            left = (now - st.first_epoch_at) / done * (self.plan.units - done)
            eta = f" | ETA {_duration(left)}"
        tasks = f"{st.fold_tasks_done}/{self.plan.fold_tasks} fold tasks"
        return f"  folds [{bar}] {frac:4.0%} {tasks} | {running}{eta}"


def _row(name: str, seconds: float | None, text: str) -> str:
    secs = f"{seconds:7.1f} s" if seconds is not None else " " * 9
    return f"  {name:<26}{secs}  {text}".rstrip()


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
