"""How much of ATFT's RankIC a zero-parameter factor already reaches, per horizon (the sceptic's question)."""

from __future__ import annotations

import math
from typing import Any

FACTORS = ("reversal_5d", "momentum_60d", "low_vol_60d")  # kabuflow.train.baselines.FACTORS
ABOUT = (
    "The best zero-parameter factor at each horizon (the highest test RankIC among reversal_5d, "
    "momentum_60d and low_vol_60d = -vol_60d) and its RankIC as a share of the gate model's: a share "
    "near or above 1 means the fitted model adds little over one sorted column."
)


def factor_share(models: dict[str, dict[str, dict[str, Any]]], model: str) -> dict[str, dict[str, Any]]:
    """{horizon: {factor, factor_rank_ic, model, model_rank_ic, share}} for the horizons where `model`
    and at least one factor were scored; {} when either is absent."""
    out = {}
    for h, mine in (models.get(model) or {}).items():
        scored = {f: models[f][h]["rank_ic"] for f in FACTORS if h in models.get(f, {})}
        scored = {f: v for f, v in scored.items() if isinstance(v, int | float) and math.isfinite(v)}
        if not scored or not isinstance(mine.get("rank_ic"), int | float):
            continue
        best = max(scored, key=scored.get)
        ref = float(mine["rank_ic"])
        out[h] = {
            "factor": best,
            "factor_rank_ic": scored[best],
            "model": model,
            "model_rank_ic": ref,
            "share": scored[best] / ref if ref > 0 else math.nan,
        }
    return out


def rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the report's factor-share table."""
    share = metrics.get("factor_share") or {}
    model = next((s["model"] for s in share.values()), "atft")
    header = ["horizon", "best factor", "factor RankIC", f"{model} RankIC", "share"]
    body = [[h, s["factor"], s["factor_rank_ic"], s["model_rank_ic"], s["share"]] for h, s in share.items()]
    return header, body
