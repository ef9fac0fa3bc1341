"""Statements family (`stmt_*`, from fins_summary): growth, margins, ROE/ROA, progress, revisions, surprise."""

# Point in time: a disclosure counts from the session whose close follows it (before the close on a
# session → that session; at/after the close or on a holiday → the next one); the stock frame picks up
# the latest disclosure by an as-of join on that effective session, so nothing disclosed later exists yet.

from __future__ import annotations

from typing import Any

import polars as pl

from kabuflow.features._calendar import effective_session
from kabuflow.features._ops import div, ts_mean
from kabuflow.features.spec import Family, Feature

FINS = "fins_summary"
ACTUAL = ("Sales", "OP", "NP", "TA", "Eq", "BPS", "ShOutFY", "CurPerType", "growth_sales", "growth_op")
FORECAST = ("FSales", "FOP", "FNP", "FEPS")


def A(c: str) -> pl.Expr:  # noqa: N802 - reads like the formula: A("NP") is the latest actual NP
    """The latest reported actual value of field c (forward-filled over result disclosures)."""
    return pl.col(f"a_{c}")


def F(c: str) -> pl.Expr:  # noqa: N802
    """The latest forecast of field c (forward-filled over disclosures that give one)."""
    return pl.col(f"f_{c}")


def rel_change(new: pl.Expr, old: pl.Expr) -> pl.Expr:
    """(new - old) / |old|: a change that keeps its sign when the base is a loss."""
    return div(new - old, old.abs())


def yoy_growth(df: pl.DataFrame) -> pl.DataFrame:
    """Add `growth_sales`, `growth_op` to result rows: vs the same period type one fiscal year earlier.

    The prior-year row is searched as of this row's effective session, so a restatement disclosed later
    never reaches back into an earlier growth figure.
    """
    actual = df.filter(pl.col("NP").is_not_null()).with_columns(prev_fy=pl.col("CurFYEn").dt.offset_by("-1y"))
    prior = actual.select(
        "Code", "CurPerType", pl.col("CurFYEn").alias("prev_fy"), pl.col("eff").alias("eff_prev"),
        pl.col("Sales").alias("sales_prev"), pl.col("OP").alias("op_prev"),
    ).sort("Code", "CurPerType", "prev_fy", "eff_prev")  # fmt: skip
    grown = actual.sort("Code", "CurPerType", "prev_fy", "eff").join_asof(
        prior,
        left_on="eff",
        right_on="eff_prev",
        by=["Code", "CurPerType", "prev_fy"],
        check_sortedness=False,
    )
    grown = grown.select(
        "_row",
        growth_sales=pl.when(pl.col("sales_prev") > 0).then(pl.col("Sales") / pl.col("sales_prev") - 1.0),
        growth_op=rel_change(pl.col("OP"), pl.col("op_prev")),
    )
    return df.join(grown, on="_row", how="left", maintain_order="left")


def disclosures(fins: pl.DataFrame, cal: pl.DataFrame) -> pl.DataFrame:
    """One row per (code, effective session): everything the statements say as of that session's close."""
    df = effective_session(fins.filter(pl.col("DiscDate").is_not_null()), cal, "DiscDate", "DiscTime", "eff")
    df = df.filter(pl.col("eff").is_not_null()).sort("Code", "eff", "DiscDate", "DiscTime", "DiscNo")
    df = yoy_growth(df.with_row_index("_row"))
    is_actual = pl.col("NP").is_not_null()
    fy_result = is_actual & (pl.col("CurPerType") == "FY")
    df = df.with_columns(
        *(ts_code(pl.when(is_actual).then(pl.col(c)).forward_fill()).alias(f"a_{c}") for c in ACTUAL),
        *(ts_code(pl.col(c).forward_fill()).alias(f"f_{c}") for c in FORECAST),
    )
    # The full-year forecast in force just before this disclosure (the one it revises or is judged against).
    prev_fnp = ts_code(F("FNP").shift(1))
    return df.with_columns(
        surprise=ts_code(pl.when(fy_result).then(rel_change(pl.col("NP"), prev_fnp)).forward_fill()),
        # A full-year result moves the forecast to the next year: not a revision of the same number.
        revision=pl.when(~fy_result & pl.col("FNP").is_not_null()).then(rel_change(pl.col("FNP"), prev_fnp)),
    ).unique(["Code", "eff"], keep="last", maintain_order=True)


def ts_code(e: pl.Expr) -> pl.Expr:
    """Per-company sequence over its disclosures (the fins table's own `ts`; small, so the string key is fine)."""
    return e.over("Code")


def attach(
    frame: pl.DataFrame, tables: dict[str, pl.DataFrame], cal: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """As-of join the latest disclosure effective on or before each bar's session."""
    disc = disclosures(tables[FINS], cal)
    keep = [f"a_{c}" for c in ACTUAL] + [f"f_{c}" for c in FORECAST] + ["surprise", "revision"]
    right = disc.select(pl.col("Code").alias("code"), pl.col("eff").alias("stmt_sess"), *keep)
    out = frame.join_asof(
        right.sort("code", "stmt_sess"),
        left_on="sess",
        right_on="stmt_sess",
        by="code",
        check_sortedness=False,
    )
    note = "effective from the session whose close follows DiscDate DiscTime (XTKS close, 15:00; 15:30 from 2024-11-05)"
    return out, {"disclosures": disc.height, "note": note}


def _annual(e: pl.Expr) -> pl.Expr:
    """Year-to-date figure scaled to a year by the period type (1Q ×4, 2Q ×2, 3Q ×4/3, FY ×1)."""
    q = A("CurPerType").replace_strict({"1Q": 1.0, "2Q": 2.0, "3Q": 3.0}, default=4.0)
    return e * 4.0 / q


def _not_fy() -> pl.Expr:
    return A("CurPerType") != "FY"


def features() -> list[Feature]:
    """The family's features, in output order."""
    exprs = [
        A("growth_sales").alias("stmt_sales_growth_1y"),
        A("growth_op").alias("stmt_op_growth_1y"),
        div(A("OP"), A("Sales")).alias("stmt_op_margin"),
        div(A("NP"), A("Sales")).alias("stmt_np_margin"),
        div(_annual(A("NP")), A("Eq")).alias("stmt_roe"),
        div(_annual(A("NP")), A("TA")).alias("stmt_roa"),
        pl.when(_not_fy() & (F("FNP") > 0)).then(A("NP") / F("FNP")).alias("stmt_progress_np"),
        pl.when(_not_fy() & (F("FOP") > 0)).then(A("OP") / F("FOP")).alias("stmt_progress_op"),
        pl.col("revision").alias("stmt_revision_np"),
        pl.col("surprise").alias("stmt_surprise_np"),
        # Raw (unadjusted) close: per-share figures are raw too, and neither knows of later splits.
        div(F("FEPS"), pl.col("c_raw")).alias("stmt_ep_fwd"),
        div(A("BPS"), pl.col("c_raw")).alias("stmt_bp"),
        div(ts_mean(pl.col("v_raw"), 20), A("ShOutFY")).alias("stmt_share_turnover_20d"),
        (pl.col("sess") - pl.col("stmt_sess")).alias("stmt_days_since"),
    ]
    return [Feature(e) for e in exprs]


DROP = tuple(
    [f"a_{c}" for c in ACTUAL] + [f"f_{c}" for c in FORECAST] + ["surprise", "revision", "stmt_sess"]
)
FAMILY = Family("stmt", features, requires=(FINS,), attach=attach, drop=DROP)
