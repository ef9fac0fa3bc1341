"""The embedded market: a simulated Tokyo Stock Exchange with a known oracle (`--source synthetic`).

N companies on the real XTKS calendar. Returns come from a factor model (market with GARCH and
regimes, 33 sectors, size/value/momentum styles, latent cross-sector clusters, fat-tailed GARCH
idiosyncratic shocks) plus six planted, weak signals (synthetic_signals). Raw tables come out in
exactly the J-Quants v2 shape the other sources produce; `extra["oracle"]` holds, for every
stock-day with a bar, the true expected label E[y_h(t) | state at the close of t] for h = 1, 5, 10,
20 sessions (y_h(t) = AdjC[t+1+h] / AdjC[t+1] - 1), and beside it, at the evaluate gate horizon, each
signal's term of that expectation (`part_<signal>_<h>d`: what evaluate attributes scores to). The
oracle knows latent quantities (the true residual return, the attention shock, each stock's long-run
volatility) that the tables show only through noisy proxies, so it bounds what any model can reach.
Same seed, same bytes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from kabuflow import calendar, schema
from kabuflow.config import Config, ConfigError, SyntheticConfig
from kabuflow.sources import SourceResult
from kabuflow.sources import synthetic_facts as facts
from kabuflow.sources import synthetic_fins as fins
from kabuflow.sources import synthetic_flows as flows
from kabuflow.sources import synthetic_market as market
from kabuflow.sources import synthetic_plants as plants
from kabuflow.sources import synthetic_prices as prices
from kabuflow.sources import synthetic_signals as signals
from kabuflow.sources import synthetic_tables as tables
from kabuflow.sources.synthetic_universe import Universe, make_universe

MIN_STOCKS, MAX_STOCKS, MIN_SESSIONS = 20, 8_000, 130  # 8,000: room for unique 4-digit codes


@dataclass(frozen=True)
class Market:
    """A simulated market before it becomes tables: [T, N] arrays over sessions x companies."""

    cfg: SyntheticConfig
    dates: np.ndarray  # datetime64[D] sessions of the range
    universe: Universe
    schedule: fins.Schedule
    shocks: market.Shocks
    bar: np.ndarray  # bool: a row exists (listed, not halted)
    ann: np.ndarray  # bool: a statement with a surprise becomes public at this close
    impulses: dict[str, np.ndarray]
    ret: np.ndarray  # latent simple return, close t-1 -> t
    mu: np.ndarray  # its expected value given the state at t-1 (signals only, without the drift)
    oracle: np.ndarray  # [4, T, N] expected label per horizon given the state at the close of t
    parts: dict[str, np.ndarray]  # per signal, [4, T, N] oracle at unit strength (only when asked for)
    prices: prices.Prices


def resolve(cfg: Config) -> SyntheticConfig:
    """The synthetic settings with `data.start` / `data.end` applied, checked; errors name the setting."""
    s = cfg.synthetic
    s = replace(s, start=cfg.data.start or s.start, end=cfg.data.end or s.end)
    for key in ("start", "end"):
        try:
            dt.date.fromisoformat(getattr(s, key))
        except ValueError:
            raise ConfigError(
                f"synthetic.{key} (or data.{key}) is not an ISO date: {getattr(s, key)!r}"
            ) from None
    if s.start >= s.end:
        raise ConfigError(f"synthetic.start {s.start} must come before synthetic.end {s.end}")
    if s.plant_bad_moves < 0:
        raise ConfigError(f"synthetic.plant_bad_moves must be >= 0, got {s.plant_bad_moves}")
    if not MIN_STOCKS <= s.n_stocks <= MAX_STOCKS:
        raise ConfigError(f"synthetic.n_stocks must be in [{MIN_STOCKS}, {MAX_STOCKS}], got {s.n_stocks}")
    if s.skew < 0 or s.lottery < 0:
        key = "skew" if s.skew < 0 else "lottery"
        raise ConfigError(f"synthetic.{key} must be >= 0 (0 switches it off), got {getattr(s, key)}")
    for name in signals.SIGNALS:
        if getattr(s, name) < 0:
            raise ConfigError(
                f"synthetic.{name} must be >= 0 (0 switches the signal off), got {getattr(s, name)}"
            )
    return s


def _sessions(start: str, end: str) -> tuple[np.ndarray, int, int]:
    """XTKS sessions from ~8 months before `start` to ~2 months after `end`, and the range's slice."""
    lo = dt.date.fromisoformat(start) - dt.timedelta(days=250)
    hi = dt.date.fromisoformat(end) + dt.timedelta(days=60)
    try:
        s = np.array(calendar.sessions(lo, hi), dtype="datetime64[D]")
    except ValueError as err:
        raise ConfigError(f"synthetic.start..end {start}..{end}: {err}") from None
    t0 = int(np.searchsorted(s, np.datetime64(start)))
    t1 = int(np.searchsorted(s, np.datetime64(end), side="right"))
    if t1 - t0 < MIN_SESSIONS:
        raise ConfigError(
            f"synthetic.start..end holds {t1 - t0} sessions; at least {MIN_SESSIONS} are needed"
        )
    return s, t0, t1 - t0


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))


def simulate(
    s: SyntheticConfig, perturb_from: int | None = None, variant: int = 1, keep_parts: bool = False
) -> Market:
    """Generate the market. `perturb_from`: redraw every daily shock from that session on, from
    alternative stream `variant` (tests: no look-ahead, Monte Carlo of the oracle).

    Static choices (companies, statement and halt schedules, split decisions' dice) come from their
    own streams; everything that happens on a day comes from that day's stream (market.day_rng).
    """
    cal, t0, t_len = _sessions(s.start, s.end)
    dates = cal[t0 : t0 + t_len]
    u = make_universe(s.n_stocks, t_len, _rng(s.seed, 1))
    sched = fins.schedule(u, cal, t0, t_len, _rng(s.seed, 2))
    bar = market.listed_mask(u, t_len, market.halts(u, t_len, _rng(s.seed, 3)))
    ann = fins.announcements(sched, t_len, u.n) & bar
    shocks = market.draw_shocks(u, ann, s.seed, perturb_from, variant, s.skew)
    x = signals.impulses(u, shocks, ann, bar)
    strength = {name: getattr(s, name) for name in signals.SIGNALS}
    drift = market.static_drift(u, s.lottery)
    mu, oracle, parts = signals.expected_returns(u, x, strength, drift, keep_parts)
    r = market.returns(u, shocks, mu, drift)
    q = prices.latent_path(u, r)
    fac = prices.split_factors(u, q, bar, dates, _rng(s.seed, 4))
    p = prices.prints(u, q, r, fac, bar, shocks.sigma, shocks.intraday, shocks.log_volume)
    return Market(s, dates, u, sched, shocks, bar, ann, x, r, mu, oracle, parts, p)


def oracle_table(m: Market, parts_at: tuple[int, ...] = ()) -> pl.DataFrame:
    """schema.ORACLE rows for every stock-day with a bar, sorted by (Code, Date); with `parts_at`, also
    each signal's term of the oracle at those horizons, `part_<signal>_<h>d` = strength x unit part (the
    oracle is their sum plus h x the static drift: beta x market drift + lottery premium). Needs a market simulated with keep_parts."""
    assert not parts_at or set(m.parts) == set(signals.SIGNALS), "simulate(..., keep_parts=True) first"
    i, t = np.nonzero(m.bar.T)
    cols = {"Date": m.dates[t], "Code": pl.Series(m.universe.codes).gather(i)}
    cols |= {f"oracle_{h}d": m.oracle[k].T[m.bar.T] for k, h in enumerate(signals.HORIZONS)}
    for h in parts_at:
        k = signals.HORIZONS.index(h)
        cols |= {
            f"part_{name}_{h}d": getattr(m.cfg, name) * m.parts[name][k].T[m.bar.T]
            for name in signals.SIGNALS
        }
    return pl.DataFrame(cols)


def adjusted_close(m: Market) -> np.ndarray:
    """[T, N] AdjC as the bars table has it (NaN where there is no bar)."""
    return np.where(m.bar, m.prices.c * tables.adjustment(m.universe, m.prices), np.nan)


def oracle_rank_ic(m: Market) -> dict[str, float]:
    """The oracle's mean daily RankIC against the realised labels (from AdjC), per horizon."""
    y = facts.forward_labels(adjusted_close(m), signals.HORIZONS)
    return {
        f"{h}d": facts.rank_ic(np.where(m.bar, m.oracle[k], np.nan), y[k])
        for k, h in enumerate(signals.HORIZONS)
    }


def build_tables(m: Market) -> dict[str, pl.DataFrame]:
    """Every raw table, J-Quants v2 names and the dtypes of schema.RAW."""
    u, p, s = m.universe, m.prices, m.cfg
    adj_close = adjusted_close(m)
    index = tables.topix(m.dates, p, adj_close, m.bar)
    value = np.where(m.bar, np.round(p.vo * (p.o + p.h + p.lo + p.c) / 4), np.nan)
    out = {
        "equities_bars_daily": tables.bars(u, m.dates, p, m.bar),
        "equities_master": tables.master(u, m.dates, p, m.bar),
        "indices_bars_daily_topix": index,
        "fins_summary": fins.fins_table(u, m.schedule, m.shocks.z, m.shocks.w, p.shares),
        "equities_investor_types": flows.investor_types(
            u, m.dates, value, index["C"].to_numpy(), _rng(s.seed, 5)
        ),
        "markets_margin_interest": flows.margin_interest(u, m.dates, adj_close, p.shares, _rng(s.seed, 6)),
        "markets_calendar": tables.calendar(m.dates),
    }
    return {name: schema.cast(df, schema.RAW[name], name) for name, df in out.items()}


def load(cfg: Config) -> SourceResult:
    """The synthetic source: raw tables, the oracle beside them, and what was planted (notes)."""
    s, gate_h = resolve(cfg), _gate_horizon(cfg)
    m = simulate(s, keep_parts=True)
    # The parts at the gate horizon only (evaluate's signal attribution reads them; all four horizons
    # would more than double the file); dropped before the tables are built, to keep the peak down.
    oracle = oracle_table(m, parts_at=(gate_h,))
    m = replace(m, parts={})
    notes = {
        "seed": s.seed,
        "n_stocks": s.n_stocks,
        "sessions": len(m.dates),
        "start": str(m.dates[0]),
        "end": str(m.dates[-1]),
        "strengths": {name: getattr(s, name) for name in signals.SIGNALS},
        "clusters": int(m.universe.cluster.max()) + 1,
        "oracle": "E[sum of daily returns of sessions t+2..t+1+h | generator state at the close of t]",
        "surprise": "(NP * 4 / q - forecast in force) / previous Eq; forecast = FNP, or NxFNp after FY",
    }
    out = build_tables(m)
    if s.plant_bad_moves:
        bars, planted = plants.plant(out["equities_bars_daily"], s.plant_bad_moves, _rng(s.seed, 7))
        out["equities_bars_daily"], notes["planted"] = bars, planted
    return SourceResult(tables=out, extra={"oracle": oracle}, notes=notes)


def _gate_horizon(cfg: Config) -> int:
    """evaluate.gate_horizon ("5d") as sessions, checked against the horizons the oracle has."""
    known = {f"{h}d": h for h in signals.HORIZONS}
    if cfg.evaluate.gate_horizon not in known:
        raise ConfigError(
            f"evaluate.gate_horizon must be one of {', '.join(known)}, got {cfg.evaluate.gate_horizon!r}"
        )
    return known[cfg.evaluate.gate_horizon]
