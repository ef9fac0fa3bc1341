"""The audit's outputs: audit.json, audit.html (a green/red row per stage and cut, the worst columns), text."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from kabuflow.artifacts import atomic_write, write_json
from kabuflow.evaluate.lookahead import html_table

STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
    ".ok{background:#dff0d8}.bad{background:#f2dede}"
)


def _example(col: dict[str, Any]) -> str:
    ex = col.get("example")
    if not ex:
        return ""
    return f"{ex['date']} {ex['code']}: full {ex['full']!r}, cut {ex['cut']!r}"


def worst(stage: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The stage's n most moved columns (none when nothing moved)."""
    return [c for c in stage["columns"] if c["moved"]][:n]


def text(report: dict[str, Any], n: int) -> str:
    """The printed verdict: one line per stage and cut, the worst columns under a moved one, the cost."""
    lines = [f"{'stage':<10}{'cut':<12}{'compared':>16}{'moved':>12}  verdict"]
    for s in report["stages"]:
        verdict = "ok" if not s["moved"] else "MOVED"
        lines.append(f"{s['stage']:<10}{s['cut']:<12}{s['compared']:>16,}{s['moved']:>12,}  {verdict}")
        for c in worst(s, n):
            lines.append(
                f"    {c['column']}: {c['moved']:,} of {c['compared']:,} moved, first {c['first_moved']} ({_example(c)})"
            )
    for w in report.get("lookahead", {}).get("warnings", []):
        lines.append(f"WARNING {w['message']}")
    cost = report["cost"]
    lines.append(
        f"cost: {cost['seconds']:.0f} s wall, {cost['cpu_seconds']:.0f} CPU-s, peak RSS {cost['peak_rss_gb']:.2f} GB"
        f" ({len(report['cuts'])} cuts: {', '.join(report['cuts'])})"
    )
    lines.append(
        "audit: PASSED, no value dated <= a cut moved" if report["passed"] else "audit: FAILED, values moved"
    )
    return "\n".join(lines)


def _stage_rows(report: dict[str, Any], n: int) -> str:
    rows = []
    for s in report["stages"]:
        cls = "ok" if not s["moved"] else "bad"
        cols = "<br>".join(
            f"{html.escape(c['column'])}: {c['moved']:,} moved, first {c['first_moved']} ({html.escape(_example(c))})"
            for c in worst(s, n)
        )
        rows.append(
            f'<tr class="{cls}"><td>{s["stage"]}</td><td>{s["cut"]}</td><td>{s["compared"]:,}</td>'
            f'<td>{s["moved"]:,}</td><td>{s["seconds"]:.1f}</td><td style="text-align:left">{cols or "—"}</td></tr>'
        )
    return "".join(rows)


def page(report: dict[str, Any], n: int) -> str:
    """audit.html: self-contained, no scripts."""
    verdict = (
        "PASSED: no value dated on or before a cut moved" if report["passed"] else "FAILED: values moved"
    )
    cost = "".join(
        f"<tr><td>{r['run']}</td><td>{r['stage']}</td><td>{r['seconds']:.1f}</td><td>{r['cpu_seconds']:.1f}</td></tr>"
        for r in report["cost"]["stages"]
    )
    trunc = "".join(
        f'<tr><td>{d}</td><td>{html.escape(t)}</td><td style="text-align:left">{html.escape(v)}</td></tr>'
        for d, notes in report["truncation"].items()
        for t, v in notes.items()
    )
    look = report.get("lookahead", {})
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>kabuflow audit</title><style>{STYLE}</style>'
        f"</head><body><h1>kabuflow look-ahead audit</h1>"
        f'<p class="{"ok" if report["passed"] else "bad"}">{verdict}</p>'
        f"<p>{report['source']} data {report['start']}..{report['end']}; cuts {', '.join(report['cuts'])}; "
        f"code {html.escape(report['code_version'])}</p>"
        "<h2>Stages</h2><table><tr><th>stage</th><th>cut</th><th>values compared</th><th>moved</th><th>s</th>"
        f"<th>worst columns (first moved date, example)</th></tr>{_stage_rows(report, n)}</table>"
        f"<h2>Statistical check</h2>{html_table(look.get('table', {}), look.get('warnings', []))}"
        f"<h2>Truncation</h2><table><tr><th>cut</th><th>table</th><th>kept</th></tr>{trunc}</table>"
        f"<h2>Cost</h2><p>{report['cost']['seconds']:.0f} s wall, {report['cost']['cpu_seconds']:.0f} CPU-s, "
        f"peak RSS {report['cost']['peak_rss_gb']:.2f} GB</p>"
        f"<table><tr><th>run</th><th>stage</th><th>s</th><th>CPU-s</th></tr>{cost}</table></body></html>"
    )


def write_report(report: dict[str, Any], out: Path, n: int) -> None:
    """audit.json (everything) and audit.html."""
    write_json(out / "audit.json", report)
    atomic_write(out / "audit.html", lambda p: p.write_text(page(report, n)))
