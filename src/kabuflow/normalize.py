"""normalize: causal per-date normalization of the long feature frame into the dense training panel."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import ndtri

from kabuflow import telemetry
from kabuflow.artifacts import atomic_write, read_json, stamp, write_json
from kabuflow.config import Config, ConfigError, NormalizeConfig
from kabuflow.schema import SchemaError, check

KEYS = {"date": pl.Date(), "code": pl.String(), "s33": pl.String(), "mkt": pl.String()}
KINDS = ("stock", "market", "flag")
MAD_SCALE = 1.4826  # MAD of a normal sample × 1.4826 ≈ its standard deviation
MEAN_AD_SCALE = 1.2533141373155  # sqrt(pi/2): the same for the mean absolute deviation
ARRAYS = ("X", "Y", "Y_raw", "valid", "R", "sector", "market")
COLUMN_BATCH = 16  # features normalized per pass: temporaries stay ~16 columns, not the whole frame
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

    @property
    def dates(self) -> list[dt.date]:
        """The session axis as dates."""
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


def load_panel(path: str | Path) -> Panel:
    """Memory-map a panel directory written by `normalize`; shapes are checked against meta.json."""
    path = Path(path)
    meta = read_json(path / "meta.json")
    arrays = {}
    for name in ARRAYS:
        file = path / f"{name}.npy"
        if not file.exists():
            raise FileNotFoundError(f"panel {path}: missing {file.name}")
        arrays[name] = np.load(file, mmap_mode="r")
    t, n = len(meta["dates"]), len(meta["codes"])
    expect = {"X": (t, n, len(meta["feature_names"])), "Y": (t, n, len(meta["horizons"]))}
    for name, arr in arrays.items():
        want = expect.get(name, expect["Y"] if name == "Y_raw" else (t, n))
        if arr.shape != want:
            raise SchemaError(f"panel {path}: {name}.npy has shape {arr.shape}, meta.json implies {want}")
    return Panel(path=path, meta=meta, **arrays)


def _check_cfg(c: NormalizeConfig) -> None:
    if c.method not in ("robust_z", "rank_gauss"):
        raise ConfigError(f"normalize.method must be robust_z or rank_gauss, got {c.method!r}")
    if c.dtype not in ("float16", "float32"):
        raise ConfigError(f"normalize.dtype must be float16 or float32, got {c.dtype!r}")
    if not 2 <= c.market_min_periods <= c.market_window:
        raise ConfigError("normalize.market_min_periods must be in [2, normalize.market_window]")
    if c.clip <= 0 or not 0 <= c.min_valid_share <= 1:
        raise ConfigError("normalize.clip must be > 0 and normalize.min_valid_share in [0, 1]")


def _read(features: Path, horizons: tuple[int, ...]) -> tuple[pl.DataFrame, list[dict], list[str]]:
    """The frame (only the columns used, NaN/inf turned into null), the manifest's features, label names."""
    feats = read_json(features / "manifest.json").get("features")
    if not feats:
        raise SchemaError(f"{features}/manifest.json: no 'features' listed")
    for f in feats:
        if f.get("kind") not in KINDS:
            raise SchemaError(
                f"{features}/manifest.json: feature {f.get('name')!r} has kind {f.get('kind')!r}"
            )
    labels = [f"y_{h}d" for h in horizons]
    names = [f["name"] for f in feats]
    have = pl.read_parquet_schema(features / "features.parquet")
    ret = [c for c in ("ret_log_1d", "ret_1d") if c in have]
    if not ret:
        raise SchemaError(f"{features}/features.parquet: needs ret_log_1d or ret_1d for the panel's R")
    cols = list(dict.fromkeys([*KEYS, *names, *labels, ret[0]]))
    missing = [c for c in cols if c not in have]
    if missing:
        raise SchemaError(f"{features}/features.parquet: missing column {missing[0]!r} (manifest or labels)")
    df = pl.read_parquet(features / "features.parquet", columns=cols)
    spec = {**KEYS, **{n: pl.Float32() for n in names}, **{y: pl.Float64() for y in labels}}
    check(df, spec, f"{features}/features.parquet")
    # Features are cleaned inside their own normalization (finite()), one copy instead of two.
    df = df.with_columns([finite(y).alias(y) for y in labels] + [_log_return(ret[0]).alias("_ret")])
    df = df.sort("date", "code")
    if df.select(pl.struct("date", "code").is_duplicated().any()).item():
        raise SchemaError(f"{features}/features.parquet: duplicate (date, code) rows")
    return df, feats, labels


def finite(name: str) -> pl.Expr:
    """The column with NaN and +-inf turned into null (missing), as masks expect."""
    return pl.when(pl.col(name).is_finite()).then(pl.col(name))


def _ready(expr: pl.Expr, name: str) -> pl.Expr:
    """X's final form: masked (null, NaN: no value, no scale, no history) -> 0, Float32."""
    return pl.when(expr.is_finite()).then(expr).otherwise(0.0).cast(pl.Float32).alias(name)


def _log_return(col: str) -> pl.Expr:
    """R is a log return: `ret_log_1d` as is; `ret_1d` is the simple AdjC_t/AdjC_{t-1} - 1, so log1p."""
    x = pl.col(col).cast(pl.Float64)
    r = x if col == "ret_log_1d" else x.log1p()
    return pl.when(r.is_finite()).then(r)


def cs_robust_z(name: str, clip: float) -> pl.Expr:
    """(x - median) / (1.4826 MAD) over the date's cross-section, clipped; same-date data only.

    When more than half the cross-section shares one value the MAD is 0; the scale falls back to the
    mean absolute deviation × sqrt(pi/2) (Iglewicz & Hoaglin), and a constant cross-section maps to 0.
    """
    x = finite(name).cast(pl.Float64)
    med = x.median().over("date")
    dev = (x - med).abs()
    mad, mean_ad = dev.median().over("date") * MAD_SCALE, dev.mean().over("date") * MEAN_AD_SCALE
    scale = pl.when(mad > 0).then(mad).otherwise(mean_ad)
    z = pl.when(scale > 0).then((x - med) / scale).otherwise((x - med) * 0.0)
    return z.clip(-clip, clip).alias(name)


def cs_rank_gauss(name: str, clip: float) -> pl.Expr:
    """Phi^-1((rank - 0.5) / n) over the date's cross-section (average ranks for ties), clipped."""
    x = finite(name)
    u = (x.rank("average").over("date") - 0.5) / x.count().over("date")
    gauss = u.map_batches(lambda s: pl.Series(ndtri(s.to_numpy())), pl.Float64, is_elementwise=True)
    return gauss.clip(-clip, clip).alias(name)


def trailing_z(values: np.ndarray, window: int, min_periods: int, clip: float) -> np.ndarray:
    """Z-score of values[t] against values[t-window .. t-1]: STRICTLY past sessions, never t or later.

    Excluding t itself (not only the future) keeps a shock from diluting its own yardstick, which would
    cap |z| at sqrt(n-1). values: [T, F] with NaN missing; NaN out where fewer than `min_periods`
    past values exist or their standard deviation (ddof=1) is 0.
    """
    t, f = values.shape
    padded = np.concatenate([np.full((window, f), np.nan), values])[:-1]
    win = sliding_window_view(padded, window, axis=0)  # [T, F, window]: win[t] = values[t-window:t]
    ok = np.isfinite(win)
    cnt = ok.sum(-1)
    mean = np.where(ok, win, 0.0).sum(-1) / np.maximum(cnt, 1)
    var = np.where(ok, (win - mean[..., None]) ** 2, 0.0).sum(-1) / np.maximum(cnt - 1, 1)
    std = np.sqrt(var)
    good = (cnt >= min_periods) & (std > 0) & np.isfinite(values)
    z = np.divide(values - mean, std, out=np.full((t, f), np.nan), where=good)
    return np.clip(z, -clip, clip)


def _market_z(df: pl.DataFrame, names: list[str], c: NormalizeConfig, n_dates: int) -> pl.DataFrame:
    """Market features: one value per date (the cross-sectional median), scored on past sessions only."""
    if not names:
        return df
    per_date = df.group_by("_t").agg(finite(n).median() for n in names).sort("_t")
    values = np.full((n_dates, len(names)), np.nan)
    values[per_date["_t"].to_numpy()] = per_date.select(names).to_numpy().astype(np.float64)
    z = trailing_z(values, c.market_window, c.market_min_periods, c.clip)[df["_t"].to_numpy()]
    df = df.with_columns(pl.Series(f"_z_{n}", z[:, j]) for j, n in enumerate(names))
    # A stock whose own row lacks the value stays masked, as for stock features.
    ready = [_ready(pl.when(pl.col(n).is_finite()).then(pl.col(f"_z_{n}")), n) for n in names]
    return df.with_columns(ready).drop(f"_z_{n}" for n in names)


def _label_z(labels: list[str], clip: float) -> list[pl.Expr]:
    """Per-date z-score (ddof=1) of each raw label over the valid stocks that have it, clipped."""
    out = []
    for y in labels:
        yv = pl.when(pl.col("_valid")).then(pl.col(y))
        sd = yv.std().over("date")
        out.append(
            pl.when(sd > 0).then(((yv - yv.mean().over("date")) / sd).clip(-clip, clip)).alias(f"_z_{y}")
        )
    return out


def _transform(df: pl.DataFrame, feats: list[dict], labels: list[str], c: NormalizeConfig) -> pl.DataFrame:
    """Every column computed from same-date rows (stock, labels) or past dates (market): causal."""
    kind = {k: [f["name"] for f in feats if f["kind"] == k] for k in KINDS}
    present = [pl.col(n).is_finite().fill_null(False).cast(pl.Int32) for n in kind["stock"]]
    share = pl.sum_horizontal(present) / len(present) if present else pl.lit(1.0)
    df = df.with_columns(
        _t=pl.col("date").rank("dense").cast(pl.Int64) - 1,
        _c=pl.col("code").rank("dense").cast(pl.Int64) - 1,
        _valid=share >= c.min_valid_share,
    )
    df = df.with_columns(_label_z(labels, c.clip))
    cs = cs_robust_z if c.method == "robust_z" else cs_rank_gauss
    exprs = [_ready(cs(n, c.clip), n) for n in kind["stock"]] + [_ready(finite(n), n) for n in kind["flag"]]
    for i in range(0, len(exprs), COLUMN_BATCH):  # bounded temporaries: a batch of columns at a time
        df = df.with_columns(exprs[i : i + COLUMN_BATCH])
    return _market_z(df, kind["market"], c, int(df["_t"].max()) + 1)


def save_npy(path: Path, arr: np.ndarray) -> None:
    """np.save through atomic_write (a file object: np.save would append .npy to a path)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)

    atomic_write(path, write)


def _dense(df: pl.DataFrame, cols: list[str], shape: tuple[int, ...], fill: Any, dtype: Any) -> np.ndarray:
    """Scatter the rows' `cols` into a [T, N, ...] array by (date index, code index) in one assignment."""
    out = np.full(shape, fill, dtype=dtype)
    values = df.select(cols).to_numpy()
    out[df["_t"].to_numpy(), df["_c"].to_numpy()] = values if len(shape) == 3 else values[:, 0]
    return out


def _write_x(path: Path, df: pl.DataFrame, names: list[str], t: int, n: int, dtype: str) -> None:
    """X [T, N, F] written into an .npy memmap a block of dates at a time (rows are date-sorted)."""
    step = max(1, X_BLOCK_BYTES // max(1, n * len(names) * np.dtype(dtype).itemsize))
    ti = df["_t"].to_numpy()

    def write(tmp: Path) -> None:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(t, n, len(names)))
        for t0 in range(0, t, step):
            r0, r1 = np.searchsorted(ti, [t0, t0 + step])
            mm[t0 : t0 + step] = _dense(
                df[r0:r1].with_columns(pl.col("_t") - t0), names, (min(step, t - t0), n, len(names)), 0, dtype
            )
        mm.flush()
        del mm

    atomic_write(path, write)


def _codes_index(df: pl.DataFrame, col: str) -> tuple[pl.DataFrame, list[str]]:
    """As-of categorical (sector, market) as int16 indices into its value list; -1 unknown.

    The list is ordered by first appearance (then name), so a value first seen after D appends to it
    and never renumbers the indices of dates <= D.
    """
    seen = df.filter(pl.col(col).str.len_chars() > 0).group_by(col).agg(pl.col("date").min())
    values = seen.sort("date", col)[col].to_list()
    idx = pl.col(col).replace_strict(values, list(range(len(values))), default=-1, return_dtype=pl.Int16)
    return df.with_columns(idx.alias(f"_{col}")), values


def normalize(cfg: Config, features: str | Path, out: str | Path) -> dict[str, Any]:
    """Features dir -> panel dir (X, Y, Y_raw, valid, R, sector, market .npy + meta.json + manifest.json)."""
    c = cfg.normalize
    _check_cfg(c)
    features, out = Path(features), Path(out)
    with telemetry.stage("normalize") as rec:
        df, feats, labels = _read(features, cfg.features.horizons)
        rec.rows_in = df.height
        df = _transform(df, feats, labels, c)
        df, sectors = _codes_index(df, "s33")
        df, markets = _codes_index(df, "mkt")
        dates = df["date"].unique().sort().to_list()
        codes = df["code"].unique().sort().to_list()
        t, n, names = len(dates), len(codes), [f["name"] for f in feats]
        _write_x(out / "X.npy", df, names, t, n, c.dtype)
        h = (t, n, len(labels))
        save_npy(out / "Y.npy", _dense(df, [f"_z_{y}" for y in labels], h, np.nan, np.float32))
        save_npy(out / "Y_raw.npy", _dense(df, labels, h, np.nan, np.float32))
        valid = _dense(df, ["_valid"], (t, n), False, bool)
        save_npy(out / "valid.npy", valid)
        save_npy(out / "R.npy", _dense(df, ["_ret"], (t, n), np.nan, np.float32))
        save_npy(out / "sector.npy", _dense(df, ["_s33"], (t, n), -1, np.int16))
        save_npy(out / "market.npy", _dense(df, ["_mkt"], (t, n), -1, np.int16))
        meta = {
            "dates": [d.isoformat() for d in dates],
            "codes": codes,
            "feature_names": names,
            "feature_kinds": [f["kind"] for f in feats],
            "horizons": list(cfg.features.horizons),
            "sectors": sectors,
            "markets": markets,
            "dtype": c.dtype,
            "return_source": "ret_log_1d" if "ret_log_1d" in df.columns else "log1p(ret_1d)",
            "market_stats": f"trailing {c.market_window} sessions strictly before t",
        }
        write_json(out / "meta.json", {**meta, **stamp(cfg)})
        rec.rows_out = int(valid.sum())
        manifest = {
            "shape": {"T": t, "N": n, "F": len(names), "H": len(labels)},
            "rows": df.height,
            "valid_stock_days": rec.rows_out,
            **meta,
            **stamp(cfg, stage="normalize"),
        }
        write_json(out / "manifest.json", manifest)
    return manifest
