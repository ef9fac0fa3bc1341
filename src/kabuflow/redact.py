"""Secrets out of everything kabuflow writes or prints: URL passwords, credential settings, secret env values."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

MASK = "***"
# scheme://user:password@host -> scheme://user:***@host (postgresql://, s3 endpoints, proxies ...)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^:/@\s'\"]*):(?P<pw>[^@\s'\"]+)@", re.I)
# ?password=..., &token=... in a query string
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:password|passwd|pwd|token|secret|api_?key)=)[^&\s'\"]+", re.I)
# Settings whose value is a credential whatever it looks like.
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_?key|credential)", re.I)
# Environment variables that hold credentials; their values are scrubbed wherever they appear.
SECRET_ENV = (
    "JQUANTS_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "KABUFLOW_HPO_DB_PASSWORD",
    "GOOGLE_APPLICATION_CREDENTIALS_JSON",
)


def _env_secrets() -> list[str]:
    """Secret values now in the environment, with the escaped spellings repr() and messages give them."""
    out = []
    for name in SECRET_ENV:
        value = os.environ.get(name, "")
        if len(value.strip()) >= 4:  # a 1-3 character "secret" would mask ordinary text
            out += {value, value.strip(), repr(value)[1:-1], value.encode("unicode_escape").decode()}
    return sorted(set(out), key=len, reverse=True)


def text(s: str) -> str:
    """`s` with URL passwords, secret query parameters and secret environment values masked."""
    s = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", s)
    s = _QUERY_SECRET.sub(lambda m: m["head"] + MASK, s)
    for secret in _env_secrets():
        s = s.replace(secret, MASK)
    return s


def tree(obj: Any, key: str = "") -> Any:
    """A copy of a JSON-like tree with every string redacted and credential-named settings masked."""
    if isinstance(obj, dict):
        return {k: tree(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [tree(v, key) for v in obj]
    if isinstance(obj, str):
        if obj and _SECRET_KEY.search(key) and not key.endswith(("_secret", "_env")):
            return MASK  # pipeline.s3_secret etc. name a Kubernetes Secret, not its content
        return text(obj)
    return obj


class LogFilter(logging.Filter):
    """Redacts every record's formatted message (installed on the CLI's handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_filter() -> None:
    """Redact all log output of this process (root handlers, present and the ones basicConfig made)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, LogFilter) for f in handler.filters):
            handler.addFilter(LogFilter())
