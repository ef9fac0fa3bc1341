"""The evaluate stage end to end on tiny hand-built predictions: stitching, oracle, outputs, alarms, champion."""

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kabuflow import schema
from kabuflow.config import Config
from kabuflow.evaluate import attribution, evaluate, load_champion, promote, summary_table
from kabuflow.evaluate.metrics import METRICS
from kabuflow.evaluate.stitch import StitchError, check_unique
from kabuflow.manifest import ArtifactError, seal

HORIZONS = (1, 5, 10, 20)
# The toy market is far more predictable than equities: a 1-day RankIC of 0.17 is honest here.
TOY = Config().with_overrides(["evaluate.leak_rank_ic_1d=0.3"])
QUANTILES = ("q10", "q25", "q50", "q75", "q90")


@dataclass
class Market:
    """A toy market: the 1-day return realised over session s+2 is 0.3 × the signal of date s, plus noise."""

    dates: list[dt.date]
    codes: list[str]
    signal: np.ndarray  # [T, N]
    prices: np.ndarray  # [T, N]

    def labels(self, h: int) -> np.ndarray:
        """y_h(t) = P[t+1+h] / P[t+1] − 1, NaN where the window runs past the data."""
        y = np.full_like(self.prices, np.nan)
        t = self.prices.shape[0]
        y[: t - 1 - h] = self.prices[1 + h :] / self.prices[1 : t - h] - 1
        return y


def make_market(n_codes: int = 24, n_dates: int = 90, seed: int = 0) -> Market:
    rng = np.random.default_rng(seed)
    dates = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(n_dates)]
    signal = rng.standard_normal((n_dates, n_codes))
    ret = 0.01 * rng.standard_normal((n_dates, n_codes))
    ret[2:] += 0.003 * signal[:-2]
    return Market(dates, [f"{1300 + i}0" for i in range(n_codes)], signal, np.cumprod(1 + ret, axis=0))


def predictions(m: Market, model: str, fold: int, lo: int, hi: int, score: np.ndarray, split: str = "test"):
    """schema.PREDICTIONS rows for dates lo..hi-1, every code and horizon (score the same at every horizon)."""
    n, t = len(m.codes), hi - lo
    parts = [
        pl.DataFrame(
            {
                "date": np.repeat(np.array(m.dates[lo:hi], dtype="datetime64[D]"), n),
                "code": np.tile(m.codes, t),
                "score": score[lo:hi].ravel(),
                "label": m.labels(h)[lo:hi].ravel(),
            }
        ).with_columns(pl.lit(h).alias("horizon"))
        for h in HORIZONS
    ]
    df = pl.concat(parts).with_columns(
        pl.lit(model).alias("model"),
        pl.lit(fold).alias("fold"),
        pl.lit(split).alias("split"),
        pl.col("label").fill_nan(None),
        *(pl.lit(None, dtype=pl.Float64).alias(q) for q in QUANTILES),
    )
    return schema.cast(df, schema.PREDICTIONS, "test").select(list(schema.PREDICTIONS))


def write_dir(path: Path, *frames: pl.DataFrame) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    pl.concat(frames).write_parquet(path / "predictions.parquet")
    seal(path, "train-fold")
    return path


def write_oracle(m: Market, raw: Path) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    n, t = len(m.codes), len(m.dates)
    cols = {f"oracle_{h}d": m.signal.ravel() for h in HORIZONS}
    pl.DataFrame(
        {"Date": np.repeat(np.array(m.dates, dtype="datetime64[D]"), n), "Code": np.tile(m.codes, t), **cols}
    ).write_parquet(raw / "oracle.parquet")
    seal(raw, "ingest")
    return raw


def standard_run(root: Path, m: Market) -> tuple[list[Path], Path]:
    """atft (signal + noise) and ridge (noise) over two folds of 40 test dates each, plus the oracle."""
    rng = np.random.default_rng(1)
    good = m.signal + 1.5 * rng.standard_normal(m.signal.shape)
    noise = rng.standard_normal(m.signal.shape)
    dirs = []
    for k, (lo, hi) in enumerate([(5, 45), (45, 85)]):
        val = predictions(m, "atft", k, lo - 5, lo, good, split="val")
        dirs.append(write_dir(root / f"atft_{k}", val, predictions(m, "atft", k, lo, hi, good)))
        dirs.append(write_dir(root / f"ridge_{k}", predictions(m, "ridge", k, lo, hi, noise)))
    return dirs, write_oracle(m, root / "raw")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    m = make_market()
    dirs, raw = standard_run(root, m)
    (dirs[0] / "vsn_weights.json").write_text(json.dumps({"ret_5d": 0.6, "vol_20d": 0.4}))
    (dirs[2] / "vsn_weights.json").write_text(json.dumps({"ret_5d": 0.2, "vol_20d": 0.8}))
    (dirs[0] / "model.pt").write_bytes(b"weights-fold-0")
    seal(dirs[0], "train-fold")
    seal(dirs[2], "train-fold")
    seal(raw, "ingest", {"source": "synthetic", "tables": {"equities_bars_daily": {"rows": 9}}})
    feats = root / "features"
    feats.mkdir()
    seal(feats, "features", {"features": [{"name": "ret_5d", "family": "ret", "kind": "stock"}]})
    out = root / "run" / "evaluate"
    manifest = evaluate(TOY, [*dirs, feats], out, raw=raw)
    return {"root": root, "out": out, "m": m, "dirs": dirs, "raw": raw, "manifest": manifest}


def _strict_json(path: Path):
    def no_nan(token):
        raise AssertionError(f"{path} contains {token}: not valid JSON")

    return json.loads(path.read_text(), parse_constant=no_nan)


def test_metrics_json_follows_the_contract(run):
    out = run["out"]
    for name in (
        "metrics.json",
        "report.html",
        "report.md",
        "predictions.parquet",
        "gate.json",
        "daily_rank_ic.parquet",
    ):
        assert (out / name).is_file(), name
    met = _strict_json(out / "metrics.json")
    assert {"models", "oracle", "gate", "data"} <= set(met)
    assert set(met["models"]) == {"atft", "ridge"}
    for model in met["models"].values():
        assert set(model) == {"1d", "5d", "10d", "20d"}
        for s in model.values():
            assert set(s) == {*METRICS, "oracle_share"}
    assert set(met["oracle"]) == {"1d", "5d", "10d", "20d"}
    assert set(met["oracle"]["5d"]) == set(METRICS)
    assert met["gate"] == _strict_json(out / "gate.json")
    assert met["data"]["n_test_dates"] == 80 and met["data"]["n_codes"] == 24
    assert met["data"]["folds"] == [0, 1]
    assert met["data"]["hpo_trials"] == 1 and met["data"]["dsr_trials"] == 2  # 1 configuration × 2 models
    note = "DSR deflated for 2 trials (1 HPO trials × 2 models)"
    assert note in (out / "report.md").read_text() and note in (out / "report.html").read_text()


def test_scores_are_sane(run):
    met = json.loads((run["out"] / "metrics.json").read_text())
    atft, ridge, oracle = met["models"]["atft"]["1d"], met["models"]["ridge"]["1d"], met["oracle"]["1d"]
    assert oracle["rank_ic"] > atft["rank_ic"] > 0.05 > abs(ridge["rank_ic"])
    assert atft["rank_ic_tstat"] > 3 and atft["ls_sharpe_gross"] > atft["ls_sharpe_net"]
    assert 0 < atft["psr"] <= 1 and 0 <= atft["dsr"] <= atft["psr"]  # two trials: DSR deflates
    # the shuffled-label control is ≈ 0 for every model, the real ranking is not
    for model in ("atft", "ridge", "oracle"):
        assert abs(met["control"][model]["1d"]["rank_ic"]) < 0.04
    assert met["alarms"] == []  # the oracle's high 1-day RankIC is exempt from the leak alarm


def test_oracle_rows_and_share(run):
    stitched = pl.read_parquet(run["out"] / "predictions.parquet")
    n_model = stitched.filter(pl.col("model") == "atft").height
    assert stitched.filter(pl.col("model") == "oracle").height == n_model  # same cells, same labels
    daily = pl.read_parquet(run["out"] / "daily_rank_ic.parquet").filter(pl.col("horizon") == 5)
    mine = daily.filter(pl.col("model") == "atft")["rank_ic"].mean()
    theirs = daily.filter(pl.col("model") == "oracle")["rank_ic"].mean()
    met = json.loads((run["out"] / "metrics.json").read_text())
    assert met["models"]["atft"]["5d"]["oracle_share"] == pytest.approx(mine / theirs)
    assert stitched.filter(pl.col("split") != "test").height == 0  # validation rows never evaluated


def test_report_inputs_vsn_manifests_and_model_files(run):
    met = json.loads((run["out"] / "metrics.json").read_text())
    assert met["variable_selection"]["atft"] == pytest.approx({"vol_20d": 0.6, "ret_5d": 0.4})
    assert met["data"]["raw"]["tables"] == {"equities_bars_daily": 9}
    assert met["data"]["features"]["n_features"] == 1
    assert (run["out"] / "model" / "fold_0" / "model.pt").read_bytes() == b"weights-fold-0"
    assert "model/fold_0/model.pt" in met["gate"]["model_files"]
    assert run["manifest"]["gate"] == met["gate"]["decision"]
    headline = run["manifest"]["headline"]  # the flat numbers the KFP component logs as Metrics
    assert headline["atft_5d_rank_ic"] == pytest.approx(met["models"]["atft"]["5d"]["rank_ic"])
    assert headline["gate_promote"] == 1.0 and headline["alarms"] == 0.0


def test_summary_table(run):
    text = summary_table(json.loads((run["out"] / "metrics.json").read_text()))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["model", "1d", "RankIC", "SR"]
    assert [ln.split()[0] for ln in lines[2:5]] == ["atft", "ridge", "oracle"]
    assert "gate: PROMOTE" in text  # first run, no champion, no alarm


def test_two_folds_predicting_one_date_is_an_error(tmp_path):
    m = make_market(n_codes=6, n_dates=40)
    a = write_dir(tmp_path / "a", predictions(m, "atft", 0, 0, 20, m.signal))
    b = write_dir(tmp_path / "b", predictions(m, "atft", 1, 19, 30, m.signal))
    with pytest.raises(
        StitchError, match=r"model 'atft' \(1d\): date 2024-01-20 is predicted by folds \[0, 1\]"
    ):
        evaluate(Config(), [a, b], tmp_path / "out")
    with pytest.raises(StitchError, match="predicted 2 times"):
        check_unique(pl.concat([predictions(m, "atft", 0, 0, 3, m.signal)] * 2))


def test_bad_predictions_are_rejected_by_name(tmp_path):
    m = make_market(n_codes=6, n_dates=30)
    bad = predictions(m, "atft", 0, 0, 20, m.signal).with_columns(pl.lit("x").alias("fold"))
    d = write_dir(tmp_path / "a", bad)
    with pytest.raises(schema.SchemaError, match="'fold'"):
        evaluate(Config(), [d], tmp_path / "out")
    with pytest.raises(ArtifactError, match="no manifest.json"):
        evaluate(Config(), [(tmp_path / "elsewhere").mkdir() or tmp_path / "elsewhere"], tmp_path / "out")
    with pytest.raises(ArtifactError, match="no such stage output directory"):
        evaluate(Config(), [tmp_path / "nowhere"], tmp_path / "out")


def test_label_peeking_model_raises_the_alarm_and_is_not_promoted(tmp_path):
    m = make_market(n_codes=20, n_dates=60)
    peek = np.nan_to_num(m.labels(1))  # the realised 1-day label itself: the future got in
    d = write_dir(tmp_path / "atft", predictions(m, "atft", 0, 0, 55, peek))
    evaluate(Config(), [d], tmp_path / "run" / "evaluate")
    met = json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())
    kinds = {(a["kind"], a["model"], a["horizon"]) for a in met["alarms"]}
    assert ("leak_rank_ic_1d", "atft", "1d") in kinds
    assert met["gate"]["decision"] == "reject"
    assert any("leakage alarm" in r for r in met["gate"]["reasons"])
    assert "LEAKAGE ALARM" in (tmp_path / "run" / "evaluate" / "report.html").read_text()


def test_second_run_meets_the_promoted_champion(run, tmp_path):
    champion = promote(run["out"])  # the first run promoted; its gate.json names the default champion URI
    assert Path(run["out"]).parent.joinpath("models", "champion", "CURRENT.json").is_file()
    loaded = load_champion(str(Path(run["out"]).parent / "models" / "champion"))
    assert loaded is not None and loaded.version == champion["version"]
    again = run["out"].parent / "evaluate_again"
    evaluate(TOY, run["dirs"], again, raw=run["raw"])
    gate = json.loads((again / "gate.json").read_text())
    # the very same predictions: zero improvement, an identical daily series → not better, no promotion
    assert gate["champion_version"] == champion["version"]
    assert gate["difference"] == pytest.approx(0.0) and gate["decision"] == "reject"
    daily = pl.read_parquet(again / "daily_rank_ic.parquet").filter(
        (pl.col("model") == "atft") & (pl.col("horizon") == 5)
    )
    assert gate["n_overlap"] == daily.height == 79  # the last test date's 5-day label is unfinished
    assert gate["t_stat"] is None  # a zero-variance difference has no t: NaN, written as null


def test_alarm_rules_by_hand():
    from kabuflow.evaluate import scorecard

    def stats(**kw):
        base = {"rank_ic": 0.03, "icir": 0.2, "rank_icir": 0.2, "ls_sharpe_gross": 2.0, "n_days": 500}
        return {**base, **kw}

    card = {
        "atft": {
            "1d": stats(rank_ic=0.15),
            "5d": stats(oracle_share=1.6, oracle_excess_tstat=4.0),
            "10d": stats(oracle_share=1.6, oracle_excess_tstat=1.0),  # better than the oracle by luck
        },
        # a ranking that never varies (IC std 0 → no ICIR) with a huge Sharpe: copied from the labels
        "ridge": {"1d": stats(icir=float("nan"), rank_icir=float("nan"), ls_sharpe_gross=40.0)},
        "oracle": {"1d": stats(rank_ic=0.3)},  # the oracle may rank this well
    }
    control = {"ridge": {"1d": {"rank_ic": 0.2, "rank_ic_tstat": 9.0, "n_dates": 500}}}
    alarms = scorecard.alarms(card, control, leak_rank_ic_1d=0.10, labels_disagree=3)
    kinds = sorted((a["kind"], a["model"], a["horizon"]) for a in alarms)
    assert kinds == [
        ("beats_oracle", "atft", "5d"),
        ("control_not_null", "ridge", "1d"),
        ("labels_disagree", "*", "*"),
        ("leak_rank_ic_1d", "atft", "1d"),
        ("sharpe_exceeds_icir", "ridge", "1d"),
    ]
    # ICIR 0.2 per day allows 1.25 · 0.2 · √252 ≈ 3.97 annualised: 3.9 is fine; 9 exceeds it by
    # (9 − 3.97)/√252 = 0.317 per day, more than 3 standard errors of a daily Sharpe over 500 days (3 · 0.048)
    assert scorecard.alarms({"m": {"5d": stats(ls_sharpe_gross=3.9)}}, {}, 0.1, 0) == []
    assert [a["kind"] for a in scorecard.alarms({"m": {"5d": stats(ls_sharpe_gross=9.0)}}, {}, 0.1, 0)] == [
        "sharpe_exceeds_icir"
    ]


def test_a_diverged_fold_is_an_error_not_a_silent_gap(tmp_path):
    """NaN scores (a fold whose training diverged) must stop evaluation, naming model and fold."""
    m = make_market(n_codes=6, n_dates=30)
    score = np.random.default_rng(0).normal(size=(30, 6))
    score[20:] = np.nan
    good = write_dir(tmp_path / "f0", predictions(m, "atft", 0, 0, 20, score))
    bad = write_dir(tmp_path / "f1", predictions(m, "atft", 1, 20, 30, score))
    with pytest.raises(StitchError, match=r"model 'atft' fold 1: 240 test predictions have no finite score"):
        evaluate(Config(), [good, bad], tmp_path / "out")


def test_attribution_of_one_day_by_hand():
    """Spearman with average ranks on 4 names: d = (0, 1, -1, 0) gives 1 - 6·2/60 = 0.8; a tie at the
    bottom gives sqrt(0.9); a constant part (a switched-off signal) has nothing to track: null."""
    day = dt.date(2024, 1, 2)
    codes = ["13010", "13020", "13030", "13040"]
    oracle = pl.DataFrame(
        {
            "date": [day] * 4,
            "code": codes,
            "oracle_5d": [4.0, 3.0, 2.0, 1.0],
            "part_reversal_5d": [1.0, 3.0, 2.0, 4.0],
            "part_pead_5d": [0.0, 0.0, 1.0, 2.0],
            "part_leadlag_5d": [0.0] * 4,
        }
    )
    frame = pl.DataFrame(
        {"model": ["atft"] * 4, "horizon": [5] * 4, "date": [day] * 4, "code": codes, "score": [1.0, 2, 3, 4]}
    )
    got = attribution.signal_attribution(frame, oracle)
    assert got["atft"]["5d"] == pytest.approx(
        {"reversal": 0.8, "pead": np.sqrt(0.9), "leadlag": None, "oracle": -1.0}
    )
    assert (
        attribution.signal_attribution(
            frame, oracle.drop("part_reversal_5d", "part_pead_5d", "part_leadlag_5d")
        )
        == {}
    )


def _spearman_by_day(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of the Spearman correlation of a[t] and b[t] (no ties in these draws)."""
    ra, rb = a.argsort(axis=1).argsort(axis=1), b.argsort(axis=1).argsort(axis=1)
    return float(np.mean([np.corrcoef(x, y)[0, 1] for x, y in zip(ra, rb, strict=True)]))


def test_signal_attribution_end_to_end(tmp_path):
    """A model whose score is the lead-lag part tracks it exactly (1.0), its negation at -1.0; the other
    part and the oracle total at their hand-computed values; a constant score at 0, as in the RankIC."""
    m = make_market(n_codes=12, n_dates=40)
    rng = np.random.default_rng(5)
    leadlag, reversal = rng.standard_normal((2, 40, 12))
    n, t = len(m.codes), len(m.dates)
    raw = tmp_path / "raw"
    raw.mkdir()
    pl.DataFrame(
        {
            "Date": np.repeat(np.array(m.dates, dtype="datetime64[D]"), n),
            "Code": np.tile(m.codes, t),
            **{f"oracle_{h}d": (leadlag + reversal).ravel() for h in HORIZONS},
            "part_leadlag_5d": leadlag.ravel(),
            "part_reversal_5d": reversal.ravel(),
        }
    ).write_parquet(raw / "oracle.parquet")
    seal(raw, "ingest")
    scores = {"atft": leadlag, "ridge": -leadlag, "momentum_60d": np.ones((t, n))}
    dirs = [write_dir(tmp_path / k, predictions(m, k, 0, 0, 35, s)) for k, s in scores.items()]
    out = tmp_path / "evaluate"
    evaluate(TOY, dirs, out, raw=raw)
    got = _strict_json(out / "metrics.json")["signal_attribution"]
    assert list(got) == ["atft", "momentum_60d", "oracle", "ridge"]  # sorted keys: written by write_json
    assert {h for hs in got.values() for h in hs} == {"5d"}  # parts only where the oracle has them
    lead, total = leadlag[:35], (leadlag + reversal)[:35]
    assert got["atft"]["5d"] == pytest.approx(
        {
            "leadlag": 1.0,
            "reversal": _spearman_by_day(lead, reversal[:35]),
            "oracle": _spearman_by_day(lead, total),
        }
    )
    assert got["ridge"]["5d"]["leadlag"] == pytest.approx(-1.0)
    assert got["ridge"]["5d"]["oracle"] == pytest.approx(-got["atft"]["5d"]["oracle"])
    assert got["momentum_60d"]["5d"] == {"leadlag": 0.0, "reversal": 0.0, "oracle": 0.0}
    assert got["oracle"]["5d"]["oracle"] == pytest.approx(1.0)
    assert 0.5 < got["atft"]["5d"]["oracle"] < 0.85  # corr(x, x + y) = 1/√2 for independent draws
    md = (out / "report.md").read_text()
    assert "## Signal attribution" in md and "| model | horizon | leadlag | reversal | oracle total |" in md
    assert "| atft | 5d | 1 | " in md and "| ridge | 5d | -1 | " in md
    assert "<h2>Signal attribution</h2>" in (out / "report.html").read_text()


def test_no_part_columns_no_attribution(run):
    """The standard run's oracle has totals only (an older raw directory): nothing about attribution."""
    met = _strict_json(run["out"] / "metrics.json")
    assert "signal_attribution" not in met and "oracle" in met
    assert "Signal attribution" not in (run["out"] / "report.md").read_text()
    assert "Signal attribution" not in (run["out"] / "report.html").read_text()
