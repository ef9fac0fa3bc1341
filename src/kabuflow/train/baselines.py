"""Baselines behind the train-fold interface: LightGBM, ridge, and the zero-parameter factors reversal_5d / momentum_60d."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import torch

from kabuflow.artifacts import atomic_write, write_json
from kabuflow.config import Config
from kabuflow.normalize import Panel
from kabuflow.train.predictions import prediction_table

BASELINES = ("lightgbm", "ridge", "reversal_5d", "momentum_60d")
# factor -> (feature it reads, sign of the score, window it should have)
FACTORS = {"reversal_5d": ("ret_5d", -1.0, 5), "momentum_60d": ("ret_60d", 1.0, 60)}
CHUNK = 65_536  # rows per block when reading X for a design matrix


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
    """The feature a factor reads, and a note when the exact one is missing and the nearest ret_<w>d stands in."""
    name, _, window = FACTORS[factor]
    if name in feature_names:
        return name, ""
    windows = {int(m.group(1)): f for f in feature_names if (m := re.fullmatch(r"ret_(\d+)d", f))}
    if not windows:
        raise ValueError(f"{factor} needs a ret_<w>d feature (ideally {name}); the panel has none")
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


def _fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Closed-form ridge with an unpenalised intercept: beta = (Xc'Xc + alpha I)^-1 Xc'yc, in float64.

    The Gram matrix is accumulated block by block with torch (no float64 copy of X; torch's CPU GEMM is
    several times faster than the BLAS numpy ships here for X'X).
    """
    mean_x, mean_y = x.mean(0, dtype=np.float64), float(y.mean())
    gram = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    xty = torch.zeros(x.shape[1], dtype=torch.float64)
    for i in range(0, len(x), CHUNK):
        xc = torch.from_numpy(x[i : i + CHUNK].astype(np.float64) - mean_x)  # [B, F]
        gram += xc.T @ xc
        xty += xc.T @ torch.from_numpy(y[i : i + CHUNK] - mean_y)
    beta = torch.linalg.solve(gram + alpha * torch.eye(len(gram), dtype=torch.float64), xty).numpy()
    return beta, mean_y - float(mean_x @ beta)


def _ridge(cfg: Config, panel: Panel, days: dict[str, np.ndarray], out: Path) -> tuple[dict, dict]:
    """One ridge per horizon on the standardised labels of train dates only."""
    t, s = valid_rows(panel, days["train"])
    x, y = design(panel, t, s), np.asarray(panel.Y[t, s], dtype=np.float64)  # [R, F], [R, H]
    coefs = []
    for h in range(y.shape[1]):
        ok = np.isfinite(y[:, h])
        beta, b0 = _fit_ridge(x[ok], y[ok, h], cfg.ridge.alpha)
        coefs.append(
            {"horizon": panel.horizons[h], "intercept": b0, "coef": beta.tolist(), "n_rows": int(ok.sum())}
        )
    preds = {}
    for split in ("val", "test"):
        ts, ss = valid_rows(panel, days[split])
        xs = design(panel, ts, ss).astype(np.float64)
        # A row-by-row product (einsum's own loop, not BLAS): a row's score must not depend on how many
        # rows are scored with it, or the audit's panels cut after D would round differently.
        score = np.stack([np.einsum("rf,f->r", xs, np.asarray(c["coef"])) + c["intercept"] for c in coefs], 1)
        preds[split] = {"t": ts, "s": ss, "score": score}
    write_json(
        out / "ridge.json",
        {"feature_names": panel.feature_names, "alpha": cfg.ridge.alpha, "horizons": coefs},
    )
    return preds, {"n_train_rows": [c["n_rows"] for c in coefs]}


def _lgb_params(cfg: Config) -> dict[str, Any]:
    c = cfg.lightgbm
    return {
        "objective": "regression",
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
    """Train stock-days, a seeded subsample of at most lightgbm.max_train_rows of them."""
    t, s = valid_rows(panel, days)
    if len(t) > cfg.lightgbm.max_train_rows:
        rng = np.random.default_rng(cfg.train.seed)
        pick = np.sort(rng.choice(len(t), cfg.lightgbm.max_train_rows, replace=False))
        t, s = t[pick], s[pick]
    return t, s


def _lightgbm(cfg: Config, panel: Panel, days: dict[str, np.ndarray], out: Path) -> tuple[dict, dict]:
    """One booster per horizon on the standardised labels of (subsampled) train stock-days; validation
    rows early-stop the boosting (lightgbm.early_stopping_rounds 0 = off: all rounds). The feature bins
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
    y_val = np.asarray(panel.Y[rows["val"]], dtype=np.float64)
    val_base = lgb.Dataset(xs["val"], reference=base, free_raw_data=False)
    rounds, patience = cfg.lightgbm.n_estimators, cfg.lightgbm.early_stopping_rounds
    scores: dict[str, list[np.ndarray]] = {"val": [], "test": []}
    best = []
    for h, horizon in enumerate(panel.horizons):
        ok, ok_v = np.flatnonzero(np.isfinite(y[:, h])), np.flatnonzero(np.isfinite(y_val[:, h]))
        train = base.subset(ok).construct()  # a label set before construct() is dropped by lightgbm
        train.set_label(y[ok, h])
        valid = val_base.subset(ok_v).construct()
        valid.set_label(y_val[ok_v, h])
        stop = [lgb.early_stopping(patience, verbose=False)] if patience else []
        booster = lgb.train(params, train, rounds, valid_sets=[valid], callbacks=stop)
        it = booster.best_iteration if stop and booster.best_iteration > 0 else rounds
        best.append(int(it))
        for split in scores:
            scores[split].append(booster.predict(xs[split], num_iteration=it))
        text = booster.model_to_string(num_iteration=it)
        atomic_write(out / f"lightgbm_{horizon}d.txt", lambda p, text=text: p.write_text(text))
    preds = {
        split: {"t": rows[split][0], "s": rows[split][1], "score": np.stack(scores[split], 1)}
        for split in scores
    }
    return preds, {"best_iteration": best, "n_train_rows": int(len(t))}


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
