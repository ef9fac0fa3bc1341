"""ATFT-GAT-FAN losses for one trading day's cross-section: pinball, soft rank correlation, long-short Sharpe."""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-6


def masked_standardize(y: Tensor, mask: Tensor) -> Tensor:
    """Standardise each column of y[N, H] over its masked rows (mean 0, std 1); masked-out rows become 0.

    Labels from normalize are already standardised per date, but the day's batch may be a subsample of
    the cross-section, so the loss re-standardises what it actually sees.
    """
    m = mask.to(y.dtype)
    y = torch.where(mask, y, torch.zeros_like(y))
    n = m.sum(0).clamp_min(1.0)  # [H]
    mean = (y * m).sum(0) / n
    var = (((y - mean) * m) ** 2).sum(0) / n
    # sqrt(var + EPS^2), not sqrt(var) + EPS: a constant column (one labelled stock, or identical
    # scores) has var = 0, where d sqrt/d var is infinite and would turn every weight into NaN.
    return (y - mean) / (var + EPS * EPS).sqrt() * m


def pinball_loss(q: Tensor, y: Tensor, mask: Tensor, quantiles: tuple[float, ...]) -> Tensor:
    """Masked pinball (quantile) loss per horizon: mean over valid rows and quantiles of
    max(tau * e, (tau - 1) * e), e = y - q.

    q: [N, H, Q] predicted quantiles; y: [N, H] labels; mask: [N, H] bool. Returns [H].
    """
    tau = torch.tensor(quantiles, dtype=q.dtype, device=q.device)  # [Q]
    e = y.unsqueeze(-1) - q  # [N, H, Q]
    loss = torch.maximum(tau * e, (tau - 1.0) * e).mean(-1)  # [N, H]
    m = mask.to(q.dtype)
    return (loss * m).sum(0) / m.sum(0).clamp_min(1.0)


def soft_rank(s: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """Differentiable ranks of each column of s[N, H] among its masked rows.

    rank_i = sum_j sigmoid((s_i - s_j) / temperature) over valid j (the pairwise-sigmoid relaxation;
    temperature -> 0 gives the ordinal rank + 0.5). Scores are standardised first so the temperature
    is in cross-sectional standard deviations. O(N^2) per horizon: fine for a few thousand stocks.
    """
    z = masked_standardize(s, mask)
    diff = (z.unsqueeze(1) - z.unsqueeze(0)) / temperature  # [N, N, H]: z_i - z_j
    pair = mask.unsqueeze(0).to(s.dtype)  # [1, N, H]: j must be valid
    return (torch.sigmoid(diff) * pair).sum(1)  # [N, H]


def _pearson(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Masked Pearson correlation of the columns of a[N, H] and b[N, H]; returns [H]."""
    za, zb = masked_standardize(a, mask), masked_standardize(b, mask)
    n = mask.to(a.dtype).sum(0).clamp_min(1.0)
    return (za * zb).sum(0) / n


def hard_rank(y: Tensor, mask: Tensor) -> Tensor:
    """Ordinal ranks (0..n-1) of each column of y[N, H] among its masked rows; masked rows rank last."""
    big = torch.finfo(y.dtype).max
    filled = torch.where(mask, y, torch.full_like(y, big))
    return filled.argsort(0).argsort(0).to(y.dtype)


def rank_corr_loss(s: Tensor, y: Tensor, mask: Tensor, temperature: float = 0.1) -> Tensor:
    """Negative differentiable Spearman correlation per horizon: -corr(soft_rank(s), rank(y)).

    Label ranks need no gradient, so they are exact; only the score side is relaxed. A horizon with
    fewer than 3 valid stocks contributes 0. s, y: [N, H]; mask: [N, H] bool. Returns [H].
    """
    corr = _pearson(soft_rank(s, mask, temperature), hard_rank(y, mask), mask)
    enough = mask.sum(0) >= 3
    return torch.where(enough, -corr, torch.zeros_like(corr))


def long_short_return(s: Tensor, y: Tensor, mask: Tensor, temperature: float = 1.0) -> Tensor:
    """Return per horizon of a differentiable dollar-neutral portfolio: long softmax(z/T), short softmax(-z/T).

    z is the standardised score, y the (standardised) label; the weights on each side sum to 1, so the
    return is in label units. s, y: [N, H]; mask: [N, H]. Returns [H].
    """
    z = masked_standardize(s, mask) / temperature
    neg = torch.finfo(s.dtype).min
    long = torch.softmax(torch.where(mask, z, torch.full_like(z, neg)), 0)  # [N, H]
    short = torch.softmax(torch.where(mask, -z, torch.full_like(z, neg)), 0)
    y = torch.where(mask, y, torch.zeros_like(y))
    return ((long - short) * y).sum(0)


def sharpe_loss(returns: Tensor) -> Tensor:
    """Negative Sharpe ratio over days of per-day portfolio returns[D, H]; returns [H].

    With a single day there is no dispersion to divide by, so the term is the negative return itself
    (labels are standardised per day, so that is already a unit-free number).
    """
    if returns.shape[0] < 2:
        return -returns.mean(0)
    return -returns.mean(0) / (returns.std(0) + EPS)


def horizon_weights(
    weights: tuple[float, ...], n_horizons: int, device: torch.device | None = None
) -> Tensor:
    """Normalised horizon weights [H] (sum 1); an error names the mismatch between config and panel."""
    if len(weights) != n_horizons:
        raise ValueError(
            f"train.horizon_weights has {len(weights)} entries but the panel has {n_horizons} horizons"
        )
    w = torch.tensor(weights, dtype=torch.float32, device=device)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"train.horizon_weights must be non-negative with a positive sum, got {weights}")
    return w / w.sum()


def day_loss(
    q: Tensor,
    y: Tensor,
    mask: Tensor,
    quantiles: tuple[float, ...],
    weights: Tensor,
    rank_weight: float,
    temperature: float = 0.1,
) -> Tensor:
    """One day's objective: horizon-weighted pinball on standardised labels + rank_weight x (-soft Spearman).

    q: [N, H, Q] quantiles; y: [N, H] labels (NaN allowed where mask is False); weights: [H] summing to 1.
    """
    y = masked_standardize(torch.nan_to_num(y), mask)
    median = q[..., quantiles.index(0.5)]  # [N, H]
    per_h = pinball_loss(q, y, mask, quantiles)  # [H]
    if rank_weight:
        per_h = per_h + rank_weight * rank_corr_loss(median, y, mask, temperature)
    return (per_h * weights).sum()


def rank_ic(s: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Spearman correlation per horizon of scores s[N, H] vs labels y[N, H] over masked rows (ordinal ranks;
    ties are negligible for continuous scores). A metric, not a loss: no useful gradient. Returns [H]."""
    y = torch.where(mask, y, torch.zeros_like(y))
    corr = _pearson(hard_rank(s, mask), hard_rank(y, mask), mask)
    return torch.where(mask.sum(0) >= 3, corr, torch.full_like(corr, float("nan")))
