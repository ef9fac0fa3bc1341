"""Timeouts, retries with backoff under a deadline, and error mapping for every storage operation."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from kabuflow import redact
from kabuflow.config import StorageConfig

log = logging.getLogger("kabuflow.storage")
T = TypeVar("T")

BACKOFF_SECONDS = 0.5
_settings = StorageConfig()


class StorageError(RuntimeError):
    """A storage operation that cannot succeed as configured; the message names URI, bucket or variable."""


def configure(settings: StorageConfig) -> None:
    """Use these timeouts, deadline, attempts and verify policy for this process's storage calls."""
    global _settings
    for name in ("connect_timeout", "read_timeout", "deadline"):
        if getattr(settings, name) <= 0:
            raise StorageError(f"storage.{name} must be > 0 seconds, got {getattr(settings, name)}")
    if settings.attempts < 1:
        raise StorageError(f"storage.attempts must be >= 1, got {settings.attempts}")
    if settings.verify not in ("auto", "hash", "size"):
        raise StorageError(f"storage.verify must be auto, hash or size, got {settings.verify!r}")
    _settings = settings


def settings() -> StorageConfig:
    """The storage settings in force (configure(), else the defaults)."""
    return _settings


def transient(err: BaseException) -> bool:
    """Network hiccups, timeouts and server-side overload: worth another try. Anything else is final."""
    import requests
    import urllib3
    from google.api_core import exceptions as gexc
    from minio.error import S3Error, ServerError

    if isinstance(err, S3Error):
        return err.code in ("InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout")
    net = (
        ConnectionError,
        TimeoutError,
        urllib3.exceptions.HTTPError,
        requests.ConnectionError,
        requests.Timeout,
    )
    busy = (ServerError, gexc.TooManyRequests, gexc.ServerError)  # gexc.ServerError: any HTTP 5xx
    return isinstance(err, (*net, *busy, requests.exceptions.ChunkedEncodingError))


def _missing(uri: str, err: BaseException) -> BaseException:
    """Map 'no such object' to FileNotFoundError naming the URI; other errors pass through."""
    from google.api_core.exceptions import NotFound
    from minio.error import S3Error

    if isinstance(err, S3Error) and err.code == "NoSuchBucket":
        return StorageError(f"{uri}: bucket {err.bucket_name!r} does not exist")
    if isinstance(err, S3Error) and err.code in ("NoSuchKey", "NoSuchObject"):
        return FileNotFoundError(f"no object at {uri}")
    return FileNotFoundError(f"no object at {uri} ({err.message})") if isinstance(err, NotFound) else err


def _one_line(err: BaseException) -> str:
    return redact.text(" ".join(f"{type(err).__name__}: {err}".split()))[:300]


def call(uri: str, what: str, fn: Callable[[], T], endpoint: str = "", attempts: int | None = None) -> T:
    """Run `fn`, retrying transient failures with exponential backoff and jitter while the operation's
    deadline (storage.deadline) allows; the final error is one line naming the URI and the endpoint."""
    s = _settings
    attempts = s.attempts if attempts is None else attempts
    start = time.monotonic()
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as err:
            if not transient(err):
                mapped = _missing(uri, err)
                if mapped is err:
                    raise
                raise mapped from None
            delay = BACKOFF_SECONDS * 2**attempt * (0.5 + random.random())
            spent = time.monotonic() - start
            if attempt == attempts - 1 or spent + delay > s.deadline:
                raise StorageError(
                    f"{what} {uri}: endpoint {endpoint or '?'} failed {attempt + 1} attempt(s) in {spent:.1f}s "
                    f"(storage.deadline={s.deadline:g}s, storage.attempts={attempts}, "
                    f"timeouts connect {s.connect_timeout:g}s / read {s.read_timeout:g}s); "
                    f"last: {_one_line(err)}"
                ) from None
            n = attempt + 1
            log.warning(
                "%s %s: %s; retry %d/%d in %.1fs", what, uri, type(err).__name__, n, attempts - 1, delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")
