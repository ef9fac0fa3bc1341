"""Features benchmark: the Polars stage against a straightforward pandas groupby-rolling reference, side by side."""

# The pandas reference computes every family that runs on bars + master alone (returns, volatility,
# technical, liquidity, market proxy, sector, cross-section, flags) and the labels — all but the
# statements, flows and margin families, which the real set cannot exercise. Each side runs in its own
# subprocess so that peak RSS (ru_maxrss) is its own; the parent checks that the two agree.

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from kabuflow.features.crosssection import RANKED, SCORED

LN2 = math.log(2.0)
RAW_TABLES = ("equities_bars_daily", "equities_master")


# ---------------------------------------------------------------- the pandas reference (one function per family)


def _div(a: pd.Series, b: pd.Series) -> pd.Series:
    return a / b.where(b != 0)


class _Ref:
    """Straightforward pandas: `groupby("code").rolling(...)`, `groupby.shift`, `transform(lambda: ewm)`."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
        self.g = df.groupby("code", sort=False)
        self.out: dict[str, pd.Series] = {}

    def shift(self, s: pd.Series, n: int = 1) -> pd.Series:
        return s.groupby(self.df["code"], sort=False).shift(n)

    def roll(self, s: pd.Series, w: int, how: str) -> pd.Series:
        r = s.groupby(self.df["code"], sort=False).rolling(w, min_periods=w)
        return getattr(r, how)().reset_index(level=0, drop=True)

    def ewm(
        self, s: pd.Series, span: float | None = None, alpha: float | None = None, min_periods: int = 1
    ) -> pd.Series:
        return s.groupby(self.df["code"], sort=False).transform(
            lambda x: x.ewm(span=span, alpha=alpha, adjust=False, min_periods=min_periods).mean()
        )

    def put(self, name: str, s: pd.Series) -> None:
        """Store a feature as float32, like the stage (later features read the stored value, as there)."""
        self.out[name] = s.replace([np.inf, -np.inf], np.nan).astype("float32")

    def get(self, name: str) -> pd.Series:
        """A stored feature read back at float64, as the stage's f64() does."""
        return self.out[name].astype("float64")


def _returns(r: _Ref) -> None:
    d = r.df
    for w in (1, 5, 10, 20, 60, 120):
        r.put(f"ret_{w}d", d.c / r.shift(d.c, w) - 1)
    for w in (1, 5, 20):
        r.put(f"ret_log_{w}d", np.log(d.c / r.shift(d.c, w)))
    r.put("ret_overnight_1d", d.o / r.shift(d.c) - 1)
    r.put("ret_intraday_1d", d.c / d.o - 1)
    r.put("ret_mom_120d", r.shift(d.c, 20) / r.shift(d.c, 120) - 1)
    r.put("ret_max_20d", r.roll(r.out["ret_1d"], 20, "max"))


def _volatility(r: _Ref) -> None:
    d = r.df
    lr = np.log(d.c / r.shift(d.c))
    for w in (5, 10, 20, 60):
        r.put(f"vol_{w}d", r.roll(lr, w, "std"))
    hl, co = np.log(d.h / d.l), np.log(d.c / d.o)
    rs = np.log(d.h / d.c) * np.log(d.h / d.o) + np.log(d.l / d.c) * np.log(d.l / d.o)
    r.put("vol_pk_20d", np.sqrt((r.roll(hl**2, 20, "mean") / (4 * LN2)).clip(lower=0)))
    r.put("vol_gk_20d", np.sqrt(r.roll(0.5 * hl**2 - (2 * LN2 - 1) * co**2, 20, "mean").clip(lower=0)))
    r.put("vol_rs_20d", np.sqrt(r.roll(rs, 20, "mean").clip(lower=0)))
    k = 0.34 / (1.34 + 21 / 19)
    on = np.log(d.o / r.shift(d.c))
    yz = r.roll(on, 20, "var") + k * r.roll(co, 20, "var") + (1 - k) * r.roll(rs, 20, "mean")
    r.put("vol_yz_20d", np.sqrt(yz.clip(lower=0)))
    r.put("vol_down_20d", np.sqrt(r.roll(lr.clip(upper=0) ** 2, 20, "mean").clip(lower=0)))
    v20 = r.out["vol_20d"]
    r.put("vol_vov_60d", _div(r.roll(v20, 60, "std"), r.roll(v20, 60, "mean")))
    r.put("vol_ratio_20d_60d", _div(v20, r.out["vol_60d"]))


def _wilder(r: _Ref, s: pd.Series, n: int) -> pd.Series:
    return r.ewm(s, alpha=1.0 / n, min_periods=n)


def _technical(r: _Ref) -> None:
    d = r.df
    sma = {w: r.roll(d.c, w, "mean") for w in (5, 20, 50, 60, 200)}
    for w in (5, 20, 60, 200):
        r.put(f"tech_sma_gap_{w}d", d.c / sma[w] - 1)
    ema = {w: r.ewm(d.c, span=w, min_periods=w) for w in (5, 12, 20, 26, 60, 200)}
    for w in (5, 20, 60, 200):
        r.put(f"tech_ema_gap_{w}d", d.c / ema[w] - 1)
    for s, lg in ((5, 20), (20, 60), (50, 200)):
        r.put(f"tech_sma_ratio_{s}d_{lg}d", sma[s] / sma[lg] - 1)
    diff = d.c - r.shift(d.c)
    for n in (2, 14):
        up, dn = _wilder(r, diff.clip(lower=0), n), _wilder(r, (-diff).clip(lower=0), n)
        r.put(f"tech_rsi_{n}d", (up / (up + dn)).where(up + dn > 0, np.where(up.notna(), 0.5, np.nan)))
    macd = (ema[12] - ema[26]) / d.c
    signal = r.ewm(macd, span=9, min_periods=9)
    r.put("tech_macd_26d", macd)
    r.put("tech_macd_signal_9d", signal)
    r.put("tech_macd_hist_9d", macd - signal)
    sd = r.roll(d.c, 20, "std")
    r.put("tech_bb_pctb_20d", _div(d.c - (sma[20] - 2 * sd), 4 * sd))
    r.put("tech_bb_width_20d", _div(4 * sd, sma[20]))
    prev = r.shift(d.c)
    tr = pd.concat([d.h - d.l, (d.h - prev).abs(), (d.l - prev).abs()], axis=1).max(axis=1)
    r.put("tech_atr_14d", _wilder(r, tr, 14) / d.c)
    lo, hi = r.roll(d.l, 14, "min"), r.roll(d.h, 14, "max")
    r.put("tech_stoch_k_14d", _div(d.c - lo, hi - lo))
    up, down = d.h - r.shift(d.h), r.shift(d.l) - d.l
    first = prev.isna()
    plus = pd.Series(np.where((up > down) & (up > 0), up, 0.0), index=d.index).mask(first)
    minus = pd.Series(np.where((down > up) & (down > 0), down, 0.0), index=d.index).mask(first)
    pdm, mdm = _wilder(r, plus, 14), _wilder(r, minus, 14)
    dx = ((pdm - mdm).abs() / (pdm + mdm)).where(pdm + mdm > 0, np.where(pdm.notna(), 0.0, np.nan))
    r.put("tech_adx_14d", _wilder(r, dx, 14))


def _liquidity(r: _Ref) -> None:
    d = r.df
    rng = (d.h - d.l) / d.c
    r.put("liq_range_1d", rng)
    r.put("liq_range_20d", r.roll(rng, 20, "mean"))
    clv = _div((d.c - d.l) - (d.h - d.c), d.h - d.l)
    r.put("liq_clv_1d", clv)
    r.put("liq_clv_5d", r.roll(clv, 5, "mean"))
    r.put("liq_volume_ratio_20d", _div(d.v, r.roll(d.v, 20, "mean")))
    r.put("liq_volume_ratio_5d_60d", _div(r.roll(d.v, 5, "mean"), r.roll(d.v, 60, "mean")))
    r.put("liq_turnover_1d", np.log1p(d.va))
    for w in (20, 60):
        r.put(f"liq_turnover_{w}d", np.log1p(r.roll(d.va, w, "mean")))
    prev = r.shift(d.c)
    r.put("liq_amihud_20d", r.roll(_div((d.c / prev - 1).abs(), d.va) * 1e9, 20, "mean"))
    r.put("liq_zero_ret_20d", r.roll((d.c == prev).astype(float).where(prev.notna()), 20, "mean"))


def _market(r: _Ref) -> None:
    d, ret1 = r.df, r.get("ret_1d")
    day = pd.DataFrame({"date": d.date, "r": ret1, "up": (ret1 > 0).where(ret1.notna())})
    m = day.groupby("date").agg(m=("r", "mean"), up=("up", "sum"), n=("r", "count")).sort_index()
    level = (1 + m.m.fillna(0)).cumprod()
    mk = pd.DataFrame({"mkt_ret_1d": m.m}, index=m.index)
    for w in (5, 20, 60):
        mk[f"mkt_ret_{w}d"] = level / level.shift(w) - 1
    for w in (20, 60):
        mk[f"mkt_vol_{w}d"] = m.m.rolling(w, min_periods=w).std()
    for w in (20, 60):
        mk[f"mkt_trend_{w}d"] = level / level.rolling(w, min_periods=w).mean() - 1
    mk["mkt_dd_252d"] = level / level.rolling(252, min_periods=252).max() - 1
    mk["mkt_breadth_1d"] = _div(m.up, m.n.astype(float))
    joined = d[["date"]].join(mk, on="date")
    for c in mk.columns:
        r.put(c, joined[c])
    mm, rr = joined["mkt_ret_1d"], ret1
    e = {
        k: r.roll(v, 60, "mean")
        for k, v in {"r": rr, "m": mm, "rm": rr * mm, "mm": mm * mm, "rr": rr * rr}.items()
    }
    cov, var_m = e["rm"] - e["r"] * e["m"], e["mm"] - e["m"] ** 2
    beta = _div(cov, var_m)
    r.put("mkt_beta_60d", beta)
    r.put("mkt_alpha_60d", e["r"] - beta * e["m"])
    r.put("mkt_ivol_60d", np.sqrt((e["rr"] - e["r"] ** 2 - _div(cov**2, var_m)).clip(lower=0)))
    for w in (20, 60):
        r.put(f"mkt_rs_{w}d", r.get(f"ret_{w}d") - joined[f"mkt_ret_{w}d"])


def _rank01(s: pd.Series, keys: list[pd.Series]) -> pd.Series:
    g = s.groupby(keys, sort=False)
    n = g.transform("count")
    return ((g.rank(method="average") - 1) / (n - 1)).where(n > 1)


def _zscore(s: pd.Series, keys: list[pd.Series]) -> pd.Series:
    g = s.groupby(keys, sort=False)
    return _div(s - g.transform("mean"), g.transform("std"))


def _sector_and_cross_section(r: _Ref) -> None:
    d, o = r.df, {c: r.get(c) for c in ("ret_1d", "ret_5d", "ret_20d", "ret_60d", "ret_mom_120d", "vol_20d")}
    o |= {c: r.get(c) for c in ("liq_turnover_20d", "tech_rsi_14d", "liq_volume_ratio_20d")}
    keys = [d.date, d.s33]  # groupby drops null sectors: those rows stay NaN, as in Polars
    for w in (1, 5, 20):
        r.put(f"sec_ret_{w}d", o[f"ret_{w}d"].groupby(keys).transform("mean"))
    r.put("sec_mom_60d", o["ret_60d"].groupby(keys).transform("mean"))
    for w in (5, 20):
        r.put(f"sec_rel_{w}d", o[f"ret_{w}d"] - o[f"ret_{w}d"].groupby(keys).transform("mean"))
    for c in ("ret_20d", "vol_20d"):
        r.put(f"sec_z_{c}", _zscore(o[c], keys))
    for c in ("ret_5d", "liq_turnover_20d"):
        r.put(f"sec_rank_{c}", _rank01(o[c], keys))
    # The same column lists as the polars family: the reference recomputes, it does not re-choose.
    for c in RANKED:
        r.put(f"cs_rank_{c}", _rank01(o[c], [d.date]))
    for c in SCORED:
        r.put(f"cs_z_{c}", _zscore(o[c], [d.date]))
    for w in (20, 60, 120, 200):
        r.put(f"flag_warm_{w}d", (r.g.cumcount() + 1 >= w).astype(float))


def _labels(df: pd.DataFrame, horizons: tuple[int, ...]) -> dict[str, pd.Series]:
    """y_h(t) = AdjC[t+1+h]/AdjC[t+1] - 1 by (code, session) lookups: a merge per offset."""
    look = df[["code", "sess", "c"]]

    def close_at(k: int) -> pd.Series:
        key = df[["code"]].assign(sess=df.sess + k)
        return key.merge(look, on=["code", "sess"], how="left")["c"].set_axis(df.index)

    entry = close_at(1)
    return {f"y_{h}d": close_at(1 + h) / entry - 1 for h in horizons}


def pandas_features(bars: pd.DataFrame, master: pd.DataFrame, sessions: pd.DataFrame) -> pd.DataFrame:
    """The reference: same inputs as the stage (bars on sessions), same columns, float64."""
    df = bars.rename(
        columns={"Date": "date", "Code": "code", "AdjO": "o", "AdjH": "h", "AdjL": "l", "AdjC": "c"}
    )
    df["v"] = df["AdjVo"]
    df["va"] = df["Va"].fillna(df["c"] * df["AdjVo"])
    df = df.merge(sessions[["date", "sess"]], on="date", how="inner").sort_values(
        ["code", "date"], ignore_index=True
    )
    snap = master.drop_duplicates("Code", keep="last").set_index("Code")  # the real set: one snapshot
    df["s33"] = df["code"].map(snap["S33"])
    r = _Ref(df[["date", "code", "sess", "o", "h", "l", "c", "v", "va", "s33"]])
    for family in (_returns, _volatility, _technical, _liquidity, _market, _sector_and_cross_section):
        family(r)
    cols = {"date": df.date, "code": df.code, **r.out, **_labels(df, (1, 5, 10, 20))}
    return pd.DataFrame(cols)


# ---------------------------------------------------------------- the side-by-side run


def _prepare(data: Path | None, work: Path) -> tuple[Path, str]:
    """A raw dir for both sides: the real bars less zero-volume and non-session rows (what the files
    source drops), plus the master; or, without the real set, a generated random-walk market."""
    from kabuflow.features import _calendar

    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    if data is not None and (Path(data) / "equities_bars_daily.parquet").exists():
        bars = pl.read_parquet(Path(data) / "equities_bars_daily.parquet")
        master = pl.read_parquet(Path(data) / "equities_master.parquet")
        label = f"real: {data}"
    else:
        bars, master = _generated()
        label = "generated random walks (no real set found)"
    cal = _calendar.sessions(bars["Date"].min(), bars["Date"].max())
    bars = bars.filter(pl.col("Vo") > 0, pl.col("Date").is_in(cal["date"].implode())).sort("Code", "Date")
    bars.write_parquet(raw / "equities_bars_daily.parquet")
    master.write_parquet(raw / "equities_master.parquet")
    from kabuflow.manifest import seal

    seal(raw, "ingest", {"source": label})
    return raw, label


def _generated(n_codes: int = 600, n_days: int = 1500, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    from kabuflow import schema
    from kabuflow.features import _calendar

    dates = _calendar.sessions(pd.Timestamp("2017-01-04").date(), pd.Timestamp("2023-12-29").date())["date"]
    dates = dates.filter(dates >= pd.Timestamp("2017-01-04").date()).head(n_days)
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_codes, len(dates))), axis=1)).ravel()
    o = c * np.exp(rng.normal(0, 0.005, c.size))
    h, lo = (
        np.maximum(o, c) * (1 + rng.uniform(0, 0.02, c.size)),
        np.minimum(o, c) * (1 - rng.uniform(0, 0.02, c.size)),
    )
    vo = rng.lognormal(10, 1, c.size)
    codes = np.repeat([f"{1000 + i}0" for i in range(n_codes)], len(dates))
    frame = {
        "Date": np.tile(dates.to_numpy(), n_codes),
        "Code": codes,
        "O": o,
        "H": h,
        "L": lo,
        "C": c,
        "Vo": vo,
    }
    frame |= {"Va": None, "AdjFactor": 1.0, "AdjO": o, "AdjH": h, "AdjL": lo, "AdjC": c, "AdjVo": vo}
    bars = (
        pl.DataFrame(frame)
        .cast(schema.RAW["equities_bars_daily"])
        .select(list(schema.RAW["equities_bars_daily"]))
    )
    spec = schema.RAW["equities_master"]
    uniq = [f"{1000 + i}0" for i in range(n_codes)]
    master = pl.DataFrame({k: [None] * n_codes for k in spec}, schema=spec).with_columns(
        Date=pl.lit(dates[-1]),
        Code=pl.Series(uniq),
        S33=pl.Series([f"{50 + 50 * (i % 33):04d}" for i in range(n_codes)]),
    )
    return bars, master


def _child(impl: str, raw: Path, out: Path) -> dict[str, Any]:
    """One side, in its own process: read, compute features + labels (timed), write for the comparison."""
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    if impl == "polars":
        from kabuflow.config import HORIZONS
        from kabuflow.features import base, stage

        frame, info = stage.build(base.read_raw(raw), HORIZONS)
        figures = {"compute_s": time.perf_counter() - t0, "compute_cpu_s": time.process_time() - c0}
        stage.check_output(frame, info)
        stage.write_features(out / "features.parquet", frame)  # what the stage writes, timed with it
        figures["stage_s"] = time.perf_counter() - t0
        figures["rows"], figures["features"] = frame.height, len(info["features"])
    else:
        from kabuflow.features import _calendar

        bars = pd.read_parquet(raw / "equities_bars_daily.parquet")
        master = pd.read_parquet(raw / "equities_master.parquet")
        first, last = (pd.Timestamp(d).date() for d in (bars.Date.min(), bars.Date.max()))
        cal = _calendar.sessions(first, last).to_pandas()
        bars["Date"], cal["date"] = pd.to_datetime(bars.Date), pd.to_datetime(cal.date)
        frame = pandas_features(bars, master, cal)
        figures = {"compute_s": time.perf_counter() - t0, "compute_cpu_s": time.process_time() - c0}
        frame["date"] = frame.date.dt.date
        frame.to_parquet(out / "features.parquet")
        figures["rows"], figures["features"] = len(frame), frame.shape[1] - 6
    figures["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return figures


def _spawn(impl: str, raw: Path, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "kabuflow.benchmarks.features", impl, str(raw), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} side failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(a: Path, b: Path, rtol: float = 1e-4, atol: float = 1e-6) -> dict[str, Any]:
    """Column by column (one at a time, to bound memory): null masks, max |diff|, values outside tolerance."""
    keys = ["code", "date"]
    ka, kb = pl.read_parquet(a, columns=keys), pl.read_parquet(b, columns=keys)
    assert ka.equals(kb), "the two sides' (code, date) rows differ"
    common = [c for c in pl.read_parquet_schema(a) if c in pl.read_parquet_schema(b) and c not in keys]
    worst, rows = {"column": None, "abs_diff": 0.0}, {}
    for col in common:
        x = pl.read_parquet(a, columns=[col])[col].cast(pl.Float64).fill_nan(None)
        y = pl.read_parquet(b, columns=[col])[col].cast(pl.Float64).fill_nan(None)
        both = x.is_not_null() & y.is_not_null()
        diff = (x - y).abs().filter(both)
        bad = int((diff > atol + rtol * y.abs().filter(both)).sum())
        nulls = int((x.is_null() != y.is_null()).sum())
        top = float(diff.max() or 0.0)
        if top > worst["abs_diff"]:
            worst = {"column": col, "abs_diff": top}
        if bad or nulls:
            rows[col] = {"outside_tolerance": bad, "null_mismatch": nulls, "max_abs_diff": top}
    return {
        "columns_compared": len(common),
        "max_abs_diff": worst,
        "disagreeing_columns": rows,
        "rtol": rtol,
        "atol": atol,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Polars stage vs pandas reference on the real set (args.data) or a generated one; figures as a dict."""
    work = Path(args.out) / "features"
    raw, label = _prepare(getattr(args, "data", None), work)
    load = os.getloadavg()
    polars_side = _spawn("polars", raw, work / "polars")
    pandas_side = _spawn("pandas", raw, work / "pandas")
    agreement = compare(work / "polars" / "features.parquet", work / "pandas" / "features.parquet")
    ratio = pandas_side["compute_s"] / polars_side["compute_s"]
    return {
        "data": label,
        "rows": polars_side["rows"],
        "cores": os.cpu_count(),
        "polars_threads": pl.thread_pool_size(),
        # Other processes on the machine take cores from Polars (two threads) but not from pandas (one):
        # the 1-minute load average before and after says how much the wall-clock ratio was squeezed.
        "load_avg_1m": [round(load[0], 2), round(os.getloadavg()[0], 2)],
        "polars": {k: round(v, 2) if isinstance(v, float) else v for k, v in polars_side.items()},
        "pandas": {k: round(v, 2) if isinstance(v, float) else v for k, v in pandas_side.items()},
        "speedup_compute": round(ratio, 1),
        "speedup_cpu_seconds": round(pandas_side["compute_cpu_s"] / polars_side["compute_cpu_s"], 1),
        "agreement": agreement,
        "targets": {
            "stage_le_30s": polars_side["stage_s"] <= 30,
            "speedup_ge_5x": ratio >= 5,
            "peak_rss_le_6gb": polars_side["peak_rss_gb"] <= 6,
        },
    }


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))))
