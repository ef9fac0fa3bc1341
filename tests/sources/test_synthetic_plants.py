"""Planted faults in the synthetic bars: the guard finds exactly them and repairs the market back."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from kabuflow.config import Config, ConfigError
from kabuflow.sources import guard, synthetic

SMALL = [
    "synthetic.n_stocks=150",
    "synthetic.start=2021-01-04",
    "synthetic.end=2023-12-29",
    "synthetic.seed=3",
]


def _bars(plant: int) -> tuple[pl.DataFrame, list[dict[str, object]]]:
    result = synthetic.load(Config().with_overrides([*SMALL, f"synthetic.plant_bad_moves={plant}"]))
    return result.tables["equities_bars_daily"].sort("Code", "Date"), result.notes.get("planted", [])


@pytest.fixture(scope="module")
def clean_bars():
    return _bars(0)[0]


def test_the_simulated_market_makes_no_illegal_move(clean_bars):
    _, info, dropped = guard.guard(clean_bars, "repair", 0.0)  # no tolerance: its prints obey the limits
    assert info["events"] == [] and dropped == []


def test_guard_finds_exactly_the_planted_faults_and_repairs_the_market(clean_bars):
    planted, answers = _bars(4)
    assert [a["verdict"] for a in answers].count("missed_split") == 4 and len(answers) == 8
    assert not planted.equals(clean_bars)
    out, info, _ = guard.guard(planted, "repair", 0.05)
    got = [(e["code"], e["date"], e["verdict"]) for e in info["events"]]
    assert got == [(a["code"], a["date"], a["verdict"]) for a in answers]
    for e, a in zip(info["events"], answers, strict=True):
        if a["verdict"] == "missed_split":
            assert e["ratio"] == pytest.approx(a["ratio"]) and e["action"] == "repaired"
        else:  # the print's multiple of the close it replaced, over the close before
            c = clean_bars.filter(pl.col("Code") == a["code"]).filter(
                pl.col("Date").cast(pl.String) <= a["date"]
            )
            assert e["raw_move"] == pytest.approx(c["C"][-1] * a["ratio"] / c["C"][-2] - 1, abs=1e-6)
            assert e["rows"] == 1
    # Repaired and masked, the bars are the market as simulated less the bad prints' bars.
    prints = pl.DataFrame([a for a in answers if a["verdict"] == "bad_print"]).select(
        pl.col("code").alias("Code"), pl.col("date").str.to_date().alias("Date")
    )
    want = clean_bars.join(prints, on=["Code", "Date"], how="anti")
    assert out.select("Code", "Date").equals(want.select("Code", "Date"))
    for col in ("AdjO", "AdjC", "AdjVo", "AdjFactor", "C", "Vo"):
        assert np.allclose(out[col].to_numpy(), want[col].to_numpy(), rtol=1e-12), col


def test_planting_is_off_by_default_and_checked():
    assert Config().synthetic.plant_bad_moves == 0
    with pytest.raises(ConfigError, match="synthetic.plant_bad_moves"):
        synthetic.load(Config().with_overrides([*SMALL, "synthetic.plant_bad_moves=-1"]))
