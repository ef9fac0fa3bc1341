"""Typed, frozen run configuration: YAML profiles plus type-checked `--set section.key=value` overrides."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

HORIZONS: tuple[int, ...] = (1, 5, 10, 20)
# The model kinds train-fold knows (kabuflow.train.MODELS is this list).
ModelName = Literal["atft", "lightgbm", "ridge", "reversal_5d", "momentum_60d", "low_vol_60d"]
# Where ingest reads from (kabuflow.ingest.SOURCES maps each to its module).
Source = Literal["synthetic", "jquants", "files"]


class ConfigError(ValueError):
    """A profile or override that does not fit the schema; the message names the key."""


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


@dataclass(frozen=True)
class ModelConfig:
    hidden: int = 64
    lookback: int = 20
    heads: int = 4
    lstm_layers: int = 1
    gat_layers: int = 2
    gat_heads: int = 4
    ff_mult: int = 1  # hidden width of the post-attention GRN, in multiples of hidden
    dropout: float = 0.1
    input_norm: Literal["fan", "san", "none"] = "fan"
    fan_k: int = 3
    san_slice: int = 5
    use_graph: bool = True
    # Independently seeded copies trained one after another, their outputs averaged (model.Ensemble):
    # k times the training time for less seed noise. The local profile uses 3.
    members: int = 1
    wide: bool = True  # add a linear map of the day's inputs (and their neighbour mean) to every quantile
    quantiles: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class TrainConfig:
    # Defaults = the CPU budget of the local pipeline (three members, ~100 CPU-s per ATFT fold on one
    # thread). Validation RankIC peaks after a few such epochs and falls with longer training: the model
    # memorises days.
    epochs: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    # Epochs without a better validation RankIC before stopping; <= 0: off, all epochs run and the last
    # weights are kept. Off for the 4-epoch CPU budget: 60 validation days score RankIC to about +-0.01,
    # too noisy to stop on while the schedule still warms up. The a100 profile keeps 5 of 30.
    patience: int = 0
    seed: int = 0
    rank_weight: float = 1.0
    sharpe_weight: float = 0.0
    horizon_weights: tuple[float, ...] = (0.5, 1.0, 0.75, 0.5)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True
    compile: bool = False
    # default: the whole model, dynamic shapes; reduce-overhead | max-autotune (CUDA graphs): the temporal part
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    pad_stocks: int = 0  # pad a forward's stocks to a multiple of this: fixed shapes for CUDA graphs
    shuffle_labels: bool = False  # control run: labels permuted within each day
    # 0 = the whole cross-section. A random subset cuts the graph too (a stock keeps ~k/N of its
    # neighbours), and on the synthetic market that costs the graph its edge: prefer fewer days instead.
    max_stocks_per_day: int = 0
    # 0 = every training day; else a fresh random subset of this many each epoch. 80 keeps three members
    # of the local profile inside make run's budget (fewer, fresher days per epoch also scored better).
    days_per_epoch: int = 80
    days_per_step: int = 1  # days whose mean loss makes one optimizer step (per rank under DDP)
    stack_days: bool = (
        False  # a step's days in one forward, as one graph of disjoint days (GPU: fewer launches)
    )
    check_every: int = 0  # steps between host reads of the on-device non-finite-loss flag; 0 = once an epoch
    ema_decay: float = 0.0  # >0: validate, keep and return an exponential moving average of the weights
    val_stride: int = 2  # early stopping scores every val_stride-th validation day (all are predicted)
    # With patience <= 0 and no pruning, only the last epoch is validated (the others' scores were read
    # by nothing: a quarter of an ATFT fold's CPU on the local profile); true: every epoch, for history.
    validate_every_epoch: bool = False
    rank_temperature: float = 0.1  # soft-rank sigmoid temperature, in cross-sectional std units
    threads: int = 1  # torch/LightGBM CPU threads (1: folds train side by side on the local runner); 0 = all
    # What every model fits (kabuflow.train.targets): rank = Gaussianised per-date rank of the raw label, z =
    # per-date z-score, raw = the return itself. Evaluation always scores the raw label. rank by default:
    # the metric is a rank correlation and real returns are right-skewed (docs/baselines.md).
    target: Literal["rank", "z", "raw"] = "rank"


@dataclass(frozen=True)
class LightGBMConfig:
    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 400
    min_child_samples: int = 200
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    # l2 | l1 (quantile 0.5: the median) | lambdarank (per-date groups, relevance = lambdarank_bins
    # per-date quantile bins of the target, linear gains).
    objective: Literal["l2", "l1", "lambdarank"] = "l2"
    lambdarank_bins: int = 10
    # Early stopping on the validation mean daily RankIC (the metric the models are judged on, not the
    # L2 of the target): stop after early_stopping_rounds rounds without a better one, but never keep
    # fewer than min_rounds (validation RankIC on 120 days moves by +-0.01, and L2 stopping kept one tree
    # at 10d and 20d on real data). 0 = off: all rounds.
    early_stopping_rounds: int = 50
    min_rounds: int = 50
    # Cap on train stock-days, sampled by whole dates (seeded), so every kept date is a full cross-
    # section as in evaluation; binning and rounds scale with it. 300k is ~1/12 of jpx-2463's train rows.
    max_train_rows: int = 300_000


@dataclass(frozen=True)
class RidgeConfig:
    # Penalty per training row: alpha = penalty x n_rows (the features are ~unit variance, so X'X grows
    # with n and an unscaled alpha vanishes on millions of rows). The one with the best validation mean
    # daily RankIC is kept, per horizon.
    penalties: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass(frozen=True)
class SearchDim:
    """One tuned setting: a list of choices, or a range [low, high], log-uniform when `log`.

    A range over an integer setting draws integers. Values are checked against the tuned field's type."""

    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False


def _default_space() -> dict[str, SearchDim]:
    return {
        "model.hidden": SearchDim(choices=(32, 64, 128)),  # the profiles scale it: local 16-64, a100 128-512
        "model.dropout": SearchDim(low=0.0, high=0.3),
        "model.input_norm": SearchDim(choices=("fan", "san", "none")),
        "model.gat_layers": SearchDim(low=1, high=3),
        "train.lr": SearchDim(low=3e-4, high=5e-3, log=True),
        "train.weight_decay": SearchDim(low=1e-6, high=1e-2, log=True),
        "train.rank_weight": SearchDim(low=0.0, high=2.0),
    }


# The study trains on one panel and graph, so only settings that act after them can be tuned.
SEARCHABLE_SECTIONS = ("model", "train")


@dataclass(frozen=True)
class HPOConfig:
    trials: int = 20  # per `kabuflow hpo` process, i.e. per worker of the hpo pipeline
    workers: int = 2  # hpo pipeline: hpo-worker tasks sharing one study
    # "" = sqlite:///<out>/optuna.db locally (the hpo pipeline: one file for all workers); in the cluster
    # postgresql+psycopg://optuna@optuna-db.kabuflow.svc:5432/optuna. Never a password: that comes from
    # $KABUFLOW_HPO_DB_PASSWORD (a Kubernetes Secret), so it is in no artifact or compiled pipeline.
    storage: str = ""
    study: str = "atft"
    epochs: int = 3
    fold: int = 0  # tune on this fold's train/val dates: they must precede every fold's test dates
    startup_trials: int = 5  # trials before the median pruner may prune
    # A worker beats every heartbeat_seconds while it runs a trial; a RUNNING trial silent for
    # grace_seconds belonged to a killed worker: the next worker to start a trial marks it FAIL and
    # enqueues it again (at most max_retry times), so a preempted trial is neither lost nor counted twice.
    heartbeat_seconds: int = 30
    grace_seconds: int = 120
    max_retry: int = 2
    connect_deadline_seconds: float = 120.0  # retries with backoff while the database is unreachable
    then_train: bool = False  # hpo pipeline: train and evaluate with the best trial's settings afterwards
    space: dict[str, SearchDim] = field(default_factory=_default_space)


@dataclass(frozen=True)
class EvaluateConfig:
    cost_bp: float = 10.0  # per side
    n_quantiles: int = 5
    gate_metric: str = "rank_ic"
    gate_horizon: str = "5d"
    gate_model: ModelName = "atft"
    gate_margin: float = 0.002
    gate_alpha: float = 0.10
    champion_uri: str = ""  # "" = <out>/../models/champion; s3:// and gs:// via kabuflow.storage
    leak_rank_ic_1d: float = 0.10
    # Statistical look-ahead check (evaluate/lookahead.py): a model is flagged when its score's loading on
    # r(t+1) beats every baseline's and factor's by more than max(this, their range).
    lookahead_min_margin: float = 0.01
    hpo_trials: int = 1  # counted into the deflated Sharpe
    control_seed: int = 0  # shuffled-label control: permutation seed


@dataclass(frozen=True)
class AuditConfig:
    # Cut dates (ISO; a non-session rolls back to the last session before it); empty = three cuts at
    # 1/4, 1/2 and 3/4 of the data's sessions.
    cuts: tuple[str, ...] = ()
    worst: int = 5  # columns listed per stage and cut in the printed table and the HTML
    keep: bool = False  # keep each cut's raw/features/panel/graph (a full copy per cut) after comparing
    scores: bool = True  # compare the models' scores too (trains one ATFT fold and fits every baseline)
    models: tuple[ModelName, ...] = ()  # the models whose scores are compared; empty = pipeline.models


@dataclass(frozen=True)
class PipelineConfig:
    models: tuple[ModelName, ...] = typing.get_args(ModelName)
    parallelism: int = 2
    gpu: bool = False
    gpu_node_label: str = "cloud.google.com/gke-accelerator"
    gpu_node_value: str = "nvidia-tesla-a100"
    gpu_toleration_key: str = "nvidia.com/gpu"
    train_cpu_request: str = "2"
    train_cpu_limit: str = "4"
    train_memory_request: str = "8Gi"
    train_memory_limit: str = "16Gi"
    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "4Gi"
    memory_limit: str = "8Gi"
    retries: int = 2
    retry_backoff: str = "60s"
    trainjob_nodes: int = 0  # >0: train atft folds as a Kubeflow Trainer TrainJob with this many nodes
    trainjob_gpus_per_node: int = 1  # torchrun processes per node, one per GPU
    trainjob_runtime: str = "torch-distributed"  # ClusterTrainingRuntime the TrainJob references
    # Where node selector/tolerations go: podSpecOverrides (Trainer 2.0, the KFP docs' example) or
    # podTemplateOverrides (Trainer >= 2.1 renamed it); a wrong choice is pruned silently by the API server.
    trainjob_overrides: Literal["podSpecOverrides", "podTemplateOverrides"] = "podSpecOverrides"
    trainjob_service_account: str = "kabuflow"  # k8s/base: no API permissions, no token mounted
    trainjob_timeout: int = 86400  # seconds to wait for Complete/Failed before deleting the TrainJob
    pushgateway: str = ""  # e.g. http://pushgateway.kabuflow.svc:9091; set as PROMETHEUS_PUSHGATEWAY on tasks
    s3_secret: str = "kabuflow-s3"
    jquants_secret: str = "kabuflow-jquants"
    optuna_secret: str = "kabuflow-optuna-db"  # key `password` -> $KABUFLOW_HPO_DB_PASSWORD on hpo tasks


@dataclass(frozen=True)
class StorageConfig:
    """Object-store clients and artifact checks (kabuflow.storage, kabuflow.manifest)."""

    connect_timeout: float = 10.0  # seconds to open a connection to the S3/GCS endpoint
    read_timeout: float = 30.0  # seconds of silence on an open connection before the attempt fails
    # Seconds per operation (one object) after which no new attempt starts; a transfer in progress is
    # bounded by read_timeout instead, so a large upload on a slow link is never cut off mid-way.
    deadline: float = 300.0
    attempts: int = 5  # tries per operation on transient errors, within the deadline
    verify: Literal["auto", "hash", "size"] = "auto"  # inputs: sizes always, sha256 up to 256 MiB (auto)


@dataclass(frozen=True)
class Config:
    profile: str = "local"
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    jquants: JQuantsConfig = field(default_factory=JQuantsConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lightgbm: LightGBMConfig = field(default_factory=LightGBMConfig)
    ridge: RidgeConfig = field(default_factory=RidgeConfig)
    hpo: HPOConfig = field(default_factory=HPOConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists) for artifacts and KFP parameters."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def stamped(self) -> dict[str, Any]:
        """to_dict without the `pipeline` section, for the stamp artifacts carry: where and how a cluster
        runs a stage (resources, node selectors, secrets, retries) changes no artifact's content, and an
        artifact that carried them would differ between two clusters for no reason."""
        return {k: v for k, v in self.to_dict().items() if k != "pipeline"}

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> Config:
        """A new Config with `section.key=value` strings applied, each checked against the field's type."""
        tree = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} is not of the form section.key=value")
            section, _, name = key.strip().partition(".")
            if section not in tree or not isinstance(tree[section], dict):
                raise ConfigError(f"unknown config section {section!r} in override {item!r}")
            head, _, entry = name.partition(".")
            # A mapping setting takes one entry at a time: hpo.space.train.lr={low: 1e-4, high: 1e-2}
            # replaces (or adds) that entry, hpo.space.train.lr=null removes it.
            target, name = (
                (tree[section][head], entry) if entry and head in tree[section] else (tree[section], name)
            )
            if not isinstance(target, dict) or (name not in target and target is tree[section]):
                raise ConfigError(f"unknown config key {key.strip()!r}")
            try:
                target[name] = yaml.safe_load(raw) if raw.strip() else ""
            except (yaml.YAMLError, ValueError) as err:
                raise ConfigError(f"{key.strip()}: cannot read {raw!r}: {err}") from None
            if target[name] is None and target is not tree[section]:
                del target[name]
        return from_dict(tree)

    def with_params(self, params: dict[str, Any]) -> Config:
        """A new Config with `{"section.key": value}` applied by dataclasses.replace, each value checked
        against the field's type (an HPO trial's settings, or hpo.json's best ones)."""
        changed: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            section, name, tp = field_type(key)
            changed.setdefault(section, {})[name] = _coerce(value, tp, key)
        parts = {s: dataclasses.replace(getattr(self, s), **kv) for s, kv in changed.items()}
        return dataclasses.replace(self, **parts)


def field_type(key: str) -> tuple[str, str, Any]:
    """(section, name, type) of the setting `section.name`; a ConfigError naming it when there is none."""
    section, _, name = key.partition(".")
    cls = typing.get_type_hints(Config).get(section)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ConfigError(f"unknown config key {key!r}")
    hints = typing.get_type_hints(cls)
    if name not in hints:
        raise ConfigError(f"unknown config key {key!r}")
    return section, name, hints[name]


def _build_space(tree: Any, where: str) -> dict[str, SearchDim]:
    """hpo.space: `{"section.key": {choices: [...]} | {low: a, high: b, log: bool}}`, typed per key."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{where}: expected a mapping of section.key to a range or choices, got {tree!r}")
    return {key: _search_dim(spec, str(key), f"{where}.{key}") for key, spec in sorted(tree.items())}


def _search_dim(spec: Any, key: str, where: str) -> SearchDim:
    try:
        section, _, tp = field_type(key)
    except ConfigError:
        raise ConfigError(f"{where}: {key!r} is not a config key") from None
    if section not in SEARCHABLE_SECTIONS:
        raise ConfigError(f"{where}: only model.* and train.* settings can be tuned (one panel and graph)")
    known = {f.name for f in dataclasses.fields(SearchDim)}
    if not isinstance(spec, dict) or set(spec) - known:
        raise ConfigError(
            f"{where}: expected {{choices: [...]}} or {{low: a, high: b, log: false}}, got {spec!r}"
        )
    choices, low, high = spec.get("choices") or (), spec.get("low", 0.0), spec.get("high", 0.0)
    log = _coerce(spec.get("log", False), bool, f"{where}.log")
    if choices:
        if not isinstance(choices, list | tuple) or low or high or log:
            raise ConfigError(f"{where}: give a list of choices or a low/high range, not both")
        return SearchDim(choices=tuple(_coerce(c, tp, where) for c in choices))
    if tp not in (int, float):
        raise ConfigError(f"{where}: {key} is not a number, so it needs choices rather than a range")
    low, high = _coerce(low, tp, f"{where}.low"), _coerce(high, tp, f"{where}.high")
    if not low < high or (log and low <= 0):
        raise ConfigError(f"{where}: needs low < high (and low > 0 when log), got {low!r}..{high!r}")
    return SearchDim(low=low, high=high, log=log)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check and convert one value to the declared field type; the error names the key."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, item_tp, where) for v in value)
    if origin is Literal:  # a choice: checked here, once, so that a typo fails at load and not in a pod
        allowed = typing.get_args(tp)
        if value in allowed and type(value) is type(allowed[0]):
            return value
        raise ConfigError(f"{where} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: union types are not supported in config")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 4e-3 (no dot) as a string
            with contextlib.suppress(ValueError):
                return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if hasattr(value, "isoformat"):  # YAML turns 2024-01-04 into a date
            return value.isoformat()
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {tp!r}")


def _build(cls: type, tree: dict[str, Any], where: str) -> Any:
    if not isinstance(tree, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {tree!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(tree) - known)
    if unknown:
        raise ConfigError(f"unknown config key {(where + '.' if where else '') + unknown[0]!r}")
    kwargs = {}
    for name, value in tree.items():
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key)
        elif typing.get_origin(tp) is dict:  # the one mapping setting: hpo.space
            kwargs[name] = _build_space(value, key)
        else:
            kwargs[name] = _coerce(value, tp, key)
    return cls(**kwargs)


def from_dict(tree: dict[str, Any]) -> Config:
    """Build a Config from a (possibly partial) nested dict; unknown keys are errors."""
    return _build(Config, tree, "")


def from_json(config: str | dict[str, Any]) -> Config:
    """A Config from a component's `config` parameter: JSON text, or the dict KFP's local runner makes
    of JSON text that one task returns and a loop passes on (the hpo pipeline's best config)."""
    return from_dict(config if isinstance(config, dict) else json.loads(config))


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(profile: str = "local", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a named profile (`local`, `a100`) or a YAML file path, then apply overrides."""
    path = Path(profile)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
    else:
        try:
            text = resources.files("kabuflow.profiles").joinpath(f"{profile}.yaml").read_text()
        except FileNotFoundError:
            raise ConfigError(f"unknown profile {profile!r} (known: local, a100, or a .yaml path)") from None
    tree = yaml.safe_load(text) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"profile {profile!r} is not a mapping")
    cfg = from_dict(_merge(Config().to_dict(), tree))
    return cfg.with_overrides(list(overrides))
