"""Losses: hand-computed pinball, soft ranks, rank correlation, long-short return, Sharpe, horizon weights."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import spearmanr

from kabuflow.model.losses import (
    day_loss,
    hard_rank,
    horizon_weights,
    long_short_return,
    masked_standardize,
    pinball_loss,
    rank_corr_loss,
    rank_ic,
    sharpe_loss,
    soft_rank,
)

ALL = torch.ones(3, 1, dtype=torch.bool)


def test_masked_standardize_by_hand():
    y = torch.tensor([[1.0], [2.0], [3.0], [100.0]])
    mask = torch.tensor([[True], [True], [True], [False]])
    z = masked_standardize(y, mask)
    s = math.sqrt(2 / 3)  # population std of 1, 2, 3
    assert torch.allclose(z[:, 0], torch.tensor([-1 / s, 0.0, 1 / s, 0.0]), atol=1e-5)


def test_pinball_by_hand():
    # e = y - q = +1: tau 0.1 -> 0.1, tau 0.9 -> 0.9; e = -1: 0.9 and 0.1. Mean over quantiles = 0.5 each.
    q = torch.zeros(2, 1, 2)
    y = torch.tensor([[1.0], [-1.0]])
    mask = torch.ones(2, 1, dtype=torch.bool)
    assert pinball_loss(q, y, mask, (0.1, 0.9)).tolist() == pytest.approx([0.5])
    # tau 0.1 only: e=+1 -> 0.1, e=-1 -> 0.9: mean 0.5; masking the second row leaves 0.1.
    assert pinball_loss(q[..., :1], y, mask, (0.1,)).item() == pytest.approx(0.5)
    assert pinball_loss(q[..., :1], y, torch.tensor([[True], [False]]), (0.1,)).item() == pytest.approx(0.1)


def test_soft_rank_tends_to_ordinal_rank():
    s = torch.tensor([[3.0], [1.0], [2.0]])
    # rank_i = sum_j sigmoid((z_i - z_j)/T): with T -> 0 that is #{j: s_j < s_i} + 0.5 (the j = i term)
    assert soft_rank(s, ALL, 1e-3)[:, 0].tolist() == pytest.approx([2.5, 0.5, 1.5], abs=1e-4)
    masked = soft_rank(
        torch.tensor([[3.0], [1.0], [2.0], [9.0]]), torch.tensor([[1], [1], [1], [0]]).bool(), 1e-3
    )
    assert masked[:3, 0].tolist() == pytest.approx([2.5, 0.5, 1.5], abs=1e-4)


def test_rank_corr_loss_signs_and_gradient():
    y = torch.tensor([[0.1], [0.5], [-0.2], [0.3], [0.0]])
    mask = torch.ones(5, 1, dtype=torch.bool)
    assert rank_corr_loss(y * 7, y, mask, 0.01).item() == pytest.approx(-1.0, abs=1e-3)
    assert rank_corr_loss(-y, y, mask, 0.01).item() == pytest.approx(1.0, abs=1e-3)
    s = torch.zeros(5, 1, requires_grad=True)
    s.data += torch.tensor([[0.0], [0.1], [0.2], [0.3], [0.4]])
    rank_corr_loss(s, y, mask).sum().backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    few = torch.tensor([[True], [True], [False], [False], [False]])
    assert rank_corr_loss(s, y, few).item() == 0.0  # fewer than 3 stocks: no term


def test_hard_rank_and_rank_ic_match_scipy():
    g = torch.Generator().manual_seed(0)
    s, y = torch.randn(30, 2, generator=g), torch.randn(30, 2, generator=g)
    mask = torch.ones(30, 2, dtype=torch.bool)
    mask[:5, 1] = False
    assert hard_rank(s, mask)[:, 0].tolist() == s[:, 0].argsort().argsort().float().tolist()
    got = rank_ic(s, y, mask)
    assert got[0].item() == pytest.approx(spearmanr(s[:, 0], y[:, 0]).statistic, abs=1e-5)
    assert got[1].item() == pytest.approx(spearmanr(s[5:, 1], y[5:, 1]).statistic, abs=1e-5)


def test_long_short_return_by_hand():
    s = torch.tensor([[1.0], [0.0], [-1.0]])
    y = torch.tensor([[2.0], [5.0], [-3.0]])
    # low temperature: all long weight on stock 0, all short weight on stock 2 -> 2 - (-3) = 5
    assert long_short_return(s, y, ALL, temperature=1e-3).item() == pytest.approx(5.0, abs=1e-4)
    # masking stock 0 moves the long leg to stock 1 -> 5 - (-3) = 8
    m = torch.tensor([[False], [True], [True]])
    assert long_short_return(s, y, m, temperature=1e-3).item() == pytest.approx(8.0, abs=1e-4)


def test_sharpe_loss_by_hand():
    r = torch.tensor([[1.0, 2.0], [3.0, 2.0]])
    got = sharpe_loss(r)
    assert got[0].item() == pytest.approx(-2.0 / math.sqrt(2.0), rel=1e-5)  # mean 2, std (n-1) sqrt(2)
    assert got[1].item() < -1e5  # no dispersion: a huge (but finite) Sharpe
    assert sharpe_loss(r[:1]).tolist() == [-1.0, -2.0]  # one day: the negative return


def test_horizon_weights_normalised_and_checked():
    assert horizon_weights((0.5, 1.0, 0.5, 0.0), 4).tolist() == [0.25, 0.5, 0.25, 0.0]
    with pytest.raises(ValueError, match="horizon_weights has 2 entries"):
        horizon_weights((1.0, 1.0), 4)
    with pytest.raises(ValueError, match="non-negative"):
        horizon_weights((1.0, -1.0), 2)


def test_day_loss_is_weighted_pinball_plus_rank_term():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(6, 2, 3, generator=g).sort(-1).values
    y = torch.randn(6, 2, generator=g)
    y[0, 1] = float("nan")
    mask = ~torch.isnan(y)
    w = torch.tensor([0.25, 0.75])
    quantiles = (0.1, 0.5, 0.9)
    z = masked_standardize(torch.nan_to_num(y), mask)
    pin = (pinball_loss(q, z, mask, quantiles) * w).sum()
    assert day_loss(q, y, mask, quantiles, w, 0.0).item() == pytest.approx(pin.item(), rel=1e-6)
    rank = (rank_corr_loss(q[..., 1], z, mask, 0.1) * w).sum()
    assert day_loss(q, y, mask, quantiles, w, 2.0).item() == pytest.approx((pin + 2 * rank).item(), rel=1e-6)


def test_constant_column_has_finite_gradients():
    """A day with one labelled stock (or identical scores) has zero variance: gradients must stay finite."""
    import torch

    from kabuflow.model.losses import masked_standardize

    s = torch.zeros(4, 2, requires_grad=True)
    mask = torch.tensor([[True, True], [False, True], [False, True], [False, True]])
    masked_standardize(s, mask).sum().backward()
    assert torch.isfinite(s.grad).all()
