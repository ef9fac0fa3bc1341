"""folds: walk-forward folds over sessions (expanding train, validation, test) with a label-window embargo.

Layout, with n_folds = 3 (sessions run left to right; `.` = embargo gap of max_horizon + embargo_days):

    sessions  0                                                                            T-1
    fold 0    [train ..............]..[val]..[test 0]
    fold 1    [train .........................]..[val]..[test 1]
    fold 2    [train ..........................................]..[val]..[test 2]
                                                 |--test 0--|--test 1--|--test 2--|

Every fold trains from the first session (expanding window). The test windows tile the end of the
range back to back, the last one ending at the last session (labels there are partly unknown; they are
NaN in the panel and masked downstream, and keeping those dates in test lets the newest sessions count
for the short horizons). A label y_h(t) spans sessions t+1 .. t+1+h, so a training date t is allowed
only if t + 1 + max_horizon <= val_start - embargo_days: no training label window reaches within
`embargo_days` sessions of validation. The same gap separates validation from test.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kabuflow import manifest, telemetry
from kabuflow.artifacts import read_json, write_json
from kabuflow.config import Config, ConfigError, FoldsConfig

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: inclusive ISO-date bounds of its train, validation and test sessions."""

    k: int
    train_start: str
    train_end: str
    val_start: str
    val_end: str
    test_start: str
    test_end: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the item a KFP ParallelFor iterates over)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fold:
        """The inverse of to_dict; a missing or unknown key is an error naming it."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown, missing = sorted(set(d) - set(names)), [n for n in names if n not in d]
        if unknown or missing:
            raise ValueError(f"fold dict: unknown keys {unknown}, missing keys {missing}")
        return cls(k=int(d["k"]), **{n: str(d[n]) for n in names[1:]})


def _as_dates(dates: list[dt.date] | list[str]) -> list[dt.date]:
    out = [d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)) for d in dates]
    if any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise ValueError("make_folds: dates must be strictly increasing sessions")
    return out


def _check(cfg: FoldsConfig, max_horizon: int) -> None:
    for name in ("n_folds", "val_days", "test_days", "min_train_days"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"folds.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.embargo_days < 0 or max_horizon < 0:
        raise ConfigError(
            f"folds.embargo_days and max_horizon must be >= 0, got {cfg.embargo_days}, {max_horizon}"
        )


def check_lookback(lookback: int, sessions: int) -> None:
    """model.lookback: at least one session, and no longer than the panel's history (a window that
    never fills is all padding)."""
    if lookback < 1:
        raise ConfigError(f"model.lookback must be >= 1 session, got {lookback}")
    if lookback > sessions:
        raise ConfigError(
            f"model.lookback={lookback} is longer than the panel's history of {sessions} sessions"
        )


def sessions_needed(cfg: FoldsConfig, max_horizon: int = 20) -> int:
    """The fewest sessions that fit n_folds test windows, validation, both gaps and min_train_days."""
    gap = cfg.embargo_days + max_horizon + 1
    return cfg.min_train_days + 2 * gap - 2 + cfg.val_days + cfg.n_folds * cfg.test_days


def make_folds(cfg: FoldsConfig, dates: list[dt.date] | list[str], max_horizon: int = 20) -> list[Fold]:
    """Walk-forward folds over `dates` (the panel's sessions, sorted): see the module docstring.

    Index arithmetic, with gap = embargo_days + max_horizon + 1 (train_end + 1 + max_horizon is the last
    session of the last training label; it is embargo_days before val_start):
    test_end(k) = T - 1 - (n_folds - 1 - k) * test_days, test_start = test_end - test_days + 1,
    val_end = test_start - gap, val_start = val_end - val_days + 1, train_end = val_start - gap.
    """
    _check(cfg, max_horizon)
    days = _as_dates(dates)
    t, gap = len(days), cfg.embargo_days + max_horizon + 1
    if t < sessions_needed(cfg, max_horizon):
        first_train = t - sessions_needed(cfg, max_horizon) + cfg.min_train_days
        raise ValueError(
            f"make_folds: {t} sessions leave fold 0 {max(first_train, 0)} training sessions, fewer than "
            f"folds.min_train_days={cfg.min_train_days} (need {sessions_needed(cfg, max_horizon)} sessions for "
            f"folds.n_folds={cfg.n_folds}, folds.val_days={cfg.val_days}, folds.test_days={cfg.test_days}, "
            f"folds.embargo_days={cfg.embargo_days}, max_horizon={max_horizon}): use more dates or lower them"
        )
    folds = []
    for k in range(cfg.n_folds):
        test_end = t - 1 - (cfg.n_folds - 1 - k) * cfg.test_days
        test_start = test_end - cfg.test_days + 1
        val_end = test_start - gap
        val_start = val_end - cfg.val_days + 1
        train_end = val_start - gap
        bounds = (0, train_end, val_start, val_end, test_start, test_end)
        folds.append(Fold(k, *(days[i].isoformat() for i in bounds)))
    return folds


def fold_index(fold: Fold, dates: list[dt.date] | list[str]) -> dict[str, slice]:
    """Slices of the session axis for the fold's train, val and test dates (bounds must be sessions)."""
    days = _as_dates(dates)
    out = {}
    for split in SPLITS:
        bounds = getattr(fold, f"{split}_start"), getattr(fold, f"{split}_end")
        lo, hi = (dt.date.fromisoformat(b) for b in bounds)
        i, j = bisect.bisect_left(days, lo), bisect.bisect_left(days, hi)
        if i == len(days) or days[i] != lo or j == len(days) or days[j] != hi:
            raise ValueError(f"fold {fold.k}: {split} bounds {lo}..{hi} are not sessions of these dates")
        out[split] = slice(i, j + 1)
    return out


def write_folds(path: str | Path, folds: list[Fold], extra: dict[str, Any] | None = None) -> Path:
    """Atomically write {"folds": [fold dicts], **extra} as JSON."""
    return write_json(path, {"folds": [f.to_dict() for f in folds], **(extra or {})})


# Where folds come from: a folds stage output directory or its folds.json, a bare folds file, or the
# Fold objects (or their dicts, the items a KFP ParallelFor hands over) themselves.
FoldsLike = str | Path | list[Fold] | list[dict[str, Any]]


def read_folds(folds: FoldsLike) -> list[Fold]:
    """Folds from a folds stage output directory (verified against its manifest), from a file written by
    write_folds (or a bare JSON list), or from a list of Fold objects or their dicts (the items a KFP
    ParallelFor hands over)."""
    if not isinstance(folds, str | Path):
        return [f if isinstance(f, Fold) else Fold.from_dict(f) for f in folds]
    art = _artifact(folds)
    obj = read_json(art.file("folds.json") if art else folds)
    items = obj["folds"] if isinstance(obj, dict) else obj
    return [Fold.from_dict(d) for d in items]


def _artifact(path: str | Path) -> manifest.Artifact | None:
    """The folds stage output holding `path` (the directory, or its folds.json), verified; None for a
    folds file outside any stage output."""
    path = Path(path)
    if path.is_dir():
        return manifest.open_dir(path)
    if path.name == "folds.json" and (path.parent / manifest.MANIFEST).is_file():
        return manifest.open_dir(path.parent)
    return None


def folds_lineage(folds: FoldsLike) -> dict[str, str]:
    """The lineage of a folds output (stage -> manifest sha256, its own under "folds" last); {} for a
    bare file or an in-memory list, which carry none."""
    art = _artifact(folds) if isinstance(folds, str | Path) else None
    return art.lineage if art else {}


def read_fold(folds: FoldsLike, k: int) -> Fold:
    """Fold k (see read_folds); an unknown k is an error listing the known ones."""
    items = read_folds(folds)
    match = [f for f in items if f.k == k]
    if not match:
        raise ValueError(f"fold {k} not in folds (have {[f.k for f in items]})")
    return match[0]


def fold_days(fold: Fold, dates: list[dt.date] | list[str]) -> dict[str, np.ndarray]:
    """Panel time indices of the fold's train, val and test dates (each a sorted int64 array)."""
    slices = fold_index(fold, dates)
    out = {split: np.arange(sl.start, sl.stop, dtype=np.int64) for split, sl in slices.items()}
    assert out["train"][-1] < out["val"][0] <= out["val"][-1] < out["test"][0], (
        "fold splits out of time order"
    )
    return out


def build_folds(cfg: Config, panel: str | Path, out: str | Path) -> list[Fold]:
    """The folds stage: folds over the panel's sessions, written as out/folds.json with its manifest.
    max_horizon = the panel's longest horizon."""
    with manifest.output(cfg, out, "folds") as w, telemetry.stage("folds") as rec:
        meta = read_json(w.read("panel", panel).file("meta.json"))
        rec.rows_in = len(meta["dates"])
        max_h = max(meta.get("horizons") or cfg.features.horizons)
        check_lookback(cfg.model.lookback, len(meta["dates"]))
        folds = make_folds(cfg.folds, meta["dates"], max_h)
        write_folds(w.dir / "folds.json", folds, {"max_horizon": max_h, "sessions": len(meta["dates"])})
        w.commit({"n_folds": len(folds), "max_horizon": max_h, "sessions": len(meta["dates"])})
        rec.rows_out = len(folds)
    return folds
