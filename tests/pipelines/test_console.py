"""pipelines/console.py: the KFP stream goes to the log whole; the terminal gets task lines and a progress bar."""

import io
import json

from kabuflow.telemetry import EVENT_MARK
from pipelines.console import Console, Plan, figure

CYAN, GREEN, RESET = "\x1b[96m", "\x1b[92m", "\x1b[0m"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _kfp(event: str, task: str, status: str = "SUCCESS") -> str:
    name = f"{CYAN}'{task}'{RESET}"
    if event == "start":
        return f"11:04:01.869 - INFO - Executing task {name}\n"
    return f"11:04:08.316 - INFO - Task {name} finished with status {GREEN}{status}{RESET}\n"


def _event(kind: str, **fields) -> str:
    return f"    {EVENT_MARK}{json.dumps({'kind': kind, **fields})}\n"  # as the runner indents it


def _console(tty: bool, marks: int = 4):
    log, term, clock = io.StringIO(), io.StringIO(), Clock()
    plan = Plan(atft_folds=2, members=1, epochs=2, fold_tasks=4)
    return Console(log, term, plan, tty=tty, marks=marks, clock=clock), log, term, clock


def test_a_stage_prints_one_line_with_its_seconds_and_key_figure_and_the_log_keeps_everything():
    console, log, term, clock = _console(tty=False)
    stream = [
        _kfp("start", "graph"),
        "    [KFP Executor 2026-12-03 11:04:02,135 INFO]: Got executor_input:\n",
        _event("stage", stage="graph", seconds=9.4, rows_out=1880, extra={"edges_per_day": 94.0}),
    ]
    for chunk in stream:
        console.write(chunk)
    clock.t = 12.5
    console.write(_kfp("end", "graph")[:20])  # a line may arrive in pieces
    console.write(_kfp("end", "graph")[20:])
    assert term.getvalue() == "  graph                        12.5 s  94 edges/day\n"
    assert log.getvalue() == "".join(stream) + _kfp("end", "graph")


def test_folds_report_their_own_lines_and_a_bar_with_member_epoch_and_eta():
    console, _, term, clock = _console(tty=False)
    console.write(_kfp("start", "train-fold") + _kfp("start", "train-fold"))
    console.write(_event("epoch", model="atft", fold=0, member=0, members=1, epoch=0))
    clock.t = 10.0
    console.write(_event("epoch", model="atft", fold=0, member=0, members=1, epoch=1))
    # 1 of 4 epochs in 10 s: 30 s to go.
    assert console.status_text() == (
        "  folds [#####...............]  25% 0/4 fold tasks | atft/0 m1/1 e2/2 | ETA 30 s"
    )
    clock.t = 20.0
    done = {"fold": "0", "model": "atft", "horizon": "5d", "extra": {"test_rank_ic": 0.0521}}
    console.write(_event("stage", stage="train-fold", seconds=19.96, rows_out=10, **done))
    console.write(_kfp("end", "train-fold"))
    lines = term.getvalue().splitlines()
    assert lines[-1] == "  train-fold atft/0            20.0 s  test RankIC +0.0521 at 5d"
    assert console.state.units_done == 2 and console.state.fold_tasks_done == 1
    # In a pipe the bar is printed as the epochs pass 0 % and 25 % (of 4: one line per epoch here).
    assert lines[:-1] == [
        "  folds [....................]   0% 0/4 fold tasks | atft/0 m1/1 e1/2",
        "  folds [#####...............]  25% 0/4 fold tasks | atft/0 m1/1 e2/2 | ETA 30 s",
    ]


def test_on_a_terminal_the_status_line_is_rewritten_in_place():
    console, _, term, clock = _console(tty=True)
    console.write(_kfp("start", "ingest"))
    clock.t = 3.0
    console.write(_event("stage", stage="ingest", seconds=2.9, rows_out=22827, extra={}))
    console.write(_kfp("end", "ingest"))
    console.close_status()
    out = term.getvalue()
    assert out.count("\n") == 1  # one finished task, one line; the status line never added one
    assert "\r\x1b[K  ingest ... 0 s" in out
    assert out.endswith("\r\x1b[K  ingest                        3.0 s  22,827 rows\n")  # no stale status


def test_a_failed_task_says_so_and_points_to_the_log():
    console, _, term, _ = _console(tty=False)
    console.write(_kfp("start", "normalize") + _kfp("end", "normalize", status="FAILURE"))
    assert term.getvalue() == "  normalize                     0.0 s  FAILURE: see the log\n"


def test_figures_of_each_stage():
    assert figure("features", {"rows_out": 16854, "extra": {"features": 126}}) == "126 features, 16,854 rows"
    ev = {"extra": {"atft_5d_rank_ic": 0.0729, "atft_5d_oracle_share": 0.71, "gate_promote": 1.0}}
    assert figure("evaluate", ev) == "atft RankIC +0.0729, 71% of the oracle, gate: promote"
    assert figure("graph", {"extra": {}}) == ""  # a missing number never fails the run
    assert figure("promote", None) == ""
