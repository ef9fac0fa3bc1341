"""Config sections for the model side: the ATFT network, its training, the baselines, HPO, evaluate, audit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# The model kinds train-fold knows (kabuflow.train.MODELS is this list).
ModelName = Literal["atft", "lightgbm", "ridge", "reversal_5d", "momentum_60d", "low_vol_60d"]


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
