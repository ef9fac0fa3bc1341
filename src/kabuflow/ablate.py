"""ablate: ATFT variants trained on the same folds and seeds, scored against the configured model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from kabuflow.artifacts import stamp, write_json
from kabuflow.config import Config
from kabuflow.evaluate import stats
from kabuflow.evaluate.gate import paired_test
from kabuflow.evaluate.metrics import daily_ic
from kabuflow.folds import read_folds
from kabuflow.train import train_fold
from kabuflow.train.targets import TARGETS

# What each variant takes away from the configured model (issue #12, item 4). The targets the config
# does not already use are added by variants().
BASE = "configured"
VARIANTS: dict[str, list[str]] = {
    BASE: [],
    "lookback_1": ["model.lookback=1"],  # no history: what the temporal model adds
    "no_graph": ["model.use_graph=false"],  # no GAT, no peer term, no neighbour half of the wide path
    "no_rank_term": ["train.rank_weight=0"],  # pinball loss alone
}


def variants(cfg: Config, names: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """The variants to train, by name: the fixed ones plus `target_<t>` for every other target."""
    every = dict(VARIANTS)
    for t in TARGETS:
        if t != cfg.train.target:
            every[f"target_{t}"] = [f"train.target={t}"]
    unknown = sorted(set(names) - set(every))
    if unknown:
        raise ValueError(f"unknown ablation variant {unknown[0]!r} (known: {', '.join(every)})")
    chosen = [BASE, *[n for n in names if n != BASE]] if names else list(every)
    return {n: every[n] for n in chosen}


def _daily(run_dirs: list[Path]) -> pl.DataFrame:
    """Daily test RankIC per (horizon, date) of one seed's folds, stitched."""
    pred = pl.concat([pl.read_parquet(d / "predictions.parquet") for d in run_dirs])
    return daily_ic(pred.filter(pl.col("split") == "test"))


def _summary(daily: pl.DataFrame, base: pl.DataFrame | None) -> dict[str, dict[str, Any]]:
    """Per horizon: mean RankIC (of the seed-mean daily series), its NW t, and the paired NW t against
    the configured model's seed-mean series on the same dates."""
    out = {}
    for h in sorted(daily["horizon"].unique()):
        mine = daily.filter(pl.col("horizon") == h).sort("date")
        x = mine["rank_ic"].to_numpy()
        row: dict[str, Any] = {
            "rank_ic": float(x.mean()),
            "rank_ic_tstat": stats.nw_tstat(x, stats.nw_lags(len(x), int(h))),
            "n_dates": len(x),
        }
        if base is not None:
            test = paired_test(mine, base.filter(pl.col("horizon") == h), int(h))
            row["diff"] = test["mean_difference"] if test else float("nan")
            row["paired_t"] = test["t_stat"] if test else float("nan")
        out[f"{h}d"] = row
    return out


def ablate(
    cfg: Config,
    panel: str | Path,
    graph: str | Path | None,
    folds: str | Path,
    out: str | Path,
    seeds: int = 3,
    names: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train every variant x seed x fold (ATFT), then tabulate model x horizon test RankIC.

    Seed j of every variant is train.seed = j, so the variants differ only by what they take away.
    A variant's daily RankIC is the mean over its seeds on each date; the paired t is against the
    configured model's. A run dir that already holds predictions is reused (a killed run resumes).
    Writes out/ablation.json and out/ablation.md; returns the table.
    """
    if seeds < 1:
        raise ValueError(f"ablate needs at least one seed, got {seeds}")
    out = Path(out)
    n_folds = len(read_folds(folds))
    table: dict[str, Any] = {}
    base_daily = None
    for name, sets in variants(cfg, names).items():
        per_seed = []
        for seed in range(seeds):
            vcfg = cfg.with_overrides([*sets, f"train.seed={seed}"])
            dirs = [out / name / f"seed{seed}" / f"fold{k}" for k in range(n_folds)]
            for k, d in enumerate(dirs):
                if not (d / "predictions.parquet").is_file():
                    train_fold(vcfg, panel, graph, folds, k, "atft", d)
            per_seed.append(_daily(dirs))
        daily = pl.concat(per_seed).group_by("horizon", "date").agg(pl.col("rank_ic").mean()).sort("date")
        base_daily = daily if name == BASE else base_daily
        table[name] = {"overrides": sets, **_summary(daily, None if name == BASE else base_daily)}
    result = {"seeds": seeds, "folds": n_folds, "variants": table}
    write_json(out / "ablation.json", result)
    (out / "ablation.md").write_text(markdown(result) + "\n")
    write_json(out / "manifest.json", stamp(cfg, stage="ablate", seeds=seeds, folds=n_folds))
    return result


def markdown(result: dict[str, Any]) -> str:
    """variant x horizon: RankIC (NW t), and for each variant its paired t against the configured one."""
    horizons = [h for h in next(iter(result["variants"].values())) if h.endswith("d")]
    lines = [
        f"ATFT ablation: test RankIC (Newey-West t), mean of {result['seeds']} seeds over "
        f"{result['folds']} folds; paired t against `{BASE}`",
        "",
        "| variant | " + " | ".join(horizons) + " |",
        "|---|" + "---|" * len(horizons),
    ]
    for name, row in result["variants"].items():
        cells = []
        for h in horizons:
            c = row[h]
            cell = f"{c['rank_ic']:.4f} ({c['rank_ic_tstat']:.2f})"
            if "paired_t" in c:
                cell += f", paired t {c['paired_t']:+.2f}"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
