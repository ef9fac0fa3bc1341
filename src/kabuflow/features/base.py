"""The base frame every feature runs on: one row per (code, XTKS session) bar, Adj prices, as-of sector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from kabuflow import manifest, schema
from kabuflow.features import _calendar
from kabuflow.features._ops import NO_SECTOR, SECTOR_SLOTS

BARS, MASTER = "equities_bars_daily", "equities_master"


def read_raw(raw: str | Path | manifest.Artifact) -> dict[str, pl.DataFrame]:
    """Every `<table>.parquet` of schema.RAW that the raw manifest lists, checked against its columns
    and dtypes; a table file the manifest does not list (left by an earlier run) is never read."""
    art = raw if isinstance(raw, manifest.Artifact) else manifest.open_dir(raw)
    tables = {}
    for name, spec in schema.RAW.items():
        if art.has(f"{name}.parquet"):
            path = art.file(f"{name}.parquet")
            tables[name] = schema.check(pl.read_parquet(path), spec, f"{path}")
    missing = [t for t in schema.RAW_REQUIRED if t not in tables]
    if missing:
        raise FileNotFoundError(
            f"raw directory {art.path} lacks required table(s) {missing} ({missing[0]}.parquet)"
        )
    return tables


def calendar_for(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """XTKS sessions spanning the bars and every dated event table (so old disclosures still find a session)."""
    dates = [tables[BARS]["Date"].min(), tables[BARS]["Date"].max()]
    for name, col in (
        ("fins_summary", "DiscDate"),
        ("equities_investor_types", "PubDate"),
        ("markets_margin_interest", "Date"),
    ):
        if name in tables and tables[name].height:
            dates += [tables[name][col].min(), tables[name][col].max()]
    dates = [d for d in dates if d is not None]
    return _calendar.sessions(min(dates), max(dates))


def bars_frame(bars: pl.DataFrame, cal: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """Bars on XTKS sessions with positive Adj prices, renamed to the base columns, sorted by (code, date).

    Rows on non-sessions (e.g. zero-volume holiday rows) and rows without a usable price are dropped
    and counted, never repaired.
    """
    # Session position of each bar by binary search over the calendar (no join); off-calendar rows drop.
    days = cal["date"]
    sess = days.search_sorted(bars["Date"], side="left").clip(upper_bound=len(days) - 1)
    on_cal = (days.gather(sess) == bars["Date"]).fill_null(False)
    priced = pl.all_horizontal((pl.col(f"Adj{k}") > 0).fill_null(False) for k in ("O", "H", "L", "C"))
    out = (
        bars.lazy()
        .with_columns(sess=sess.cast(pl.Int32), _on=on_cal)
        .filter(pl.col("_on"))
        .with_columns(_priced=priced)
        .select(
            pl.col("Date").alias("date"),
            pl.col("Code").alias("code"),
            "sess",
            *(pl.col(f"Adj{k}").alias(k.lower()) for k in ("O", "H", "L", "C")),
            pl.col("AdjVo").alias("v"),
            # Yen turnover; AdjC × AdjVo = C × Vo when Va is missing (a split scales them inversely).
            pl.coalesce("Va", pl.col("AdjC") * pl.col("AdjVo")).alias("va"),
            pl.col("C").alias("c_raw"),
            pl.col("Vo").alias("v_raw"),
            "_priced",
        )
        .collect(engine="in-memory")
    )
    n_cal = out.height
    out = out.filter(pl.col("_priced")).drop("_priced").rechunk()
    if not _sorted_unique(out):
        out = out.sort("code", "date")
        if not _sorted_unique(out):
            raise ValueError(f"{BARS}: more than one bar for some (Code, Date); ingest should deduplicate")
    dropped = {"off_calendar": bars.height - n_cal, "no_positive_price": n_cal - out.height}
    # Dense integer id per code (the frame is sorted by code): the ts_ helpers' partition key; and each
    # row's position within its code, which masks whole-column shifts (see _ops.py).
    out = out.with_columns(cid=pl.col("code").rle_id()).with_columns(
        pos=pl.int_range(pl.len(), dtype=pl.UInt32).over("cid")
    )
    return out, dropped


def _sorted_unique(df: pl.DataFrame) -> bool:
    """True when rows are strictly increasing in (code, date): sorted, one bar per code and date."""
    same = pl.col("code") == pl.col("code").shift(1)
    later = (pl.col("date") > pl.col("date").shift(1)) | ~same
    return bool(df["code"].is_sorted() and df.select(later.fill_null(True).all()).item())


def _sector_id(s33: pl.Expr) -> pl.Expr:
    """A sector id in [0, 2^31) from the S33 value alone (a hash), so the within-date order of rows, and
    with it the order of floating-point sums over a date, cannot depend on sectors that appear later."""
    return pl.when(s33.is_not_null()).then((s33.hash(seed=0) % NO_SECTOR).cast(pl.Int64))


def attach_master(frame: pl.DataFrame, master: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Add `s33` and `mkt`: the latest master row dated on or before each bar (as-of, never back-filled).

    Exception, stated in the manifest: when the master is one snapshot row per code and some code's
    row is dated after its first bar (the real jpx set: one snapshot of 2024-03-29), the snapshot is
    used for every date. That is a known look-ahead in the sector labels of earlier dates, accepted
    because there is no history to do better with.
    """
    codes = frame.group_by("code", "cid").agg(pl.col("date").min().alias("first"))
    # Work on the small master: integer code and sector ids, so the big join hashes integers.
    m = master.select(
        pl.col("Date").alias("mdate"),
        pl.col("Code").alias("code"),
        pl.col("S33").alias("s33"),
        pl.col("Mkt").alias("mkt"),
    ).with_columns(sid=_sector_id(pl.col("s33")))
    ids = m.select(
        pl.col("s33").n_unique() - pl.col("s33").is_null().any(), pl.col("sid").drop_nulls().n_unique()
    )
    assert ids.row(0)[0] == ids.row(0)[1], "two S33 values share a sector id (hash collision)"
    m = m.join(codes, on="code", how="inner").drop("code")
    per_code = m.group_by("cid").agg(
        pl.len().alias("n"), (pl.col("mdate") > pl.col("first")).all().alias("later")
    )
    later = int(per_code["later"].sum())
    if m.height and per_code["n"].max() == 1 and later > 0:
        out = frame.join(m.drop("mdate", "first"), on="cid", how="left", maintain_order="left")
        note = (
            f"master is a single snapshot per code ({m['mdate'].min()}..{m['mdate'].max()}), dated after the "
            f"first bar of {later} codes: its sector and market are used for every date (a known look-ahead "
            "in s33/mkt before the snapshot date; no master history to do better)"
        )
        info = {
            "mode": "snapshot",
            "codes_backfilled": later,
            "lookahead_before": str(m["mdate"].max()),
            "note": note,
        }
    else:
        # Both sides sorted by (code, date): join_asof matches within each code without a global re-sort.
        right = m.drop("first").sort("cid", "mdate")
        out = frame.join_asof(right, left_on="date", right_on="mdate", by="cid", check_sortedness=False).drop(
            "mdate"
        )
        info = {"mode": "as_of", "note": "s33/mkt from the latest master row dated on or before each date"}
    # `dsec`: one integer per (date, S33), NO_SECTOR slot where unknown: the sec_ helpers' partition.
    sid = pl.col("sid").fill_null(NO_SECTOR)
    dsec = pl.col("date").to_physical().cast(pl.Int64) * SECTOR_SLOTS + sid
    return out.with_columns(dsec=dsec).drop("sid").rechunk(), info
