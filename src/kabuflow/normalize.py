"""normalize: causal per-date normalization of the long feature frame into the dense training panel."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kabuflow import manifest, telemetry
from kabuflow.artifacts import atomic_write, stamp, write_json
from kabuflow.config import Config, ConfigError, NormalizeConfig
from kabuflow.scaling import label_z, nanmedian, rank_gauss, robust_z, trailing_z
from kabuflow.schema import FEATURE_KEYS, KINDS, SchemaError, check

ARRAYS = ("X", "Y", "Y_raw", "valid", "R", "sector", "market")
log = logging.getLogger(__name__)
COLUMN_BATCH = 8  # features read and normalized per pass: raw columns never all in RAM
X_BLOCK_BYTES = 256 * 2**20  # X is assembled this many bytes of dates at a time, never whole in RAM


@dataclass(frozen=True, eq=False)
class Panel:
    """The normalized panel: memory-mapped arrays (see docs/architecture.md) plus `meta.json`."""

    path: Path
    X: np.ndarray  # [T, N, F] normalized features, 0 where masked
    Y: np.ndarray  # [T, N, H] labels standardized per date, NaN = no label
    Y_raw: np.ndarray  # [T, N, H] raw labels
    valid: np.ndarray  # [T, N] bool
    R: np.ndarray  # [T, N] raw 1-day log return at t, NaN when missing
    sector: np.ndarray  # [T, N] int16 index into meta["sectors"], -1 unknown
    market: np.ndarray  # [T, N] int16 index into meta["markets"], -1 unknown
    meta: dict[str, Any]
    # stage -> manifest sha256 of this panel and of everything upstream of it
    lineage: dict[str, str] = field(default_factory=dict)

    @functools.cached_property
    def dates(self) -> list[dt.date]:
        """The session axis as dates, parsed once (meta.json stores them as ISO strings; nothing else should
        read those)."""
        return [dt.date.fromisoformat(d) for d in self.meta["dates"]]

    @property
    def codes(self) -> list[str]:
        """The code axis."""
        return list(self.meta["codes"])

    @property
    def feature_names(self) -> list[str]:
        """The feature axis of X."""
        return list(self.meta["feature_names"])

    @property
    def horizons(self) -> list[int]:
        """The horizon axis of Y, in sessions."""
        return list(self.meta["horizons"])


def load_panel(path: str | Path | manifest.Artifact) -> Panel:
    """Memory-map a panel directory written by `normalize`, verified against its manifest (see
    kabuflow.manifest; `Panel.lineage` is its lineage); shapes are checked against meta.json."""
    art = path if isinstance(path, manifest.Artifact) else manifest.open_dir(path)
    path = art.path
    meta = json.loads(art.file("meta.json").read_text())
    arrays = {}
    for name in ARRAYS:
        if not art.has(f"{name}.npy"):
            raise FileNotFoundError(f"panel {path}: missing {name}.npy")
        arrays[name] = np.load(art.file(f"{name}.npy"), mmap_mode="r")
    t, n = len(meta["dates"]), len(meta["codes"])
    expect = {"X": (t, n, len(meta["feature_names"])), "Y": (t, n, len(meta["horizons"]))}
    for name, arr in arrays.items():
        want = expect.get(name, expect["Y"] if name == "Y_raw" else (t, n))
        if arr.shape != want:
            raise SchemaError(f"panel {path}: {name}.npy has shape {arr.shape}, meta.json implies {want}")
    return Panel(path=path, meta=meta, lineage=art.lineage, **arrays)


def as_panel(panel: Panel | str | Path) -> Panel:
    """A loaded panel, or the panel at a path."""
    return panel if isinstance(panel, Panel) else load_panel(panel)


def _check_cfg(c: NormalizeConfig) -> None:
    if not 2 <= c.market_min_periods <= c.market_window:
        raise ConfigError("normalize.market_min_periods must be in [2, normalize.market_window]")
    if c.market_lag < 1 - c.market_window:
        raise ConfigError(f"normalize.market_lag must be >= 1 - normalize.market_window, got {c.market_lag}")
    if c.market_lag < 0:
        log.warning(
            "normalize.market_lag=%d reads %d future sessions: a look-ahead leak", c.market_lag, -c.market_lag
        )
    if c.clip <= 0 or not 0 <= c.min_valid_share <= 1:
        raise ConfigError("normalize.clip must be > 0 and normalize.min_valid_share in [0, 1]")


def _read(
    art: manifest.Artifact, horizons: tuple[int, ...]
) -> tuple[pl.DataFrame, list[dict], list[str], str]:
    """Keys, labels and R (cleaned), the manifest's features, label names, R's source column
    (ret_log_1d, else ret_1d). Feature columns are checked here, read later a batch at a time."""
    features, feats = art.path, art.manifest.get("features")
    if not feats:
        raise SchemaError(f"{features}/manifest.json: no 'features' listed")
    for f in feats:
        if f.get("kind") not in KINDS:
            raise SchemaError(
                f"{features}/manifest.json: feature {f.get('name')!r} has kind {f.get('kind')!r}"
            )
    labels, names = [f"y_{h}d" for h in horizons], [f["name"] for f in feats]
    parquet = art.file("features.parquet")
    have = pl.read_parquet_schema(parquet)
    ret = "ret_log_1d" if "ret_log_1d" in have else "ret_1d"
    spec = {**FEATURE_KEYS, **{n: pl.Float32() for n in names}, **{y: pl.Float64() for y in labels}}
    check(pl.DataFrame(schema=have), {**spec, ret: pl.Float32()}, f"{features}/features.parquet")
    df = pl.read_parquet(parquet, columns=list(dict.fromkeys([*FEATURE_KEYS, *labels, ret])))
    clean = [finite(y).alias(y) for y in labels] + [_log_return(ret).alias("_ret")]
    return df.with_columns(clean), feats, labels, ret


def finite(name: str) -> pl.Expr:
    """The column with NaN and +-inf turned into null (missing)."""
    return pl.when(pl.col(name).is_finite()).then(pl.col(name))


def _log_return(col: str) -> pl.Expr:
    """R is a log return: `ret_log_1d` as is; `ret_1d` is the simple AdjC_t/AdjC_{t-1} - 1, so log1p."""
    x = pl.col(col).cast(pl.Float64)
    r = x if col == "ret_log_1d" else x.log1p()
    return pl.when(r.is_finite()).then(r)


def _axes(df: pl.DataFrame) -> tuple[list[dt.date], list[str], np.ndarray, np.ndarray]:
    """Sorted dates and codes, and each row's date index ti and code index ci (no duplicates)."""
    dates, codes = df["date"].unique().sort(), df["code"].unique().sort()
    ti = dates.search_sorted(df["date"]).to_numpy().astype(np.int64)
    ci = codes.search_sorted(df["code"]).to_numpy().astype(np.int64)
    key = np.sort(ti * len(codes) + ci)
    if len(key) and (key[1:] == key[:-1]).any():
        raise SchemaError("features.parquet: duplicate (date, code) rows")
    return dates.to_list(), codes.to_list(), ti, ci


Blocks = list[tuple[list[int], np.ndarray]]  # (feature indices, values [T, len(indices), N])


def _features(
    path: Path, feats: list[dict], ti: np.ndarray, ci: np.ndarray, tn: tuple[int, int], c: NormalizeConfig
) -> tuple[Blocks, np.ndarray]:
    """Normalized features as dense blocks in X's dtype (0 where masked), and the count of present
    stock features per stock-day [T, N].

    Each block is [T, B, N]: the statistics of date t reduce over its own row's last axis only (stock),
    or over dates before t (market). The parquet is read B columns at a time.
    """
    blocks: Blocks = []
    present = np.zeros(tn, np.int32)
    kinds = {k: [j for j, f in enumerate(feats) if f["kind"] == k] for k in KINDS}
    for k, cols in kinds.items():
        for i in range(0, len(cols), COLUMN_BATCH):
            batch = cols[i : i + COLUMN_BATCH]
            names = [feats[j]["name"] for j in batch]
            raw = pl.read_parquet(path, columns=names).select(finite(n).cast(pl.Float32) for n in names)
            x = np.full((tn[0], len(batch), tn[1]), np.nan, np.float32)
            x[ti, :, ci] = raw.to_numpy()  # null -> NaN; no row -> NaN
            if k == "stock":
                present += np.isfinite(x).sum(1, dtype=np.int32)
                x = (robust_z if c.method == "robust_z" else rank_gauss)(x, c.clip)
            elif k == "market":  # one value per date: the cross-sectional median of the rows' copies
                level = trailing_z(nanmedian(x), c.market_window, c.market_min_periods, c.clip, c.market_lag)
                x = np.where(np.isnan(x), np.nan, level[..., None])
            blocks.append(
                (batch, np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0).astype(c.dtype))
            )
    return blocks, present


def save_npy(path: Path, arr: np.ndarray) -> None:
    """np.save through atomic_write (a file object: np.save would append .npy to a path)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)

    atomic_write(path, write)


def _dense(
    ti: np.ndarray, ci: np.ndarray, values: np.ndarray, shape: tuple[int, ...], fill: Any
) -> np.ndarray:
    """Scatter row values into a [T, N, ...] array by (date index, code index) in one assignment."""
    out = np.full(shape, fill, dtype=values.dtype)
    out[ti, ci] = values
    return out


def _write_x(path: Path, blocks: Blocks, shape: tuple[int, int, int], dtype: str) -> None:
    """X [T, N, F] as .npy, written sequentially a block of dates at a time (never whole in RAM twice)."""
    t, n, f = shape
    step = max(1, X_BLOCK_BYTES // max(1, n * f * np.dtype(dtype).itemsize))
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}

    def write(tmp: Path) -> None:
        buf = np.empty((step, n, f), dtype)
        with open(tmp, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            for t0 in range(0, t, step):
                dense = buf[: min(step, t - t0)]
                for cols, block in blocks:
                    dense[:, :, cols] = block[t0 : t0 + step].transpose(0, 2, 1)
                dense.tofile(fh)

    atomic_write(path, write)


def _codes_index(df: pl.DataFrame, col: str) -> tuple[np.ndarray, list[str]]:
    """As-of categorical (sector, market) as int16 indices into its value list; -1 unknown.

    The list is ordered by first appearance (then name), so a value first seen after D appends to it
    and never renumbers the indices of dates <= D.
    """
    seen = df.filter(pl.col(col).str.len_chars() > 0).group_by(col).agg(pl.col("date").min())
    values = seen.sort("date", col)[col].to_list()
    idx = df[col].replace_strict(values, list(range(len(values))), default=-1, return_dtype=pl.Int16)
    return idx.to_numpy(), values


def normalize(cfg: Config, features: str | Path, out: str | Path) -> dict[str, Any]:
    """Features dir -> panel dir (X, Y, Y_raw, valid, R, sector, market .npy + meta.json + manifest.json)."""
    c = cfg.normalize
    _check_cfg(c)
    with manifest.output(cfg, out, "normalize") as w, telemetry.stage("normalize") as rec:
        art = w.read("features", features)
        df, feats, labels, ret = _read(art, cfg.features.horizons)
        rec.rows_in = df.height
        dates, codes, ti, ci = _axes(df)
        t, n, names = len(dates), len(codes), [f["name"] for f in feats]
        blocks, present = _features(art.file("features.parquet"), feats, ti, ci, (t, n), c)
        out = w.dir
        _write_x(out / "X.npy", blocks, (t, n, len(names)), c.dtype)
        del blocks
        n_stock = max(1, sum(f["kind"] == "stock" for f in feats))
        valid = _dense(ti, ci, np.ones(len(ti), bool), (t, n), False) & (
            present >= c.min_valid_share * n_stock
        )
        save_npy(out / "valid.npy", valid)
        y_raw = _dense(ti, ci, df.select(labels).to_numpy().astype(np.float32), (t, n, len(labels)), np.nan)
        save_npy(out / "Y.npy", label_z(y_raw, valid, c.clip))
        save_npy(out / "Y_raw.npy", y_raw)
        save_npy(out / "R.npy", _dense(ti, ci, df["_ret"].to_numpy().astype(np.float32), (t, n), np.nan))
        sector, sectors = _codes_index(df, "s33")
        market, markets = _codes_index(df, "mkt")
        save_npy(out / "sector.npy", _dense(ti, ci, sector, (t, n), -1))
        save_npy(out / "market.npy", _dense(ti, ci, market, (t, n), -1))
        meta = {
            "dates": [d.isoformat() for d in dates],
            "codes": codes,
            "feature_names": names,
            "feature_kinds": [f["kind"] for f in feats],
            "horizons": list(cfg.features.horizons),
            "sectors": sectors,
            "markets": markets,
            "dtype": c.dtype,
            "return_source": "ret_log_1d" if ret == "ret_log_1d" else "log1p(ret_1d)",
            "market_stats": f"trailing {c.market_window} sessions ending {c.market_lag} before t",
        }
        write_json(out / "meta.json", {**meta, **stamp(cfg)})
        rec.rows_out = int(valid.sum())
        shape = {"T": t, "N": n, "F": len(names), "H": len(labels)}
        content = {"shape": shape, "rows": df.height, "valid_stock_days": rec.rows_out, **meta}
        return w.commit(content)
