"""The `files` source: a directory of J-Quants-shaped parquet/CSV tables (bulk downloads, shared sets)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from kabuflow import calendar, schema
from kabuflow.config import Config, ConfigError
from kabuflow.schema import RAW, SchemaError
from kabuflow.sources import SourceResult

log = logging.getLogger(__name__)
JST = ZoneInfo("Asia/Tokyo")

SUFFIXES = (".parquet", ".csv", ".csv.gz")
# The column that dates each row: what data.start/end select on. The master is reference data
# (as-of snapshots, often one taken after the period): never cut by date, so sectors stay known.
DATE_COL = {
    "equities_bars_daily": "Date",
    "indices_bars_daily_topix": "Date",
    "fins_summary": "DiscDate",
    "equities_investor_types": "PubDate",
    "markets_margin_interest": "Date",
    "markets_calendar": "Date",
}
# Columns a table cannot do without; every other schema.RAW column is filled with typed nulls
# when absent (and the manifest says so).
REQUIRED = {
    "equities_bars_daily": tuple("Date Code O H L C Vo AdjFactor AdjO AdjH AdjL AdjC AdjVo".split()),
    "equities_master": ("Date", "Code", "S33", "Mkt"),
    "indices_bars_daily_topix": ("Date", "O", "H", "L", "C"),
    "fins_summary": ("DiscDate", "DiscTime", "Code", "DocType"),
    "equities_investor_types": ("PubDate", "StDate", "EnDate", "Section"),
    "markets_margin_interest": ("Date", "Code"),
    "markets_calendar": ("Date", "HolDiv"),
}
ZERO_PAD = {"S33": 4, "Mkt": 4}  # codes that lose their leading zeros when a tool reads them as numbers
DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d")


def _bad(what: str, col: str, s: pl.Series, ok: pl.Series, dtype: object) -> None:
    """Raise naming the column and an example when a non-empty input did not convert."""
    lost = s.is_not_null() & ~s.cast(pl.String).str.strip_chars().is_in(["", "-"]) & ok.is_null()
    if lost.any():
        example = s.filter(lost)[0]
        raise SchemaError(
            f"{what}: column {col!r} cannot be read as {dtype} ({lost.sum()} rows, e.g. {example!r})"
        )


def _to_date(s: pl.Series, what: str, col: str) -> pl.Series:
    if s.dtype in (pl.Date, pl.Null):
        return s.cast(pl.Date)
    if isinstance(s.dtype, pl.Datetime):
        return s.dt.date()
    if s.dtype != pl.String:
        raise SchemaError(f"{what}: column {col!r} has dtype {s.dtype}, expected a date")
    text = s.str.strip_chars()
    out = pl.select(pl.coalesce([text.str.to_date(f, strict=False) for f in DATE_FORMATS])).to_series()
    _bad(what, col, s, out, "Date")
    return out.alias(col)


def _to_float(s: pl.Series, what: str, col: str) -> pl.Series:
    if s.dtype.is_numeric():
        return s.cast(pl.Float64)
    if s.dtype not in (pl.String, pl.Null):
        raise SchemaError(f"{what}: column {col!r} has dtype {s.dtype}, expected numbers")
    out = s.cast(pl.String).str.strip_chars().replace({"": None, "-": None}).cast(pl.Float64, strict=False)
    _bad(what, col, s, out, "Float64")
    return out


def _to_str(s: pl.Series, what: str, col: str) -> pl.Series:
    if s.dtype.is_float():
        raise SchemaError(
            f"{what}: column {col!r} has dtype {s.dtype}; codes and names must be text or integers"
        )
    if s.dtype not in (pl.String, pl.Null) and not s.dtype.is_integer():
        raise SchemaError(f"{what}: column {col!r} has dtype {s.dtype}, expected String")
    out = s.cast(pl.String).str.strip_chars().replace({"": None})
    if col in ZERO_PAD:
        out = out.str.zfill(ZERO_PAD[col])
    return out


def _code(s: pl.Series, what: str) -> pl.Series:
    """5-character codes as J-Quants writes them: a 4-character code gets its check digit '0'.

    Other lengths become null (clean() drops and counts them as `bad_code`): a dirty row, not a bad file.
    """
    out = _to_str(s, what, "Code")
    n = out.str.len_chars()
    return pl.select(pl.when(n == 4).then(out + "0").when(n == 5).then(out)).to_series().alias("Code")


def _disc_time(s: pl.Series) -> pl.Series:
    """ "HH:MM" -> "HH:MM:00"; empty -> null (an unknown time counts as after the close downstream)."""
    return pl.select(pl.when(s.str.len_chars() == 5).then(s + ":00").otherwise(s)).to_series().alias(s.name)


def coerce(df: pl.DataFrame, table: str, what: str) -> tuple[pl.DataFrame, list[str]]:
    """Cast a table to schema.RAW dtypes, filling absent optional columns with typed nulls.

    Returns the frame and the filled column names. Numbers may arrive as text ("" and "-" are null);
    errors name `what` (the file or endpoint) and the column. Columns outside the schema pass through.
    """
    filled, out = [], []
    for col, dtype in RAW[table].items():
        if col not in df.columns:
            if col in REQUIRED[table]:
                raise SchemaError(
                    f"{what}: missing required column {col!r} (has {', '.join(df.columns[:20])})"
                )
            filled.append(col)
            out.append(pl.Series(col, [None] * df.height, dtype=dtype))
            continue
        s = df[col]
        if col == "Code":
            out.append(_code(s, what))
        elif dtype == pl.Date():
            out.append(_to_date(s, what, col))
        elif dtype == pl.Float64:
            out.append(_to_float(s, what, col))
        else:
            out.append(_disc_time(_to_str(s, what, col)) if col == "DiscTime" else _to_str(s, what, col))
    result = df.with_columns(out).select([*RAW[table], *[c for c in df.columns if c not in RAW[table]]])
    return schema.check(result, RAW[table], what), filled


def clean(df: pl.DataFrame, table: str, what: str = "") -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Drop the rows no honest backtest can use, counting them per reason (the first reason wins).

    Any table: codes that are not 5 characters (`bad_code`). Bars and TOPIX: dates that are not XTKS
    sessions (holidays filled with zero-volume rows), identical duplicated keys (duplicates that
    disagree are an error naming code and date), negative volume or turnover, zero or missing volume
    (bars: halted or untraded days), null or non-positive prices, a high below the low, an open or
    close outside [low, high].
    """
    rules: list[tuple[str, pl.Expr]] = []
    if "Code" in RAW[table]:
        rules.append(("bad_code", pl.col("Code").is_null()))
    if table in ("equities_bars_daily", "indices_bars_daily_topix") and df.height:
        sess = pl.Series(calendar.sessions(df["Date"].min(), df["Date"].max()), dtype=pl.Date)
        key = ["Code", "Date"] if "Code" in RAW[table] else ["Date"]
        rules.append(("not_session", ~pl.col("Date").is_in(sess.implode())))
        _disagreeing_duplicates(df, key, what or table)
        # sorted (stably: the first copy stays first), a duplicate equals the row before it
        df = df.sort(key, maintain_order=True)
        same = pl.all_horizontal([pl.col(k) == pl.col(k).shift(1) for k in key]).fill_null(False)
        rules.append(("duplicate", same))
        if table == "equities_bars_daily":
            rules.append(("negative_volume", (pl.col("Vo") < 0) | (pl.col("Va") < 0)))
            rules.append(("zero_volume", pl.col("Vo").fill_null(0.0) <= 0))
        prices = ["O", "H", "L", "C"] + (["AdjC"] if table == "equities_bars_daily" else [])
        rules.append(
            ("bad_price", pl.any_horizontal([pl.col(c).is_null() | (pl.col(c) <= 0) for c in prices]))
        )
        rules += _range_rules()
    if not rules:
        return df, []
    reason = pl.lit(None, dtype=pl.String)
    for name, cond in reversed(rules):
        reason = pl.when(cond).then(pl.lit(name)).otherwise(reason)
    tagged = df.with_columns(reason.alias("_reason"))
    counts = dict(tagged["_reason"].drop_nulls().value_counts().iter_rows())
    dropped = [{"table": table, "reason": r, "rows": int(counts[r])} for r, _ in rules if counts.get(r)]
    return tagged.filter(pl.col("_reason").is_null()).drop("_reason"), dropped


# Prints are rounded to ticks and some sets (split-adjusted at the source) carry float noise: a
# relative slack this small is no price anyone traded.
RANGE_SLACK = 1e-6


def _range_rules() -> list[tuple[str, pl.Expr]]:
    """A bar whose high is below its low, or whose open or close lies outside [low, high]."""
    lo, hi = pl.col("L") * (1 - RANGE_SLACK), pl.col("H") * (1 + RANGE_SLACK)
    return [
        ("high_below_low", pl.col("H") < lo),
        ("open_close_outside_range", pl.any_horizontal([(pl.col(c) < lo) | (pl.col(c) > hi) for c in "OC"])),
    ]


def _disagreeing_duplicates(df: pl.DataFrame, key: list[str], what: str) -> None:
    """Raise naming the first key whose duplicated rows differ: which one is right cannot be guessed."""
    dup = df.filter(pl.len().over(key) > 1)
    if dup.is_empty():
        return
    cols = [c for c in df.columns if c not in key]
    differ = dup.group_by(key).agg(pl.struct(cols).n_unique().alias("n")).filter(pl.col("n") > 1)
    if differ.height:
        first = differ.sort(key).row(0, named=True)
        where = ", ".join(f"{k} {first[k]}" for k in key)
        raise SchemaError(
            f"{what}: {differ.height} duplicated keys with rows that disagree, first {where}; keep one row per key"
        )


def select_dates(df: pl.DataFrame, table: str, start: dt.date | None, end: dt.date | None) -> pl.DataFrame:
    """Rows dated within [start, end] (by the table's date column); the master is kept whole."""
    col = DATE_COL.get(table)
    if col is None:
        return df
    if start is not None:
        df = df.filter(pl.col(col) >= start)
    if end is not None:
        df = df.filter(pl.col(col) <= end)
    return df


def _find(root: Path, table: str) -> Path | None:
    found = [root / f"{table}{suffix}" for suffix in SUFFIXES if (root / f"{table}{suffix}").is_file()]
    if len(found) > 1:
        raise SchemaError(
            f"{root}: table {table} is given twice ({', '.join(p.name for p in found)}); keep one"
        )
    return found[0] if found else None


def read_table(path: Path) -> pl.DataFrame:
    """Read one parquet or (gzipped) CSV file; CSV is read as text so coerce() parses and checks it.

    A file that is not what its name says (a CSV named .parquet, a truncated download) is an error
    naming the file."""
    kind = "parquet" if path.name.endswith(".parquet") else "CSV"
    try:
        if kind == "parquet":
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError, EOFError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise SchemaError(f"{path}: not a readable {kind} file ({first})") from None


def _no_future(df: pl.DataFrame, table: str, what: str) -> None:
    """Bars dated after today (JST) cannot be real: a wrong date format or a wrong file."""
    if table != "equities_bars_daily" or df.is_empty():
        return
    today = dt.datetime.now(JST).date()
    late = df.filter(pl.col("Date") > today)
    if late.height:
        first = late.sort("Date").row(0, named=True)
        raise SchemaError(
            f"{what}: {late.height} bars dated after today ({today}), first Code {first['Code']} on {first['Date']}"
        )


def setting_date(text: str, setting: str) -> dt.date | None:
    """An ISO date from the config ("" = unset); the error names the setting."""
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        raise ConfigError(f"{setting}={text!r} is not an ISO date (YYYY-MM-DD)") from None


def load(cfg: Config) -> SourceResult:
    """Read every known table present in cfg.data.path, check and clean it; missing optional tables are fine."""
    if not cfg.data.path:
        raise ValueError("data.source=files needs data.path (a directory of <table>.parquet|.csv|.csv.gz)")
    root = Path(cfg.data.path)
    if not root.is_dir():
        raise FileNotFoundError(f"data.path {root} is not a directory")
    start, end = setting_date(cfg.data.start, "data.start"), setting_date(cfg.data.end, "data.end")
    tables: dict[str, pl.DataFrame] = {}
    dropped: list[dict[str, Any]] = []
    notes: dict[str, Any] = {"path": str(root), "files": {}, "filled_columns": {}}
    for table in RAW:
        path = _find(root, table)
        if path is None:
            continue
        df, filled = coerce(read_table(path), table, str(path))
        _no_future(df, table, str(path))
        df, gone = clean(select_dates(df, table, start, end), table, str(path))
        tables[table] = df
        dropped += gone
        notes["files"][table] = path.name
        if filled:
            notes["filled_columns"][table] = filled
        log.info("files: %s %d rows kept, %d dropped", table, df.height, sum(d["rows"] for d in gone))
    missing = [t for t in schema.RAW_REQUIRED if t not in tables]
    if missing:
        names = ", ".join(f"{t}{{{','.join(SUFFIXES)}}}" for t in missing)
        raise FileNotFoundError(f"data.path {root} lacks required table(s): {names}")
    known = {f"{t}{s}" for t in RAW for s in SUFFIXES}
    notes["ignored_files"] = sorted(p.name for p in root.iterdir() if p.is_file() and p.name not in known)
    notes["master_dates"] = "equities_master is reference data: not cut by data.start/end"
    return SourceResult(tables=tables, dropped=dropped, notes=notes)
