"""Read train-fold outputs, stitch every fold's out-of-sample test predictions, attach the oracle."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from kabuflow import schema
from kabuflow.config import HORIZONS
from kabuflow.evaluate.caveats import summarise as caveat_summary

ORACLE = "oracle"
QUANTILES = ("q10", "q25", "q50", "q75", "q90")
SPLITS = ("val", "test", "live")
VSN_FILE = "vsn_weights.json"
# Not part of a model: the predictions themselves and a resume checkpoint a killed run may leave behind.
SKIP_FILES = frozenset({"predictions.parquet", "checkpoint.pt"})


class StitchError(ValueError):
    """Test predictions that cannot be stitched honestly (a date predicted twice, nothing to evaluate)."""


@dataclass(frozen=True)
class PredictionDir:
    """One train-fold output directory and what its test rows contain."""

    path: Path
    models: tuple[str, ...]
    folds: tuple[int, ...]
    test_rows: int


def read_predictions(path: str | Path) -> pl.DataFrame:
    """One predictions.parquet, cast to schema.PREDICTIONS; missing quantile columns become nulls
    (baselines have none), anything else missing or mistyped is an error naming the column."""
    file = Path(path) / "predictions.parquet"
    df = pl.read_parquet(file)
    df = df.with_columns(pl.lit(None, dtype=pl.Float64).alias(q) for q in QUANTILES if q not in df.columns)
    df = schema.cast(df, schema.PREDICTIONS, str(file)).select(list(schema.PREDICTIONS))
    bad_split = df.filter(~pl.col("split").is_in(SPLITS))
    if bad_split.height:
        raise schema.SchemaError(
            f"{file}: column 'split' has {bad_split['split'][0]!r}, expected one of {SPLITS}"
        )
    bad_h = df.filter(~pl.col("horizon").is_in(HORIZONS))
    if bad_h.height:
        raise schema.SchemaError(
            f"{file}: column 'horizon' has {bad_h['horizon'][0]}, expected one of {HORIZONS}"
        )
    # NaN is not a prediction: treat it as missing so that it never ranks as the largest score.
    return df.with_columns(pl.col("score", "label").fill_nan(None))


def stitch(dirs: list[Path]) -> tuple[pl.DataFrame, list[PredictionDir]]:
    """Concatenate the test rows (split == "test") of every directory and check each (model, horizon,
    date) comes from exactly one fold: two folds predicting one date means overlapping test windows,
    and averaging them would hide it."""
    frames, infos = [], []
    for d in dirs:
        test = read_predictions(d).filter(pl.col("split") == "test")
        frames.append(test)
        infos.append(
            PredictionDir(
                path=Path(d),
                models=tuple(sorted(test["model"].unique())),
                folds=tuple(sorted(test["fold"].unique())),
                test_rows=test.height,
            )
        )
    test = pl.concat(frames) if frames else pl.DataFrame(schema=schema.PREDICTIONS)
    if test.height == 0:
        raise StitchError(f"no test predictions (split == 'test') in {[str(d) for d in dirs]}")
    check_unique(test)
    check_scores(test)
    return test.sort("model", "horizon", "code", "date"), infos


def check_scores(test: pl.DataFrame) -> None:
    """Raise StitchError naming model and fold when scores are missing or not finite: a diverged fold
    would otherwise drop out of the metrics silently and make its model look better than it is."""
    bad = (
        test.filter(pl.col("score").is_null() | ~pl.col("score").is_finite())
        .group_by("model", "fold")
        .len()
        .sort("model", "fold")
    )
    if bad.height:
        m, f, n = bad.row(0)
        raise StitchError(f"model {m!r} fold {f}: {n:,} test predictions have no finite score")


def check_unique(test: pl.DataFrame) -> None:
    """Raise StitchError naming the model and date when a date is predicted by two folds, or a
    (date, code) twice by one fold (the same directory passed twice)."""
    keys = ["model", "horizon", "date"]
    # One pass over the rows; the details are only gathered when something is wrong.
    counts = test.group_by(keys).agg(
        pl.col("fold").n_unique().alias("folds"),
        pl.len().alias("rows"),
        pl.col("code").n_unique().alias("codes"),
    )
    twice = counts.filter(pl.col("folds") > 1).sort(keys)
    if twice.height:
        m, h, d = twice.row(0)[:3]
        folds = sorted(
            test.filter((pl.col("model") == m) & (pl.col("horizon") == h) & (pl.col("date") == d))[
                "fold"
            ].unique()
        )
        raise StitchError(
            f"model {m!r} ({h}d): date {d} is predicted by folds {folds}; test windows must not "
            f"overlap ({twice.height} such model/horizon/date)"
        )
    dup = counts.filter(pl.col("rows") > pl.col("codes")).sort(keys)
    if dup.height:
        m, h, d = dup.row(0)[:3]
        day = test.filter((pl.col("model") == m) & (pl.col("horizon") == h) & (pl.col("date") == d))
        code, n = day.group_by("code").len().filter(pl.col("len") > 1).sort("code").row(0)
        raise StitchError(
            f"model {m!r} ({h}d): date {d}, code {code} is predicted {n} times "
            "(was one predictions directory passed twice?)"
        )


def read_oracle(path: str | Path | None) -> pl.DataFrame | None:
    """The raw output's oracle.parquet (the file its manifest lists) as (date, code, oracle_*[, part_*]),
    cast to schema.oracle_spec; None when there is no oracle (real data)."""
    if path is None:
        return None
    df = pl.read_parquet(path)
    spec = schema.oracle_spec(df.columns)
    return schema.cast(df, spec, str(path)).select(list(spec)).rename({"Date": "date", "Code": "code"})


def attach_oracle(test: pl.DataFrame, oracle: pl.DataFrame | None) -> pl.DataFrame | None:
    """Oracle rows (model "oracle") scored by the oracle (read_oracle) on exactly the (date, code,
    horizon) cells the models were evaluated on, with the same labels; None when there is no oracle."""
    if oracle is None:
        return None
    cells = (
        test.filter(pl.col("model") != ORACLE)
        .group_by("date", "code", "horizon")
        .agg(pl.col("label").drop_nulls().first(), pl.col("fold").min())
    )
    parts = []
    for h in HORIZONS:
        part = cells.filter(pl.col("horizon") == h).join(
            oracle.select("date", "code", pl.col(f"oracle_{h}d").alias("score")),
            on=["date", "code"],
            how="inner",
        )
        parts.append(part)
    rows = pl.concat(parts).with_columns(
        pl.lit(ORACLE).alias("model"),
        pl.lit("test").alias("split"),
        *(pl.lit(None, dtype=pl.Float64).alias(q) for q in QUANTILES),
    )
    rows = schema.cast(rows, schema.PREDICTIONS, "oracle rows").select(list(schema.PREDICTIONS))
    return rows.with_columns(pl.col("score").fill_nan(None)).sort("horizon", "code", "date")


def label_disagreement(test: pl.DataFrame) -> int:
    """How many (date, code, horizon) cells carry different labels in different models' rows: labels
    are realised returns, so any disagreement means one model was scored against other numbers."""
    spread = (
        test.filter(pl.col("label").is_not_null())
        .group_by("date", "code", "horizon")
        .agg((pl.col("label").max() - pl.col("label").min()).alias("spread"))
    )
    return int(spread.filter(pl.col("spread") > 1e-9).height)


def daily_returns(frame: pl.DataFrame) -> pl.DataFrame:
    """(date, code, ret): the 1-day labels y_1d(date) = AdjC[t+2]/AdjC[t+1] − 1, the return a position
    opened at the close after the signal earns over its first session; the backtest's daily returns."""
    rets = (
        frame.filter((pl.col("horizon") == 1) & pl.col("label").is_not_null())
        .group_by("date", "code")
        .agg(pl.col("label").first().alias("ret"))
    )
    if rets.height == 0:
        raise StitchError("the long-short backtest needs 1-day labels (rows with horizon 1); none were given")
    return rets.sort("code", "date")


def _vsn_of(path: Path) -> Any:
    """A fold's variable-selection weights: vsn_weights.json, or "vsn_weights" in its metrics.json."""
    if (path / VSN_FILE).is_file():
        return json.loads((path / VSN_FILE).read_text())
    if (path / "metrics.json").is_file():
        return json.loads((path / "metrics.json").read_text()).get("vsn_weights")
    return None


def read_vsn_weights(infos: list[PredictionDir]) -> dict[str, dict[str, float]]:
    """Per model: the mean over folds of the variable-selection weights each fold wrote ({feature: w})."""
    per_model: dict[str, list[dict[str, float]]] = {}
    for info in infos:
        weights = _vsn_of(info.path)
        if weights is None or len(info.models) != 1:
            continue
        if not isinstance(weights, dict) or not all(isinstance(v, int | float) for v in weights.values()):
            raise ValueError(
                f"{info.path}: variable-selection weights must be a JSON object {{feature: weight}}"
            )
        per_model.setdefault(info.models[0], []).append({k: float(v) for k, v in weights.items()})
    out = {}
    for model, folds in per_model.items():
        names = sorted({k for w in folds for k in w})
        mean = {k: sum(w.get(k, 0.0) for w in folds) / len(folds) for k in names}
        out[model] = dict(sorted(mean.items(), key=lambda kv: -kv[1]))
    return out


def copy_model_files(infos: list[PredictionDir], model: str, dest: Path) -> list[str]:
    """Copy the files a fold left beside its predictions (weights, config, history, metrics; top level
    only) for `model` into dest/fold_<k>/, so that the evaluate output alone is enough to promote it."""
    copied = []
    for info in infos:
        if info.models != (model,):
            continue
        sub = dest / (f"fold_{info.folds[0]}" if len(info.folds) == 1 else info.path.name)
        listed = set(json.loads((info.path / "manifest.json").read_text())["files"]) | {"manifest.json"}
        for src in sorted(info.path.iterdir()):
            if not src.is_file() or src.name in SKIP_FILES or src.name not in listed:
                continue
            target = sub / src.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
            copied.append(str(target.relative_to(dest.parent)))
    return copied


def summarise_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The few manifest fields a reader of the report wants: what data, which dates, what was dropped."""
    out: dict[str, Any] = {
        k: manifest[k] for k in ("source", "start", "end", "code_version") if k in manifest
    }
    if isinstance(manifest.get("tables"), dict):
        out["tables"] = {
            k: v.get("rows") if isinstance(v, dict) else v for k, v in manifest["tables"].items()
        }
    if isinstance(manifest.get("dropped"), list):
        out["dropped"] = manifest["dropped"]
    if isinstance(manifest.get("features"), list):
        feats = manifest["features"]
        out["n_features"] = len(feats)
        families = sorted({f.get("family", "?") for f in feats if isinstance(f, dict)})
        out["families"] = families
    if isinstance(manifest.get("families_absent"), list):
        out["families_absent"] = manifest["families_absent"]
    return out | caveat_summary(manifest)
