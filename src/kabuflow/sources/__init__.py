"""Data sources for ingest: each module's `load(cfg)` returns the raw tables in J-Quants v2 shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl


@dataclass(frozen=True)
class SourceResult:
    """What a source hands to ingest: raw tables (schema.RAW names), rows it dropped and why, extras.

    `extra` holds tables that are not J-Quants tables but travel with the raw data (the synthetic
    market's `oracle`); `notes` is free-form provenance for the manifest (seed, plan, endpoint counts).
    """

    tables: dict[str, pl.DataFrame]
    dropped: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, pl.DataFrame] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
