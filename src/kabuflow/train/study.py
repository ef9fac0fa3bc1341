"""The shared Optuna study: SQLite (WAL) locally, PostgreSQL in the cluster, heartbeats and retried trials."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from kabuflow.config import ConfigError, HPOConfig
from kabuflow.redact import text as redact  # the one redaction every artifact and log line gets

log = logging.getLogger(__name__)

PASSWORD_ENV = "KABUFLOW_HPO_DB_PASSWORD"
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def resolve_url(url: str, out: str | Path) -> str:
    """The storage URL to use: "" is SQLite beside `out`; PostgreSQL goes through psycopg (v3).

    A password inside the URL is refused: it would land in hpo.json, logs and the compiled pipeline."""
    if not url:
        return f"sqlite:///{(Path(out) / 'optuna.db').resolve()}"
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"hpo.storage {redact(url)!r} is not a database URL") from None
    if parsed.password is not None:
        raise ConfigError(
            f"hpo.storage must not hold a password: set ${PASSWORD_ENV} instead ({redact(url)})"
        )
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() != "sqlite":
        raise ConfigError(f"hpo.storage {url!r}: only sqlite:/// and postgresql:// are supported")
    return parsed.render_as_string(hide_password=False)


def _engine_kwargs(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:  # WAL lets readers and one writer work at once; it persists in the file
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(parsed.database) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
        return {"connect_args": {"timeout": 60}}  # wait for a concurrent writer instead of failing
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        raise ConfigError(f"hpo.storage is PostgreSQL ({url}) but ${PASSWORD_ENV} is not set")
    # The password travels in connect_args, never in the URL that Optuna and SQLAlchemy may log.
    return {"pool_pre_ping": True, "connect_args": {"password": password, "connect_timeout": 10}}


def open_storage(hpo: HPOConfig, url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage with heartbeats and retry of failed trials; retried with backoff until
    hpo.connect_deadline_seconds while the database cannot be reached (a pod may start before it)."""
    kwargs = _engine_kwargs(url)
    deadline, delay = time.monotonic() + hpo.connect_deadline_seconds, 0.5
    while True:
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=hpo.max_retry)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=hpo.heartbeat_seconds,
                    grace_period=hpo.grace_seconds,
                    heartbeat_stale_trial_callback=retry,
                )
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as err:
            # IntegrityError: workers that start together on an empty database race to create the
            # schema; the loser's next attempt finds it made.
            if time.monotonic() + delay > deadline:
                raise ConnectionError(
                    f"hpo.storage {url}: cannot connect: {str(err).splitlines()[0]}"
                ) from None
            log.warning("hpo.storage %s: cannot connect, retrying in %.1f s", url, delay)
            time.sleep(delay)
            delay = min(2 * delay, 15.0)


def load_study(hpo: HPOConfig, url: str) -> optuna.Study:
    """The study hpo.study at `url`, created on first use (maximising validation RankIC)."""
    return optuna.create_study(
        study_name=hpo.study,
        storage=open_storage(hpo, url),
        load_if_exists=True,
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=hpo.startup_trials, n_warmup_steps=1),
    )


def count(study: optuna.Study) -> dict[str, int]:
    """Trials by state. n_trials = complete + pruned: every configuration tried once. A killed
    worker's trial is FAIL and its retry is a new trial, so neither is counted twice."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    n = {f"n_{s.name.lower()}": states.count(s) for s in optuna.trial.TrialState}
    return {"n_trials": sum(states.count(s) for s in DONE), **n}
