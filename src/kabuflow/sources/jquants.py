"""The `jquants` source: J-Quants API v2 (API key), throttled, retried, every page cached in object storage."""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import requests

from kabuflow import calendar, storage
from kabuflow.config import Config, ConfigError
from kabuflow.schema import RAW, RAW_REQUIRED
from kabuflow.sources import SourceResult
from kabuflow.sources.files import clean, coerce, select_dates, setting_date

log = logging.getLogger(__name__)
JST = ZoneInfo("Asia/Tokyo")
PATHS = {
    "equities_bars_daily": "/equities/bars/daily",
    "equities_master": "/equities/master",
    "indices_bars_daily_topix": "/indices/bars/daily/topix",
    "fins_summary": "/fins/summary",
    "equities_investor_types": "/equities/investor-types",
    "markets_margin_interest": "/markets/margin-interest",
    "markets_calendar": "/markets/calendar",
}
DAILY_MARGIN_FROM = dt.date(2026, 9, 25)  # margin balances are daily from this application date on
TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class JQuantsError(RuntimeError):
    """J-Quants refused or failed a request; the message names endpoint, date and what to change."""


class JQuantsAuthError(JQuantsError):
    """The API key is missing or was rejected by J-Quants."""


class JQuantsPlanError(JQuantsError):
    """The data asked for is outside the plan (an endpoint it lacks, or dates outside its window)."""

    def __init__(self, message: str, endpoint_gated: bool = False):
        super().__init__(message)
        self.endpoint_gated = endpoint_gated


@dataclass(frozen=True)
class Request:
    """One logical query (all its pages): a table, its query parameters and whether it is final."""

    table: str
    params: tuple[tuple[str, str], ...]
    final: bool  # dated strictly before today (JST): the answer will not change, so it may be cached

    @property
    def label(self) -> str:
        return PATHS[self.table] + " " + " ".join(f"{k}={v}" for k, v in self.params)

    def cache_dir(self, root: str) -> str:
        return storage.join(root, self.table, "_".join(f"{k}={v}" for k, v in self.params) or "all")


def plan(cfg: Config, start: dt.date, end: dt.date, today: dt.date) -> list[Request]:
    """Every query a load makes: range endpoints once; per-date endpoints on XTKS sessions only."""
    days = calendar.sessions(start, end)
    if not days:
        raise ConfigError(f"no XTKS session between data.start={start} and data.end={end}")
    rng = (("from", start.isoformat()), ("to", end.isoformat()))
    monthly = cfg.jquants.master_every == "month"
    master = [d for i, d in enumerate(days) if not monthly or i == 0 or d.month != days[i - 1].month]
    # Weekly margin balances carry the week's last session as their date (daily later on).
    margin = [d for i, d in enumerate(days) if d >= DAILY_MARGIN_FROM or i + 1 == len(days)
              or days[i + 1].isocalendar()[:2] != d.isocalendar()[:2]]  # fmt: skip
    per_date = {"equities_master": master, "markets_margin_interest": margin, "fins_summary": days}
    per_date["equities_bars_daily"] = days
    out = []
    for table in cfg.jquants.tables:
        if table not in PATHS:
            raise ConfigError(f"jquants.tables: unknown table {table!r} (known: {', '.join(PATHS)})")
        if table in per_date:
            out += [Request(table, (("date", d.isoformat()),), d < today) for d in per_date[table]]
        else:
            out.append(Request(table, rng, end < today))
    return out


class Client:
    """A throttled, retrying J-Quants v2 client that reads through a page cache.

    The API key only ever sits in the session's headers: never in URLs, logs, errors or the cache.
    """

    def __init__(self, cfg: Config, cache: str):
        self.key = os.environ.get("JQUANTS_API_KEY", "").strip()
        if not self.key:
            raise JQuantsAuthError("JQUANTS_API_KEY is not set: issue an API key in the J-Quants dashboard")
        if not self.key.isprintable() or any(c.isspace() for c in self.key):
            # requests would refuse the header with the value in its message; say so without the value
            raise JQuantsAuthError(
                "JQUANTS_API_KEY contains a line break, space or control character: copy the key again"
            )
        self.base = (os.environ.get("JQUANTS_API_URL") or cfg.jquants.base_url).rstrip("/")
        self.jq, self.cache = cfg.jquants, cache
        if self.jq.requests_per_minute <= 0:
            raise ConfigError("jquants.requests_per_minute must be positive (Free 5, Light 60, ...)")
        self.http = requests.Session()
        self.http.headers.update({"x-api-key": self.key, "User-Agent": "kabuflow", "Accept-Encoding": "gzip"})
        self.next_at = 0.0
        names = ("requests", "retries", "waited_seconds", "cached", "fetched", "pages")
        self.stats: dict[str, float] = dict.fromkeys(names, 0)

    def redact(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key else text

    def _throttle(self) -> None:
        now = time.monotonic()
        if self.next_at > now:
            time.sleep(self.next_at - now)
        self.next_at = max(now, self.next_at) + 60.0 / self.jq.requests_per_minute

    def _backoff(self, attempt: int) -> float:
        return self.jq.backoff_seconds * 2**attempt * random.uniform(0.5, 1.5)

    def _refused(self, resp: requests.Response, req: Request) -> JQuantsError:
        try:
            message = str(resp.json().get("message", "")) or resp.text[:300]
        except ValueError:
            message = resp.text[:300]
        what = f"{req.label} (HTTP {resp.status_code}: {self.redact(message).strip()})"
        low = message.lower()
        if "covers the following dates" in low:
            return JQuantsPlanError(
                f"outside your J-Quants plan's dates: {what}; move data.start/data.end inside it"
            )
        if "not available on your subscription" in low or "no active subscription" in low:
            return JQuantsPlanError(f"outside your J-Quants plan: {what}", endpoint_gated=True)
        if "endpoint does not exist" in low:
            return JQuantsError(
                f"no such endpoint at {self.base}: {what}; check jquants.base_url / JQUANTS_API_URL"
            )
        if resp.status_code in (401, 403):
            return JQuantsAuthError(f"API key rejected by J-Quants: {what}; check JQUANTS_API_KEY")
        return JQuantsError(f"J-Quants refused {what}")

    def get(self, req: Request, params: dict[str, str]) -> tuple[bytes, dict[str, Any]]:
        """One page: its raw JSON body and the parsed payload, after throttling and retrying what can be."""
        for attempt in range(self.jq.max_retries + 1):
            self._throttle()
            self.stats["requests"] += 1
            wait = self._backoff(attempt)
            try:
                resp = self.http.get(
                    self.base + PATHS[req.table], params=params, timeout=self.jq.timeout_seconds
                )
            except TRANSIENT as err:
                problem = type(err).__name__
            else:
                if resp.status_code == 200:
                    try:
                        payload = json.loads(resp.content)
                        if isinstance(payload, dict) and isinstance(payload.get("data"), list):
                            return resp.content, payload
                        problem = "a JSON body without a 'data' list"
                    except ValueError:
                        problem = "malformed JSON"
                elif resp.status_code == 429 or resp.status_code >= 500:
                    problem = f"HTTP {resp.status_code}"
                    wait = max(wait, _retry_after(resp.headers.get("Retry-After")))
                else:
                    raise self._refused(resp, req)
            if attempt == self.jq.max_retries:
                raise JQuantsError(
                    f"J-Quants {req.label}: gave up after {attempt + 1} attempts (last: {problem})"
                )
            n, most = attempt + 1, self.jq.max_retries
            log.warning("jquants %s: %s; retry %d/%d in %.2fs", req.label, problem, n, most, wait)
            self.stats["retries"] += 1
            self.stats["waited_seconds"] += wait
            time.sleep(wait)
            self.next_at = max(self.next_at, time.monotonic())
        raise AssertionError("unreachable")

    def rows(self, req: Request, cached: set[str]) -> list[dict[str, Any]]:
        """All rows of a query: from the cache when it holds the complete answer, else page by page."""
        folder = req.cache_dir(self.cache)
        done = storage.join(folder, "done.json")
        if done in cached:
            pages = json.loads(storage.read_bytes(done))["pages"]
            payloads = [
                json.loads(gzip.decompress(storage.read_bytes(_page(folder, i)))) for i in range(pages)
            ]
            self.stats["cached"] += 1
        else:
            payloads, params = [], dict(req.params)
            while True:
                body, payload = self.get(req, params)
                payloads.append(payload)
                if req.final:  # pages of a day still in progress would freeze a partial answer
                    storage.write_bytes(_page(folder, len(payloads) - 1), gzip.compress(body, 6))
                if not payload.get("pagination_key"):
                    break
                params["pagination_key"] = payload["pagination_key"]
            if req.final:  # written last: without it the pages above count for nothing
                storage.write_bytes(done, json.dumps({"pages": len(payloads)}).encode())
            self.stats["fetched"] += 1
            self.stats["pages"] += len(payloads)
        return [row for payload in payloads for row in payload["data"]]


def _page(folder: str, i: int) -> str:
    return storage.join(folder, f"p{i:04d}.json.gz")


def _retry_after(value: str | None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); 0 when absent."""
    if not value:
        return 0.0
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def to_frame(rows: list[dict[str, Any]], table: str, what: str) -> pl.DataFrame:
    """Rows as J-Quants sent them (numbers as numbers or strings, "" for missing) -> schema.RAW dtypes.

    Columns outside the schema keep their inferred type (a column mixing numbers and text stays text),
    with "" read as null.
    """
    df = coerce(pl.from_dicts(rows, infer_schema_length=None, strict=False), table, what)[0]
    extra = [c for c in df.columns if c not in RAW[table] and df.schema[c] == pl.String]
    return df.with_columns(pl.col(c).replace("", None) for c in extra)


def _none_after(df: pl.DataFrame, table: str, end: dt.date) -> None:
    """Bars dated after data.end (or after today, its default) were never asked for: the answer is wrong."""
    if table != "equities_bars_daily":
        return
    late = df.filter(pl.col("Date") > end)
    if late.height:
        first = late.sort("Date").row(0, named=True)
        raise JQuantsError(
            f"J-Quants {PATHS[table]} answered {late.height} bars dated after data.end={end}, "
            f"first Code {first['Code']} on {first['Date']}"
        )


def _calendar_mismatch(cal: pl.DataFrame) -> list[str]:
    """Dates where J-Quants' calendar (HolDiv 1/2 = trading day) and XTKS disagree."""
    if cal.is_empty():
        return []
    xtks = set(calendar.sessions(cal["Date"].min(), cal["Date"].max()))
    jq = cal.select("Date", pl.col("HolDiv").is_in(["1", "2"]).alias("open"))
    return [d.isoformat() for d, is_open in jq.iter_rows() if is_open != (d in xtks)]


def _range(cfg: Config, today: dt.date) -> tuple[dt.date, dt.date]:
    """data.start..data.end; by default the last session before today and five years (Light plan) back."""
    end = setting_date(cfg.data.end, "data.end") or calendar.previous_session(today)
    start = setting_date(cfg.data.start, "data.start") or end - dt.timedelta(days=5 * 365)
    if start > end:
        raise ConfigError(f"data.start={start} is after data.end={end}")
    return start, end


def load(cfg: Config) -> SourceResult:
    """Download (or read from the cache) every configured table for data.start..data.end."""
    if not cfg.jquants.cache_uri:
        raise ConfigError("jquants.cache_uri is empty: ingest sets <out>/_cache, or name any storage URI")
    today = dt.datetime.now(JST).date()
    start, end = _range(cfg, today)
    cache = cfg.jquants.cache_uri
    if not storage.is_remote(cache):  # one spelling of the path, so cached names compare equal
        cache = str(Path(storage.split(cache)[2]).resolve())
    client = Client(cfg, cache)
    try:
        return _load(client, plan(cfg, start, end, today), (start, end))
    except JQuantsError as err:  # belt and braces: no message leaves with the key in it
        raise type(err)(client.redact(str(err))) from None


def _load(client: Client, reqs: list[Request], span: tuple[dt.date, dt.date]) -> SourceResult:
    cached = set(storage.list(storage.join(client.cache, "")))
    frames: dict[str, list[pl.DataFrame]] = {t: [] for t in dict.fromkeys(r.table for r in reqs)}
    skipped: dict[str, str] = {}
    for i, req in enumerate(reqs):
        if req.table in skipped:
            continue
        try:
            rows = client.rows(req, cached)
        except JQuantsPlanError as err:
            if not err.endpoint_gated or req.table in RAW_REQUIRED:
                raise
            log.warning("jquants: leaving out %s: %s", req.table, err)
            skipped[req.table] = str(err)
            continue
        if rows:
            frames[req.table].append(to_frame(rows, req.table, f"J-Quants {req.label}"))
        if i % 100 == 99:
            log.info("jquants: %d/%d queries (%s)", i + 1, len(reqs), client.stats)
    tables: dict[str, pl.DataFrame] = {}
    dropped: list[dict[str, Any]] = []
    for table, parts in frames.items():
        if not parts and table in RAW_REQUIRED and table not in skipped:
            raise JQuantsError(f"J-Quants returned no {table} rows for {span[0]}..{span[1]}")
        if parts:
            df = pl.concat(parts, how="diagonal_relaxed")
            _none_after(df, table, span[1])
            tables[table], gone = clean(select_dates(df, table, *span), table, f"J-Quants {PATHS[table]}")
            dropped += gone
    notes: dict[str, Any] = {"base_url": client.base, **client.stats, "skipped_tables": skipped}
    notes["empty_tables"] = sorted(t for t, parts in frames.items() if not parts and t not in skipped)
    if "markets_calendar" in tables:
        notes["calendar_mismatch"] = _calendar_mismatch(tables["markets_calendar"])
    log.info("jquants: done %s", client.stats)
    return SourceResult(tables=tables, dropped=dropped, notes=notes)
