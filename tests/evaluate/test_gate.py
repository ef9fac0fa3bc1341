"""The promotion gate: first run, worse, better-but-insignificant, better-and-significant; atomic promotion."""

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

# A real S3 server (SeaweedFS) from the storage tests' fixtures: on the cluster the champion lives in object
# storage, so promotion and the next run's lookup go through kabuflow.storage, not the filesystem.
from kabuflow.config import Config
from kabuflow.evaluate import gate
from kabuflow.manifest import seal

EV = Config().evaluate  # atft rank_ic at 5d, margin 0.002, alpha 0.10
DATES = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(100)]


def daily(rank_ic: np.ndarray, dates=DATES) -> pl.DataFrame:
    n = len(rank_ic)
    return pl.DataFrame(
        {
            "model": ["atft"] * n,
            "horizon": pl.Series([5] * n, dtype=pl.Int32),
            "date": dates[:n],
            "rank_ic": rank_ic,
        }
    )


def scored(rank_ic: float, tstat: float = 4.0, alarms=()) -> dict:
    return {"models": {"atft": {"5d": {"rank_ic": rank_ic, "rank_ic_tstat": tstat}}}, "alarms": list(alarms)}


def champion(series: np.ndarray | None, rank_ic: float, tstat: float = 4.0) -> gate.Champion:
    return gate.Champion(
        uri="mem",
        version="v1",
        metrics=scored(rank_ic, tstat),
        daily=None if series is None else daily(series),
    )


BASE = 0.03 + 0.05 * np.sin(np.arange(100))  # a champion's daily RankIC: mean ≈ 0.03, sd ≈ 0.035


def test_first_run_promotes():
    g = gate.decide(EV, scored(0.04), daily(BASE + 0.01), None, "/models/champion")
    assert g["decision"] == "promote" and g["promote"] is True
    assert "first run" in g["reasons"][0] and g["champion"] is None


def test_worse_challenger_is_rejected():
    g = gate.decide(
        EV, scored(float(BASE.mean()) - 0.01), daily(BASE - 0.01), champion(BASE, float(BASE.mean())), "u"
    )
    assert g["decision"] == "reject"
    assert g["difference"] == pytest.approx(-0.01)
    assert any("does not beat the margin" in r for r in g["reasons"])
    assert g["p_value"] > 0.5  # the paired test ran, and points the other way


def test_better_but_insignificant_is_rejected():
    # +0.005 on average (above the 0.002 margin) but with noise of sd 0.1 around it: t ≈ 0.5
    noise = np.random.default_rng(1).standard_normal(100)
    diff = 0.005 + 0.1 * (noise - noise.mean())
    mine = BASE + diff
    g = gate.decide(EV, scored(float(mine.mean())), daily(mine), champion(BASE, float(BASE.mean())), "u")
    assert g["difference"] == pytest.approx(0.005)
    assert g["n_overlap"] == 100 and g["p_value"] > EV.gate_alpha
    assert g["decision"] == "reject" and "not significant" in g["reasons"][-1]


def test_better_and_significant_is_promoted():
    rng = np.random.default_rng(0)
    mine = BASE + 0.01 + 0.005 * rng.standard_normal(100)
    g = gate.decide(EV, scored(float(mine.mean())), daily(mine), champion(BASE, float(BASE.mean())), "u")
    assert g["t_stat"] > 5 and g["p_value"] < 1e-6
    assert g["decision"] == "promote"
    assert g["test"].startswith("paired")


def test_without_overlap_the_recorded_stats_are_compared():
    later = [d + dt.timedelta(days=365) for d in DATES]
    theirs = gate.Champion(uri="u", version="v0", metrics=scored(0.02, tstat=2.0), daily=daily(BASE, later))
    # se = rank_ic / t: 0.01 for the champion, 0.005 for us; z = (0.05 − 0.02) / √(0.01² + 0.005²) = 2.683
    g = gate.decide(EV, scored(0.05, tstat=10.0), daily(BASE), theirs, "u")
    assert g["test"].startswith("unpaired") and g["n_overlap"] == 0
    assert g["t_stat"] == pytest.approx(0.03 / np.sqrt(0.01**2 + 0.005**2))
    assert g["decision"] == "promote"


def test_an_alarm_blocks_promotion_even_on_a_first_run():
    alarm = {"kind": "leak_rank_ic_1d", "model": "atft", "horizon": "1d", "message": "atft 1d: too good"}
    g = gate.decide(EV, scored(0.5, alarms=[alarm]), daily(BASE), None, "u")
    assert g["decision"] == "reject" and "atft 1d: too good" in g["reasons"][0]


def test_lower_is_better_metric_flips_the_sign():
    ev = Config().with_overrides(["evaluate.gate_metric=max_drawdown", "evaluate.gate_margin=0.01"]).evaluate
    mine = {"models": {"atft": {"5d": {"max_drawdown": 0.10, "rank_ic": 0.05, "rank_ic_tstat": 10.0}}}}
    theirs = gate.Champion("u", "v", {"models": {"atft": {"5d": {"max_drawdown": 0.20}}}}, None)
    g = gate.decide(ev, mine, daily(BASE), theirs, "u")
    assert g["difference"] == pytest.approx(0.10)  # a smaller drawdown is the improvement


def _challenger(tmp_path, decision: bool, value: float):
    src = tmp_path / f"eval_{value}"
    (src / "model" / "fold_0").mkdir(parents=True)
    (src / "model" / "fold_0" / "model.pt").write_bytes(b"w" + str(value).encode())
    (src / "metrics.json").write_text(json.dumps(scored(value)))
    daily(BASE).write_parquet(src / "daily_rank_ic.parquet")
    g = {
        "promote": decision,
        "reasons": ["because"],
        "champion_uri": str(tmp_path / "champion"),
        "challenger": value,
    }
    (src / "gate.json").write_text(json.dumps(g))
    seal(src, "evaluate")
    return src


def test_promote_writes_a_version_then_switches_the_pointer(tmp_path):
    first = gate.promote(_challenger(tmp_path, True, 0.03))
    uri = str(tmp_path / "champion")
    loaded = gate.load_champion(uri)
    assert loaded.version == first["version"] and loaded.metrics == scored(0.03)
    assert loaded.daily["rank_ic"].to_list() == pytest.approx(BASE.tolist())
    stored = tmp_path / "champion" / "versions" / first["version"] / "model" / "fold_0" / "model.pt"
    assert stored.read_bytes() == b"w0.03"
    assert sorted(first["files"]) == [
        "daily_rank_ic.parquet",
        "gate.json",
        "metrics.json",
        "model/fold_0/model.pt",
    ]

    second = gate.promote(_challenger(tmp_path, True, 0.05))
    assert second["previous"] == first["version"]
    assert gate.load_champion(uri).metrics == scored(0.05)
    assert (
        tmp_path / "champion" / "versions" / first["version"]
    ).is_dir()  # kept: rollback is a pointer edit


def test_promote_refuses_a_rejected_challenger(tmp_path):
    src = _challenger(tmp_path, False, 0.01)
    with pytest.raises(gate.GateError, match="says reject: because"):
        gate.promote(src)
    assert gate.load_champion(str(tmp_path / "champion")) is None
    gate.promote(src, force=True)
    assert gate.load_champion(str(tmp_path / "champion")).metrics == scored(0.01)


def test_a_hand_placed_champion_and_the_default_location(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "metrics.json").write_text(json.dumps(scored(0.02)))
    found = gate.load_champion(str(tmp_path / "mine"))
    assert found.version == "unversioned" and found.daily is None
    cfg = Config()
    assert gate.champion_uri(cfg, tmp_path / "run" / "evaluate") == str(
        tmp_path / "run" / "models" / "champion"
    )
    custom = cfg.with_overrides(["evaluate.champion_uri=s3://bucket/champion"])
    assert gate.champion_uri(custom, tmp_path) == "s3://bucket/champion"


def test_promote_and_load_through_s3(s3, tmp_path):
    uri = f"{s3}/gate-test/champion"
    assert gate.load_champion(uri) is None
    first = gate.promote(_challenger(tmp_path, True, 0.03), champion_uri=uri)
    loaded = gate.load_champion(uri)
    assert loaded.version == first["version"] and loaded.metrics == scored(0.03)
    assert loaded.daily["rank_ic"].to_list() == pytest.approx(BASE.tolist())
    second = gate.promote(_challenger(tmp_path, True, 0.05), champion_uri=uri)
    assert second["previous"] == first["version"]
    assert gate.load_champion(uri).metrics == scored(0.05)
    g = gate.decide(EV, scored(0.06), daily(BASE + 0.03), gate.load_champion(uri), uri)
    assert g["champion_version"] == second["version"] and g["test"].startswith("paired")
