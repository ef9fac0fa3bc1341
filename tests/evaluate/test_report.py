"""The report renders in a real headless browser: images decode, plots have plot-like pixels, alarms are loud."""

import datetime as dt
import json
import re
import shutil
import subprocess

import numpy as np
import polars as pl
import pytest
from matplotlib import image

from kabuflow.config import Config
from kabuflow.evaluate import caveats, gate, metrics, report, scorecard, stitch

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2400",
]
MODELS = {"atft": 0.05, "ridge": 0.0, "oracle": 0.08}  # mean daily RankIC of each hand-made series
DATES = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(120)]


def frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Hand-made daily RankIC, daily P&L and decile frames in the shapes the stage produces."""
    rng = np.random.default_rng(0)
    daily, pnl, dec = [], [], []
    for model, mu in MODELS.items():
        for h in (1, 5, 10, 20):
            ric = mu + 0.1 * rng.standard_normal(len(DATES))
            n = len(DATES)
            base = {"model": [model] * n, "horizon": pl.Series([h] * n, dtype=pl.Int32), "date": DATES}
            fold = pl.Series([0] * 60 + [1] * 60, dtype=pl.Int32)
            daily.append(pl.DataFrame({**base, "fold": fold, "n": [50] * n, "ic": ric, "rank_ic": ric}))
            gross = mu / 10 + 0.004 * rng.standard_normal(n)
            pnl.append(pl.DataFrame({**base, "gross": gross, "net": gross - 0.0004, "turnover": [0.3] * n}))
            buckets = np.arange(10)
            dec.append(
                pl.DataFrame(
                    {
                        "model": [model] * 10,
                        "horizon": pl.Series([h] * 10, dtype=pl.Int32),
                        "bucket": buckets,
                        "mean_return": mu * (buckets - 4.5) / 100,
                    }
                )
            )
    return pl.concat(daily), pl.concat(pnl), pl.concat(dec)


def scored(daily: pl.DataFrame, pnl: pl.DataFrame, dec: pl.DataFrame, alarm: bool) -> dict:
    card = scorecard.build(daily, pnl, hpo_trials=2)
    models, oracle, detail = scorecard.public(card)
    result = {"models": models, "oracle": oracle, "detail": detail}
    result["alarms"] = (
        [
            {
                "kind": "leak_rank_ic_1d",
                "model": "atft",
                "horizon": "1d",
                "message": "atft 1d: RankIC 0.4 (look-ahead?)",
            }
        ]
        if alarm
        else []
    )
    result["control"] = {"atft": {"1d": {"rank_ic": 0.001, "rank_ic_tstat": 0.2, "n_dates": 120}}}
    result["folds"] = metrics.fold_table(daily, pnl)
    result["deciles"] = metrics.decile_summary(dec)
    result["variable_selection"] = {"atft": {"ret_5d": 0.5, "vol_20d": 0.3, "mkt_ret_1d": 0.2}}
    result["data"] = {
        "test_start": "2024-01-01",
        "test_end": "2024-04-29",
        "n_test_dates": 120,
        "raw": {"source": "synthetic"},
    }
    result["gate"] = gate.decide(Config().evaluate, result, daily, None, "/tmp/champion")
    return result


def chromium(page, tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="chromium not installed (make sysdeps installs it)")
def test_report_renders_in_chromium(tmp_path):
    daily, pnl, dec = frames()
    page = tmp_path / "report.html"
    page.write_text(report.render_html(scored(daily, pnl, dec, alarm=True), daily, pnl, dec))

    dom = chromium(page, tmp_path, "--dump-dom").stdout
    check = json.loads(re.search(r'<pre id="image-check"[^>]*>(.*?)</pre>', dom, re.S).group(1))
    by_id = {img["id"]: img for img in check}
    assert {"fig-pnl", "fig-ric", "fig-deciles", "fig-vsn-atft"} <= set(by_id)
    assert all(img["naturalWidth"] > 100 and img["naturalHeight"] > 100 for img in check)  # every PNG decoded

    shot = tmp_path / "shot.png"
    chromium(page, tmp_path, f"--screenshot={shot}")
    px = (image.imread(shot)[..., :3] * 255).round().astype(int)  # [H, W, 3]
    assert px.shape[:2] == (2400, 1280)

    # the cumulative P&L plot: its box in the page must hold plot-like pixels, not a blank or broken image
    r = by_id["fig-pnl"]
    top, left = int(r["top"]), int(r["left"])
    assert top + r["height"] < 2400, "the first plot should be visible without scrolling"
    box = px[top : top + int(r["height"]), left : left + int(r["width"])]
    non_white = (box < 245).any(axis=-1).mean()
    colours = len(np.unique(box.reshape(-1, 3) // 8, axis=0))
    blue = (np.abs(box - np.array([31, 119, 180])).sum(axis=-1) < 60).sum()  # matplotlib C0: the atft line
    assert non_white > 0.03 and colours > 40 and blue > 300, (non_white, colours, blue)

    # the leakage alarm banner is loud: a block of #c62828 red near the top of the page
    red = (np.abs(px[:900] - np.array([198, 40, 40])).sum(axis=-1) < 30).sum()
    assert red > 20_000


def test_markdown_and_summary_table():
    daily, pnl, dec = frames()
    met = scored(daily, pnl, dec, alarm=False)
    md = report.render_markdown(met)
    assert "| model | horizon | RankIC |" in md
    assert "**Gate: PROMOTE**" in md and "No leakage alarms." in md
    assert md.count("\n| atft |") == 4 and md.count("\n| oracle |") == 4
    table = report.summary_table(json.loads(json.dumps(met, default=str)))  # as read back from metrics.json
    rows = {ln.split()[0]: ln.split()[1:] for ln in table.splitlines()[2:5]}
    assert list(rows) == ["atft", "ridge", "oracle"]
    assert rows["atft"][0] == f"{met['models']['atft']['1d']['rank_ic']:.4f}"
    assert rows["oracle"][2] == "—"  # the oracle has no share of itself


def test_report_without_oracle_or_weights():
    daily, pnl, dec = frames()
    keep = pl.col("model") != "oracle"
    daily, pnl, dec = daily.filter(keep), pnl.filter(keep), dec.filter(keep)
    met = scored(daily, pnl, dec, alarm=False)
    met["oracle"], met["variable_selection"] = None, {}
    page = report.render_html(met, daily, pnl, dec)
    assert "No variable-selection weights were provided." in page
    assert "No leakage alarms" in page and page.count("<img ") == 3


def test_factor_share_names_the_best_factor_per_horizon():
    from kabuflow.evaluate.factors import FACTORS, factor_share
    from kabuflow.evaluate.report import render_markdown
    from kabuflow.train.baselines import FACTORS as TRAINED

    assert set(FACTORS) == set(TRAINED)  # evaluate knows every factor train-fold can score
    models = {
        "atft": {"5d": {"rank_ic": 0.06}, "20d": {"rank_ic": 0.08}},
        "low_vol_60d": {"5d": {"rank_ic": 0.045}, "20d": {"rank_ic": 0.092}},
        "reversal_5d": {"5d": {"rank_ic": 0.05}, "20d": {"rank_ic": 0.01}},
        "lightgbm": {"5d": {"rank_ic": 0.07}},  # fitted: not a factor
    }
    got = factor_share(models, "atft")
    assert got["5d"]["factor"] == "reversal_5d" and got["5d"]["share"] == pytest.approx(0.05 / 0.06)
    assert got["20d"]["factor"] == "low_vol_60d" and got["20d"]["share"] == pytest.approx(1.15)
    assert factor_share({"atft": models["atft"]}, "atft") == {}
    md = render_markdown({"models": models, "factor_share": got})
    assert "## Zero-parameter factors" in md and "| 20d | low_vol_60d | 0.092 | 0.08 | 1.15 |" in md


def test_more_hpo_trials_deflate_the_sharpe_more():
    """The deflated Sharpe is a PSR against the expected best of hpo_trials × models zero-skill trials."""
    daily, pnl, _ = frames()
    dsr = {k: scorecard.build(daily, pnl, hpo_trials=k)["atft"]["5d"] for k in (1, 20)}
    models = len([m for m in scorecard.build(daily, pnl, 1) if m != "oracle"])
    assert dsr[1]["dsr_trials"] == models and dsr[20]["dsr_trials"] == 20 * models
    assert dsr[20]["dsr_sr0_daily"] > dsr[1]["dsr_sr0_daily"] and dsr[20]["dsr"] < dsr[1]["dsr"]
    assert scorecard.dsr_trials(0, 3) == 3  # no search counts as one configuration


def test_data_caveats_head_the_report():
    daily, pnl, dec = frames()
    met = scored(daily, pnl, dec, alarm=False)
    raw = {
        "guard": {
            "mode": "repair",
            "counts": {"missed_split": 2, "bad_print": 5, "level_shift": 0},
            "rows_masked": 6,
        },
        "survivorship": {"codes": 2463, "codes_ending_early": 0, "survivors_only": True},
        "master": {"mode": "snapshot", "lookahead_before": "2024-03-29", "bars_before_snapshot": 4_000_000},
    }
    met["data"]["raw"] = stitch.summarise_manifest({"source": "files", "tables": {}, **raw})
    page, md = report.render_html(met, daily, pnl, dec), report.render_markdown(met)
    for text in (page, md):
        assert "Survivors only: none of the 2463 codes stops trading" in text and "(0 end early)" in text
        assert "Master look-ahead: one master snapshot (2024-03-29)" in text
        assert "missed_split 2, bad_print 5, level_shift 0; 6 bars masked" in text
    assert page.index("Survivors only") < page.index("Leakage alarms")  # in the header, above everything
    met["data"]["raw"] = stitch.summarise_manifest(
        {
            "survivorship": {"codes": 400, "codes_ending_early": 31, "survivors_only": False},
            "master": {"mode": "history"},
        }
    )
    assert caveats.caveats(met["data"]) == ["Survivorship: 31 of 400 codes end early (kept)."]
