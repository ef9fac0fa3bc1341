"""The statistical look-ahead check: how each model's score at t ranks the realised returns of days t-2..t+3."""

# Labels start at the close of t+1 (y_h(t) = AdjC[t+1+h] / AdjC[t+1] - 1), so the return of day t+1
# (close t -> close t+1) is in no label: a fair model has no reason to rank it better than the factors
# and baselines do, while a model that saw day t+1's close does. Fair models predict the nearest future
# days best, so the check compares the models with each other, never with zero.

from __future__ import annotations

import html
from typing import Any

import polars as pl

from kabuflow import calendar

OFFSETS = (-2, -1, 0, 1, 2, 3)  # k: the day whose return r(t+k) is ranked
NOT_REFERENCE = ("atft", "oracle")  # judged; every other model is a baseline or factor: the yardstick
BAD, OK = "background:#f2dede", "background:#dff0d8"  # inline: the fragment goes into two pages' styles
DEFINITION = (
    "mean over dates t of the Spearman correlation between a model's 1d score at t and the realised "
    "1-day return of day t+k (close t+k-1 to close t+k), k = -2..3; r(t+1) is in no label"
)


def _positions(*dates: pl.Series) -> pl.Series:
    """The XTKS sessions spanning every given date column: a date's index in it is its session position."""
    lo, hi = min(d.min() for d in dates), max(d.max() for d in dates)
    return pl.Series(calendar.sessions(lo, hi), dtype=pl.Date)


def loadings(scores: pl.DataFrame, labels: pl.DataFrame) -> dict[str, dict[str, float]]:
    """{model: {"t-2": rho, ..., "t+3": rho}} from scores (date, code, model, score) at the 1d horizon and
    labels (date, code, label): the realised y_1d, which is the return of day t+2, so r(s) = y_1d(s - 2)."""
    labels = labels.drop_nulls("label").unique(["date", "code"], keep="first")
    if scores.is_empty() or labels.is_empty():
        return {}
    sess = _positions(scores["date"], labels["date"])
    s = scores.with_columns(pos=sess.search_sorted(scores["date"]).cast(pl.Int64))
    r = labels.select("code", pos=sess.search_sorted(labels["date"]).cast(pl.Int64) + 2, r="label")
    out: dict[str, dict[str, float]] = {}
    for k in OFFSETS:  # r(t+k) joined onto the score at t
        joined = s.join(r.with_columns(pos=pl.col("pos") - k), on=["code", "pos"], how="inner")
        daily = joined.group_by("model", "date").agg(rho=pl.corr("score", "r", method="spearman"))
        mean = daily.filter(pl.col("rho").is_finite()).group_by("model").agg(pl.col("rho").mean())
        for model, rho in mean.iter_rows():
            out.setdefault(model, {})[_key(k)] = float(rho)
    return {m: {_key(k): v.get(_key(k), float("nan")) for k in OFFSETS} for m, v in sorted(out.items())}


def _key(k: int) -> str:
    return "t" if k == 0 else f"t{k:+d}"


def flags(
    table: dict[str, dict[str, float]], alarmed: dict[str, str], min_margin: float
) -> list[dict[str, Any]]:
    """A warning per judged model (not a baseline or factor, not the oracle) whose loading on r(t+1)
    beats every baseline's and factor's by more than max(min_margin, their range); and one per model that
    tripped a leakage alarm of evaluate's (`alarmed`: model -> message)."""
    refs = [v["t+1"] for m, v in table.items() if m not in NOT_REFERENCE and v["t+1"] == v["t+1"]]
    out = []
    for model, v in table.items():
        if model in NOT_REFERENCE and model != "oracle" and len(refs) >= 2:
            margin, top = max(min_margin, max(refs) - min(refs)), max(refs)
            if v["t+1"] > top + margin:
                msg = f"loading on r(t+1) {v['t+1']:.4f} beats every baseline's (max {top:.4f}) by over {margin:.4f}"
                out.append(
                    {"model": model, "kind": "lookahead_t+1", "value": v["t+1"], "message": f"{model}: {msg}"}
                )
        if model in alarmed:
            out.append({"model": model, "kind": "alarm", "message": f"{model}: {alarmed[model]}"})
    return out


def html_table(table: dict[str, dict[str, float]], warnings: list[dict[str, Any]]) -> str:
    """The table as an HTML fragment (a red row per flagged model), for evaluate's report and the audit's."""
    if not table:
        return "<p>No look-ahead loadings (no 1d scores with realised returns).</p>"
    flagged = {w["model"] for w in warnings}
    head = "".join(f"<th>r({_key(k)})</th>" for k in OFFSETS)
    rows = []
    for model, v in table.items():
        style = f' style="{BAD}"' if model in flagged else ""
        cells = "".join(f"<td>{v[_key(k)]:.4f}</td>" for k in OFFSETS)
        rows.append(f"<tr{style}><td>{html.escape(model)}</td>{cells}</tr>")
    notes = "".join(f'<p class="bad">⚠ {html.escape(w["message"])}</p>' for w in warnings) or (
        '<p class="ok">No model loads on r(t+1) beyond the baselines and factors.</p>'
    )
    return (
        f"<p>{html.escape(DEFINITION)}.</p><table><tr><th>model</th>{head}</tr>{''.join(rows)}</table>{notes}"
    )


def check(frame: pl.DataFrame, alarms: list[dict[str, Any]], min_margin: float) -> dict[str, Any]:
    """evaluate's version: loadings of every model's stitched 1d test scores (labels from the same
    predictions), and warnings, counting each model's leakage alarms of evaluate's scorecard."""
    one = frame.filter(pl.col("horizon") == 1)
    scores = one.select("date", "code", "model", "score").drop_nulls("score")
    labels = one.filter(pl.col("model") != "oracle").select("date", "code", "label")
    alarmed: dict[str, str] = {}
    for a in alarms:
        alarmed.setdefault(a["model"], a["message"])
    table = loadings(scores, labels)
    return {"table": table, "warnings": flags(table, alarmed, min_margin), "definition": DEFINITION}


def section(result: dict[str, Any] | None) -> str:
    """The report's section (empty when the metrics predate the check)."""
    if not result:
        return ""
    return "<h2>Look-ahead check: score at t vs the return of day t+k</h2>" + html_table(
        result["table"], result["warnings"]
    )
