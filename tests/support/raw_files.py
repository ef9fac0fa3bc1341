"""A tiny J-Quants-shaped files directory with hand-countable defects, for the files source and ingest tests."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import polars as pl

from kabuflow import config

D = dt.date
# 2024-01-04, 05, 09 are sessions; 2024-01-08 (Coming of Age Day) and the 6th (Saturday) are not.
BARS_CSV = """Date,Code,O,H,L,C,Vo,AdjFactor,AdjO,AdjH,AdjL,AdjC,AdjVo
2024-01-04,7203,100,110,90,105,1000,1,100,110,90,105,1000
2024-01-05,7203,105,112,101,110,1200,1,105,112,101,110,1200
2024-01-08,7203,110,110,110,110,0,1,110,110,110,110,0
2024-01-09,7203,110,115,108,112,900,1,110,115,108,112,900
2024-01-09,7203,110,115,108,112,900,1,110,115,108,112,900
2024-01-04,9984,50,55,45,52,0,1,50,55,45,52,0
2024-01-05,9984,,,,,300,1,,,,,300
2024-01-09,9984,52,53,51,-1,400,1,52,53,51,-1,400
2024-01-10,9984,52,53,51,53,400,1,52,53,51,53,400
"""


def master() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "Date": [D(2024, 3, 29)] * 4,
            "Code": ["72030", "99840", "13010", "259350"],  # the last: a 6-character preferred-share code
            "CoName": ["トヨタ自動車", "ソフトバンクグループ", "極洋", "伊藤園 優先株式"],
            "S33": [3700, 5250, 50, 3050],  # read as integers by some tool: leading zeros lost
            "Mkt": ["0111", "0111", "0111", "0111"],
        }
    )


def make_dir(root: Path) -> Path:
    root.mkdir()
    (root / "equities_bars_daily.csv").write_text(BARS_CSV)
    master().write_parquet(root / "equities_master.parquet")
    topix = "Date,O,H,L,C\n2024-01-04,2400,2420,2390,2410\n2024-01-06,1,1,1,1\n2024-01-05,2410,2430,2400,0\n"
    (root / "indices_bars_daily_topix.csv.gz").write_bytes(gzip.compress(topix.encode()))
    (root / "notes.txt").write_text("not a table")
    return root


def cfg_for(path: Path, *extra: str) -> config.Config:
    return config.Config().with_overrides(["data.source=files", f"data.path={path}", *extra])
