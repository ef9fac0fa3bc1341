"""Planted data faults with known answers (`synthetic.plant_bad_moves`): missed splits and bad prints."""

# What real bars get wrong, put into the synthetic market's bars so the ingest guard can be checked
# against the truth: a missed split takes one of the market's own splits or consolidations and drops
# its adjustment (AdjFactor 1 on the ex-date, Adj* before it left unscaled), so AdjC jumps by the
# ratio while the raw prints, and the limits they obey, stay as simulated; a bad print multiplies one
# bar's prices by a factor no limit allows, gone the next session. Off by default: `make run` sees
# the market as simulated.

from __future__ import annotations

import numpy as np
import polars as pl

from kabuflow import calendar

PRINT_FACTORS = ((3.0, 6.0), (1 / 6, 1 / 3))  # a bad print's price multiple: up, or down
CLEAR = 12  # sessions each side of a fault with one bar per session and no other corporate action
MIN_PRICE = 200.0  # yen: below it a 1:2 split's -50 % is within the limit (100-199 yen: 50 yen)
PRICES = ("O", "H", "L", "C", "AdjO", "AdjH", "AdjL", "AdjC")


def plant(
    bars: pl.DataFrame, n: int, rng: np.random.Generator
) -> tuple[pl.DataFrame, list[dict[str, object]]]:
    """`n` missed splits and `n` bad prints on 2n distinct codes; returns the bars and the answers
    (code, date, verdict as the guard names it, ratio: the split's price new/old, or the print's multiple)."""
    if n <= 0:
        return bars, []
    bars = bars.sort("Code", "Date")
    splits, prints = _spots(bars, event=True), _spots(bars, event=False)
    if len(splits) < n:
        raise ValueError(f"synthetic.plant_bad_moves={n}: the market has only {len(splits)} clear splits")
    answers = []
    for code, dates in (splits[j] for j in rng.choice(len(splits), n, replace=False)):
        date = dates[rng.integers(len(dates))]
        f = float(bars.filter((pl.col("Code") == code) & (pl.col("Date") == date))["AdjFactor"].item())
        bars = _unadjust(bars, code, date, f)
        answers.append({"code": code, "date": str(date), "verdict": "missed_split", "ratio": f})
    prints = [s for s in prints if s[0] not in {a["code"] for a in answers}]
    if len(prints) < n:
        raise ValueError(f"synthetic.plant_bad_moves={n}: only {len(prints)} codes have room for a bad print")
    for code, dates in (prints[j] for j in rng.choice(len(prints), n, replace=False)):
        date = dates[rng.integers(len(dates))]
        lo, hi = PRINT_FACTORS[int(rng.integers(2))]
        factor = round(float(rng.uniform(lo, hi)), 4)
        hit = (pl.col("Code") == code) & (pl.col("Date") == date)
        bars = bars.with_columns(
            pl.when(hit).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c) for c in PRICES
        )
        answers.append({"code": code, "date": str(date), "verdict": "bad_print", "ratio": factor})
    return bars, sorted(answers, key=lambda a: (a["code"], a["date"]))


def _unadjust(bars: pl.DataFrame, code: str, date: object, f: float) -> pl.DataFrame:
    """Drop the adjustment of the event (code, date) with AdjFactor f: its factor becomes 1 and the
    Adj prices before it lose the 1/f it put on them (AdjVo the f)."""
    this, before = pl.col("Code") == code, pl.col("Date") < date
    adj = [pl.when(this & before).then(pl.col(f"Adj{k}") / f).otherwise(pl.col(f"Adj{k}")) for k in "OHLC"]
    return bars.with_columns(
        *(e.alias(f"Adj{k}") for e, k in zip(adj, "OHLC", strict=True)),
        pl.when(this & before).then(pl.col("AdjVo") * f).otherwise(pl.col("AdjVo")).alias("AdjVo"),
        pl.when(this & (pl.col("Date") == date)).then(1.0).otherwise(pl.col("AdjFactor")).alias("AdjFactor"),
    )


def _spots(bars: pl.DataFrame, event: bool) -> list[tuple[str, list[object]]]:
    """Per code, the dates that can take a fault: CLEAR bars either side on consecutive sessions with
    no corporate action among them but, with `event`, the date's own (AdjFactor != 1); and a previous
    close of at least MIN_PRICE."""
    days = np.array(calendar.sessions(bars["Date"].min(), bars["Date"].max()), dtype="datetime64[D]")
    out = []
    for (code,), g in bars.group_by("Code", maintain_order=True):
        pos = np.searchsorted(days, g["Date"].to_numpy().astype("datetime64[D]"))
        plain = g["AdjFactor"].to_numpy() == 1.0
        calm = plain & (np.diff(pos, prepend=pos[0] - 1) == 1)
        run = np.concatenate([[0], np.cumsum(calm)])  # calm bars before each row
        idx = np.arange(CLEAR, len(pos) - CLEAR)
        need = 2 * CLEAR + 1 - int(event)  # the event's own bar is not calm
        idx = idx[(run[idx + CLEAR + 1] - run[idx - CLEAR] == need) & (plain[idx] != event)]
        idx = idx[g["C"].to_numpy()[idx - 1] >= MIN_PRICE]
        if idx.size:
            out.append((str(code), g["Date"].gather(idx).to_list()))
    return out
