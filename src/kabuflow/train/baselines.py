"""Baselines behind the train-fold interface: LightGBM, ridge, and the zero-parameter factors
reversal_5d / momentum_60d / low_vol_60d."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import torch
from scipy.stats import rankdata

from kabuflow.artifacts import atomic_write, write_json
from kabuflow.config import Config
from kabuflow.normalize import Panel
from kabuflow.train.predictions import prediction_table
from kabuflow.train.rank_ic import DailyRankIC, pick_round

BASELINES = ("lightgbm", "ridge", "reversal_5d", "momentum_60d", "low_vol_60d")
# factor -> (feature it reads, sign of the score, window it should have). low_vol_60d is the low-risk
# anomaly: on jpx-2463 -vol_60d alone scores a test RankIC of 0.056 at 5d and 0.091 at 20d (issue #12).
FACTORS = {
    "reversal_5d": ("ret_5d", -1.0, 5),
    "momentum_60d": ("ret_60d", 1.0, 60),
    "low_vol_60d": ("vol_60d", -1.0, 60),
}
CHUNK = 65_536  # rows per block when reading X for a design matrix
OBJECTIVES = {"l2": "regression", "l1": "quantile", "lambdarank": "lambdarank"}


def valid_rows(panel: Panel, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(t, s) of every valid stock-day on `days`: the rows a model is fitted on or scores."""
    di, s = np.nonzero(np.asarray(panel.valid[days]))
    return days[di].astype(np.int64), s.astype(np.int64)


def design(panel: Panel, t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Feature rows X[t, s] as float32 [R, F], read in blocks from the (memory-mapped) panel."""
    out = np.empty((len(t), panel.X.shape[2]), dtype=np.float32)
    for i in range(0, len(t), CHUNK):
        out[i : i + CHUNK] = panel.X[t[i : i + CHUNK], s[i : i + CHUNK]]
    return out


def factor_feature(feature_names: list[str], factor: str) -> tuple[str, str]:
    """The feature a factor reads, and a note when the exact one is missing and the nearest window of
    the same family (ret_<w>d, vol_<w>d) stands in."""
    name, _, window = FACTORS[factor]
    if name in feature_names:
        return name, ""
    family = name.split("_")[0]
    pattern = rf"{family}_(\d+)d"
    windows = {int(m.group(1)): f for f in feature_names if (m := re.fullmatch(pattern, f))}
    if not windows:
        raise ValueError(f"{factor} needs a {family}_<w>d feature (ideally {name}); the panel has none")
    best = min(windows, key=lambda w: abs(w - window))
    return windows[
        best
    ], f"{name} is not among the panel's features; the nearest window {windows[best]} stands in"


def _factor(panel: Panel, days: dict[str, np.ndarray], factor: str, out: Path) -> tuple[dict, dict]:
    """Score = sign x one feature; nothing is fitted, so train dates are not read at all."""
    feature, note = factor_feature(panel.feature_names, factor)
    j, sign = panel.feature_names.index(feature), FACTORS[factor][1]
    preds = {}
    for split in ("val", "test"):
        t, s = valid_rows(panel, days[split])
        x = np.asarray(panel.X[t, s, j], dtype=np.float64)  # [R]
        preds[split] = {"t": t, "s": s, "score": np.repeat(sign * x[:, None], len(panel.horizons), 1)}
    info = {"feature": feature, "sign": sign, "note": note}
    write_json(out / "factor.json", info)
    return preds, info


def _gram(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, float]:
    """Centred X'X and X'y in float64, accumulated block by block with torch (no float64 copy of X;
    torch's CPU GEMM is several times faster than the BLAS numpy ships here for X'X)."""
    mean_x, mean_y = x.mean(0, dtype=np.float64), float(y.mean())
    gram = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    xty = torch.zeros(x.shape[1], dtype=torch.float64)
    for i in range(0, len(x), CHUNK):
        xc = torch.from_numpy(x[i : i + CHUNK].astype(np.float64) - mean_x)  # [B, F]
        gram += xc.T @ xc
        xty += xc.T @ torch.from_numpy(y[i : i + CHUNK] - mean_y)
    return gram, xty, mean_x, mean_y


def _solve(
    normal: tuple[torch.Tensor, torch.Tensor, np.ndarray, float], alpha: float
) -> tuple[np.ndarray, float]:
    gram, xty, mean_x, mean_y = normal
    beta = torch.linalg.solve(gram + alpha * torch.eye(len(gram), dtype=torch.float64), xty).numpy()
    return beta, mean_y - float(mean_x @ beta)


def _fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Closed-form ridge with an unpenalised intercept: beta = (Xc'Xc + alpha I)^-1 Xc'yc, in float64."""
    return _solve(_gram(x, y), alpha)


def _ridge(cfg: Config, panel: Panel, days: dict[str, np.ndarray], out: Path) -> tuple[dict, dict]:
    """One ridge per horizon on the train dates' target; the penalty (per row, times the row count) is
    the one of ridge.penalties with the best validation mean daily RankIC, scored on the raw label."""
    if not cfg.ridge.penalties or min(cfg.ridge.penalties) < 0:
        raise ValueError(f"ridge.penalties must be non-negative numbers, got {cfg.ridge.penalties}")
    t, s = valid_rows(panel, days["train"])
    x, y = design(panel, t, s), np.asarray(panel.Y[t, s], dtype=np.float64)  # [R, F], [R, H]
    rows = {split: valid_rows(panel, days[split]) for split in ("val", "test")}
    xs = {split: design(panel, *rows[split]).astype(np.float64) for split in rows}
    y_val = np.asarray(panel.Y_raw[rows["val"]], dtype=np.float64)
    coefs = []
    for h in range(y.shape[1]):
        ok = np.isfinite(y[:, h])
        normal, metric = _gram(x[ok], y[ok, h]), DailyRankIC(rows["val"][0], y_val[:, h])
        fits = [(p, *_solve(normal, p * int(ok.sum()))) for p in cfg.ridge.penalties]
        val_ic = [metric(xs["val"] @ beta + b0) for _, beta, b0 in fits]
        k = int(np.nanargmax(val_ic)) if np.isfinite(val_ic).any() else 0
        coefs.append(
            {
                "horizon": panel.horizons[h],
                "penalty": fits[k][0],
                "val_rank_ic": val_ic,
                "intercept": fits[k][2],
                "coef": fits[k][1].tolist(),
                "n_rows": int(ok.sum()),
            }
        )
    preds = {}
    for split in rows:
        # A row-by-row product (einsum's own loop, not BLAS): a row's score must not depend on how many
        # rows are scored with it, or the audit's panels cut after D would round differently.
        score = np.stack(
            [np.einsum("rf,f->r", xs[split], np.asarray(c["coef"])) + c["intercept"] for c in coefs], 1
        )  # [R, H]
        preds[split] = {"t": rows[split][0], "s": rows[split][1], "score": score}
    write_json(
        out / "ridge.json",
        {"feature_names": panel.feature_names, "penalties": list(cfg.ridge.penalties), "horizons": coefs},
    )
    return preds, {"n_train_rows": [c["n_rows"] for c in coefs], "penalty": [c["penalty"] for c in coefs]}


def _lgb_params(cfg: Config) -> dict[str, Any]:
    c = cfg.lightgbm
    if c.objective not in OBJECTIVES:
        raise ValueError(f"lightgbm.objective must be one of {', '.join(OBJECTIVES)}, got {c.objective!r}")
    extra: dict[str, Any] = {
        "l1": {"alpha": 0.5},
        "lambdarank": {"label_gain": list(range(c.lambdarank_bins))},
    }
    return {
        "objective": OBJECTIVES[c.objective],
        **extra.get(c.objective, {}),
        "metric": "None",  # the validation metric is the RankIC feval
        "learning_rate": c.learning_rate,
        "num_leaves": c.num_leaves,
        "min_data_in_leaf": c.min_child_samples,
        "feature_fraction": c.feature_fraction,
        "bagging_fraction": c.bagging_fraction,
        "bagging_freq": 1,
        "seed": cfg.train.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": cfg.train.threads,
        "verbose": -1,
    }


def _lgb_rows(cfg: Config, panel: Panel, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Train stock-days of a seeded sample of whole train dates holding at most lightgbm.max_train_rows
    rows: a kept date is a full cross-section, as the model is scored, and per-date groups stay whole."""
    t, s = valid_rows(panel, days)
    cap = cfg.lightgbm.max_train_rows
    if len(t) <= cap:
        return t, s
    counts = np.asarray(panel.valid[days]).sum(1)
    order = np.random.default_rng(cfg.train.seed).permutation(len(days))
    keep = order[np.cumsum(counts[order]) <= cap]
    mask = np.isin(t, days[keep if keep.size else order[:1]])
    return t[mask], s[mask]


def relevance(y: np.ndarray, t: np.ndarray, bins: int) -> np.ndarray:
    """lambdarank labels: each row's per-date quantile bin of y, 0 (lowest) .. bins - 1, int32."""
    pct = np.empty(len(y))
    for d in np.unique(t):
        on = t == d
        pct[on] = (rankdata(y[on]) - 0.5) / on.sum()
    return np.minimum((pct * bins).astype(np.int32), bins - 1)


class _StopOnRankIC:
    """LightGBM callback: records the RankIC feval each round and stops as pick_round says."""

    order = 30

    def __init__(self, min_rounds: int, patience: int) -> None:
        self.min_rounds, self.patience, self.scores = min_rounds, patience, []

    def __call__(self, env: Any) -> None:
        self.scores.append(float(env.evaluation_result_list[0][2]))
        best, stop = pick_round(self.scores, self.min_rounds, self.patience)
        if stop:
            raise lgb.callback.EarlyStopException(best - 1, [env.evaluation_result_list[0]])


def _boost(
    cfg: Config, params: dict, train: lgb.Dataset, metric: DailyRankIC, x_val: np.ndarray
) -> tuple[lgb.Booster, int, list[float]]:
    """Train one booster; with early stopping on, the rounds kept are pick_round's best on validation."""
    c = cfg.lightgbm
    if c.early_stopping_rounds <= 0:
        return lgb.train(params, train, c.n_estimators), c.n_estimators, []
    valid = lgb.Dataset(x_val, label=np.zeros(len(x_val)), reference=train)
    stop = _StopOnRankIC(c.min_rounds, c.early_stopping_rounds)
    booster = lgb.train(
        params,
        train,
        c.n_estimators,
        valid_sets=[valid],
        callbacks=[stop],
        feval=lambda pred, _: ("rank_ic", metric(pred), True),
    )
    return booster, pick_round(stop.scores, c.min_rounds, c.early_stopping_rounds)[0], stop.scores


def _lightgbm(cfg: Config, panel: Panel, days: dict[str, np.ndarray], out: Path) -> tuple[dict, dict]:
    """One booster per horizon on the target of (date-sampled) train stock-days; validation mean daily
    RankIC on the raw label picks the number of rounds (lightgbm.min_rounds at least). The feature bins
    are computed once, from the train rows, and each horizon trains on a subset of that binned Dataset
    (the rows with a label): binning is most of LightGBM's cost at this size."""
    t, s = _lgb_rows(cfg, panel, days["train"])
    y = np.asarray(panel.Y[t, s], dtype=np.float64)
    params = _lgb_params(cfg)
    base = lgb.Dataset(
        design(panel, t, s), feature_name=panel.feature_names, params=params, free_raw_data=False
    )
    rows = {split: valid_rows(panel, days[split]) for split in ("val", "test")}
    xs = {split: design(panel, *rows[split]) for split in rows}
    y_val = np.asarray(panel.Y_raw[rows["val"]], dtype=np.float64)
    scores: dict[str, list[np.ndarray]] = {"val": [], "test": []}
    best, curves = [], []
    for h, horizon in enumerate(panel.horizons):
        ok = np.flatnonzero(np.isfinite(y[:, h]))
        train = base.subset(ok).construct()  # a label set before construct() is dropped by lightgbm
        if cfg.lightgbm.objective == "lambdarank":
            train.set_label(relevance(y[ok, h], t[ok], cfg.lightgbm.lambdarank_bins))
            train.set_group(np.unique(t[ok], return_counts=True)[1])  # rows are sorted by date
        else:
            train.set_label(y[ok, h])
        metric = DailyRankIC(rows["val"][0], y_val[:, h])
        booster, it, curve = _boost(cfg, params, train, metric, xs["val"])
        best.append(int(it))
        curves.append(curve)
        for split in scores:
            scores[split].append(booster.predict(xs[split], num_iteration=it))
        text = booster.model_to_string(num_iteration=it)
        atomic_write(out / f"lightgbm_{horizon}d.txt", lambda p, text=text: p.write_text(text))
    preds = {
        split: {"t": rows[split][0], "s": rows[split][1], "score": np.stack(scores[split], 1)}
        for split in scores
    }
    info = {"best_iteration": best, "n_train_rows": int(len(t)), "n_train_days": int(len(np.unique(t)))}
    return preds, {**info, "val_rank_ic_by_round": curves}


def run_baseline(
    cfg: Config, panel: Panel, days: dict[str, np.ndarray], model: str, fold: int, out: Path
) -> tuple[pl.DataFrame, dict]:
    """Fit (on train dates only) and score the fold's val and test dates; returns (predictions, info)."""
    if model == "lightgbm":
        preds, info = _lightgbm(cfg, panel, days, out)
    elif model == "ridge":
        preds, info = _ridge(cfg, panel, days, out)
    elif model in FACTORS:
        preds, info = _factor(panel, days, model, out)
    else:
        raise ValueError(f"unknown baseline {model!r} (known: {', '.join(BASELINES)})")
    tables = [prediction_table(panel, model, fold, split, preds[split]) for split in ("val", "test")]
    return pl.concat(tables).sort("code", "date", "horizon"), info
