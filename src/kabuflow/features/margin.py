"""Margin family (`margin_*`, per code, from markets_margin_interest): balance ratios, changes, z-scores."""

# Each row counts from the session after its PubDate. Old rows without a PubDate are assumed published
# MARGIN_PUBLICATION_LAG (2) sessions after their record date and count from the session after that.
# Weekly statistics run in publication order, so a row never sees one published after it.

from __future__ import annotations

from typing import Any

import polars as pl

from kabuflow.features._calendar import MARGIN_PUBLICATION_LAG, session_after, session_on_or_before
from kabuflow.features._ops import div, ts_mean
from kabuflow.features.spec import Family, Feature

MARGIN = "markets_margin_interest"


def weekly(margin: pl.DataFrame, cal: pl.DataFrame) -> pl.DataFrame:
    """One row per (code, effective session) with the weekly ratios, changes and z-score."""
    df = margin.filter(pl.col("Date").is_not_null(), pl.col("Code").is_not_null())
    df = session_after(df, cal, "PubDate", "_pub_next")
    df = session_on_or_before(df, cal, "Date", "_rec")
    lagged = pl.col("_rec") + MARGIN_PUBLICATION_LAG + 1
    df = df.with_columns(eff=pl.coalesce("_pub_next", lagged).cast(pl.Int32)).filter(
        pl.col("eff").is_not_null(), pl.col("eff") < cal.height
    )
    df = df.sort("Code", "eff", "Date").unique(["Code", "Date"], keep="last", maintain_order=True)
    long, short = pl.col("LongVol"), pl.col("ShrtVol")
    ls = ((long + 1.0) / (short + 1.0)).log()
    per_code = {
        "margin_ls_log_1w": ls,
        "margin_long_chg_1w": ((long + 1.0) / (long.shift(1) + 1.0)).log(),
        "margin_short_chg_1w": ((short + 1.0) / (short.shift(1) + 1.0)).log(),
        "margin_ls_z_52w": div(ls - ls.rolling_mean(52, min_samples=26), ls.rolling_std(52, min_samples=26)),
    }
    df = df.with_columns(**{k: v.over("Code") for k, v in per_code.items()})
    keep = ["LongVol", "ShrtVol", *per_code]
    return df.select(pl.col("Code").alias("code"), pl.col("eff").alias("margin_sess"), *keep).unique(
        ["code", "margin_sess"], keep="last", maintain_order=True
    )


def attach(
    frame: pl.DataFrame, tables: dict[str, pl.DataFrame], cal: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """As-of join each code's latest margin row effective on or before the bar's session."""
    week = weekly(tables[MARGIN], cal)
    out = frame.join_asof(
        week.sort("code", "margin_sess"),
        left_on="sess",
        right_on="margin_sess",
        by="code",
        check_sortedness=False,
    )
    n_lag = int(tables[MARGIN]["PubDate"].null_count())
    note = (
        "effective from the session after PubDate; rows without PubDate "
        f"({n_lag}) assumed published {MARGIN_PUBLICATION_LAG} sessions after Date"
    )
    return out, {"rows": week.height, "rows_without_pubdate": n_lag, "note": note}


def margin_adv(side: str, w: int) -> pl.Expr:
    """Margin balance in days of volume: balance / mean raw volume over the last w bars (both raw shares)."""
    col = {"long": "LongVol", "short": "ShrtVol"}[side]
    return div(pl.col(col), ts_mean(pl.col("v_raw"), w)).alias(f"margin_{side}_adv_{w}d")


def features() -> list[Feature]:
    """The family's features, in output order."""
    cols = ("margin_ls_log_1w", "margin_long_chg_1w", "margin_short_chg_1w", "margin_ls_z_52w")
    return [Feature(pl.col(c)) for c in cols] + [
        Feature(margin_adv("long", 20)),
        Feature(margin_adv("short", 20)),
    ]


FAMILY = Family(
    "margin", features, requires=(MARGIN,), attach=attach, drop=("LongVol", "ShrtVol", "margin_sess")
)
