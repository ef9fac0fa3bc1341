"""hpo: Optuna (TPE + median pruning) over the search space in config, scored on validation RankIC only."""

from __future__ import annotations

import json
import socket
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from kabuflow.artifacts import stamp, write_json
from kabuflow.config import Config, SearchDim, field_type
from kabuflow.folds import FoldsLike, fold_days, read_fold, read_folds
from kabuflow.graph import Graph, as_graph
from kabuflow.normalize import Panel
from kabuflow.train import study as studies
from kabuflow.train.days import DayData, deterministic, resolve_device
from kabuflow.train.fold import fit_panel
from kabuflow.train.loop import fit_atft

METRIC = "validation RankIC (horizon-weighted mean of daily Spearman)"


def suggest(trial: optuna.Trial, cfg: Config) -> Config:
    """The trial's config: each key of cfg.hpo.space drawn by Optuna and set by dataclasses.replace."""
    return cfg.with_params({key: _draw(trial, key, dim) for key, dim in cfg.hpo.space.items()})


def _draw(trial: optuna.Trial, key: str, dim: SearchDim) -> Any:
    if dim.choices:
        return trial.suggest_categorical(key, list(dim.choices))
    if field_type(key)[2] is int:
        return trial.suggest_int(key, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_float(key, dim.low, dim.high, log=dim.log)


def _objective(cfg: Config, data: DayData, days: dict[str, np.ndarray], k: int) -> Any:
    def objective(trial: optuna.Trial) -> float:
        tcfg = suggest(trial, cfg).with_params({"train.epochs": cfg.hpo.epochs})

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
    worker: int = 0,
) -> dict[str, Any]:
    """Run `trials` more trials of the study `cfg.hpo.study` at `storage` ("" = SQLite in out), beside any
    other workers on the same study, and write out/hpo.json (see `summarise`). Tuning uses fold
    cfg.hpo.fold's train dates to fit and its validation dates to score; those must precede every
    fold's test dates, which are never loaded."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    url = studies.resolve_url(storage, out)
    p = fit_panel(cfg, panel)
    k = cfg.hpo.fold
    days = fold_days(read_fold(folds, k), p.dates)
    first_test = min(fold_days(f, p.dates)["test"][0] for f in read_folds(folds))
    if days["val"][-1] >= first_test:
        raise ValueError(f"hpo.fold={k}: its validation dates reach a test period; tune on an earlier fold")
    device = resolve_device(cfg.train.device)
    data = DayData(p, as_graph(graph, cfg.model.use_graph), int(days["val"][-1]), device)
    assert data.t_end < first_test, "HPO must never hold a test date"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = studies.load_study(cfg.hpo, url)
    # Workers of one study must not replay the same random start: the sampler's seed mixes in the
    # worker index, the pod (hostname) and the trials already there, and stays reproducible on one machine.
    host = zlib.crc32(socket.gethostname().encode())
    seed = cfg.train.seed + 7919 * len(study.trials) + 104729 * worker + host
    study.sampler = optuna.samplers.TPESampler(seed=seed % 2**32)
    with deterministic(device):
        study.optimize(_objective(cfg, data, days, k), n_trials=trials)
    result = summarise(cfg, study, url)
    write_json(out / "hpo.json", {**result, **stamp(cfg, stage="hpo")})
    return result


def summarise(cfg: Config, study: optuna.Study, url: str) -> dict[str, Any]:
    """hpo.json's content: the best trial's settings (`best_params`, typed, for `kabuflow run --hpo`)
    and value, and the trial counts; n_trials (complete + pruned) feeds the deflated Sharpe."""
    counts = studies.count(study)
    if counts["n_complete"] == 0:
        raise RuntimeError(f"study {cfg.hpo.study} at {studies.redact(url)} has no complete trial: {counts}")
    best = study.best_trial
    return {
        "study": cfg.hpo.study,
        "storage": studies.redact(url),
        "fold": cfg.hpo.fold,
        **counts,
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "metric": METRIC,
    }


def apply_best(cfg: Config, hpo: dict[str, Any]) -> Config:
    """`cfg` with hpo.json's best settings, and its trial count for evaluate's deflated Sharpe."""
    if "best_params" not in hpo or "n_trials" not in hpo:
        raise ValueError("hpo.json needs best_params and n_trials (written by kabuflow hpo / hpo-summary)")
    return cfg.with_params({**hpo["best_params"], "evaluate.hpo_trials": int(hpo["n_trials"])})


def read_best(uri: str | Path) -> dict[str, Any]:
    """hpo.json from a path, a directory holding it, or an s3:// / gs:// URI."""
    from kabuflow import storage

    uri = str(uri)
    if not uri.endswith(".json"):
        uri = storage.join(uri, "hpo.json")
    try:
        return json.loads(storage.read_bytes(uri))
    except json.JSONDecodeError as err:
        raise ValueError(f"{uri} is not valid JSON: {err}") from None
