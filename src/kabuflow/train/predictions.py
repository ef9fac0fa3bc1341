"""Prediction tables in schema.PREDICTIONS, their RankIC/IC, and an ATFT model's scores on panel days."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import torch

from kabuflow import schema
from kabuflow.evaluate import metrics
from kabuflow.model.atft_gat_fan import ATFTGATFAN, Ensemble
from kabuflow.model.losses import rank_ic
from kabuflow.normalize import Panel
from kabuflow.train.days import DayData

Q_COLS = {0.1: "q10", 0.25: "q25", 0.5: "q50", 0.75: "q75", 0.9: "q90"}


def prediction_table(
    panel: Panel,
    model: str,
    fold: int,
    split: str,
    rows: dict[str, np.ndarray],
    quantiles: tuple[float, ...] = (),
    with_labels: bool = True,
) -> pl.DataFrame:
    """Long schema.PREDICTIONS frame from per-stock-day arrays.

    rows: t [R] (date index), s [R] (code index), score [R, H]; optional q [R, H, Q] for `quantiles`.
    The label is the raw realised y_h from Y_raw (null where unknown or with_labels=False); q* columns
    the model does not produce are null. Sorted by (code, date, horizon).
    """
    t, s, score = rows["t"], rows["s"], rows["score"]
    horizons = np.asarray(panel.horizons, dtype=np.int32)
    n_h = len(horizons)
    label = np.asarray(panel.Y_raw[t, s], dtype=np.float64) if with_labels else np.full(score.shape, np.nan)
    dates = np.asarray(panel.dates, dtype="datetime64[D]")
    codes = np.asarray(panel.codes)
    cols: dict[str, Any] = {
        "date": np.repeat(dates[t], n_h),
        "code": np.repeat(codes[s], n_h),
        "model": model,
        "fold": fold,
        "split": split,
        "horizon": np.tile(horizons, len(t)),
        "score": score.astype(np.float64).reshape(-1),  # [R * H], horizon fastest
        "label": label.reshape(-1),
    }
    for level, name in Q_COLS.items():
        q = rows.get("q")
        cols[name] = (
            q[..., quantiles.index(level)].astype(np.float64).reshape(-1)
            if level in quantiles and q is not None
            else None
        )
    df = pl.DataFrame(cols).with_columns(pl.col("label").fill_nan(None), pl.col("score").fill_nan(None))
    df = schema.cast(df, schema.PREDICTIONS, "predictions").select(list(schema.PREDICTIONS))
    return df.sort("code", "date", "horizon")


def split_metrics(pred: pl.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """Mean daily RankIC and IC of score vs label per split and horizon, by evaluate.metrics.daily_ic's
    rules (so a fold's KFP panel and metrics.json agree): a date needs 3 scored, labelled names, and a
    constant score counts as 0 on its date, not as missing. A fold's val and test dates are disjoint."""
    # Sorted: a join's row order is not fixed, and a mean summed in another order moves the last bit.
    daily = metrics.daily_ic(pred).join(pred.select("date", "split").unique(), on="date")
    daily = daily.sort("split", "horizon", "date")
    agg = daily.group_by("split", "horizon").agg(
        pl.col("rank_ic").mean(), pl.col("ic").mean(), pl.col("date").n_unique().alias("n_days")
    )
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in agg.sort("split", "horizon").iter_rows(named=True):
        out.setdefault(r["split"], {})[f"{r['horizon']}d"] = {
            "rank_ic": float(r["rank_ic"]),
            "ic": float(r["ic"]),
            "n_days": int(r["n_days"]),
        }
    return out


@torch.no_grad()
def predict_days(
    model: ATFTGATFAN | Ensemble, data: DayData, days: np.ndarray, bf16: bool = False
) -> dict[str, np.ndarray]:
    """Quantiles for every valid stock of each day: rows for prediction_table (score = the median)."""
    model.eval()
    ts, ss, qs = [], [], []
    mid = tuple(model.cfg.quantiles).index(0.5)
    use_bf16 = bf16 and data.device.type == "cuda"
    for t in days:
        idx = data.stocks(int(t))
        b = data.day(int(t), model.cfg.lookback, idx)
        with torch.autocast(data.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            q, _ = model(b.x, b.edge_index, b.edge_attr)  # [n, H, Q]
        qs.append(q.float().cpu().numpy())
        ts.append(np.full(len(idx), t, dtype=np.int64))
        ss.append(idx.cpu().numpy())
    if not qs:
        n_h, n_q = model.n_horizons, len(model.cfg.quantiles)
        return {
            "t": np.zeros(0, np.int64),
            "s": np.zeros(0, np.int64),
            "score": np.zeros((0, n_h)),
            "q": np.zeros((0, n_h, n_q)),
        }
    q_all = np.concatenate(qs)  # [R, H, Q]
    return {"t": np.concatenate(ts), "s": np.concatenate(ss), "score": q_all[..., mid], "q": q_all}


@torch.no_grad()
def vsn_weights(
    model: ATFTGATFAN | Ensemble, data: DayData, days: np.ndarray, feature_names: list[str]
) -> dict[str, float]:
    """{feature: mean variable-selection weight} over every valid stock of `days`, largest first.

    The VSN gates c * F inputs (the FAN split gives each feature c channels, concatenated channel-major);
    a feature's weight is the sum of its channels', so the weights sum to 1 per stock-day.
    """
    model.eval()
    total, count = torch.zeros(len(feature_names), dtype=torch.float64), 0
    for t in days:
        idx = data.stocks(int(t))
        b = data.day(int(t), model.cfg.lookback, idx)
        _, aux = model(b.x, b.edge_index, b.edge_attr)
        w = aux["vsn_weights"].float()  # [n, c*F]
        total += w.view(len(idx), -1, len(feature_names)).sum(1).sum(0).double().cpu()  # [F]
        count += len(idx)
    mean = (total / max(count, 1)).tolist()
    return dict(sorted(zip(feature_names, mean, strict=True), key=lambda kv: -kv[1]))


@torch.no_grad()
def val_rank_ic(
    model: ATFTGATFAN | Ensemble,
    data: DayData,
    days: np.ndarray,
    w: torch.Tensor,
    bf16: bool = False,
    shuffle_seed: int | None = None,
) -> tuple[float, list[float]]:
    """Early-stopping metric: mean daily Spearman of the median score vs the raw label, per horizon, and
    their horizon-weighted mean (train.horizon_weights: one number that leans on 5d but uses all).

    shuffle_seed: permute each day's labels first (the shuffled-label control), so that not even the
    choice of epoch sees a true label.
    """
    model.eval()
    mid, per_day = tuple(model.cfg.quantiles).index(0.5), []
    for t in days:
        idx = data.stocks(int(t))
        b = data.day(int(t), model.cfg.lookback, idx)
        with torch.autocast(
            data.device.type, dtype=torch.bfloat16, enabled=bf16 and data.device.type == "cuda"
        ):
            q, _ = model(b.x, b.edge_index, b.edge_attr)
        y = data.Y_raw[int(t), idx].float()  # [n, H]
        if shuffle_seed is not None:
            gen = torch.Generator().manual_seed(shuffle_seed + int(t))
            y = y[torch.randperm(len(idx), generator=gen).to(y.device)]
        per_day.append(rank_ic(q.float()[..., mid], torch.nan_to_num(y), ~torch.isnan(y)))
    per_h = torch.stack(per_day).nanmean(0)  # [H]
    score = float(torch.nansum(per_h * w))
    return score, [float(v) for v in per_h]
