"""Weekly tables of the synthetic market: trading by investor type, and margin balances per stock."""

from __future__ import annotations

import numpy as np
import polars as pl

from kabuflow.sources.synthetic_universe import Universe

RESTRUCTURING = np.datetime64("2022-04-04")  # TSE1st/2nd/Mothers/JASDAQ became Prime/Standard/Growth
NEW_SECTIONS = {"0111": "TSEPrime", "0112": "TSEStandard", "0113": "TSEGrowth"}
# Investor types: share of the week's turnover, and the weight on the week's market return (in units of
# 2 %) of their net-buy ratio: foreigners chase the market, individuals lean against it.
TYPES = {
    "Prop": (0.18, 0.0),
    "Ind": (0.20, -0.05),
    "Frgn": (0.55, 0.04),
    "SecCo": (0.01, 0.0),
    "InvTr": (0.015, 0.01),
    "BusCo": (0.01, 0.0),
    "InsCo": (0.003, 0.0),
    "TrstBnk": (0.025, -0.02),
}
INVESTOR_PUB_LAG = 4  # sessions after the week's last session (J-Quants: the 4th business day)
MARGIN_PUB_LAG = 2  # margin balances of a week are published 2 sessions after its record date


def weeks(dates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) session index of every Monday-to-Friday week in the range."""
    monday = dates - ((dates.astype("datetime64[D]").view("int64") - 4) % 7)  # 1970-01-01 was a Thursday
    starts = np.flatnonzero(np.r_[True, monday[1:] != monday[:-1]])
    return starts, np.r_[starts[1:] - 1, len(dates) - 1]


def investor_types(
    u: Universe, dates: np.ndarray, value: np.ndarray, index: np.ndarray, rng: np.random.Generator
) -> pl.DataFrame:
    """equities_investor_types: weekly sell/buy/total/balance (thousand yen) by section and investor type."""
    first, last = weeks(dates)
    ok = last + INVESTOR_PUB_LAG < len(dates)
    first, last = first[ok], last[ok]
    week_ret = index[last] / index[np.maximum(first - 1, 0)] - 1
    keys, rows = [], []
    new_sections = np.array([NEW_SECTIONS[m] for m in u.mkt])
    for lo, hi, wr in zip(first, last, week_ret, strict=True):
        section = new_sections if dates[lo] >= RESTRUCTURING else u.old_section
        turnover = np.nansum(value[lo : hi + 1], axis=0) / 1000.0
        for name in sorted(set(section)):
            keys.append((hi + INVESTOR_PUB_LAG, lo, hi, name))
            rows.append(_type_values(float(turnover[section == name].sum()), wr, rng))
    pub, st, en, sec = (np.array(k) for k in zip(*keys, strict=True))
    head = pl.DataFrame({"PubDate": dates[pub], "StDate": dates[st], "EnDate": dates[en], "Section": sec})
    return pl.concat([head, pl.DataFrame(rows)], how="horizontal")


def _type_values(total: float, week_ret: float, rng: np.random.Generator) -> dict[str, float]:
    """One section-week: each type's sell and buy; brokerage = total - proprietary; total nets to zero."""
    out: dict[str, float] = {}
    for who, (share, beta) in TYPES.items():
        b = beta * week_ret / 0.02 + rng.normal(0, 0.02)
        out |= _four(who, share * total * (1 - b), share * total * (1 + b))
    out |= _four("Tot", total, total)
    out |= _four("Brk", total - out["PropSell"], total - out["PropBuy"])
    return out


def _four(who: str, sell: float, buy: float) -> dict[str, float]:
    sell, buy = round(sell), round(buy)
    return {f"{who}Sell": sell, f"{who}Buy": buy, f"{who}Tot": sell + buy, f"{who}Bal": buy - sell}


def margin_interest(
    u: Universe, dates: np.ndarray, adj_close: np.ndarray, shares: np.ndarray, rng: np.random.Generator
) -> pl.DataFrame:
    """markets_margin_interest: weekly long/short margin balances (shares); longs buy the dips."""
    _, last = weeks(dates)
    last = last[last + MARGIN_PUB_LAG < len(dates)]
    seen = np.maximum.accumulate(np.where(np.isnan(adj_close), 0, np.arange(len(dates))[:, None]), axis=0)
    filled = adj_close[seen, np.arange(u.n)]  # last close on or before each session
    a, out = np.zeros(u.n), {k: [] for k in ("t", "i", "short", "long", "short_std", "long_std")}
    std_share = np.clip(rng.normal(0.75, 0.1, u.n), 0.4, 0.95)
    loanable = u.iss_type == "2"
    prev = filled[0]
    for t in last:
        wr = np.nan_to_num(np.log(filled[t] / prev))
        prev = filled[t]
        a = 0.9 * a + 0.1 * rng.standard_normal(u.n) - 1.0 * wr
        long = np.round(shares[t] * u.long_ratio * np.exp(a) / 100) * 100
        ratio = np.where(loanable, u.short_ratio, 0.05) * np.exp(0.3 * rng.standard_normal(u.n))
        short = np.round(long * ratio / 100) * 100
        i = np.flatnonzero((u.list_start <= t) & (u.list_end >= t))
        for key, val in (("t", np.full(len(i), t)), ("i", i), ("short", short[i]), ("long", long[i])):
            out[key].append(val)
        out["long_std"].append(np.round(long[i] * std_share[i] / 100) * 100)
        out["short_std"].append(np.where(loanable[i], np.round(short[i] * std_share[i] / 100) * 100, 0.0))
    c = {k: np.concatenate(v) for k, v in out.items()}
    codes = pl.Series(u.codes)
    return pl.DataFrame(
        {
            "PubDate": dates[c["t"] + MARGIN_PUB_LAG],
            "Date": dates[c["t"]],
            "Code": codes.gather(c["i"]),
            "IssType": pl.Series(u.iss_type).gather(c["i"]),
            "ShrtVol": c["short"],
            "LongVol": c["long"],
            "ShrtNegVol": c["short"] - c["short_std"],
            "LongNegVol": c["long"] - c["long_std"],
            "ShrtStdVol": c["short_std"],
            "LongStdVol": c["long_std"],
        }
    ).sort("Code", "Date")
