"""The evaluation report: one self-contained HTML page with embedded plots, a Markdown summary, a text table."""

from __future__ import annotations

import html
import math
from typing import Any

import polars as pl

from kabuflow.evaluate import factors, lookahead, plots
from kabuflow.evaluate.attribution import ABOUT as ATTRIBUTION_ABOUT
from kabuflow.evaluate.caveats import caveats
from kabuflow.evaluate.metrics import DEFINITIONS, METRICS
from kabuflow.evaluate.scorecard import horizon_of, model_rank
from kabuflow.evaluate.stitch import ORACLE

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px 32px;color:#222;max-width:1500px}
h1{margin-bottom:4px} h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}
.meta{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap} th{background:#f3f3f3}
td.l,th.l{text-align:left} tr.oracle td{color:#555;font-style:italic}
.alarm{background:#c62828;color:#fff;padding:14px 18px;border-radius:6px;font-size:15px}
.caveat{background:#fff3e0;color:#e65100;padding:8px 14px;border-radius:6px;margin:4px 0}
.alarm li{margin:4px 0} .ok{background:#e8f5e9;color:#1b5e20;padding:10px 16px;border-radius:6px}
.promote{background:#e8f5e9;border-left:6px solid #2e7d32;padding:10px 16px}
.reject{background:#fff3e0;border-left:6px solid #ef6c00;padding:10px 16px}
img.plot{max-width:100%;border:1px solid #eee} .wide{overflow-x:auto}
"""

# After load, every <img> reports whether it decoded (naturalWidth > 0) into #image-check: a cheap,
# visible self-test, and what the browser test reads from the dumped DOM.
CHECK_JS = """
window.addEventListener('load', function () {
  var out = [];
  document.querySelectorAll('img').forEach(function (img) {
    var r = img.getBoundingClientRect();
    img.setAttribute('data-natural-width', img.naturalWidth);
    out.push({id: img.id, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
              left: r.left + window.scrollX, top: r.top + window.scrollY, width: r.width, height: r.height});
  });
  document.getElementById('image-check').textContent = JSON.stringify(out);
});
"""


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: '—' for missing or non-finite numbers, significant digits otherwise."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _fixed(value: Any, decimals: int) -> str:
    """Fixed decimals for the aligned text table; '—' when missing."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "—"
    return f"{value:.{decimals}f}"


def _e(text: Any) -> str:
    return html.escape(str(text))


def _table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    head = "".join(f'<th class="{"l" if i == 0 else ""}">{_e(h)}</th>' for i, h in enumerate(header))
    body = []
    for n, row in enumerate(rows):
        cls = f' class="{classes[n]}"' if classes and classes[n] else ""
        cells = "".join(f'<td class="{"l" if i < 2 else ""}">{_e(fmt(v))}</td>' for i, v in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f'<div class="wide"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def _by_horizon(hs: dict[str, Any]) -> list[tuple[str, Any]]:
    """A {"5d": ...} mapping's items in horizon order (JSON round trips sort "10d" before "5d")."""
    return sorted(hs.items(), key=lambda kv: horizon_of(kv[0]))


def _rows(metrics: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(model, horizon, stats) for every model, then the oracle, horizons in order."""
    models = sorted(metrics["models"], key=model_rank)
    out = [(m, h, s) for m in models for h, s in _by_horizon(metrics["models"][m])]
    return out + [(ORACLE, h, s) for h, s in _by_horizon(metrics.get("oracle") or {})]


def _alarms_html(alarms: list[dict[str, Any]]) -> str:
    if not alarms:
        return (
            '<div class="ok">No leakage alarms: 1-day RankIC, Sharpe vs ICIR, oracle share and the '
            "shuffled-label control are all within bounds.</div>"
        )
    items = "".join(f"<li>{_e(a['message'])}</li>" for a in alarms)
    return f'<div class="alarm"><b>⚠ LEAKAGE ALARM — do not trust these numbers until explained</b><ul>{items}</ul></div>'


def _gate_html(gate: dict[str, Any]) -> str:
    cls = "promote" if gate.get("promote") else "reject"
    reasons = "".join(f"<li>{_e(r)}</li>" for r in gate.get("reasons", []))
    head = f"{gate.get('decision', cls).upper()}: {gate.get('model')} {gate.get('metric')} at {gate.get('horizon')}"
    where = f"champion: {gate.get('champion_uri')} (version {gate.get('champion_version') or 'none'})"
    return f'<div class="{cls}"><b>{_e(head)}</b><br><span class="meta">{_e(where)}</span><ul>{reasons}</ul></div>'


def _summary_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    header = [
        "model",
        "horizon",
        "RankIC",
        "NW t",
        "hit rate",
        "Sharpe gross",
        "Sharpe net",
        "DSR",
        "oracle share",
    ]
    rows, classes = [], []
    for m, h, s in _rows(metrics):
        keys = ("rank_ic", "rank_ic_tstat", "hit_rate", "ls_sharpe_gross", "ls_sharpe_net", "dsr")
        rows.append([m, h, *(s.get(k) for k in keys), s.get("oracle_share")])
        classes.append("oracle" if m == ORACLE else "")
    return header, rows, classes


def _attribution_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    """Signal attribution by model and horizon: the signals in the order given, the oracle total last."""
    per_model = metrics.get("signal_attribution") or {}
    signals = list(
        dict.fromkeys(k for hs in per_model.values() for s in hs.values() for k in s if k != ORACLE)
    )
    rows, classes = [], []
    for m in sorted(per_model, key=model_rank):
        for h, s in _by_horizon(per_model[m]):
            rows.append([m, h, *(s.get(k) for k in signals), s.get(ORACLE)])
            classes.append("oracle" if m == ORACLE else "")
    return ["model", "horizon", *signals, "oracle total"], rows, classes


def _attribution_html(metrics: dict[str, Any]) -> str:
    if not metrics.get("signal_attribution"):
        return ""
    header, rows, classes = _attribution_rows(metrics)
    return f"<h2>Signal attribution</h2><p>{_e(ATTRIBUTION_ABOUT)}</p>" + _table(header, rows, classes)


def _factor_html(metrics: dict[str, Any]) -> str:
    if not metrics.get("factor_share"):
        return ""
    header, rows = factors.rows(metrics)
    return f"<h2>Zero-parameter factors</h2><p>{_e(factors.ABOUT)}</p>" + _table(header, rows)


def _ordered(per_model: dict[str, dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """(model, horizon, value) of a {model: {"5d": value}} mapping, models then horizons in order."""
    return [(m, h, v) for m in sorted(per_model, key=model_rank) for h, v in _by_horizon(per_model[m])]


def _fold_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    return [
        [m, h, fold, s["n_dates"], s["rank_ic"], s["rank_ic_tstat"], s["ls_sharpe_net"]]
        for m, h, folds in _ordered(metrics.get("folds", {}))
        for fold, s in sorted(folds.items(), key=lambda kv: int(kv[0].removeprefix("fold_")))
    ]


def _data_html(data: dict[str, Any]) -> str:
    rows = [[k, v] for k, v in data.items() if not isinstance(v, dict | list)]
    parts = [_table(["item", "value"], rows)]
    for k, v in data.items():
        if isinstance(v, dict):
            flat = [
                [f"{k}.{kk}", vv if not isinstance(vv, dict | list) else str(vv)[:300]]
                for kk, vv in v.items()
            ]
            parts.append(_table([k, "value"], flat))
        elif isinstance(v, list):
            parts.append(f"<p><b>{_e(k)}</b>: {_e(', '.join(map(str, v))[:2000])}</p>")
    return "".join(parts)


def _img(fig_id: str, b64: str, alt: str) -> str:
    return f'<img class="plot" id="{fig_id}" alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _figures_html(
    metrics: dict[str, Any], daily: pl.DataFrame, pnl: pl.DataFrame, deciles: pl.DataFrame
) -> str:
    models = [*sorted(metrics["models"], key=model_rank), *([ORACLE] if metrics.get("oracle") else [])]
    return "\n".join(
        [
            "<h2>Cumulative long–short return</h2>"
            + _img("fig-pnl", plots.cumulative_pnl(pnl, models), "cumulative long-short return"),
            "<h2>RankIC over time</h2>"
            + _img("fig-ric", plots.rolling_rank_ic(daily, models), "rolling RankIC"),
            "<h2>Decile returns</h2>"
            + _img("fig-deciles", plots.decile_bars(deciles, models), "decile mean returns"),
        ]
    )


def _tables_html(metrics: dict[str, Any]) -> str:
    _, _, classes = _summary_rows(metrics)
    full = [[m, h, *(s.get(k) for k in METRICS), s.get("oracle_share")] for m, h, s in _rows(metrics)]
    ctrl = [
        [m, h, c["rank_ic"], c["rank_ic_tstat"], c["n_dates"]]
        for m, h, c in _ordered(metrics.get("control", {}))
    ]
    vsn = "".join(
        f"<h3>{_e(m)}</h3>" + _img(f"fig-vsn-{m}", plots.vsn_bars(w), f"VSN weights {m}")
        for m, w in metrics.get("variable_selection", {}).items()
    )
    fold_header = ["model", "horizon", "fold", "dates", "RankIC", "NW t", "Sharpe net"]
    return "\n".join(
        [
            "<h2>Every metric</h2>" + _table(["model", "horizon", *METRICS, "oracle_share"], full, classes),
            "<h2>Per fold</h2>" + _table(fold_header, _fold_rows(metrics)),
            "<h2>Shuffled-label control (should be ≈ 0)</h2>"
            + _table(["model", "horizon", "RankIC", "NW t", "dates"], ctrl),
            "<h2>Variable selection weights (ATFT-GAT-FAN)</h2>"
            + (vsn or "<p>No variable-selection weights were provided.</p>"),
            "<h2>Data</h2>" + _data_html(metrics.get("data", {})),
            "<h2>Definitions</h2><ul>"
            + "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in DEFINITIONS.items())
            + "</ul>",
        ]
    )


def deflation_note(data: dict[str, Any]) -> str:
    """What the DSR column was deflated for, e.g. "DSR deflated for 40 trials (8 HPO trials × 5 models)"."""
    if "dsr_trials" not in data:
        return ""
    n, hpo = data["dsr_trials"], max(1, data.get("hpo_trials") or 1)
    return f"DSR deflated for {n} trials ({hpo} HPO trials × {n // hpo} models)"


def render_html(
    metrics: dict[str, Any], daily: pl.DataFrame, pnl: pl.DataFrame, deciles: pl.DataFrame
) -> str:
    """The whole report page: alarms first, then the gate, the summary, plots, every table, the data."""
    data = metrics.get("data", {})
    header, rows, classes = _summary_rows(metrics)
    period = (
        f"test period {data.get('test_start')} … {data.get('test_end')} "
        f"({data.get('n_test_dates')} sessions, {data.get('n_codes')} codes) · code {data.get('code_version', '?')}"
        f" · cost {data.get('cost_bp')} bp per side"
    )
    body = "\n".join(
        [
            f'<h1>kabuflow — out-of-sample evaluation</h1><p class="meta">{_e(period)}</p>',
            "".join(f'<p class="caveat">⚠ {_e(c)}</p>' for c in caveats(data)),
            "<h2>Leakage alarms</h2>" + _alarms_html(metrics.get("alarms", [])),
            lookahead.section(metrics.get("lookahead")),
            "<h2>Promotion gate</h2>" + _gate_html(metrics.get("gate", {})),
            "<h2>Summary</h2>" + _table(header, rows, classes),
            f'<p class="meta" id="dsr-note">{_e(deflation_note(data))}</p>',
            _attribution_html(metrics),
            _factor_html(metrics),
            _figures_html(metrics, daily, pnl, deciles),
            _tables_html(metrics),
            '<pre id="image-check" class="meta"></pre>',
        ]
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>kabuflow evaluation</title>'
        f"<style>{CSS}</style></head><body>\n{body}\n<script>{CHECK_JS}</script></body></html>\n"
    )


def render_markdown(metrics: dict[str, Any]) -> str:
    """The summary table, the gate decision and the alarms in Markdown (KFP's Markdown visualisation)."""
    header, rows, _ = _summary_rows(metrics)
    lines = ["# kabuflow evaluation", "", *(f"**⚠ {c}**" for c in caveats(metrics.get("data", {}))), ""]
    alarms = metrics.get("alarms", [])
    lines += [f"**⚠ LEAKAGE ALARM:** {a['message']}" for a in alarms] or ["No leakage alarms."]
    gate = metrics.get("gate", {})
    lines += [
        "",
        f"**Gate: {str(gate.get('decision', '?')).upper()}**",
        *[f"- {r}" for r in gate.get("reasons", [])],
        "",
    ]
    lines += [*_md_table(header, rows), "", deflation_note(metrics.get("data", {}))]
    if metrics.get("signal_attribution"):
        header, rows, _ = _attribution_rows(metrics)
        lines += ["", "## Signal attribution", "", ATTRIBUTION_ABOUT, "", *_md_table(header, rows)]
    if metrics.get("factor_share"):
        header, rows = factors.rows(metrics)
        lines += ["", "## Zero-parameter factors", "", factors.ABOUT, "", *_md_table(header, rows)]
    return "\n".join(lines) + "\n"


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table's lines, values through fmt."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(fmt(v) for v in row) + " |" for row in rows),
    ]


def summary_table(metrics: dict[str, Any]) -> str:
    """The short text table `make run` ends with: RankIC, net Sharpe and oracle share by model × horizon."""
    rows = _rows(metrics)
    horizons = sorted({h for _, h, _ in rows}, key=horizon_of)
    cell = {(m, h): s for m, h, s in rows}
    head = f"{'model':<14}" + "".join(f" {h + ' RankIC':>10} {'SR net':>7} {'share':>6}" for h in horizons)
    lines = [head, "-" * len(head)]
    for m in dict.fromkeys(m for m, _, _ in rows):
        parts = []
        for h in horizons:
            s = cell.get((m, h), {})
            rank_ic, sr, share = s.get("rank_ic"), s.get("ls_sharpe_net"), s.get("oracle_share")
            parts.append(f" {_fixed(rank_ic, 4):>10} {_fixed(sr, 2):>7} {_fixed(share, 2):>6}")
        lines.append(f"{m:<14}" + "".join(parts))
    gate = metrics.get("gate", {})
    if gate:
        decision = str(gate.get("decision", "?")).upper()
        lines.append(f"gate: {decision} — " + "; ".join(gate.get("reasons", [])[-2:]))
    lines += [f"ALARM: {a['message']}" for a in metrics.get("alarms", [])]
    return "\n".join(lines)
