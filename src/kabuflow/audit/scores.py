"""Model scores under the audit: one fold trained on data <= the earliest cut scores both panels."""

# ATFT is trained once, by train-fold, on the earliest cut's own panel and graph (it cannot have seen
# anything later), then scores every date <= D of the full and the cut panel. Each baseline is fitted by
# its own train-fold code on the same train dates of each panel: nothing fitted may read a date after D,
# so the two fits, and their scores on every date <= D, must be identical.

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kabuflow.audit.compare import Tally, differs
from kabuflow.config import Config, ConfigError
from kabuflow.evaluate.lookahead import flags, loadings
from kabuflow.folds import Fold, fold_days, make_folds
from kabuflow.graph import load_graph
from kabuflow.normalize import load_panel
from kabuflow.predict import predict_dates
from kabuflow.train import train_fold
from kabuflow.train.baselines import run_baseline

KEY = ["date", "code", "horizon"]
MIN_TRAIN_DAYS = 20  # sessions of training data before the audit's fold can fit anything


def audit_fold(cfg: Config, dates: list[str]) -> Fold:
    """One walk-forward fold inside `dates` (the earliest cut's sessions): validation and test windows of
    min(folds.val_days, T/8) sessions at the end, the folds' embargo before each."""
    v = max(2, min(cfg.folds.val_days, len(dates) // 8))
    fc = dataclasses.replace(cfg.folds, n_folds=1, val_days=v, test_days=v, min_train_days=1)
    return make_folds(fc, dates, max(cfg.features.horizons))[0]


def _days(fold: Fold, dates: list[dt.date], upto: int) -> dict[str, np.ndarray]:
    """The fold's train and val days; "test" is every date <= `upto`: all of them are scored."""
    days = fold_days(fold, dates)
    return {"train": days["train"], "val": days["val"], "test": np.arange(upto + 1, dtype=np.int64)}


class Scores:
    """The trained fold (at the first cut) and the full panel's scores, kept between cuts."""

    def __init__(self, cfg: Config, full: Path, work: Path) -> None:
        self.cfg, self.full, self.work = cfg, full, work
        self.models = (tuple(cfg.audit.models) or tuple(cfg.pipeline.models)) if cfg.audit.scores else ()
        self.fold: Fold | None = None
        self.cache: dict[str, pl.DataFrame] = {}

    def plan(self, first_cut: dt.date) -> None:
        """The fold inside the earliest cut, from the full panel's dates <= it (the cut panel's own, which
        the panel comparison checks); an error before any work when it leaves nothing to train on."""
        panel = load_panel(self.full / "panel")
        dates = [d for d in panel.dates if d <= first_cut]
        try:
            self.fold = audit_fold(self.cfg, [d.isoformat() for d in dates])
            train = fold_days(self.fold, dates)["train"]
        except ValueError:  # make_folds: too few sessions for validation, test and the embargo gaps
            train = np.zeros(0, np.int64)
        rows = int(np.asarray(panel.valid[train]).sum())
        if len(train) < MIN_TRAIN_DAYS or rows == 0:
            raise ConfigError(
                f"audit: the earliest cut {first_cut} leaves the models {len(train)} training sessions "
                f"({rows} valid stock-days) after validation, test and folds.embargo_days="
                f"{self.cfg.folds.embargo_days}: choose a later first --cut, or --set audit.scores=false"
            )

    def train(self, first: Path) -> None:
        """Train ATFT on the earliest cut's panel and graph (its fold ends at that cut)."""
        if "atft" in self.models:
            train_fold(self.cfg, first / "panel", first / "graph", [self.fold], 0, "atft", self.work / "atft")

    def score(self, model: str, root: Path, upto: dt.date, tag: str) -> pl.DataFrame:
        """(date, code, horizon, score) of `model` on root's panel, every date <= upto."""
        panel = load_panel(root / "panel")
        last = max(i for i, d in enumerate(panel.dates) if d <= upto)
        if model == "atft":
            graph = load_graph(root / "graph") if self.cfg.model.use_graph else None
            pred = predict_dates(self.work / "atft", panel, graph, panel.dates[: last + 1])
        else:
            out = self.work / f"{model}-{tag}"
            out.mkdir(parents=True, exist_ok=True)
            pred, _ = run_baseline(self.cfg, panel, _days(self.fold, panel.dates, last), model, 0, out)
            pred = pred.filter(pl.col("split") == "test")
        return pred.select(*KEY, "score").sort(KEY)

    def full_scores(self, model: str) -> pl.DataFrame:
        """The full panel's scores on every date: computed once, sliced per cut."""
        if model not in self.cache:
            end = load_panel(self.full / "panel").dates[-1]
            self.cache[model] = self.score(model, self.full, end, "full")
        return self.cache[model]

    def compare(self, root: Path, d: dt.date) -> list[Tally]:
        """One tally per model and horizon: scores on every (date, code) <= D of both panels."""
        tallies = []
        for model in self.models:
            a = self.full_scores(model).filter(pl.col("date") <= d)
            b = self.score(model, root, d, f"cut-{d}")
            both = a.join(b, on=KEY, how="full", coalesce=True, suffix="_cut")
            for h, part in both.group_by("horizon", maintain_order=True):
                fa, fb = part["score"].to_numpy(), part["score_cut"].to_numpy()
                when, codes = part["date"].to_physical().to_numpy(), part["code"]
                t = Tally(f"{model}:{h[0]}d")
                t.add(
                    part.height,
                    differs(fa, fb),
                    when,
                    lambda i, fa=fa, fb=fb, w=when, c=codes: (int(w[i]), c[i], fa[i], fb[i]),
                )
                tallies.append(t)
        return tallies

    def lookahead(self, leak_rank_ic_1d: float, min_margin: float) -> dict[str, Any]:
        """The statistical check on the full panel's scores after the earliest cut (out of sample for
        every model): loadings on r(t-2..t+3), and warnings. evaluate's 1-day RankIC alarm is the
        loading on r(t+2), since y_1d(t) is day t+2's return."""
        after = dt.date.fromisoformat(self.fold.test_end)
        scores = pl.concat(
            [
                self.full_scores(m)
                .filter(pl.col("horizon") == 1, pl.col("date") > after)
                .select("date", "code", pl.lit(m).alias("model"), "score")
                for m in self.models
            ]
        ).drop_nulls("score")
        panel = load_panel(self.full / "panel")
        t, s = np.nonzero(np.asarray(panel.valid))
        y1 = np.asarray(panel.Y_raw[:, :, 0])[t, s]
        dates = np.asarray(panel.meta["dates"], dtype="datetime64[D]")
        labels = pl.DataFrame(
            {"date": dates[t], "code": np.asarray(panel.codes)[s], "label": y1.astype(np.float64)}
        )
        table = loadings(scores, labels.with_columns(pl.col("label").fill_nan(None)))
        alarmed = {
            m: f"1-day RankIC {v['t+2']:.4f} above evaluate.leak_rank_ic_1d={leak_rank_ic_1d}"
            for m, v in table.items()
            if v["t+2"] > leak_rank_ic_1d
        }
        return {"after": after.isoformat(), "table": table, "warnings": flags(table, alarmed, min_margin)}
