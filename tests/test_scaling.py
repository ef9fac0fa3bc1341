"""normalize's scalings on tiny arrays: cross-section helpers' edge cases, trailing z by direct formula."""

from __future__ import annotations

import numpy as np
import pytest

from kabuflow.scaling import nanmedian, rank_gauss, robust_z, trailing_z


def test_cross_section_helpers_edge_cases():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 3, 8)).astype(np.float32)
    a[rng.random(a.shape) < 0.3] = np.nan
    a[1, 2] = np.nan
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanmedian(a, axis=-1)
    np.testing.assert_allclose(nanmedian(a), want, rtol=1e-6)
    z = robust_z(np.array([[3.0, 3.0, 3.0, np.nan], [7.0, np.nan, np.nan, np.nan]], np.float32), clip=5.0)
    np.testing.assert_array_equal(z[:, :1], [[0.0], [0.0]])  # constant / single value -> 0
    assert np.isnan(z[0, 3]) and np.isnan(z[1, 1:]).all()  # missing stays missing (masked later)
    g = rank_gauss(np.array([[1.0, 1.0, 2.0, np.nan]], np.float32), clip=5.0)
    np.testing.assert_allclose(g[0, :3], [-0.430727, -0.430727, 0.967422], atol=1e-5)  # average ties


def test_trailing_z_matches_direct_formula():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(40, 2))
    v[[3, 17], 1] = np.nan
    z = trailing_z(v, window=7, min_periods=4, clip=50.0)
    for t in range(40):
        for f in range(2):
            past = v[max(0, t - 7) : t, f]
            past = past[np.isfinite(past)]
            if len(past) < 4 or not np.isfinite(v[t, f]):
                assert np.isnan(z[t, f])
            else:
                assert z[t, f] == pytest.approx((v[t, f] - past.mean()) / past.std(ddof=1))
