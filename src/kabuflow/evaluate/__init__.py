"""evaluate stage: stitch out-of-sample predictions, score and backtest them, write the report, gate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kabuflow import manifest, telemetry
from kabuflow.artifacts import atomic_write, read_json, write_json, write_parquet
from kabuflow.config import Config, EvaluateConfig
from kabuflow.evaluate import (
    attribution,
    backtest,
    factors,
    gate,
    lookahead,
    metrics,
    report,
    scorecard,
    stitch,
)
from kabuflow.evaluate.gate import champion_uri, load_champion, promote
from kabuflow.evaluate.report import summary_table
from kabuflow.version import code_version

__all__ = ["evaluate", "promote", "summary_table", "champion_uri", "load_champion"]

OUTPUTS = (
    "metrics.json",
    "gate.json",
    "report.html",
    "report.md",
    "predictions.parquet",
    "daily_rank_ic.parquet",
    "daily_pnl.parquet",
)


def evaluate(
    cfg: Config,
    predictions: list[str | Path],
    out: str | Path,
    raw: str | Path | None = None,
    features: str | Path | None = None,
) -> dict[str, Any]:
    """Stitch every fold's test predictions, compute metrics.json (DESIGN.md's format plus alarms,
    control, folds, deciles, detail), the report, and the gate decision against the stored champion.

    `predictions` are train-fold output directories; a directory there without predictions.parquet but
    with a manifest.json (e.g. the features stage output) only feeds the report's data summary, as do
    `raw` (which also supplies oracle.parquet) and `features`. When the oracle carries each planted
    signal's part, metrics.json gains "signal_attribution" (evaluate.attribution). Returns the manifest
    (out/manifest.json).

    Every input is verified against its manifest, and all must share one lineage: prediction sets
    over another panel or other folds, or a raw directory of another ingest, are an error.
    """
    with manifest.output(cfg, out, "evaluate") as w, telemetry.stage("evaluate") as rec:
        arts = [w.read(f"predictions[{i}] {p}", p) for i, p in enumerate(predictions)]
        raw_art = w.read(f"raw {raw}", raw) if raw else None
        if features:
            w.read(f"features {features}", features)
        pred_dirs, data_dirs = _classify(arts)
        test, infos = stitch.stitch(pred_dirs)
        rec.rows_in = test.height
        oracle = stitch.read_oracle(
            raw_art.file("oracle.parquet") if raw_art and raw_art.has("oracle.parquet") else None
        )
        oracle_rows = stitch.attach_oracle(test, oracle)
        frame = pl.concat([test, oracle_rows]) if oracle_rows is not None else test
        disagree = stitch.label_disagreement(test)
        result, tables = _score(cfg.evaluate, frame, disagree)
        result["lookahead"] = lookahead.check(frame, result["alarms"], cfg.evaluate.lookahead_min_margin)
        if signals := attribution.signal_attribution(frame, oracle):
            result["signal_attribution"] = signals
        result["data"] = _data(cfg, test, infos, [*data_dirs, *(p for p in (raw, features) if p)], disagree)
        result["variable_selection"] = stitch.read_vsn_weights(infos)
        result["factor_share"] = factors.factor_share(result["models"], cfg.evaluate.gate_model)
        result["gate"] = _gate(cfg, _clean(result), tables.daily, infos, w.dir, w.final)
        result = _clean(result)
        _write(w.dir, result, frame, tables)
        rec.rows_out = frame.height
        gate_h = f"atft_{cfg.evaluate.gate_horizon}"  # the console's key figure (and a Prometheus gauge)
        rec.extra.update(
            {k: v for k, v in headline(result).items() if k.startswith(gate_h) or k == "gate_promote"}
        )
        return w.commit(
            {
                "outputs": list(OUTPUTS),
                "gate": result["gate"]["decision"],
                "headline": headline(result),
                "alarms": len(result["alarms"]),
            }
        )


@dataclass(frozen=True)
class Tables:
    """The long frames behind the numbers: daily IC/RankIC, daily long–short P&L, decile means."""

    daily: pl.DataFrame
    pnl: pl.DataFrame
    deciles: pl.DataFrame


def _score(ev: EvaluateConfig, frame: pl.DataFrame, disagree: int) -> tuple[dict[str, Any], Tables]:
    """Every number of metrics.json except data and gate, and the frames they come from."""
    tables = Tables(
        daily=metrics.daily_ic(frame),
        pnl=backtest.run_all(frame, stitch.daily_returns(frame), ev.n_quantiles, ev.cost_bp),
        deciles=metrics.deciles(frame),
    )
    control = metrics.control_table(metrics.shuffled_control(frame, ev.control_seed))
    card = scorecard.build(tables.daily, tables.pnl, ev.hpo_trials)
    models, oracle, detail = scorecard.public(card)
    result: dict[str, Any] = {"models": models, **({"oracle": oracle} if oracle else {})}
    result["alarms"] = scorecard.alarms(card, control, ev.leak_rank_ic_1d, disagree)
    result.update(
        control=control,
        folds=metrics.fold_table(tables.daily, tables.pnl),
        deciles=metrics.decile_summary(tables.deciles),
        detail=detail,
        definitions=metrics.DEFINITIONS,
    )
    return result, tables


def _gate(
    cfg: Config,
    result: dict[str, Any],
    daily: pl.DataFrame,
    infos: list[stitch.PredictionDir],
    out: Path,
    final: Path,
) -> dict[str, Any]:
    """Copy the gate model's files into out/model (so that promotion needs nothing but this output), then
    decide against the champion stored at the configured (or default, beside `final`) URI."""
    copied = stitch.copy_model_files(infos, cfg.evaluate.gate_model, out / "model")
    uri = champion_uri(cfg, final)
    return {**gate.decide(cfg.evaluate, result, daily, load_champion(uri), uri), "model_files": copied}


def headline(result: dict[str, Any]) -> dict[str, float]:
    """Flat, finite numbers for KFP's Metrics panel: RankIC, its t, net Sharpe and oracle share per model
    and horizon (e.g. atft_5d_rank_ic), the alarm count and the gate decision (1 = promote)."""
    out: dict[str, float] = {}
    for model, hs in result["models"].items():
        for hk, s in hs.items():
            for k in ("rank_ic", "rank_ic_tstat", "ls_sharpe_net", "oracle_share"):
                if isinstance(s.get(k), int | float):
                    out[f"{model}_{hk}_{k}"] = float(s[k])
    out["alarms"] = float(len(result["alarms"]))
    out["gate_promote"] = 1.0 if result["gate"]["promote"] else 0.0
    return out


def _classify(arts: list[manifest.Artifact]) -> tuple[list[Path], list[Path]]:
    """Split inputs into prediction directories and data directories (a manifest, no predictions)."""
    preds = [a.path for a in arts if a.has("predictions.parquet")]
    return preds, [a.path for a in arts if not a.has("predictions.parquet")]


def _data(
    cfg: Config, test: pl.DataFrame, infos: list[stitch.PredictionDir], data_dirs: list[Any], disagree: int
) -> dict[str, Any]:
    """What was evaluated: the test period, the rows per model, and the upstream manifests' summaries."""
    out: dict[str, Any] = {
        "test_start": str(test["date"].min()),
        "test_end": str(test["date"].max()),
        "n_test_dates": test["date"].n_unique(),
        "n_codes": test["code"].n_unique(),
        "rows_by_model": dict(sorted(test.group_by("model").len().iter_rows())),
        "folds": sorted(test["fold"].unique().to_list()),
        "n_prediction_dirs": len(infos),
        "labels_disagree": disagree,
        "cost_bp": cfg.evaluate.cost_bp,
        "n_quantiles": cfg.evaluate.n_quantiles,
        "hpo_trials": cfg.evaluate.hpo_trials,
        "dsr_trials": scorecard.dsr_trials(cfg.evaluate.hpo_trials, test["model"].n_unique()),
        "code_version": code_version(),
    }
    versions = sorted(
        {
            str(read_json(i.path / "manifest.json").get("code_version"))
            for i in infos
            if (i.path / "manifest.json").is_file()
        }
    )
    if versions:
        out["train_code_versions"] = versions
    for d in data_dirs:
        file = Path(d) / "manifest.json"
        if file.is_file():
            summary = stitch.summarise_manifest(read_json(file))
            key = "features" if "n_features" in summary else "raw" if "tables" in summary else Path(d).name
            out[key] = summary
    return out


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN and ±inf become null (JSON has no NaN), numpy scalars become Python ones."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write(out: Path, result: dict[str, Any], frame: pl.DataFrame, tables: Tables) -> None:
    """Every output file, each written atomically."""
    write_json(out / "metrics.json", result)
    write_json(out / "gate.json", result["gate"])
    write_parquet(out / "predictions.parquet", frame.sort("model", "horizon", "code", "date"))
    write_parquet(out / "daily_rank_ic.parquet", tables.daily)
    write_parquet(out / "daily_pnl.parquet", tables.pnl)
    html = report.render_html(result, tables.daily, tables.pnl, tables.deciles)
    atomic_write(out / "report.html", lambda p: p.write_text(html))
    markdown = report.render_markdown(result)
    atomic_write(out / "report.md", lambda p: p.write_text(markdown))
