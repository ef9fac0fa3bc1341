"""hpo: Optuna (TPE + median pruning) over ATFT-GAT-FAN's main knobs, scored on validation RankIC only."""

from __future__ import annotations

import socket
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from kabuflow.artifacts import stamp, write_json
from kabuflow.config import Config
from kabuflow.folds import FoldsLike, fold_days, read_fold, read_folds
from kabuflow.graph import Graph, as_graph
from kabuflow.normalize import Panel, as_panel
from kabuflow.redact import text as redact  # the one redaction every artifact and log line gets
from kabuflow.train.days import DayData, deterministic, resolve_device
from kabuflow.train.loop import fit_atft
from kabuflow.train.targets import with_target


def suggest(trial: optuna.Trial, cfg: Config) -> list[str]:
    """The trial's `section.key=value` overrides. Width choices scale with the profile's hidden size."""
    h = cfg.model.hidden
    hidden = trial.suggest_categorical("model.hidden", [max(16, h // 2), h, 2 * h])
    return [
        f"model.hidden={hidden}",
        f"model.dropout={trial.suggest_float('model.dropout', 0.0, 0.3)}",
        f"model.input_norm={trial.suggest_categorical('model.input_norm', ['fan', 'san', 'none'])}",
        f"model.gat_layers={trial.suggest_int('model.gat_layers', 1, 3)}",
        f"train.lr={trial.suggest_float('train.lr', 3e-4, 5e-3, log=True)}",
        f"train.weight_decay={trial.suggest_float('train.weight_decay', 1e-6, 1e-2, log=True)}",
        f"train.rank_weight={trial.suggest_float('train.rank_weight', 0.0, 2.0)}",
    ]


def _objective(cfg: Config, data: DayData, days: dict[str, np.ndarray], k: int) -> Any:
    def objective(trial: optuna.Trial) -> float:
        tcfg = cfg.with_overrides([*suggest(trial, cfg), f"train.epochs={cfg.hpo.epochs}"])

        def report(epoch: int, score: float) -> None:
            trial.report(score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: validation RankIC {score:.4f} below the median")

        res = fit_atft(tcfg, data, days, None, fold=k, on_epoch_end=report)
        return float(res.best_score)

    return objective


def run_hpo(
    cfg: Config,
    panel: Panel | str | Path,
    graph: Graph | str | Path | None,
    folds: FoldsLike,
    trials: int,
    storage: str,
    out: str | Path,
) -> dict[str, Any]:
    """Run `trials` more trials of the study `cfg.hpo.study` at `storage` ("" = SQLite in out) and write
    out/hpo.json: best params (also as --set overrides), best value, and the study's trial count for the
    deflated Sharpe. Tuning uses fold cfg.hpo.fold's train dates to fit and its validation dates to
    score; those must precede every fold's test dates, which are never loaded."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'optuna.db').resolve()}"
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    p = with_target(as_panel(panel), cfg.train.target, cfg.normalize.clip)  # as train-fold fits
    k = cfg.hpo.fold
    days = fold_days(read_fold(folds, k), p.dates)
    first_test = min(fold_days(f, p.dates)["test"][0] for f in read_folds(folds))
    if days["val"][-1] >= first_test:
        raise ValueError(f"hpo.fold={k}: its validation dates reach a test period; tune on an earlier fold")
    device = resolve_device(cfg.train.device)
    data = DayData(p, as_graph(graph, cfg.model.use_graph), int(days["val"][-1]), device)
    assert data.t_end < first_test, "HPO must never hold a test date"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=cfg.hpo.study,
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=cfg.hpo.startup_trials, n_warmup_steps=1),
    )
    # A continued or shared study must not replay the same random start: the sampler's seed mixes in
    # the trials already there and the pod (hostname), and stays reproducible on one machine.
    seed = cfg.train.seed + 7919 * len(study.trials) + zlib.crc32(socket.gethostname().encode())
    study.sampler = optuna.samplers.TPESampler(seed=seed % 2**32)
    with deterministic(device):
        study.optimize(_objective(cfg, data, days, k), n_trials=trials)
    states = [t.state for t in study.trials]
    done = optuna.trial.TrialState
    result = {
        "study": cfg.hpo.study,
        "storage": redact(storage),
        "fold": k,
        "n_trials": sum(s in (done.COMPLETE, done.PRUNED) for s in states),  # every configuration tried
        "n_complete": states.count(done.COMPLETE),
        "n_pruned": states.count(done.PRUNED),
        "best_value": study.best_value,
        "best_params": study.best_params,
        "best_overrides": [f"{key}={value}" for key, value in study.best_params.items()],
        "metric": "validation RankIC (horizon-weighted mean of daily Spearman)",
    }
    write_json(out / "hpo.json", {**result, **stamp(cfg, stage="hpo")})
    return result
