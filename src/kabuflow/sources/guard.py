"""The corporate-action and bad-print guard: adjusted moves no TSE trade allows, classified and handled."""

# A one-day move of the adjusted close beyond the daily price limit (制限値幅) of the previous raw
# close cannot be a trade: either the adjustment missed a split or consolidation (the raw close jumps
# by about the ratio, stays there, and volume scales inversely) or the print is bad (the price comes
# back within a few bars). Left in, a missed 10:1 consolidation is a +900 % "return" in every label
# and ret_/vol_ feature whose window spans it. Runs in ingest on every source's bars.

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from kabuflow import calendar
from kabuflow.config import ConfigError
from kabuflow.sources.limits import RAW_SCALE, Rule, legal, share, side_x

# Price ratios new/old of the corporate actions TSE companies announce: splits 1:k (price x 1/k) and
# consolidations k:1 (price x k).
_K = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0)
RATIOS = np.array(sorted({*_K, *(1.0 / k for k in _K)}))
MODES = ("repair", "mask", "keep")
VERDICTS = ("missed_split", "bad_print", "level_shift")
SPLIT_ACTION = {"repair": "repaired", "mask": "masked", "keep": "kept"}
SPIKE_BARS = 5  # a bad print is a run of at most this many bars after which the price is back
LEVEL_BARS, VOLUME_BARS = 5, 10  # medians either side of an event that decide persistence and volume
RAW_UNKNOWN_MIN_CODES = 50  # raw_unknown: a table this wide without one corporate action is adjusted


@dataclass(frozen=True)
class Event:
    """One move no trade allows: where, how large, what it was judged to be and what was done."""

    code: str
    date: str
    prev_date: str
    raw_move: float  # C / previous C - 1
    adj_move: float  # AdjC / previous AdjC - 1, before any repair
    limit: float  # the limit as a share of the previous raw close (one session, before tolerance and
    # broadening; with raw closes unknown, the widest within 10x)
    verdict: str  # missed_split | bad_print | level_shift
    ratio: float  # missed_split: price ratio new/old (0.5 = a 1:2 split); else the raw ratio
    action: str  # repaired | masked | kept
    rows: int  # bars masked by this event (0 for a repair or keep)


@dataclass
class _Code:
    """One code's bars (sorted by date) and what the scan does to them."""

    code: str
    dates: np.ndarray
    sess: np.ndarray
    c: np.ndarray
    adjc: np.ndarray
    vo: np.ndarray
    alive: np.ndarray
    fac: np.ndarray  # multiplier applied to this row's Adj prices (AdjVo divided by it)
    mult: np.ndarray  # multiplier applied to this row's AdjFactor
    into: np.ndarray  # (move, limit share) into each bar kept, from the bar kept before it: [n, 2]
    cons: np.ndarray  # the same for consecutive bars, as if none were dropped or repaired: [n, 2]
    cons_ok: np.ndarray  # whether the consecutive move into each bar is legal

    def run(self, i: int) -> int:
        """Bar i was kept right after bar i-1: the bars after it that follow on legally the same way
        (their moves are untouched by repairs, which scale earlier bars only). Returns the first bar
        past that run; `into` is filled along it."""
        bad = np.flatnonzero(~self.cons_ok[i + 1 :])
        k = i + 1 + int(bad[0]) if bad.size else self.c.size
        self.into[i + 1 : k] = self.cons[i + 1 : k]
        return k

    def move(self, p: int, j: np.ndarray | int) -> np.ndarray:
        """The adjusted move from bar p to bar(s) j, after the repairs made so far."""
        return np.asarray(self.adjc[j] * self.fac[j] / (self.adjc[p] * self.fac[p]) - 1.0)

    def legal_from(self, p: int, j: np.ndarray | int, rule: Rule) -> np.ndarray:
        """Whether the moves p -> j fit the limits of c[p], broadened when p closed at its limit."""
        gap = self.sess[j] - self.sess[p]
        up_x, down_x = side_x(self.into[p, 0], self.into[p, 1], self.dates[j], gap)
        return legal(np.asarray(self.c[p]), self.move(p, j), gap, rule, up_x, down_x)

    def keep(self, p: int, j: int, rule: Rule) -> int:
        """Bar j follows bar p: note the move into it; returns j."""
        self.into[j] = (self.move(p, j), share(np.asarray(self.c[p]), rule.scale))
        return j


def _median(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


def _split_ratio(s: _Code, p: int, i: int, rule: Rule) -> float | None:
    """The ratio q nearest (in log) to the raw move, if close: within a quarter of log q, and a legal
    trade from the base c[p]·q."""
    base = s.c[p] * RATIOS
    resid = np.abs(np.log(s.c[i] / base))
    ok = legal(base, s.c[i] / base - 1.0, np.full(RATIOS.size, s.sess[i] - s.sess[p]), rule)
    ok &= resid < np.abs(np.log(RATIOS)) / 4
    return float(RATIOS[ok][np.argmin(resid[ok])]) if ok.any() else None


def _is_split(s: _Code, p: int, i: int, q: float) -> bool:
    """The new level persists: the median close after is nearer (in log) the old median times q than
    the old median. And volume moves the other way at all: daily volume is noisy enough (attention,
    news) that a 1:2 split's doubling often shows as much less over VOLUME_BARS sessions."""
    before = np.flatnonzero(s.alive[: p + 1])
    r = _median(s.c[i : i + LEVEL_BARS]) / _median(s.c[before[-LEVEL_BARS:]])
    rv = _median(s.vo[i : i + VOLUME_BARS]) / _median(s.vo[before[-VOLUME_BARS:]])
    lq = np.log(q)
    persists = abs(np.log(r) - lq) < abs(lq) / 2
    inverse = bool(np.isfinite(rv) and rv > 0 and -np.log(rv) * np.sign(lq) > 0)
    return bool(persists and inverse)


def _reverts(s: _Code, p: int, i: int, rule: Rule) -> int | None:
    """The first bar j in (i, i + SPIKE_BARS] back within one session's limit of bar p (bars i..j-1
    are the spike). One session's, not the gap's compounded: a lasting move is not "back"."""
    j = np.arange(i + 1, min(i + 1 + SPIKE_BARS, s.c.size))
    if not j.size:
        return None
    up_x, down_x = side_x(s.into[p, 0], s.into[p, 1], s.dates[j])
    ok = np.flatnonzero(legal(np.asarray(s.c[p]), s.move(p, j), np.ones(j.size), rule, up_x, down_x))
    return int(j[ok[0]]) if ok.size else None


def _event(
    s: _Code, p: int, i: int, verdict: str, ratio: float, action: str, rows: int, scale: float
) -> Event:
    return Event(
        code=s.code,
        date=str(s.dates[i]),
        prev_date=str(s.dates[p]),
        raw_move=round(float(s.c[i] / s.c[p] - 1.0), 6),
        adj_move=round(float(s.adjc[i] / s.adjc[p] - 1.0), 6),
        limit=round(float(share(np.asarray(s.c[p]), scale)), 6),
        verdict=verdict,
        ratio=round(ratio, 6),
        action=action,
        rows=rows,
    )


def scan(s: _Code, mode: str, rule: Rule) -> list[Event]:
    """Walk one code's bars in date order, judging each illegal move from the last bar kept.

    missed_split: repair scales AdjO..AdjC before the event by the ratio (AdjVo inversely) and the
    event's AdjFactor by it; mask drops the code's bars before it (no window spans the break).
    bad_print: the spike's bars are dropped. level_shift (a lasting jump that is no split): that bar
    is dropped and the next move is judged from its close, the new level; on bars whose raw closes
    are unknown most such jumps are real moves of a price band misjudged, so the history stays.
    keep reports and changes nothing.
    """
    events, last, i, n = [], 0, 1, s.c.size
    none = np.array([], dtype=np.int64)
    while i < n:
        p = last
        if s.legal_from(p, i, rule):
            last = s.keep(p, i, rule)
            i = s.run(i) if p == i - 1 else i + 1
            last = i - 1
            continue
        at, q = i, _split_ratio(s, p, i, rule)
        if q is not None and _is_split(s, p, i, q):
            verdict, ratio, action = "missed_split", q, SPLIT_ACTION[mode]
            gone = np.flatnonzero(s.alive[:i]) if mode == "mask" else none
            if mode == "repair":
                s.fac[:i] *= q
                s.mult[i] *= q
            last, i = s.keep(p, i, rule), i + 1
        elif (end := _reverts(s, p, i, rule)) is not None:
            verdict, ratio, action = "bad_print", float(s.c[i] / s.c[p]), _masked(mode)
            gone = np.arange(i, end) if mode != "keep" else none
            last, i = s.keep(p, end, rule), end + 1  # the move back at `end` belongs to this event
        else:
            verdict, ratio, action = "level_shift", float(s.c[i] / s.c[p]), _masked(mode)
            gone = np.array([i]) if mode != "keep" else none
            last, i = i, i + 1  # the new level is the base from here; nothing broadened
        s.alive[gone] = False
        events.append(_event(s, p, at, verdict, ratio, action, int(gone.size), rule.scale))
    return events


def _masked(mode: str) -> str:
    return "kept" if mode == "keep" else "masked"


def check(mode: str, tol: float) -> None:
    """The guard's settings, checked before a source runs; errors name the setting."""
    if mode not in MODES:
        raise ConfigError(f"data.bad_moves={mode!r}: expected one of {', '.join(MODES)}")
    if not tol >= 0:
        raise ConfigError(f"data.limit_tolerance must be >= 0, got {tol}")


def guard(
    bars: pl.DataFrame, mode: str, tol: float
) -> tuple[pl.DataFrame, dict[str, Any], list[dict[str, Any]]]:
    """Find every illegal adjusted move in `bars` (equities_bars_daily) and handle it per `mode`.

    Returns the bars (sorted by Code, Date; unchanged under keep), the manifest's `guard` entry (every
    event, counts by verdict and by action) and drop records for the masked rows, by verdict.
    """
    check(mode, tol)
    df = bars.sort("Code", "Date", maintain_order=True)
    rule = Rule(tol, RAW_SCALE if raw_unknown(df) else 1.0)
    events: list[Event] = []
    alive, fac, mult = np.ones(df.height, bool), np.ones(df.height), np.ones(df.height)
    sess = _session_index(df["Date"]) if df.height else np.zeros(0, np.int64)
    dates = df["Date"].to_numpy().astype("datetime64[D]")
    c, adjc, vo = (df[col].to_numpy().astype(float) for col in ("C", "AdjC", "Vo"))
    cons = _consecutive(df, sess, c, adjc, rule)
    for a, b in _flagged_codes(cons):
        s = _Code(
            df["Code"][a],
            dates[a:b],
            sess[a:b],
            c[a:b],
            adjc[a:b],
            vo[a:b],
            alive[a:b],  # views: the scan writes through
            fac[a:b],
            mult[a:b],
            np.zeros((b - a, 2)),
            np.stack([cons.move[a:b], cons.share[a:b]], axis=1),
            cons.ok[a:b],
        )
        events += scan(s, mode, rule)
    if mode != "keep" and events:
        df = df.with_columns(
            *(pl.col(f"Adj{k}") * fac for k in "OHLC"),
            pl.col("AdjVo") / fac,
            pl.col("AdjFactor") * mult,
        ).filter(pl.Series(alive))
    return df, _summary(events, mode, rule), _dropped(events)


def raw_unknown(bars: pl.DataFrame) -> bool:
    """Whether the bars carry no raw prices: C = AdjC and AdjFactor = 1 on every row (a set adjusted at
    the source, like jpx-2463). One code without a corporate action looks like that too; a whole
    table of thousands does not."""
    if bars.height == 0 or bars["Code"].n_unique() < RAW_UNKNOWN_MIN_CODES:
        return False
    same = bars.select(((pl.col("C") == pl.col("AdjC")) & (pl.col("AdjFactor") == 1.0)).all()).item()
    return bool(same)


def _session_index(dates: pl.Series) -> np.ndarray:
    """XTKS session position of each date (a gap of k sessions is k limit-days of room)."""
    days = np.array(calendar.sessions(dates.min(), dates.max()), dtype="datetime64[D]")
    return np.searchsorted(days, dates.to_numpy().astype("datetime64[D]")).astype(np.int64)


@dataclass(frozen=True)
class _Consecutive:
    """Every move between consecutive bars of a code, judged in one vectorised pass ([rows] each;
    row r holds the move into r, 0 and legal at a code's first bar)."""

    move: np.ndarray
    share: np.ndarray  # the limit share of the base of that move
    ok: np.ndarray
    starts: np.ndarray  # first row of each code, and the row count at the end


def _consecutive(
    df: pl.DataFrame, sess: np.ndarray, c: np.ndarray, adjc: np.ndarray, rule: Rule
) -> _Consecutive:
    code = df["Code"].to_numpy()
    same = np.concatenate([[False], code[1:] == code[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        move = np.where(same, np.concatenate([[1.0], adjc[1:] / adjc[:-1]]) - 1.0, 0.0)
        sh = np.concatenate([[1.0], share(c[:-1], rule.scale)])
    gap = np.concatenate([[1], sess[1:] - sess[:-1]])
    up_x, down_x = side_x(np.roll(move, 1), np.roll(sh, 1), df["Date"].to_numpy(), gap)
    base = np.concatenate([c[:1], c[:-1]])
    ok = ~same | legal(base, move, gap, rule, up_x, down_x)
    return _Consecutive(move, sh, ok, np.concatenate([np.flatnonzero(~same), [df.height]]))


def _flagged_codes(cons: _Consecutive) -> list[tuple[int, int]]:
    """Row ranges [a, b) of the codes with at least one illegal move between consecutive bars."""
    which = np.unique(np.searchsorted(cons.starts, np.flatnonzero(~cons.ok), side="right") - 1)
    return [(int(cons.starts[k]), int(cons.starts[k + 1])) for k in which]


def _summary(events: list[Event], mode: str, rule: Rule) -> dict[str, Any]:
    count = lambda key, names: {n: sum(getattr(e, key) == n for e in events) for n in names}  # noqa: E731
    return {
        "mode": mode,
        "tolerance": rule.tol,
        "raw_prices": "unknown (C = AdjC, AdjFactor 1): the widest limit within 10x of C applies"
        if rule.scale > 1
        else "known",
        "limits": "TSE daily price limits (制限値幅) by previous raw close, JPX table (sources/limits.py)",
        "counts": count("verdict", VERDICTS),
        "actions": count("action", ("repaired", "masked", "kept")),
        "rows_masked": sum(e.rows for e in events),
        "codes": len({e.code for e in events}),
        "events": [asdict(e) for e in events],
    }


def _dropped(events: list[Event]) -> list[dict[str, Any]]:
    rows = {v: sum(e.rows for e in events if e.verdict == v) for v in VERDICTS}
    return [{"table": "equities_bars_daily", "reason": f"guard_{v}", "rows": n} for v, n in rows.items() if n]
