"""What the data behind a report hides, said at its top: survivorship, master look-ahead, bad moves."""

from __future__ import annotations

from typing import Any


def summarise(manifest: dict[str, Any]) -> dict[str, Any]:
    """The ingest/features manifest fields the caveats read: guard counts, survivorship, master mode."""
    out: dict[str, Any] = {}
    if isinstance(g := manifest.get("guard"), dict):
        out["bad_moves"] = {"mode": g.get("mode"), **g.get("counts", {}), "rows_masked": g.get("rows_masked")}
    if isinstance(s := manifest.get("survivorship"), dict):
        out["survivorship"] = {k: s[k] for k in ("codes", "codes_ending_early", "survivors_only") if k in s}
    if isinstance(m := manifest.get("master"), dict) and "mode" in m:
        out["master"] = {k: m[k] for k in ("mode", "lookahead_before", "bars_before_snapshot") if k in m}
    return out


def caveats(data: dict[str, Any]) -> list[str]:
    """One line per caveat of metrics.json's `data` (its raw and features summaries), most serious first."""
    raw, feats = data.get("raw", {}), data.get("features", {})
    lines = []
    s = raw.get("survivorship", {})
    if s.get("survivors_only"):
        lines.append(
            f"Survivors only: none of the {s.get('codes')} codes stops trading before the end of the data "
            "(0 end early): delisted companies are missing, so absolute returns are biased upwards."
        )
    elif "codes_ending_early" in s:
        lines.append(f"Survivorship: {s['codes_ending_early']} of {s.get('codes')} codes end early (kept).")
    master = raw.get("master") or feats.get("master") or {}
    if master.get("mode") == "snapshot":
        when = master.get("lookahead_before", "?")
        lines.append(
            f"Master look-ahead: one master snapshot ({when}) gives the sectors and markets of every date; "
            f"before {when} they are later classifications ({master.get('bars_before_snapshot', '?')} bars)."
        )
    if b := raw.get("bad_moves"):
        counts = ", ".join(f"{k} {b.get(k, 0)}" for k in ("missed_split", "bad_print", "level_shift"))
        lines.append(
            f"Moves beyond the TSE price limits ({b.get('mode')}): {counts}; {b.get('rows_masked')} bars masked."
        )
    return lines
