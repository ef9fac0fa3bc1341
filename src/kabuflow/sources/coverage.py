"""What the raw data covers and what it hides: survivorship and the master's history, for the manifests."""

from __future__ import annotations

from typing import Any

import polars as pl

from kabuflow import calendar

# A code whose last bar comes more than this many sessions before the range's last one has stopped
# trading (delisted, merged); a shorter gap is a halt or untraded days at the end.
END_EARLY_SESSIONS = 20


def survivorship(bars: pl.DataFrame) -> dict[str, Any]:
    """Codes that end early, and whether the set is survivors-only (none does), so a backtest on it
    reads as what it is. Codes that stop trading keep every bar they have: nothing here filters."""
    if bars.is_empty():
        return {"codes": 0, "codes_ending_early": 0, "survivors_only": False, "note": "no bars"}
    days = calendar.sessions(bars["Date"].min(), bars["Date"].max())
    cutoff = days[max(0, len(days) - 1 - END_EARLY_SESSIONS)]
    last = bars.group_by("Code").agg(pl.col("Date").max())
    early = int((last["Date"] < cutoff).sum())
    out: dict[str, Any] = {
        "codes": last.height,
        "codes_ending_early": early,
        "end_early_rule": f"last bar before {cutoff} ({END_EARLY_SESSIONS} sessions before the last)",
        "survivors_only": early == 0,
    }
    if early == 0:
        out["note"] = (
            f"survivors only: none of {last.height} codes stops trading before the end of the range, so "
            "delisted companies are missing and backtest returns are biased upwards"
        )
    return out


def master_history(master: pl.DataFrame, bars: pl.DataFrame) -> dict[str, Any]:
    """Whether the master is a history (as-of rows per code) or one snapshot; a snapshot is used as-of
    its own date after it and is a look-ahead for every bar dated before it."""
    if master.is_empty():
        return {"mode": "empty"}
    dates = master["Date"].drop_nulls()
    per_code = master.group_by("Code").len()["len"]
    out: dict[str, Any] = {"rows": master.height, "dates": dates.n_unique()}
    out |= {"first": str(dates.min()), "last": str(dates.max())} if dates.len() else {}
    if per_code.max() > 1:
        return {"mode": "history", **out}
    snap = dates.max()
    before = int((bars["Date"] < snap).sum()) if snap is not None else bars.height
    return {
        "mode": "snapshot",
        **out,
        "lookahead_before": str(snap),
        "bars_before_snapshot": before,
        "note": (
            f"one master snapshot ({snap}): sectors and markets of the {before} bars dated before it are a "
            "look-ahead (later classifications applied to earlier dates)"
        ),
    }
