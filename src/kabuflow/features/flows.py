"""Weekly investor flows family (`flow_*`, market-level, from equities_investor_types)."""

# Each weekly row counts from the session after its PubDate: the figures are published after the close,
# so the first session that can trade on them is the next one. Per publication we keep the broadest
# section of that week (largest total value traded), so the series does not jump between sections.

from __future__ import annotations

from typing import Any

import polars as pl

from kabuflow.features._calendar import session_after
from kabuflow.features._ops import div
from kabuflow.features.spec import Family, Feature

FLOWS = "equities_investor_types"
WHO = {"frgn": "Frgn", "ind": "Ind", "trst": "TrstBnk"}


def weekly(flows: pl.DataFrame, cal: pl.DataFrame) -> pl.DataFrame:
    """One row per publication with net-buying ratios, their 4-week means and 52-week z-scores.

    Rows are in publication order, so every rolling statistic at a row uses only rows published no later.
    """
    df = (
        flows.filter(pl.col("PubDate").is_not_null())
        .sort("PubDate", "EnDate", "TotTot", nulls_last=False)
        .unique(["PubDate", "EnDate"], keep="last", maintain_order=True)
    )
    df = session_after(df, cal, "PubDate", "flow_sess").filter(pl.col("flow_sess").is_not_null())
    nets = {f"net_{k}": div(pl.col(f"{v}Bal"), pl.col("TotTot")) for k, v in WHO.items()}
    df = df.with_columns(**nets)
    exprs = []
    for k in WHO:
        x = pl.col(f"net_{k}")
        exprs += [x.alias(f"flow_{k}_net_1w"), x.rolling_mean(4, min_samples=4).alias(f"flow_{k}_net_4w")]
        z = div(x - x.rolling_mean(52, min_samples=26), x.rolling_std(52, min_samples=26))
        exprs.append(z.alias(f"flow_{k}_z_52w"))
    return df.select("flow_sess", *exprs).unique("flow_sess", keep="last", maintain_order=True)


def attach(
    frame: pl.DataFrame, tables: dict[str, pl.DataFrame], cal: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """As-of join the latest publication effective on or before each bar's session."""
    week = weekly(tables[FLOWS], cal)
    # Resolve the as-of per session on the small calendar, then a hash join: no re-sort of the big frame.
    daily = cal.select("sess").join_asof(week.sort("flow_sess"), left_on="sess", right_on="flow_sess")
    out = frame.join(daily.drop("flow_sess"), on="sess", how="left", maintain_order="left")
    return out, {"weeks": week.height, "note": "effective from the session after PubDate"}


COLUMNS = tuple(f"flow_{k}_{w}" for k in WHO for w in ("net_1w", "net_4w", "z_52w"))


def features() -> list[Feature]:
    """Market-level columns joined by attach (one value per date for every stock)."""
    return [Feature(pl.col(c), "market") for c in COLUMNS]


FAMILY = Family("flow", features, requires=(FLOWS,), attach=attach)
