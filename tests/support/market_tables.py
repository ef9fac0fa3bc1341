"""Tiny raw tables for the features tests (no tests here): bars, master, TOPIX, statements, flows, margin."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from kabuflow import schema
from kabuflow.features import _calendar


def sessions(start: str, n: int) -> list[dt.date]:
    """The first n XTKS sessions on or after `start`."""
    d = dt.date.fromisoformat(start)
    cal = _calendar.sessions(d, d + dt.timedelta(days=2 * n + 30))
    return cal.filter(pl.col("date") >= d)["date"].head(n).to_list()


def bars(closes: dict[str, list[float]], dates: list[dt.date], spread: float = 0.01) -> pl.DataFrame:
    """equities_bars_daily with the given Adj closes (None = no bar); O = previous C, H/L = C ± spread·C."""
    rows = []
    for code, cs in closes.items():
        prev = None
        for d, c in zip(dates, cs, strict=True):
            if c is None:
                continue
            o = prev if prev is not None else c
            h, lo = max(o, c) * (1 + spread), min(o, c) * (1 - spread)
            vo = 1000.0 + 10 * len(rows)
            rows.append((d, code, o, h, lo, c, vo, None, 1.0, o, h, lo, c, vo))
            prev = c
    cols = list(schema.RAW["equities_bars_daily"])
    return pl.DataFrame(rows, schema=schema.RAW["equities_bars_daily"], orient="row").select(cols)


def master(rows: list[tuple[dt.date, str, str, str]]) -> pl.DataFrame:
    """equities_master rows (Date, Code, S33, Mkt); the name columns are filled with the code."""
    spec = schema.RAW["equities_master"]
    data = {c: [] for c in spec}
    for d, code, s33, mkt in rows:
        for c in spec:
            data[c].append({"Date": d, "Code": code, "S33": s33, "Mkt": mkt}.get(c, code))
    return pl.DataFrame(data, schema=spec)


def fins(rows: list[dict]) -> pl.DataFrame:
    """fins_summary rows from dicts (missing fields null)."""
    spec = schema.RAW["fins_summary"]
    return pl.DataFrame([{c: r.get(c) for c in spec} for r in rows], schema=spec)


def flows(rows: list[dict]) -> pl.DataFrame:
    """equities_investor_types rows from dicts (missing fields null)."""
    spec = schema.RAW["equities_investor_types"]
    return pl.DataFrame([{c: r.get(c) for c in spec} for r in rows], schema=spec)


def margin(rows: list[dict]) -> pl.DataFrame:
    """markets_margin_interest rows from dicts (missing fields null)."""
    spec = schema.RAW["markets_margin_interest"]
    return pl.DataFrame([{c: r.get(c) for c in spec} for r in rows], schema=spec)


def random_market(n_codes: int = 4, n_sessions: int = 90, seed: int = 0) -> dict[str, pl.DataFrame]:
    """Every raw table, random but well-formed, over n_sessions from 2024-01-04 (for leakage tests)."""
    rng = np.random.default_rng(seed)
    dates = sessions("2024-01-04", n_sessions)
    codes = [f"{1300 + 10 * i}0" for i in range(n_codes)]
    closes = {c: list(100 * np.exp(np.cumsum(rng.normal(0, 0.02, n_sessions)))) for c in codes}
    closes[codes[-1]][n_sessions // 2] = None  # one halted day
    b = bars(closes, dates)
    noise = pl.Series(rng.uniform(0.5, 1.5, b.height))
    b = b.with_columns(pl.col("AdjVo") * noise, pl.col("Vo") * noise)
    m_rows = [(dates[0], c, ["0050", "3050"][i % 2], "0111") for i, c in enumerate(codes)]
    m_rows += [(dates[n_sessions // 3], codes[0], "3050", "0112")]  # a sector change mid-sample
    topix = pl.DataFrame(
        {"Date": dates, "C": list(2000 * np.exp(np.cumsum(rng.normal(0, 0.01, n_sessions))))}
    )
    topix = topix.with_columns(O=pl.col("C"), H=pl.col("C") * 1.01, L=pl.col("C") * 0.99)
    fin_rows = []
    for c in codes:
        for k, day in enumerate(range(3, n_sessions, 15)):
            fin_rows.append(_fin_row(c, dates[day], "15:00:00" if k % 2 else "11:30:00", k, rng))
        fin_rows.append(
            {**_fin_row(c, dt.date(2023, 2, 10), "15:00:00", 0, rng), "CurFYEn": dt.date(2022, 12, 31)}
        )
    week_ends = [d for d in dates if d.weekday() == 4]
    fl = [_flow_row(d, rng) for d in week_ends]
    mg = [_margin_row(c, d, rng, i) for c in codes for i, d in enumerate(week_ends)]
    return {
        "equities_bars_daily": b,
        "equities_master": master(m_rows),
        "indices_bars_daily_topix": topix.select(list(schema.RAW["indices_bars_daily_topix"])),
        "fins_summary": fins(fin_rows),
        "equities_investor_types": flows(fl),
        "markets_margin_interest": margin(mg),
    }


def _fin_row(code: str, day: dt.date, time: str, k: int, rng: np.random.Generator) -> dict:
    per = ["FY", "1Q", "2Q", "3Q"][k % 4]
    fy_end = dt.date(2023 + (k + 3) // 4, 12, 31)
    sales = float(rng.uniform(800, 1200))
    return {
        "DiscDate": day, "DiscTime": time, "Code": code, "DiscNo": f"{day:%Y%m%d}{code}", "CurPerType": per,
        "CurFYEn": fy_end, "Sales": sales, "OP": sales * 0.1, "NP": sales * 0.06, "TA": 5000.0, "Eq": 2000.0,
        "BPS": 900.0, "ShOutFY": 1e6, "FSales": 4400.0, "FOP": 440.0, "FNP": float(rng.uniform(200, 300)),
        "FEPS": 30.0, "EPS": 7.0,
    }  # fmt: skip


def _flow_row(day: dt.date, rng: np.random.Generator) -> dict:
    row = {"PubDate": day + dt.timedelta(days=6), "StDate": day - dt.timedelta(days=4), "EnDate": day}
    row |= {"Section": "TSEPrime", "TotTot": float(rng.uniform(1e6, 2e6))}
    for who in ("Frgn", "Ind", "TrstBnk"):
        row[f"{who}Bal"] = float(rng.normal(0, 1e5))
    return row


def _margin_row(code: str, day: dt.date, rng: np.random.Generator, i: int) -> dict:
    pub = None if i % 3 == 0 else day + dt.timedelta(days=4)  # some old-style rows without PubDate
    return {
        "PubDate": pub, "Date": day, "Code": code, "IssType": "2",
        "ShrtVol": float(rng.uniform(1e3, 5e3)), "LongVol": float(rng.uniform(5e3, 2e4)),
    }  # fmt: skip


# The hand-computed case: three codes over ten sessions from 2024-01-04 (2024-01-08 is a holiday).
CLOSES = {
    "13010": [100.0, 102.0, 101.0, 103.0, 104.0, 102.0, 105.0, 107.0, 106.0, 108.0],
    "13020": [50.0, 50.0, 51.0, 52.0, 51.0, 50.0, 49.0, 50.0, 52.0, 53.0],
    "13030": [200.0, 198.0, 202.0, 204.0, 203.0, 207.0, 206.0, 208.0, 210.0, 209.0],
}
SECTORS = {"13010": "0050", "13020": "0050", "13030": "3050"}


def tiny(closes: dict[str, list] | None = None) -> dict[str, pl.DataFrame]:
    """Bars + a master dated on the first session: the 3 × 10 hand-computed market."""
    closes = closes or CLOSES
    dates = sessions("2024-01-04", len(next(iter(closes.values()))))
    rows = [(dates[0], c, SECTORS.get(c, "0050"), "0111") for c in closes]
    return {"equities_bars_daily": bars(closes, dates), "equities_master": master(rows)}
