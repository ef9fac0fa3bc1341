"""The ingest stage: load raw J-Quants-shaped tables from a source, check them, write them with a manifest."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from pathlib import Path
from typing import Any

import polars as pl

from kabuflow import artifacts, manifest, schema, telemetry
from kabuflow.config import Config
from kabuflow.schema import RAW, SchemaError
from kabuflow.sources import SourceResult, coverage, guard

log = logging.getLogger(__name__)

SOURCES = {
    "synthetic": "kabuflow.sources.synthetic",
    "jquants": "kabuflow.sources.jquants",
    "files": "kabuflow.sources.files",
}
# Row order of each written table: (Code, Date) for per-stock tables, time for market-wide ones.
SORT: dict[str, list[str]] = {
    "equities_bars_daily": ["Code", "Date"],
    "equities_master": ["Code", "Date"],
    "indices_bars_daily_topix": ["Date"],
    "fins_summary": ["Code", "DiscDate", "DiscTime", "DiscNo"],
    "equities_investor_types": ["Section", "PubDate", "StDate"],
    "markets_margin_interest": ["Code", "Date"],
    "markets_calendar": ["Date"],
    "oracle": ["Code", "Date"],
}
BARS = "equities_bars_daily"
EXTRA_SCHEMAS: dict[str, dict[str, pl.DataType]] = {"oracle": schema.ORACLE}


def _conform(df: pl.DataFrame, spec: dict[str, pl.DataType], name: str) -> pl.DataFrame:
    """Check a table against its schema, casting first when a source handed over looser dtypes."""
    try:
        return schema.check(df, spec, name)
    except SchemaError:
        return schema.check(schema.cast(df, spec, name), spec, name)


def _write(out: Path, name: str, df: pl.DataFrame) -> dict[str, Any]:
    keys = [c for c in SORT.get(name, []) if c in df.columns]
    df = df.sort(keys, nulls_last=True, maintain_order=True) if keys else df
    path = artifacts.write_parquet(out / f"{name}.parquet", df)
    return {"rows": df.height, "columns": df.columns, "sha256": artifacts.sha256_file(path)}


def resolve(cfg: Config, out: str | Path) -> Config:
    """Fill the J-Quants cache default: $KABUFLOW_CACHE/jquants, else ~/.cache/kabuflow/jquants.

    The cache lives outside the stage's output so it outlasts the run (a second ingest downloads
    nothing it has) and is never uploaded with the raw tables; the cluster profile names a bucket.
    """
    if cfg.data.source == "jquants" and not cfg.jquants.cache_uri:
        base = os.environ.get("KABUFLOW_CACHE") or str(Path.home() / ".cache" / "kabuflow")
        jq = dataclasses.replace(cfg.jquants, cache_uri=str(Path(base) / "jquants"))
        return dataclasses.replace(cfg, jquants=jq)
    return cfg


def _date_range(tables: dict[str, pl.DataFrame]) -> tuple[str, str]:
    bars = tables["equities_bars_daily"]
    if bars.is_empty():
        return "", ""
    return bars["Date"].min().isoformat(), bars["Date"].max().isoformat()


def ingest(cfg: Config, out: str | Path) -> dict[str, Any]:
    """Run the configured source and write `<table>.parquet`, extras and manifest.json into `out`.

    The output is published as a unit (kabuflow.manifest): a killed or failed ingest leaves the
    previous output as it was, and tables of an earlier run that this run did not produce are gone.
    """
    cfg, result = read_source(cfg, out)
    return write_raw(cfg, result, out)


def read_source(cfg: Config, out: str | Path) -> tuple[Config, SourceResult]:
    """The configured source's tables as they come (settings checked, the J-Quants cache resolved), with
    their dtypes conformed to schema.RAW: what write_raw checks, repairs and writes."""
    guard.check(cfg.data.bad_moves, cfg.data.limit_tolerance)
    cfg = resolve(cfg, out)
    result = importlib.import_module(SOURCES[cfg.data.source]).load(cfg)
    tables = {n: _conform(df, RAW[n], n) if n in RAW else df for n, df in result.tables.items()}
    return cfg, dataclasses.replace(result, tables=tables)


def write_raw(cfg: Config, result: SourceResult, out: str | Path) -> dict[str, Any]:
    """Check a source's tables against schema.RAW and write them, extras and manifest.json into `out`.

    The part of ingest after the source: `kabuflow audit` hands it truncated copies of the tables.
    Published as a unit (kabuflow.manifest): a failure leaves the previous output as it was.
    """
    with manifest.output(cfg, out, "ingest") as w, telemetry.stage("ingest") as rec:
        unknown = sorted(set(result.tables) - set(RAW))
        if unknown:
            raise SchemaError(
                f"source {cfg.data.source} returned unknown tables {unknown} (known: {', '.join(RAW)})"
            )
        missing = [t for t in schema.RAW_REQUIRED if t not in result.tables]
        if missing:
            raise SchemaError(f"source {cfg.data.source} did not produce required tables {missing}")
        tables = {n: _conform(df, RAW[n], n) for n, df in result.tables.items()}
        bars, guarded, masked = guard.guard(tables[BARS], cfg.data.bad_moves, cfg.data.limit_tolerance)
        tables[BARS] = bars
        written = {n: _write(w.dir, n, df) for n, df in tables.items()}
        extra = {}
        for name, df in result.extra.items():
            spec = EXTRA_SCHEMAS.get(name)
            extra[name] = _write(w.dir, name, _conform(df, spec, name) if spec else df)
        start, end = _date_range(tables)
        dropped = [*result.dropped, *masked]
        rec.rows_out = sum(t["rows"] for t in written.values())
        rec.rows_in = rec.rows_out + sum(int(d["rows"]) for d in dropped)
        m = w.commit(
            {
                "source": cfg.data.source,
                "start": start,
                "end": end,
                "requested": {"start": cfg.data.start, "end": cfg.data.end},
                "tables": written,
                "extra": extra,
                "dropped": dropped,
                "guard": guarded,
                "survivorship": coverage.survivorship(bars),
                "master": coverage.master_history(tables["equities_master"], bars),
                "notes": result.notes,
            }
        )
    log.info("ingest: %d rows in %d tables -> %s (%.1fs)", rec.rows_out, len(written), out, rec.seconds)
    return m
