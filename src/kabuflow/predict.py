"""`kabuflow predict`: a trained (or champion) ATFT model ranks every stock for the next session."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from kabuflow import calendar, storage
from kabuflow.artifacts import write_parquet
from kabuflow.config import Config
from kabuflow.graph import Graph, as_graph
from kabuflow.model.atft_gat_fan import ATFTGATFAN, Ensemble, build_model, model_config_from_dict
from kabuflow.normalize import Panel, as_panel, load_panel
from kabuflow.train.days import DayData
from kabuflow.train.predictions import predict_days, prediction_table

# A day is complete when at least this share of the stocks traded over the previous 20 sessions has
# features on it; a half-loaded day would rank a biased subset of the market.
MIN_COVERAGE = 0.9


class PredictError(ValueError):
    """A date or model that cannot be scored; the message says why."""


def _model_files(model_uri: str, into: Path) -> Path:
    """A local directory holding model.pt for a train-fold output, a model.pt, or a champion (CURRENT.json)."""
    if storage.exists(storage.join(model_uri, "CURRENT.json")):
        pointer = json.loads(storage.read_bytes(storage.join(model_uri, "CURRENT.json")))
        weights = [f for f in pointer["files"] if f.endswith("model.pt")]
        if not weights:
            raise PredictError(f"champion {model_uri} (version {pointer['version']}) holds no model.pt")
        src = storage.join(model_uri, "versions", pointer["version"], *weights[-1].split("/"))
    elif model_uri.endswith(".pt"):
        src = model_uri
    else:
        src = storage.join(model_uri, "model.pt")
    if not storage.exists(src):
        raise PredictError(f"no model at {src}")
    return storage.get_file(src, into / "model.pt").parent


def _check_day(panel_dir: Path, day: dt.date, lookback: int) -> int:
    """Index of `day` in the panel, refusing days that are not sessions, absent, or incompletely featured."""
    if not calendar.is_session(day):
        raise PredictError(f"{day} is not an XTKS session (next: {calendar.next_session(day)})")
    p = load_panel(panel_dir)
    dates = p.dates
    if day not in dates:
        raise PredictError(f"{day} is not in the panel at {panel_dir} (it covers {dates[0]}..{dates[-1]})")
    t = dates.index(day)
    if t + 1 < lookback:
        raise PredictError(f"{day}: the model needs {lookback} sessions of history, the panel has {t + 1}")
    valid = np.asarray(p.valid[max(0, t - 20) : t + 1])
    usual = float(np.median(valid[:-1].sum(axis=1))) if len(valid) > 1 else float(valid[-1].sum())
    have = int(valid[-1].sum())
    if usual > 0 and have < MIN_COVERAGE * usual:
        raise PredictError(
            f"features for {day} are incomplete: {have} stocks have them, against {usual:.0f} on a usual "
            f"day of the previous 20 sessions (need {MIN_COVERAGE:.0%}); ingest that day's bars first"
        )
    return t


def _names(raw_dir: Path, day: dt.date) -> pl.DataFrame:
    from kabuflow.manifest import open_dir

    master = pl.read_parquet(open_dir(raw_dir).file("equities_master.parquet"))  # the listed, verified table
    # As-of the scoring day; a master snapshot dated later than every bar (the real set) stands for all days.
    asof = master.filter(pl.col("Date") <= day)
    asof = asof if asof.height else master
    return (
        asof.sort("Date")
        .group_by("Code")
        .last()
        .select(
            pl.col("Code").alias("code"), pl.col("CoNameEn").alias("name"), pl.col("S33Nm").alias("sector")
        )
    )


def rank_table(preds: pl.DataFrame, names: pl.DataFrame, by: str) -> pl.DataFrame:
    """One row per stock: score and quantiles per horizon, ranked by the score at horizon `by` (e.g. "5d")."""
    wide = preds.with_columns(pl.format("{}d", pl.col("horizon")).alias("h")).pivot(
        on="h", index="code", values=["score", "q10", "q50", "q90"]
    )
    key = f"score_{by}"
    return (
        names.join(wide, on="code", how="right")
        .sort(key, descending=True, nulls_last=True)
        .with_row_index("rank", offset=1)
    )


def predict(cfg: Config, model_uri: str, date: str, out: str = "", run: str = "runs/local") -> pl.DataFrame:
    """Score every stock on session `date` with the model at `model_uri`, using the panel/graph/raw of `run`."""
    day = dt.date.fromisoformat(date)
    run_dir = Path(run)
    for part in ("panel", "graph", "raw"):
        if not (run_dir / part).exists():
            raise PredictError(f"{run_dir / part} is missing: run `kabuflow run --out {run_dir}` first")
    with tempfile.TemporaryDirectory(prefix="kabuflow-model-") as tmp:
        model_dir = _model_files(model_uri, Path(tmp))
        model, _ = load_model(model_dir)
        _check_day(run_dir / "panel", day, model.cfg.lookback)
        preds = predict_dates(model_dir, run_dir / "panel", run_dir / "graph", [day])
    table = rank_table(preds, _names(run_dir / "raw", day), cfg.evaluate.gate_horizon)
    target = Path(out) if out else run_dir / "predict"
    write_parquet(target / f"ranking_{day.isoformat()}.parquet", table)
    return table


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[ATFTGATFAN | Ensemble, dict[str, Any]]:
    """Rebuild an ATFT model from model.pt (or the directory holding it); returns (model in eval mode, meta).

    meta is everything in the file but the weights: config, model_config, feature_names, horizons,
    code_version, fold. Loaded with weights_only=True: the file holds tensors and plain data only.
    """
    path = Path(path)
    path = path / "model.pt" if path.is_dir() else path
    blob = torch.load(path, map_location=device, weights_only=True)
    model = build_model(
        model_config_from_dict(blob["model_config"]), len(blob["feature_names"]), len(blob["horizons"])
    )
    model.load_state_dict(blob["state_dict"])
    model.to(device).eval()
    return model, {k: v for k, v in blob.items() if k != "state_dict"}


def predict_dates(
    model_dir: str | Path,
    panel: Panel | str | Path,
    graph: Graph | str | Path | None,
    dates: list[dt.date | str],
    device: str = "cpu",
) -> pl.DataFrame:
    """Score every valid stock on each of `dates` with a trained ATFT model: schema.PREDICTIONS, split="live".

    Uses the panel up to each date only (the model sees X[t-L+1..t] and day t's graph); labels are null.
    The panel's features must be the ones the model was trained on, in the same order.
    """
    model, meta = load_model(model_dir, device)
    p = as_panel(panel)
    if p.feature_names != list(meta["feature_names"]):
        raise ValueError(
            f"panel features differ from the model's ({len(p.feature_names)} vs {len(meta['feature_names'])})"
        )
    index = {d: i for i, d in enumerate(p.dates)}
    wanted = [d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)) for d in dates]
    missing = [d.isoformat() for d in wanted if d not in index]
    if missing:
        raise ValueError(f"dates not in the panel: {missing[:5]} (panel ends {p.dates[-1]})")
    days = np.array(sorted(index[d] for d in wanted), dtype=np.int64)
    g = as_graph(graph, model.cfg.use_graph)
    data = DayData(p, g, int(days.max()), torch.device(device))
    rows = predict_days(model, data, days)
    fold = int(meta.get("fold", -1))
    return prediction_table(p, "atft", fold, "live", rows, tuple(model.cfg.quantiles), with_labels=False)
