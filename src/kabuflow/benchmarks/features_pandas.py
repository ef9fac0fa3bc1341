"""The pandas reference for the features benchmark: straightforward groupby-rolling, one function per family.

It computes every family that runs on bars + master alone (returns, volatility, technical, liquidity,
market proxy, sector, cross-section, flags) and the labels: all but the statements, flows and margin
families, which the real set cannot exercise.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kabuflow.features.crosssection import RANKED, SCORED

LN2 = math.log(2.0)


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
