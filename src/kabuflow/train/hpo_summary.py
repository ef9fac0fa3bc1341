"""hpo-summary: the shared study's best settings, trial table, parameter importance and Optuna plots."""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path
from typing import Any

import optuna
import polars as pl

from kabuflow.artifacts import atomic_write, stamp, write_json
from kabuflow.config import Config, ConfigError
from kabuflow.evaluate.plots import to_png
from kabuflow.evaluate.report import CSS, _md_table, _table
from kabuflow.train import study as studies
from kabuflow.train.hpo import apply_best, summarise

OUTPUTS = ("hpo.json", "trials.csv", "report.html", "summary.md", "best_config.json")


def hpo_summary(cfg: Config, out: str | Path) -> dict[str, Any]:
    """Read the study cfg.hpo.study at cfg.hpo.storage (the workers' shared URL) and write out/: hpo.json
    (best settings and counts, as `kabuflow hpo` writes it), trials.csv, report.html (tables and
    Optuna's optimization-history, timeline and importance plots), summary.md and best_config.json
    (cfg with the best settings and the trial count for the deflated Sharpe). Returns hpo.json's content.

    A RUNNING trial whose worker stopped beating is failed here, as a worker would (and re-enqueued)."""
    if not cfg.hpo.storage:
        raise ConfigError("hpo.storage is empty: hpo-summary reads the workers' shared study from it")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    url = studies.resolve_url(cfg.hpo.storage, out)
    study = studies.load_study(cfg.hpo, url)
    with warnings.catch_warnings():  # "experimental" in Optuna since 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    result = {**summarise(cfg, study, url), "importance": importance(study)}
    trials = trial_table(study)
    atomic_write(out / "trials.csv", lambda p: trials.write_csv(p))
    write_json(out / "hpo.json", {**result, **stamp(cfg, stage="hpo-summary", outputs=list(OUTPUTS))})
    write_json(out / "best_config.json", apply_best(cfg, result).to_dict())
    page = render_html(result, trials, _plots(study, bool(result["importance"])))
    atomic_write(out / "report.html", lambda p: p.write_text(page))
    markdown = render_markdown(result, trials)
    atomic_write(out / "summary.md", lambda p: p.write_text(markdown))
    return result


def importance(study: optuna.Study) -> dict[str, float]:
    """fANOVA importance of each tuned setting for the value ({} until two complete trials differ)."""
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError, ZeroDivisionError):  # too few or identical trials: nothing to split
        return {}


def trial_table(study: optuna.Study) -> pl.DataFrame:
    """One row per trial: number, state, value, seconds, the trial a retry replays, every setting."""
    keys = sorted({k for t in study.get_trials(deepcopy=False) for k in t.params})
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "seconds": t.duration.total_seconds() if t.duration else None,
            "retry_of": t.system_attrs.get("failed_trial"),
            **{k: json.dumps(t.params[k]) if k in t.params else None for k in keys},
        }
        for t in study.get_trials(deepcopy=False)
    ]
    schema = {"number": pl.Int64, "state": pl.String, "value": pl.Float64, "seconds": pl.Float64}
    return pl.DataFrame(rows, schema={**schema, "retry_of": pl.Int64, **dict.fromkeys(keys, pl.String)})


def _plots(study: optuna.Study, with_importance: bool) -> dict[str, str]:
    """Optuna's matplotlib plots as base64 PNG, by title."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    makers = {
        "Optimization history": ovm.plot_optimization_history,
        "Timeline (one row per trial)": ovm.plot_timeline,
    }
    if with_importance:
        makers["Parameter importance"] = ovm.plot_param_importances
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for title, make in makers.items():
            fig = make(study).figure
            out[title] = to_png(fig)
            plt.close(fig)  # Optuna draws through pyplot; free its global figure
    return out


def _head(result: dict[str, Any]) -> list[list[Any]]:
    keys = ("study", "storage", "fold", "n_trials", "n_complete", "n_pruned", "n_fail", "n_waiting")
    return [[k, result.get(k)] for k in keys] + [
        ["best trial", result["best_trial"]],
        ["best value", result["best_value"]],
    ]


def render_html(result: dict[str, Any], trials: pl.DataFrame, figures: dict[str, str]) -> str:
    """One self-contained page: counts, best settings, importance, plots, every trial."""
    e = html.escape
    best = [[k, json.dumps(v)] for k, v in result["best_params"].items()]
    imp = [[k, v] for k, v in result["importance"].items()] or [
        ["(needs two differing complete trials)", None]
    ]
    imgs = "".join(
        f'<h2>{e(t)}</h2><img class="plot" alt="{e(t)}" src="data:image/png;base64,{b64}">'
        for t, b64 in figures.items()
    )
    body = "\n".join(
        [
            f'<h1>kabuflow — hyperparameter search</h1><p class="meta">{e(result["metric"])}</p>',
            "<h2>Study</h2>" + _table(["item", "value"], _head(result)),
            "<h2>Best settings</h2>" + _table(["setting", "value"], best),
            "<h2>Importance</h2>" + _table(["setting", "fANOVA importance"], imp),
            imgs,
            "<h2>Trials</h2>" + _table(trials.columns, [list(r) for r in trials.iter_rows()]),
        ]
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>kabuflow hpo</title>'
        f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def render_markdown(result: dict[str, Any], trials: pl.DataFrame) -> str:
    """Counts, best settings and the ten best trials (KFP's Markdown visualisation)."""
    lines = ["# kabuflow hpo", "", *_md_table(["item", "value"], _head(result)), "", "## Best settings", ""]
    lines += _md_table(["setting", "value"], [[k, json.dumps(v)] for k, v in result["best_params"].items()])
    top = trials.filter(pl.col("value").is_not_null()).sort("value", descending=True).head(10)
    lines += ["", "## Best trials", "", *_md_table(top.columns, [list(r) for r in top.iter_rows()])]
    return "\n".join(lines) + "\n"
