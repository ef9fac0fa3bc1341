"""Columns and dtypes of every tabular artifact; stages check their inputs and outputs against them."""

from __future__ import annotations

import re

import polars as pl

F64 = pl.Float64
STR = pl.String

# Raw tables: J-Quants API v2 names (the official client's *_COLUMNS_V2 lists). Required columns
# only; a source may carry more (e.g. the morning/afternoon bars of the Premium plan).
RAW: dict[str, dict[str, pl.DataType]] = {
    "equities_bars_daily": {
        "Date": pl.Date(),
        "Code": STR,
        "O": F64,
        "H": F64,
        "L": F64,
        "C": F64,
        "Vo": F64,
        "Va": F64,
        "AdjFactor": F64,
        "AdjO": F64,
        "AdjH": F64,
        "AdjL": F64,
        "AdjC": F64,
        "AdjVo": F64,
    },
    "equities_master": {
        "Date": pl.Date(),
        "Code": STR,
        "CoName": STR,
        "CoNameEn": STR,
        "S17": STR,
        "S17Nm": STR,
        "S33": STR,
        "S33Nm": STR,
        "ScaleCat": STR,
        "Mkt": STR,
        "MktNm": STR,
    },
    "indices_bars_daily_topix": {"Date": pl.Date(), "O": F64, "H": F64, "L": F64, "C": F64},
    "fins_summary": {
        "DiscDate": pl.Date(),
        "DiscTime": STR,  # "HH:MM:SS" JST; decides which session's close the news belongs to
        "Code": STR,
        "DiscNo": STR,
        "DocType": STR,
        "CurPerType": STR,
        "CurPerSt": pl.Date(),
        "CurPerEn": pl.Date(),
        "CurFYSt": pl.Date(),
        "CurFYEn": pl.Date(),
        "Sales": F64,
        "OP": F64,
        "OdP": F64,
        "NP": F64,
        "EPS": F64,
        "TA": F64,
        "Eq": F64,
        "BPS": F64,
        "FSales": F64,
        "FOP": F64,
        "FOdP": F64,
        "FNP": F64,
        "FEPS": F64,
        "ShOutFY": F64,
    },
    "equities_investor_types": {
        "PubDate": pl.Date(),
        "StDate": pl.Date(),
        "EnDate": pl.Date(),
        "Section": STR,
        **{
            f"{who}{what}": F64
            for who in ("Prop", "Brk", "Tot", "Ind", "Frgn", "SecCo", "InvTr", "BusCo", "InsCo", "TrstBnk")
            for what in ("Sell", "Buy", "Tot", "Bal")
        },
    },
    "markets_margin_interest": {
        "PubDate": pl.Date(),
        "Date": pl.Date(),
        "Code": STR,
        "IssType": STR,
        "ShrtVol": F64,
        "LongVol": F64,
        "ShrtNegVol": F64,
        "LongNegVol": F64,
        "ShrtStdVol": F64,
        "LongStdVol": F64,
    },
    "markets_calendar": {"Date": pl.Date(), "HolDiv": STR},
}

# Tables every source must produce; the rest are optional and their feature families are left
# out (with a line in the features manifest) when absent.
RAW_REQUIRED = ("equities_bars_daily", "equities_master")

HORIZON_COLS = ("y_1d", "y_5d", "y_10d", "y_20d")

# features.parquet: these key columns first (as-of sector and market segment), then Float32 features
# and Float64 labels.
FEATURE_KEYS: dict[str, pl.DataType] = {"date": pl.Date(), "code": STR, "s33": STR, "mkt": STR}
# What normalize does with a feature (the features manifest's `kind`): `stock` is normalized
# cross-sectionally per date, `market` (one value per date) by a trailing z-score over past sessions,
# `flag` (0/1) passes through.
KINDS = ("stock", "market", "flag")

# Oracle (synthetic source only): the true expected label given everything public at the close of
# `date`, same convention as the labels (y_h(t) = AdjC[t+1+h]/AdjC[t+1] - 1).
ORACLE = {"Date": pl.Date(), "Code": STR, **{f"oracle_{h[2:]}": F64 for h in HORIZON_COLS}}
# Optional beside them, Float64: each planted signal's term of the oracle, `part_<signal>_<h>d` (e.g.
# part_leadlag_5d), at the horizons the source chose; evaluate attributes the scores to them when present.
ORACLE_PART = re.compile(r"^part_(?P<signal>[a-z][a-z0-9_]*)_(?P<h>\d+)d$")


def oracle_spec(columns: list[str]) -> dict[str, pl.DataType]:
    """ORACLE plus the optional part columns among `columns`: what an oracle file with them must hold."""
    return {**ORACLE, **{c: F64 for c in columns if ORACLE_PART.match(c)}}


# Predictions written by train-fold (val and test dates), predict, and the oracle for evaluate.
PREDICTIONS: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "code": STR,
    "model": STR,
    "fold": pl.Int32(),
    "split": STR,  # val | test | live
    "horizon": pl.Int32(),  # sessions: 1, 5, 10, 20
    "score": F64,
    "label": F64,  # realised raw y_h; null on live dates or where the window is unfinished
    "q10": F64,
    "q25": F64,
    "q50": F64,
    "q75": F64,
    "q90": F64,
}


class SchemaError(ValueError):
    """An artifact whose columns or dtypes are not what the stage expects; the message names them."""


def check(df: pl.DataFrame, spec: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    """Raise SchemaError naming the first missing or mistyped column; return df unchanged otherwise."""
    for col, dtype in spec.items():
        if col not in df.columns:
            raise SchemaError(f"{what}: missing column {col!r} (has {', '.join(df.columns[:20])})")
        if df.schema[col] != dtype and not (df[col].dtype == pl.Null):
            raise SchemaError(f"{what}: column {col!r} has dtype {df.schema[col]}, expected {dtype}")
    return df


def cast(df: pl.DataFrame, spec: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    """Cast the spec's columns to their dtypes (strict: a bad value is an error naming the column)."""
    out = []
    for col, dtype in spec.items():
        if col not in df.columns:
            raise SchemaError(f"{what}: missing column {col!r}")
        try:
            out.append(df[col].cast(dtype, strict=True))
        except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as err:
            raise SchemaError(f"{what}: column {col!r} cannot be read as {dtype}: {err}") from None
    return df.with_columns(out)
