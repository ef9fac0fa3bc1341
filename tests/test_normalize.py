"""normalize: hand-computed robust z / rank-gauss / trailing market z, masks, labels, layout, leakage."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from kabuflow.config import Config, ConfigError
from kabuflow.manifest import ArtifactError, seal
from kabuflow.normalize import load_panel, normalize
from kabuflow.schema import SchemaError

CODES = ["10010", "10020", "10030"]
DATES = [dt.date(2024, 1, 4) + dt.timedelta(days=i) for i in range(10)]
MKT = [1.0, 2.0, 4.0, 7.0, 11.0, 16.0, 22.0, 29.0, 37.0, 46.0]
MANIFEST = [
    {"name": "ret_1d", "family": "ret", "kind": "stock"},
    {"name": "val_x", "family": "val", "kind": "stock"},
    {"name": "mkt_x", "family": "mkt", "kind": "market"},
    {"name": "flag_x", "family": "flag", "kind": "flag"},
]


def _val_x(t: int) -> list[float | None]:
    special = {1: [1.0, 1.0, 4.0], 2: [1.0, None, 3.0], 3: [0.0, 10.0, 100.0]}
    return special.get(t, [1.0 * (t + 1), 2.0 * (t + 1), 4.0 * (t + 1)])


def _rows() -> list[dict]:
    rows = []
    for t, d in enumerate(DATES):
        for i, code in enumerate(CODES):
            if t == 9 and i == 2:
                continue  # no row at all: not valid
            rows.append(
                {
                    "date": d,
                    "code": code,
                    "s33": ["3050", "3050", "9050"][i],
                    "mkt": ["prime", "", "growth"][i],  # "" = unknown market
                    "ret_1d": None if (t == 5 and i == 1) else [0.01, -0.02, 0.0][i] * (1 + t % 3),
                    "val_x": None if (t == 5 and i == 1) else _val_x(t)[i],
                    "mkt_x": None if (t == 4 and i == 0) else MKT[t],
                    "flag_x": None if t == 6 else float((t + i) % 2),
                    **{
                        f"y_{h}d": (None if t >= 10 - h else [0.01, 0.02, 0.06][i] * h)
                        for h in (1, 5, 10, 20)
                    },
                }
            )
    return rows


def _write(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    schema = {"date": pl.Date, "code": pl.String, "s33": pl.String, "mkt": pl.String}
    schema |= {f["name"]: pl.Float32 for f in MANIFEST} | {f"y_{h}d": pl.Float64 for h in (1, 5, 10, 20)}
    df = pl.DataFrame(rows, schema=schema).sort("code", "date")
    df.write_parquet(path / "features.parquet")
    seal(path, "features", {"features": MANIFEST, "families_absent": []})
    return path


def _cfg(**over) -> Config:
    base = {"normalize.market_window": 3, "normalize.market_min_periods": 2, "normalize.clip": 5.0} | over
    return Config().with_overrides([f"{k}={v}" for k, v in base.items()])


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    root = tmp_path_factory.mktemp("norm")
    normalize(_cfg(), _write(root / "features", _rows()), root / "panel")
    return load_panel(root / "panel")


def test_layout_and_meta(panel):
    assert panel.X.shape == (10, 3, 4) and panel.X.dtype == np.float32
    assert panel.Y.shape == panel.Y_raw.shape == (10, 3, 4)
    assert panel.valid.dtype == bool and panel.sector.dtype == np.int16
    assert isinstance(panel.X, np.memmap)
    assert panel.codes == CODES and panel.dates == DATES
    assert panel.feature_names == ["ret_1d", "val_x", "mkt_x", "flag_x"]
    assert panel.meta["feature_kinds"] == ["stock", "stock", "market", "flag"]
    assert panel.meta["sectors"] == ["3050", "9050"] and panel.meta["markets"] == ["growth", "prime"]
    assert panel.horizons == [1, 5, 10, 20] and "code_version" in panel.meta


def test_robust_z_mad_fallback_clip_and_mask(panel):
    x = panel.X[:, :, 1]
    np.testing.assert_allclose(x[0], [-1 / 1.4826, 0.0, 2 / 1.4826], atol=1e-6)  # med 2, MAD 1
    np.testing.assert_allclose(x[1], [0.0, 0.0, 3 / 1.2533141], atol=1e-6)  # MAD 0 -> mean AD
    np.testing.assert_allclose(x[2], [-1 / 1.4826, 0.0, 1 / 1.4826], atol=1e-6)  # B masked -> 0
    np.testing.assert_allclose(x[3], [-10 / 14.826, 0.0, 5.0], atol=1e-6)  # 90/14.826 clipped
    np.testing.assert_allclose(x[7], x[0], atol=1e-6)  # scale-free


def test_market_trailing_z_uses_strictly_past_sessions(panel):
    m = panel.X[:, 0, 2]
    assert m[0] == 0.0 and m[1] == 0.0  # fewer than min_periods past values
    assert m[2] == pytest.approx((4 - 1.5) / math.sqrt(0.5), abs=1e-5)
    assert m[3] == pytest.approx((7 - 7 / 3) / np.std([1, 2, 4], ddof=1), abs=1e-5)
    assert m[4] == 0.0  # this stock's value is missing that day: masked
    assert panel.X[4, 1, 2] == pytest.approx((11 - 13 / 3) / np.std([2, 4, 7], ddof=1), abs=1e-5)
    assert panel.X[9, 1, 2] == pytest.approx((46 - 88 / 3) / np.std([22, 29, 37], ddof=1), abs=1e-5)
    np.testing.assert_array_equal(panel.X[5, :, 2], panel.X[5, 0, 2])


def test_flags_valid_returns_sector(panel):
    np.testing.assert_array_equal(panel.X[0, :, 3], [0, 1, 0])
    np.testing.assert_array_equal(panel.X[6, :, 3], [0, 0, 0])  # null flag -> 0
    assert not panel.valid[9, 2] and not panel.valid[5, 1]  # no row; no stock feature
    assert panel.valid[2, 1]  # 1 of 2 stock features: share 0.5 >= min_valid_share
    assert panel.valid.sum() == 28
    np.testing.assert_array_equal(panel.X[9, 2], 0.0)
    np.testing.assert_allclose(panel.R[1], np.log1p([0.02, -0.04, 0.0]), atol=1e-7)
    assert np.isnan(panel.R[9, 2]) and np.isnan(panel.R[5, 1])
    np.testing.assert_array_equal(panel.sector[0], [0, 0, 1])
    np.testing.assert_array_equal(panel.market[0], [1, -1, 0])
    assert panel.sector[9, 2] == -1


def test_labels_standardized_per_date_raw_kept(panel):
    np.testing.assert_allclose(
        panel.Y[0, :, 0], [-0.02 / 0.0264575, -0.01 / 0.0264575, 0.03 / 0.0264575], atol=1e-4
    )
    np.testing.assert_allclose(panel.Y_raw[0, :, 1], [0.05, 0.10, 0.30], atol=1e-7)
    assert np.isnan(panel.Y[9]).all() and np.isnan(panel.Y_raw[9]).all()  # no label window left
    assert np.isnan(panel.Y[5, 1, 0]) and not np.isnan(panel.Y_raw[5, 1, 0])  # invalid stock-day
    np.testing.assert_allclose(panel.Y[5, [0, 2], 0], [-1 / math.sqrt(2), 1 / math.sqrt(2)], atol=1e-5)
    assert np.isnan(panel.Y[:, :, 3]).all()  # 20 sessions ahead: no label in 10 sessions


def test_rank_gauss_and_float16(tmp_path):
    features = _write(tmp_path / "features", _rows())
    normalize(
        _cfg(**{"normalize.method": "rank_gauss", "normalize.dtype": "float16"}), features, tmp_path / "p"
    )
    p = load_panel(tmp_path / "p")
    assert p.X.dtype == np.float16
    np.testing.assert_allclose(p.X[0, :, 1], [-0.967422, 0.0, 0.967422], atol=2e-3)
    np.testing.assert_allclose(p.X[2, :, 1], [-0.674490, 0.0, 0.674490], atol=2e-3)  # n = 2


def test_leakage_rows_after_d_do_not_move_x_at_or_before_d(tmp_path, panel):
    d = 5
    rng = np.random.default_rng(1)
    changed = []
    for r in _rows():
        if r["date"] > DATES[d]:
            if r["code"] == CODES[0] and r["date"] == DATES[8]:
                continue  # a row vanishes after D
            r = {k: (v * rng.uniform(-5, 5) if isinstance(v, float) else v) for k, v in r.items()}
            r |= {
                "s33": "1050",
                "mkt": "standard",
                "val_x": float("nan") if r["code"] == CODES[1] else r["val_x"],
            }
        changed.append(r)
    normalize(_cfg(), _write(tmp_path / "f2", changed), tmp_path / "p2")
    q = load_panel(tmp_path / "p2")
    for name in ("X", "Y", "Y_raw", "valid", "R", "sector", "market"):
        np.testing.assert_array_equal(getattr(q, name)[: d + 1], getattr(panel, name)[: d + 1], err_msg=name)
    # New sector/market values after D append to the vocabulary; they never renumber earlier ones.
    assert q.meta["sectors"] == ["3050", "9050", "1050"] and q.meta["markets"] == [
        "growth",
        "prime",
        "standard",
    ]
    assert not np.array_equal(q.X[d + 1 :], panel.X[d + 1 :])  # the perturbation did reach later dates


def test_errors_name_the_problem(tmp_path):
    features = _write(tmp_path / "f", _rows())
    with pytest.raises(ConfigError, match="normalize.clip"):
        normalize(_cfg(**{"normalize.clip": 0}), features, tmp_path / "p")
    pl.read_parquet(features / "features.parquet").drop("val_x").write_parquet(features / "features.parquet")
    with pytest.raises(ArtifactError, match=r"/f: features.parquet has \d+ bytes, manifest.json says"):
        normalize(_cfg(), features, tmp_path / "p")  # altered behind its manifest's back
    seal(features, "features", {"features": MANIFEST, "families_absent": []})
    with pytest.raises(SchemaError, match="val_x"):
        normalize(_cfg(), features, tmp_path / "p")
