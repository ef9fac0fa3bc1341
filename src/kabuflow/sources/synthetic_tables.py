"""The synthetic market's J-Quants v2 tables: daily bars, master, TOPIX stand-in, calendar."""

from __future__ import annotations

import numpy as np
import polars as pl

from kabuflow.sources.synthetic_prices import Prices
from kabuflow.sources.synthetic_universe import MARKETS, S17_NAMES, SCALE_BUCKETS, SECTORS, Universe

TOPIX_BASE = 1550.0  # about TOPIX's level in January 2017


def _flat(bar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stock, session) index pairs of every bar, sorted by stock then session (codes ascend with stock)."""
    stock, t = np.nonzero(bar.T)
    return stock, t


def adjustment(u: Universe, p: Prices) -> np.ndarray:
    """[T, N] factor from raw to adjusted prices: the product of AdjFactor over later ex-dates."""
    final = p.mult[u.list_end, np.arange(u.n)]
    return p.mult / final


def bars(u: Universe, dates: np.ndarray, p: Prices, bar: np.ndarray) -> pl.DataFrame:
    """equities_bars_daily: raw OHLCV, AdjFactor on ex-dates, and split-adjusted columns.

    AdjX = X * prod(AdjFactor of later ex-dates) and AdjVo = Vo / that product, so adjusted series are
    continuous across splits and equal the raw ones after the last event (J-Quants' convention).
    """
    i, t = _flat(bar)
    mask = bar.T  # code-major: rows come out sorted by (Code, Date)
    adj = adjustment(u, p).T[mask]
    fac = np.vstack([p.mult[:1], p.mult[1:] / p.mult[:-1]]).T[mask]
    o, h, lo, c, vo = (a.T[mask] for a in (p.o, p.h, p.lo, p.c, p.vo))
    return pl.DataFrame(
        {
            "Date": dates[t],
            "Code": pl.Series(u.codes).gather(i),
            "O": o,
            "H": h,
            "L": lo,
            "C": c,
            "UL": _flag(p.upper.T[mask]),
            "LL": _flag(p.lower.T[mask]),
            "Vo": vo,
            "Va": np.round(vo * (o + h + lo + c) / 4),
            "AdjFactor": np.where(t > u.list_start[i], 1.0 / fac, 1.0),
            "AdjO": o * adj,
            "AdjH": h * adj,
            "AdjL": lo * adj,
            "AdjC": c * adj,
            "AdjVo": vo / adj,
        }
    )


def _flag(x: np.ndarray) -> pl.Series:
    """ "1"/"0" strings from booleans (J-Quants' UL/LL), built without a numpy string array."""
    return pl.Series(["0", "1"]).gather(x.astype(np.int64))


def topix(dates: np.ndarray, p: Prices, adj_close: np.ndarray, bar: np.ndarray) -> pl.DataFrame:
    """Cap-weighted index of every listed stock (weights: the previous close's market cap)."""
    both = bar[1:] & bar[:-1]
    w = np.where(both, p.c[:-1] * p.shares[:-1], 0.0)
    prev = np.where(both, adj_close[:-1], 1.0)
    wsum = np.maximum(w.sum(axis=1), 1e-12)

    def rel(x: np.ndarray) -> np.ndarray:
        adj_x = x * (adj_close / np.where(bar, p.c, 1.0))
        return np.r_[1.0, (w * np.where(both, adj_x[1:] / prev, 0.0)).sum(axis=1) / wsum]

    level = TOPIX_BASE * np.cumprod(rel(p.c))
    prev_level = np.r_[TOPIX_BASE, level[:-1]]
    o, h, lo = (prev_level * rel(x) for x in (p.o, p.h, p.lo))
    o[0] = h[0] = lo[0] = TOPIX_BASE
    return pl.DataFrame(
        {
            "Date": dates,
            "O": np.round(o, 2),
            "H": np.round(np.maximum.reduce([h, o, level]), 2),
            "L": np.round(np.minimum.reduce([lo, o, level]), 2),
            "C": np.round(level, 2),
        }
    )


def _scale(u: Universe, cap: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """TOPIX size category by market-cap rank among eligible Prime stocks (bucket sizes scale with N)."""
    out = np.where((u.mkt == "0112") & (u.old_section == "TSE1st"), "TOPIX Small 2", "-").astype(object)
    prime = eligible & (u.mkt == "0111")
    order = np.flatnonzero(prime)[np.argsort(-cap[prime], kind="stable")]
    out[order] = "TOPIX Small 2"
    lo = 0
    for name, per_3800 in SCALE_BUCKETS:
        hi = lo + max(1, int(round(per_3800 * u.n / 3800)))
        out[order[lo:hi]] = name
        lo = hi
    return out.astype(str)


def master(u: Universe, dates: np.ndarray, p: Prices, bar: np.ndarray) -> pl.DataFrame:
    """equities_master: a row per code at its first bar, then as-of rows when the yearly TOPIX review
    (last session of October, effective the next session) moves it to another size category."""
    t_len, idx = len(dates), np.arange(u.n)
    cap = p.c * p.shares
    last = np.maximum.accumulate(np.where(bar, np.arange(t_len)[:, None], -1), axis=0)  # last bar <= t
    cur = _scale(u, np.nan_to_num(cap[0]), u.list_start == 0)
    rows = [(idx, np.maximum(u.list_start, 0), cur)]
    months = dates.astype("datetime64[M]").astype(int) % 12 + 1
    for t in np.flatnonzero((months[:-1] == 10) & (months[1:] == 11)):
        listed = (last[t] >= 0) & (u.list_start <= t) & (u.list_end > t)
        cap_t = np.where(listed, cap[np.maximum(last[t], 0), idx], 0.0)
        new = np.where(listed, _scale(u, cap_t, listed), cur)
        moved = np.flatnonzero(new != cur)
        rows.append((moved, np.full(len(moved), t + 1), new[moved]))
        cur = new
    stock, when, scale = (np.concatenate([r[k] for r in rows]) for k in range(3))
    return _master_frame(u, dates[when], stock, scale)


def _master_frame(u: Universe, when: np.ndarray, stock: np.ndarray, scale: np.ndarray) -> pl.DataFrame:
    """Master rows with names, sectors and segment for each (stock, as-of date, size category)."""
    sec = u.sector[stock]
    s33, ja, en, s17 = (np.array([s[k] for s in SECTORS]) for k in range(4))
    serial = np.char.zfill((stock + 1).astype(str), 4)
    df = pl.DataFrame(
        {
            "Date": when,
            "Code": u.codes[stock],
            "CoName": np.char.add(np.char.add("合成", ja[sec]), serial),
            "CoNameEn": np.char.add(np.char.add("Synthetic ", en[sec]), np.char.add(" ", serial)),
            "S17": s17[sec],
            "S17Nm": np.array([S17_NAMES[x] for x in s17[sec]], dtype=str),
            "S33": s33[sec],
            "S33Nm": ja[sec],
            "ScaleCat": scale,
            "Mkt": u.mkt[stock],
            "MktNm": np.array([MARKETS[m] for m in u.mkt[stock]], dtype=str),
        }
    )
    return df.sort("Code", "Date")


def calendar(dates: np.ndarray) -> pl.DataFrame:
    """markets_calendar: every calendar day of the range, HolDiv "1" on sessions and "0" otherwise."""
    days = np.arange(dates[0], dates[-1] + 1)
    return pl.DataFrame({"Date": days, "HolDiv": np.where(np.isin(days, dates), "1", "0")})
