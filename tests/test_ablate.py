"""ablate: ATFT variants on the same folds and seeds of a tiny panel, the table and its paired t."""

from __future__ import annotations

import json

import polars as pl
import pytest
from tiny_market import TINY_ATFT, make_market

from kabuflow.ablate import ablate, variants
from kabuflow.cli import main
from kabuflow.config import Config
from kabuflow.evaluate.metrics import daily_ic

# TINY_ATFT with one GAT layer and an 8-day lookback (later overrides win over its 6).
TINY = [
    *TINY_ATFT,
    "model.gat_layers=1",
    "model.lookback=8",
    "train.epochs=1",
    "train.warmup_steps=5",
    "train.threads=1",
    "train.days_per_epoch=20",
]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return make_market(tmp_path_factory.mktemp("market"))


def test_variants_cover_the_issue_and_name_unknown_ones():
    names = list(variants(Config()))
    assert names == ["configured", "lookback_1", "no_graph", "no_rank_term", "target_z", "target_raw"]
    z = Config().with_overrides(["train.target=z"])
    assert "target_rank" in variants(z) and "target_z" not in variants(z)
    assert list(variants(Config(), ("no_graph",))) == ["configured", "no_graph"]
    with pytest.raises(ValueError, match="unknown ablation variant 'no_vsn'"):
        variants(Config(), ("no_vsn",))


def test_ablation_table_and_paired_t(market, tmp_path):
    cfg = Config().with_overrides(TINY)
    out = tmp_path / "ab"
    result = ablate(cfg, market["panel"], market["graph"], market["folds"], out, 2, ("lookback_1",))
    rows = result["variants"]
    assert list(rows) == ["configured", "lookback_1"] and result["seeds"] == 2
    assert "paired_t" not in rows["configured"]["5d"]
    # The configured row is the mean over seeds of each date's RankIC, as evaluate computes it.
    per_seed = [
        daily_ic(
            pl.concat(
                pl.read_parquet(out / "configured" / f"seed{s}" / f"fold{k}" / "predictions.parquet")
                for k in range(result["folds"])
            ).filter(pl.col("split") == "test")
        )
        for s in range(2)
    ]
    five = pl.concat(per_seed).filter(pl.col("horizon") == 5).group_by("date").agg(pl.col("rank_ic").mean())
    assert rows["configured"]["5d"]["rank_ic"] == pytest.approx(five["rank_ic"].mean())
    # Same dates on both sides: the paired mean difference is the difference of the means.
    diff = rows["lookback_1"]["5d"]["rank_ic"] - rows["configured"]["5d"]["rank_ic"]
    assert rows["lookback_1"]["5d"]["diff"] == pytest.approx(diff)
    assert json.loads((out / "ablation.json").read_text())["variants"]["lookback_1"]["overrides"] == [
        "model.lookback=1"
    ]
    # A second call reuses every finished run (a killed ablation resumes) and gives the same table.
    stamp = (out / "lookback_1" / "seed1" / "fold0" / "predictions.parquet").stat().st_mtime_ns
    again = ablate(cfg, market["panel"], market["graph"], market["folds"], out, 2, ("lookback_1",))
    assert again == result
    assert (out / "lookback_1" / "seed1" / "fold0" / "predictions.parquet").stat().st_mtime_ns == stamp


def test_ablate_command_prints_the_table(market, tmp_path, capsys):
    sets = [a for s in TINY for a in ("--set", s)]
    args = ["ablate", "--panel", str(market["panel"]), "--graph", str(market["graph"])]
    args += ["--folds", str(market["folds"]), "--seeds", "1", "--variants", "no_rank_term"]
    assert main([*args, *sets, "--out", str(tmp_path / "ab")]) == 0
    text = capsys.readouterr().out
    assert "| configured |" in text and "| no_rank_term |" in text and "paired t" in text
