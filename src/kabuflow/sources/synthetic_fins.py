"""Quarterly statements of the synthetic companies: disclosure schedule, surprises, fins_summary rows.

The surprise a statement carries is public and computable from the table alone:
    surprise = (NP * 4 / q - F) / Eq_prev
with q = 1, 2, 3, 4 (1Q, 2Q, 3Q, FY; NP is cumulative for the fiscal year to date), F the forecast
of net profit for that fiscal year in force before the statement (FNP of the previous statement of
the same fiscal year, or NxFNp of the previous FY statement) and Eq_prev the equity reported by the
previous statement. It equals SURPRISE_SCALE * z, with z ~ N(0, 1) the draw that also drives the
announcement-day reaction and the post-earnings drift (signal `pead`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from kabuflow import calendar
from kabuflow.sources.synthetic_universe import Universe

SURPRISE_SCALE = 0.015  # SD of (annualised NP - forecast) as a share of equity
PAYOUT = 0.35
# Disclosure times (JST) and their shares: most results come out at or after the close.
TIMES = ("15:00:00", "15:30:00", "16:00:00", "13:00:00", "13:30:00", "14:00:00", "14:30:00", "12:00:00")
TIME_P = (0.42, 0.15, 0.05, 0.10, 0.08, 0.06, 0.06, 0.08)
HISTORY_DAYS = 100  # statements disclosed this long before the range are included (their forecasts)


@dataclass(frozen=True)
class Schedule:
    """One entry per statement, sorted by (stock, period end)."""

    stock: np.ndarray  # int index into the universe
    q: np.ndarray  # 1, 2, 3, 4 (4 = FY)
    per_en: np.ndarray  # datetime64[D]
    fy_st: np.ndarray
    fy_en: np.ndarray
    disc: np.ndarray  # datetime64[D] disclosure date (a session)
    time: np.ndarray  # str "HH:MM:SS"
    eff: np.ndarray  # int session index (in the range) whose close first reflects it; < 0 before
    first: np.ndarray  # bool: no earlier statement of this company in the table (no surprise)


def _month_end(m: np.ndarray) -> np.ndarray:
    return (m + 1).astype("datetime64[D]") - 1


def schedule(u: Universe, cal: np.ndarray, t0: int, t_len: int, rng: np.random.Generator) -> Schedule:
    """Statements of every company: quarter ends, disclosure dates and times, effective sessions.

    `cal` is a session array (datetime64[D]) that extends beyond the range; the range is
    cal[t0 : t0 + t_len]. The effective session follows kabuflow.calendar (the features' rule): a
    disclosure at or after the day's close (15:00, 15:30 from 2024-11-05) becomes public at the next
    session's close, statements before weekends and holidays included.
    """
    start, end = cal[t0], cal[t0 + t_len - 1]
    first_m = (start - HISTORY_DAYS - 130).astype("datetime64[M]")
    offset = (u.fy_end_month - (first_m.astype(int) % 12 + 1)) % 3
    k = int((end.astype("datetime64[M]") - first_m).astype(int)) // 3 + 1
    months = first_m + offset[:, None] + 3 * np.arange(k)[None, :]  # [N, K] quarter-end months
    stock = np.repeat(np.arange(u.n), k)
    months = months.ravel()
    moy = months.astype(int) % 12 + 1
    q = (moy - u.fy_end_month[stock]) % 12 // 3
    q = np.where(q == 0, 4, q)
    per_en = _month_end(months)
    fy_en = _month_end(months + (u.fy_end_month[stock] - moy) % 12)
    fy_st = (fy_en.astype("datetime64[M]") - 11).astype("datetime64[D]")
    lag = u.disc_lag[stock] + np.where(q == 4, 10, 0) + rng.integers(-3, 4, len(stock))
    idx = np.searchsorted(cal, per_en + lag)  # the first session on or after the planned day
    keep = idx < t0 + t_len
    stock, q, per_en, fy_st, fy_en, idx = (a[keep] for a in (stock, q, per_en, fy_st, fy_en, idx))
    disc = cal[idx]
    time = np.array(TIMES)[rng.choice(len(TIMES), len(idx), p=TIME_P)]
    when = pl.DataFrame({"d": disc, "t": time})
    pairs = when.unique(maintain_order=True)  # the calendar parses each (date, time) pair once
    pairs = pairs.with_columns(eff=calendar.effective_sessions(pairs["d"], pairs["t"]))
    eff_day = when.join(pairs, on=["d", "t"], how="left", maintain_order="left")["eff"]
    eff = np.searchsorted(cal, eff_day.to_numpy().astype("datetime64[D]")) - t0
    listed = np.where(u.list_start[stock] > 0, eff >= u.list_start[stock], disc >= start - HISTORY_DAYS)
    keep = listed & (eff <= u.list_end[stock])
    out = [a[keep] for a in (stock, q, per_en, fy_st, fy_en, disc, time, eff)]
    first = np.r_[True, out[0][1:] != out[0][:-1]]
    return Schedule(*out, first=first)


def announcements(s: Schedule, t_len: int, n: int) -> np.ndarray:
    """[T, N] True on the session a statement with a surprise becomes public."""
    ann = np.zeros((t_len, n), bool)
    ok = ~s.first & (s.eff >= 0) & (s.eff < t_len)
    ann[s.eff[ok], s.stock[ok]] = True
    return ann


def _draw(day: np.ndarray, s: Schedule, fallback: np.ndarray) -> np.ndarray:
    """A statement's draw from its effective session's stream, or a fallback outside the range."""
    inside = (s.eff >= 0) & (s.eff < len(day))
    return np.where(inside, day[np.clip(s.eff, 0, len(day) - 1), s.stock], fallback)


def fins_table(
    u: Universe, s: Schedule, z_day: np.ndarray, w_day: np.ndarray, shares: np.ndarray
) -> pl.DataFrame:
    """fins_summary rows (J-Quants v2 names): results to date and the forecast for the year.

    FY statements carry next year's forecast in NxF* (F* null), as J-Quants does. `shares` [T, N] are
    the raw shares outstanding (they change with splits); per-share figures use them.
    """
    m = len(s.stock)
    rng = np.random.default_rng(m)
    z = _draw(z_day, s, rng.standard_normal(m))
    w = _draw(w_day, s, rng.standard_normal(m))
    sh = shares[np.clip(s.eff, 0, len(shares) - 1), s.stock]
    eq = u.price0 * u.shares0 / u.pbr  # per company: equity before its first statement
    fc, ytd = u.roe * eq, np.zeros(u.n)  # forecast in force, net profit so far this fiscal year
    res = {k: np.full(m, np.nan) for k in ("NP", "Sales", "Eq", "F", "FSales", "NxF", "NxFSales")}
    rank = np.arange(m) - np.searchsorted(s.stock, s.stock)  # statements are sorted by company
    for r in range(int(rank.max()) + 1 if m else 0):  # round r: every company's r-th statement
        j = np.flatnonzero(rank == r)
        i, q, e0 = s.stock[j], s.q[j], eq[s.stock[j]]
        f0 = np.where(s.first[j], u.roe[i] * e0, fc[i])
        npy = q / 4 * (f0 + SURPRISE_SCALE * e0 * z[j])
        sales = e0 / u.eq_ratio[i] * 0.9
        e1 = e0 + (npy - np.where(q > 1, ytd[i], 0.0)) * (1 - PAYOUT)
        fy = q == 4
        new_q = f0 + SURPRISE_SCALE * e0 * (0.5 * z[j] + 0.3 * w[j])
        new_fy = 0.5 * npy + 0.5 * u.roe[i] * e1 + 0.3 * SURPRISE_SCALE * e1 * w[j]
        res["NP"][j], res["Sales"][j], res["Eq"][j] = npy, q / 4 * sales * np.exp(0.05 * z[j]), e1
        res["F"][j] = np.where(fy, np.nan, new_q)
        res["FSales"][j] = np.where(fy, np.nan, sales * np.exp(0.04 * z[j]))
        res["NxF"][j] = np.where(fy, new_fy, np.nan)
        res["NxFSales"][j] = np.where(fy, sales * 1.03, np.nan)
        eq[i], fc[i], ytd[i] = e1, np.where(fy, new_fy, new_q), npy
    return _frame(u, s, res, sh)


def _frame(u: Universe, s: Schedule, r: dict[str, np.ndarray], sh: np.ndarray) -> pl.DataFrame:
    """Assemble the statement columns; operating and ordinary profit follow net profit and sales."""
    doc = np.where(s.q == 4, "FY", np.char.add(s.q.astype(str), "Q"))
    order = np.lexsort((u.codes[s.stock], s.time, s.disc))
    seq = np.empty(len(order), dtype=int)
    seq[order] = np.arange(len(order))
    day = np.char.replace(np.datetime_as_string(s.disc, unit="D"), "-", "")
    disc_no = np.char.add(day, np.char.zfill(seq.astype(str), 6))
    cols: dict[str, object] = {
        "DiscDate": s.disc,
        "DiscTime": s.time,
        "Code": u.codes[s.stock],
        "DiscNo": disc_no,
        "DocType": np.char.add(doc, "FinancialStatements_Consolidated_JP"),
        "CurPerType": doc,
        "CurPerSt": s.fy_st,
        "CurPerEn": s.per_en,
        "CurFYSt": s.fy_st,
        "CurFYEn": s.fy_en,
    }
    for pre, np_col, sales in (("", "NP", "Sales"), ("F", "F", "FSales"), ("NxF", "NxF", "NxFSales")):
        net, sal = np.round(r[np_col], -3), np.round(r[sales], -3)
        cols[f"{pre}Sales"] = sal
        cols[f"{pre}OP"] = np.round(net * 1.45 + 0.01 * sal, -3)
        cols[f"{pre}OdP"] = np.round(net * 1.42 + 0.008 * sal, -3)
        cols[f"{pre}NP" if pre != "NxF" else "NxFNp"] = net
        cols[f"{pre}EPS"] = np.round(net / sh, 2)
    cols["TA"] = np.round(r["Eq"] / u.eq_ratio[s.stock], -3)
    cols["Eq"] = np.round(r["Eq"], -3)
    cols["BPS"] = np.round(r["Eq"] / sh, 2)
    cols["ShOutFY"] = sh
    return pl.DataFrame(cols, nan_to_null=True).sort("Code", "DiscDate", "DiscTime")
