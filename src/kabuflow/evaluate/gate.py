"""Promotion gate: the challenger replaces the stored champion only if better, by a margin, significantly."""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from kabuflow import storage
from kabuflow.artifacts import read_json
from kabuflow.config import Config, EvaluateConfig
from kabuflow.evaluate import stats

CURRENT = "CURRENT.json"  # pointer to the live version; written last, so promotion is one atomic switch
MIN_OVERLAP = 20  # fewer paired test dates than this: no paired test
LOWER_IS_BETTER = frozenset({"max_drawdown", "turnover"})
CHAMPION_FILES = ("metrics.json", "gate.json", "daily_rank_ic.parquet", "report.md")


class GateError(RuntimeError):
    """Promotion refused: the gate rejected the challenger, or its files are missing."""


@dataclass(frozen=True)
class Champion:
    """The stored champion: its metrics.json, its daily RankIC series (if recorded) and version."""

    uri: str
    version: str
    metrics: dict[str, Any]
    daily: pl.DataFrame | None


def champion_uri(cfg: Config, out: str | Path) -> str:
    """cfg.evaluate.champion_uri, or <out>/../models/champion: beside the run's stage outputs, so that
    the next run into the same directory finds it."""
    return cfg.evaluate.champion_uri or str(Path(out).resolve().parent / "models" / "champion")


def _join(uri: str, *parts: str) -> str:
    return storage.join(uri, *parts)


def _read(uri: str) -> bytes | None:
    """Bytes at a local path or storage URI; None when absent."""
    return storage.read_bytes(uri) if storage.exists(uri) else None


def _write(uri: str, data: bytes) -> None:
    """Write one object atomically (a rename locally; object stores put whole objects)."""
    storage.write_bytes(uri, data)


def load_champion(uri: str) -> Champion | None:
    """The champion at `uri`: versions/<CURRENT.json's version>/, or metrics.json right at `uri` (a
    hand-placed champion). None when there is none yet."""
    pointer = _read(_join(uri, CURRENT))
    if pointer is not None:
        version = json.loads(pointer)["version"]
        base = _join(uri, "versions", version)
    else:
        version, base = "unversioned", uri
    raw = _read(_join(base, "metrics.json"))
    if raw is None:
        if pointer is not None:
            raise GateError(f"{_join(uri, CURRENT)} points to version {version}, which has no metrics.json")
        return None
    daily = _read(_join(base, "daily_rank_ic.parquet"))
    frame = pl.read_parquet(io.BytesIO(daily)) if daily is not None else None
    return Champion(uri=uri, version=version, metrics=json.loads(raw), daily=frame)


def _value(metrics: dict[str, Any], ev: EvaluateConfig) -> float | None:
    value = metrics.get("models", {}).get(ev.gate_model, {}).get(ev.gate_horizon, {}).get(ev.gate_metric)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def paired_test(mine: pl.DataFrame, theirs: pl.DataFrame, horizon: int) -> dict[str, Any] | None:
    """One-sided test of E[RankIC_challenger − RankIC_champion] > 0 over the dates both have, with a
    Newey–West standard error (the differences inherit the labels' h-day overlap). None if too few."""
    both = mine.select("date", "rank_ic").join(
        theirs.select("date", pl.col("rank_ic").alias("_c")), on="date"
    )
    n = both.height
    if n < MIN_OVERLAP:
        return None
    diff = (both["rank_ic"] - both["_c"]).to_numpy()
    t = stats.nw_tstat(diff, stats.nw_lags(n, horizon))
    return {
        "test": "paired: Newey-West t of the daily RankIC differences on the overlapping test dates",
        "n_overlap": n,
        "mean_difference": float(diff.mean()),
        "t_stat": t,
        "p_value": stats.one_sided_p(t),
    }


def recorded_test(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any] | None:
    """Without overlapping dates: compare the two mean RankICs as independent estimates, each with the
    Newey–West standard error implied by its recorded mean and t (se = rank_ic / rank_ic_tstat)."""
    try:
        se = [abs(s["rank_ic"] / s["rank_ic_tstat"]) for s in (mine, theirs)]
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    if not all(math.isfinite(x) for x in se):
        return None
    z = (mine["rank_ic"] - theirs["rank_ic"]) / math.sqrt(se[0] ** 2 + se[1] ** 2)
    return {
        "test": "unpaired: no overlapping test dates, z of the recorded mean RankICs with their NW errors",
        "n_overlap": 0,
        "mean_difference": mine["rank_ic"] - theirs["rank_ic"],
        "t_stat": z,
        "p_value": stats.one_sided_p(z),
    }


def _significance(
    ev: EvaluateConfig, metrics: dict[str, Any], daily: pl.DataFrame, champion: Champion
) -> dict[str, Any] | None:
    """Paired test when the champion recorded its daily RankIC on dates we also have, else unpaired."""
    h = int(ev.gate_horizon.rstrip("d"))

    def series(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter((pl.col("model") == ev.gate_model) & (pl.col("horizon") == h))

    if champion.daily is not None:
        test = paired_test(series(daily), series(champion.daily), h)
        if test is not None:
            return test
    mine = metrics["models"][ev.gate_model][ev.gate_horizon]
    theirs = champion.metrics.get("models", {}).get(ev.gate_model, {}).get(ev.gate_horizon, {})
    return recorded_test(mine, theirs)


def decide(
    ev: EvaluateConfig, metrics: dict[str, Any], daily: pl.DataFrame, champion: Champion | None, uri: str
) -> dict[str, Any]:
    """The gate decision with its reasons. Promote iff: the gate model has the metric, no alarm concerns
    it, and either there is no champion, or it beats the champion's value by gate_margin with a one-sided
    p < gate_alpha on the daily RankIC differences (the test is on RankIC whatever the gate metric)."""
    g: dict[str, Any] = {
        "model": ev.gate_model,
        "metric": ev.gate_metric,
        "horizon": ev.gate_horizon,
        "margin": ev.gate_margin,
        "alpha": ev.gate_alpha,
        "champion_uri": uri,
        "champion_version": champion.version if champion else None,
        "challenger": _value(metrics, ev),
        "champion": _value(champion.metrics, ev) if champion else None,
        "promote": False,
        "reasons": [],
    }
    what = f"{ev.gate_model} {ev.gate_metric} at {ev.gate_horizon}"
    blocking = [a["message"] for a in metrics.get("alarms", []) if a["model"] in (ev.gate_model, "*")]
    blocking += [a["message"] for a in metrics.get("alarms", []) if a["kind"] == "control_not_null"]
    if g["challenger"] is None:
        g["reasons"].append(f"reject: the challenger has no finite {what}")
    elif blocking:
        g["reasons"] += ["reject: leakage alarm — " + m for m in dict.fromkeys(blocking)]
    elif champion is None:
        g["promote"] = True
        g["reasons"].append(
            f"promote: no champion at {uri}; the first run promotes ({what} = {g['challenger']:.4g})"
        )
    elif g["champion"] is None:
        g["promote"] = True
        g["reasons"].append(f"promote: the champion ({champion.version}) recorded no {what} to compare with")
    else:
        _compare(ev, g, _significance(ev, metrics, daily, champion), what)
    g["decision"] = "promote" if g["promote"] else "reject"
    return g


def _compare(ev: EvaluateConfig, g: dict[str, Any], test: dict[str, Any] | None, what: str) -> None:
    """Fill g's difference, test and reasons for a challenger measured against a champion."""
    sign = -1.0 if ev.gate_metric in LOWER_IS_BETTER else 1.0
    diff = sign * (g["challenger"] - g["champion"])
    g["difference"] = diff
    better = diff > ev.gate_margin
    verb = "beats" if better else "does not beat"
    g["reasons"].append(
        f"{what}: challenger {g['challenger']:.4g} vs champion {g['champion']:.4g} "
        f"(improvement {diff:+.4g}) {verb} the margin {ev.gate_margin:g}"
    )
    if test is not None:
        g.update(test)
    significant = test is not None and math.isfinite(test["p_value"]) and test["p_value"] < ev.gate_alpha
    if test is None:
        g["reasons"].append("no significance test possible: no overlapping daily RankIC and no recorded t")
    else:
        word = "significant" if significant else "not significant"
        g["reasons"].append(
            f"{test['test']}: n={test['n_overlap']}, t={test['t_stat']:.3g}, one-sided p={test['p_value']:.3g} "
            f"— {word} at alpha {ev.gate_alpha:g}"
        )
    g["promote"] = bool(better and significant)
    g["reasons"].append(
        "promote" if g["promote"] else "reject: " + ("not significant" if better else "not better")
    )


def promote(
    challenger_dir: str | Path, champion_uri: str | None = None, force: bool = False
) -> dict[str, Any]:
    """Copy an evaluate output (metrics, gate decision, daily RankIC, the gate model's files under
    model/) to champion_uri/versions/<version>/, then switch CURRENT.json to it. Readers see the old
    champion or the new one, never a mix. Refuses a challenger the gate rejected unless force=True."""
    from kabuflow.manifest import open_dir

    art = open_dir(challenger_dir)  # only a complete, verified evaluate output is promoted
    src = art.path
    gate = read_json(src / "gate.json")
    if not gate.get("promote") and not force:
        raise GateError(f"{src / 'gate.json'} says reject: " + "; ".join(gate.get("reasons", [])))
    uri = champion_uri or gate["champion_uri"]
    files = [src / f for f in CHAMPION_FILES if art.has(f)]
    files += sorted(src / rel for rel in art.manifest["files"] if rel.startswith("model/"))
    if not (src / "metrics.json").is_file():
        raise GateError(f"{src} has no metrics.json to promote")
    metrics_bytes = (src / "metrics.json").read_bytes()
    version = (
        datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + hashlib.sha256(metrics_bytes).hexdigest()[:8]
    )
    names = [p.relative_to(src).as_posix() for p in files]
    for path, name in zip(files, names, strict=True):
        _write(_join(uri, "versions", version, *name.split("/")), path.read_bytes())
    previous = load_champion(uri)
    pointer = {
        "version": version,
        "files": names,
        "promoted_at": datetime.now(UTC).isoformat(),
        "model": gate.get("model"),
        "metric": gate.get("metric"),
        "horizon": gate.get("horizon"),
        "value": gate.get("challenger"),
        "previous": previous.version if previous else None,
    }
    _write(_join(uri, CURRENT), (json.dumps(pointer, indent=2, sort_keys=True) + "\n").encode())
    return pointer
