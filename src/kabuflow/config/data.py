"""Config sections of the data side: sources (synthetic, J-Quants), features, normalize, graph, folds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HORIZONS: tuple[int, ...] = (1, 5, 10, 20)
# Where ingest reads from (kabuflow.ingest.SOURCES maps each to its module).
Source = Literal["synthetic", "jquants", "files"]


@dataclass(frozen=True)
class DataConfig:
    source: Source = "synthetic"
    path: str = ""  # files source: directory of J-Quants-shaped parquet/CSV
    start: str = ""  # ISO date; "" = source default
    end: str = ""
    # One-day adjusted moves beyond the TSE daily price limit (sources/guard.py): repair a missed split's
    # adjustment and mask bad prints (repair), mask both (mask), or leave the bars as they came (keep).
    bad_moves: Literal["repair", "mask", "keep"] = "repair"
    limit_tolerance: float = 0.05  # share by which every limit is widened before a move counts as illegal


@dataclass(frozen=True)
class SyntheticConfig:
    n_stocks: int = 400
    start: str = "2017-01-04"
    end: str = "2024-12-27"
    seed: int = 11  # a draw whose 8 years look like 2016-2024 (seeds differ as decades do)
    # Strength of each planted signal: the SD of its daily expected-return contribution, in units of
    # the stock's residual (non-market) daily volatility; 0 switches it off. These defaults give an
    # oracle RankIC of ~0.06 at 1d and ~0.10 at 5d (kernels and signs: sources/synthetic_signals.py).
    reversal: float = 0.06
    momentum: float = 0.016
    leadlag: float = 0.06
    pead: float = 0.014
    volume_shock: float = 0.012
    vol_interaction: float = 0.014
    low_risk: float = 0.01  # expected return falls with the stock's slow volatility level
    # Right skew of the idiosyncratic shocks, growing with volatility (zero mean: not in the oracle):
    # the weight of the skewed component is skew x (conditional vol / median long-run idio vol), <= 0.9.
    skew: float = 0.5
    # Lottery premium: expected daily return rises by lottery x (long-run idio vol - median): with skew,
    # paid in the right tail, so volatile stocks' mean rises while their median falls (as on the TSE).
    lottery: float = 0.05
    # Data faults planted into the bars with known answers (sources/synthetic_plants.py): this many missed
    # splits and as many bad prints, for checking the ingest guard. 0 = none (the market as simulated).
    plant_bad_moves: int = 0


@dataclass(frozen=True)
class JQuantsConfig:
    base_url: str = "https://api.jquants.com/v2"
    requests_per_minute: int = 60  # plan: Free 5, Light 60, Standard 120, Premium 500
    max_retries: int = 6
    backoff_seconds: float = 1.0
    timeout_seconds: float = 60.0
    cache_uri: str = ""  # "" = $KABUFLOW_CACHE/jquants or ~/.cache/kabuflow/jquants; any storage URI
    # Tables to download. A table the plan does not include (HTTP 403 "not available on your
    # subscription") is an error when required (bars, master) and left out with a note otherwise.
    tables: tuple[str, ...] = (
        "equities_bars_daily",
        "equities_master",
        "indices_bars_daily_topix",
        "fins_summary",
        "equities_investor_types",
        "markets_margin_interest",
        "markets_calendar",
    )
    master_every: Literal["month", "session"] = "month"  # how often to snapshot /equities/master (as-of)


@dataclass(frozen=True)
class FeaturesConfig:
    horizons: tuple[int, ...] = HORIZONS
    # Feature families to compute, by prefix (ret, vol, tech, liq, mkt, sec, cs, stmt, flow, margin,
    # flag); empty = every registered family. Later families read earlier ones' columns (sec, cs and
    # mkt read ret/vol/liq/tech), so keep those when naming a subset.
    families: tuple[str, ...] = ()


@dataclass(frozen=True)
class NormalizeConfig:
    method: Literal["robust_z", "rank_gauss"] = "robust_z"
    clip: float = 5.0
    market_window: int = 252
    market_min_periods: int = 60
    # Sessions between the end of the market features' trailing window and t: 1 = strictly past (a shock
    # never dilutes its own yardstick), 0 includes t. A negative lag reaches |lag| sessions into the
    # future: a leak, allowed only so that `kabuflow audit` can be shown catching it (it warns).
    market_lag: int = 1
    dtype: Literal["float16", "float32"] = "float32"
    # A stock-day is `valid` when it has a row and at least this share of its stock features is present.
    min_valid_share: float = 0.5


@dataclass(frozen=True)
class GraphConfig:
    # Sector-residual correlations over four years, no sector edges, top 7 above 0.25 (the README's design
    # experiments measure the alternatives). Peers are found by co-movement, so more sessions find them
    # better for as long as they stay peers; sector mates would crowd out the cross-sector peers the graph
    # is for, and stay reachable through the same_sector attribute of any correlated pair.
    window: int = 1000
    min_obs: int = 120
    # none | market (minus the session mean) | sector (minus the sector mean)
    residual: Literal["none", "market", "sector"] = "sector"
    threshold: float = 0.25
    top_k: int = 7
    shrinkage: float = 0.1
    sector_edges: int = 0  # same-sector neighbours per node (most correlated first); 0 = none
    every: int = 5  # sessions between correlation updates; dates in between keep the last pairs
    threads: int = 0  # torch intra-op threads for the graph stage; 0 = every core the process may use


@dataclass(frozen=True)
class FoldsConfig:
    n_folds: int = 3
    val_days: int = 120
    test_days: int = 160
    embargo_days: int = 20
    min_train_days: int = 500
