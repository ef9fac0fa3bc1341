"""The metrics.json scorecard: every number per model and horizon, deflated Sharpe, oracle share, alarms."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from kabuflow.evaluate import backtest, metrics, stats
from kabuflow.evaluate.stitch import ORACLE

Card = dict[str, dict[str, dict[str, Any]]]  # {model: {"5d": {metric: value}}}

SHARPE_ICIR_SLACK = 1.25  # a long–short book cannot be much steadier than the ranking that drives it
SHARPE_SE_MULT = 3.0  # ... by more than this many standard errors of its Sharpe
ORACLE_SHARE_MAX = 1.25  # nothing public beats the true conditional expectation by more than noise
ORACLE_EXCESS_T = 3.0  # ... as judged by the t of the daily RankIC excess over the oracle
CONTROL_T_MAX = 3.5  # |t| of the shuffled-label RankIC; under the null this is ~N(0, 1)


def hkey(h: int) -> str:
    """The horizon key of metrics.json: 5 -> "5d"."""
    return f"{int(h)}d"


def horizon_of(key: str) -> int:
    """Inverse of hkey, for sorting keys by horizon rather than as strings."""
    return int(key.rstrip("d"))


def model_rank(model: str) -> tuple[int, str]:
    """Sort key: the pipeline's models in DESIGN.md order, then any others by name, the oracle last."""
    known = ("atft", "lightgbm", "ridge", "reversal_5d", "momentum_60d", "low_vol_60d")
    if model == ORACLE:
        return (len(known) + 1, model)
    return (known.index(model), model) if model in known else (len(known), model)


def build(daily: pl.DataFrame, pnl: pl.DataFrame, hpo_trials: int) -> Card:
    """Every statistic per (model, horizon), the oracle included as model "oracle"."""
    card: Card = {}
    for (model, h), ic in sorted(metrics.ic_table(daily).items()):
        ls = backtest.summarise(backtest.from_frame(pnl, model, h))
        card.setdefault(model, {})[hkey(h)] = {**ic, **ls}
    deflate(card, hpo_trials)
    add_oracle_share(card, daily)
    return {m: dict(sorted(hs.items(), key=lambda kv: horizon_of(kv[0]))) for m, hs in card.items()}


def dsr_trials(hpo_trials: int, n_models: int) -> int:
    """The trials the deflated Sharpe is deflated for: every HPO configuration tried, for every model."""
    return max(1, hpo_trials) * n_models


def deflate(card: Card, hpo_trials: int) -> None:
    """Add the deflated Sharpe: trials = hpo_trials × number of models (the oracle is no trial), the
    variance of trial Sharpes from the models' daily net Sharpes at that horizon (0 with one model,
    when the DSR equals the PSR)."""
    models = [m for m in card if m != ORACLE]
    n_trials = dsr_trials(hpo_trials, len(models))
    for hk in {k for hs in card.values() for k in hs}:
        srs = [card[m][hk]["sr_daily_net"] for m in models if hk in card[m]]
        srs = [s for s in srs if math.isfinite(s)]
        var = float(np.var(srs, ddof=1)) if len(srs) > 1 else 0.0
        sr0 = stats.expected_max_sharpe(n_trials, var)
        for hs in card.values():
            if hk in hs:
                s = hs[hk]
                s["dsr"] = stats.deflated_sharpe(
                    s["sr_daily_net"], s["n_days"], s["skew_net"], s["kurtosis_net"], n_trials, var
                )
                s.update(dsr_trials=n_trials, dsr_trial_sr_var=var, dsr_sr0_daily=sr0)


def add_oracle_share(card: Card, daily: pl.DataFrame) -> None:
    """oracle_share = model mean RankIC / oracle mean RankIC, both over the dates the model has; and, as
    detail, the Newey–West t of the daily excess over the oracle (a model cannot truly beat it)."""
    if ORACLE not in card:
        return
    oracle = daily.filter(pl.col("model") == ORACLE).select("horizon", "date", pl.col("rank_ic").alias("_o"))
    both = daily.filter(pl.col("model") != ORACLE).join(oracle, on=["horizon", "date"], how="inner")
    for (model, h), part in both.group_by("model", "horizon"):
        mine, theirs = part["rank_ic"].to_numpy(), part["_o"].to_numpy()
        s = card[model][hkey(h)]
        s["oracle_share"] = float(mine.mean() / theirs.mean()) if theirs.mean() > 0 else math.nan
        s["oracle_excess_tstat"] = stats.nw_tstat(mine - theirs, stats.nw_lags(mine.size, int(h)))


def public(card: Card) -> tuple[Card, dict[str, dict[str, Any]] | None, Card]:
    """Split into metrics.json's "models" (the contract's metrics), "oracle" and a "detail" remainder."""
    models: Card = {}
    detail: Card = {}
    for model, hs in card.items():
        for hk, s in hs.items():
            names = [*metrics.METRICS, *(["oracle_share"] if "oracle_share" in s else [])]
            if model != ORACLE:
                models.setdefault(model, {})[hk] = {k: s[k] for k in names}
            detail.setdefault(model, {})[hk] = {k: v for k, v in s.items() if k not in names}
    oracle = (
        {hk: {k: s[k] for k in metrics.METRICS} for hk, s in card[ORACLE].items()} if ORACLE in card else None
    )
    return models, oracle, detail


def alarms(card: Card, control: Card, leak_rank_ic_1d: float, labels_disagree: int) -> list[dict[str, Any]]:
    """Everything that suggests the future got into the scores or the evaluation is broken."""
    out: list[dict[str, Any]] = []
    for model, hs in card.items():
        for hk, s in hs.items():
            out += _model_alarms(model, hk, s, leak_rank_ic_1d)
    for model, hs in control.items():
        for hk, c in hs.items():
            if math.isfinite(c["rank_ic_tstat"]) and abs(c["rank_ic_tstat"]) > CONTROL_T_MAX:
                out.append(
                    _alarm(
                        "control_not_null",
                        model,
                        hk,
                        c["rank_ic_tstat"],
                        CONTROL_T_MAX,
                        "the shuffled-label RankIC is significant: the evaluation itself is broken",
                    )
                )
    if labels_disagree:
        out.append(
            _alarm(
                "labels_disagree",
                "*",
                "*",
                labels_disagree,
                0,
                "models were scored against different labels for the same (date, code, horizon)",
            )
        )
    return out


def _model_alarms(model: str, hk: str, s: dict[str, Any], leak_rank_ic_1d: float) -> list[dict[str, Any]]:
    out = []
    if model != ORACLE and hk == "1d" and s["rank_ic"] > leak_rank_ic_1d:
        msg = "a 1-day RankIC this high is not found in equities without look-ahead"
        out.append(_alarm("leak_rank_ic_1d", model, hk, s["rank_ic"], leak_rank_ic_1d, msg))
    icir = max(x for x in (s["icir"], s["rank_icir"], 0.0) if math.isfinite(x))
    bound = SHARPE_ICIR_SLACK * icir * math.sqrt(stats.TRADING_DAYS)
    sr = s["ls_sharpe_gross"]
    # Both sides are estimates: flag only an excess beyond 3 standard errors of the daily Sharpe (Lo 2002),
    # so that a short noisy test window does not cry wolf while a ranking copied from the labels still does.
    n = max(int(s.get("n_days") or 0), 1)
    sr_d = sr / math.sqrt(stats.TRADING_DAYS) if math.isfinite(sr) else math.nan
    excess = (sr - bound) / math.sqrt(stats.TRADING_DAYS) if math.isfinite(sr) else math.nan
    if sr > 1.0 and excess > SHARPE_SE_MULT * math.sqrt((1 + sr_d**2 / 2) / n):
        msg = "the long-short Sharpe exceeds what the daily IC's stability allows (Sharpe > ICIR·√252)"
        out.append(_alarm("sharpe_exceeds_icir", model, hk, sr, bound, msg))
    share, excess_t = s.get("oracle_share", math.nan), s.get("oracle_excess_tstat", math.nan)
    # Both RankICs are noisy: only a ranking significantly better than the oracle's is evidence of leakage.
    if model != ORACLE and share > ORACLE_SHARE_MAX and excess_t > ORACLE_EXCESS_T:
        msg = "the model ranks better than the oracle's true expected returns"
        out.append(_alarm("beats_oracle", model, hk, share, ORACLE_SHARE_MAX, msg))
    return out


def _alarm(kind: str, model: str, hk: str, value: float, threshold: float, message: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "model": model,
        "horizon": hk,
        "value": value,
        "threshold": threshold,
        "message": f"{model} {hk}: {message} ({value:.4g} vs {threshold:.4g})",
    }
