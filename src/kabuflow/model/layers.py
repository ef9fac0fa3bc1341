"""Building blocks of ATFT-GAT-FAN: FAN/SAN input normalization, GRN, variable selection, interpretable attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-5


def _dft_basis(n_len: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Real DFT basis for the one-sided spectrum: cos [B, L], sin [B, L] and the inverse weights w [B]
    (1/L for frequency 0 and, when L is even, L/2; 2/L otherwise), B = L//2 + 1."""
    n = torch.arange(n_len, device=device, dtype=torch.float32)
    f = torch.arange(n_len // 2 + 1, device=device, dtype=torch.float32)
    ang = 2 * math.pi * f[:, None] * n[None, :] / n_len  # [B, L]
    w = torch.full((len(f),), 2.0 / n_len, device=device)
    w[0] = 1.0 / n_len
    if n_len % 2 == 0:
        w[-1] = 1.0 / n_len
    return torch.cos(ang), torch.sin(ang), w


def fan_split(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Frequency Adaptive Normalization (Ye et al., 2024): split each series into its k dominant
    Fourier components and the residual.

    Per stock and feature, over the L-day window: X_f = sum_n x_n e^{-2 pi i f n / L} = a_f - i b_f;
    keep the k frequencies with the largest |X_f|^2 = a_f^2 + b_f^2 (the mean, frequency 0, competes
    like any other) and x_low = iRFFT(kept) = sum_f w_f (a_f cos + b_f sin). The residual x - x_low is
    the (more) stationary part the network models; x_low is fed beside it, so the trend/seasonality
    is presented separately rather than thrown away. The DFT is written as real matmuls with the
    frequency axis first: on a CPU that is several times faster than torch.fft along a middle axis
    plus topk over ~10 bins, and it is the same transform (tests compare with torch.fft).
    x: [N, L, F] -> (residual [N, L, F], x_low [N, L, F]).
    """
    n, n_len, f = x.shape
    cos, sin, w = _dft_basis(n_len, x.device)  # [B, L], [B, L], [B]
    xs = x.float().permute(1, 0, 2).reshape(n_len, n * f)  # [L, N*F]
    a, b = cos @ xs, sin @ xs  # [B, N*F] each
    power = a.square() + b.square()  # [B, N*F]
    rest, thr = power, power[:1]
    for _ in range(min(k, len(w))):  # k-th largest per series: k max-reductions over the short B axis
        thr = rest.amax(0, keepdim=True)  # [1, N*F]
        rest = torch.where(rest >= thr, -1.0, rest)
    keep = torch.where(power >= thr, w[:, None], 0.0)  # [B, N*F]: inverse-DFT weight where kept
    low = cos.T @ (a * keep) + sin.T @ (b * keep)  # [L, N*F]
    low = low.view(n_len, n, f).permute(1, 0, 2)  # [N, L, F]
    return x - low, low


def san_split(x: Tensor, slice_len: int) -> tuple[Tensor, Tensor, Tensor]:
    """Slice Adaptive Normalization (Liu et al., 2023): standardise each non-overlapping time slice.

    The window is cut into slices of `slice_len` days from its end (a leading partial slice is kept),
    each (stock, feature) slice is z-scored by its own mean/std, and the slice statistics are
    broadcast back over the slice's days so the network still sees the level and scale it removed.
    x: [N, L, F] -> (normalised [N, L, F], slice mean [N, L, F], slice std [N, L, F]).
    """
    n, n_len, f = x.shape
    n_sl = math.ceil(n_len / slice_len)
    pad = n_sl * slice_len - n_len
    xp = F.pad(x.float(), (0, 0, pad, 0))  # [N, n_sl*S, F], zero rows prepended
    cnt = torch.ones(1, n_len, 1, device=x.device)
    cnt = F.pad(cnt, (0, 0, pad, 0)).view(1, n_sl, slice_len, 1)  # [1, n_sl, S, 1]: 1 on real days
    xs = xp.view(n, n_sl, slice_len, f)  # [N, n_sl, S, F]
    mean = (xs * cnt).sum(2, keepdim=True) / cnt.sum(2, keepdim=True)  # [N, n_sl, 1, F]
    var = (((xs - mean) * cnt) ** 2).sum(2, keepdim=True) / cnt.sum(2, keepdim=True)
    std = (var + EPS).sqrt()
    mean_b = mean.expand_as(xs).reshape(n, n_sl * slice_len, f)[:, pad:]  # [N, L, F]
    std_b = std.expand_as(xs).reshape(n, n_sl * slice_len, f)[:, pad:]  # [N, L, F]
    return (x - mean_b) / std_b, mean_b, std_b


class InputNorm(nn.Module):
    """Switchable input normalization ('fan' | 'san' | 'none'); returns channels concatenated on the last axis.

    fan: [residual, dominant component] (2F); san: [normalised, slice mean, log slice std] (3F); none: x (F).
    """

    CHANNELS = {"fan": 2, "san": 3, "none": 1}

    def __init__(self, kind: str, fan_k: int, san_slice: int) -> None:
        super().__init__()
        if kind not in self.CHANNELS:
            raise ValueError(f"model.input_norm must be one of {sorted(self.CHANNELS)}, got {kind!r}")
        self.kind, self.fan_k, self.san_slice = kind, fan_k, san_slice

    def forward(self, x: Tensor) -> Tensor:
        """x: [N, L, F] -> [N, L, c*F]."""
        if self.kind == "fan":
            return torch.cat(fan_split(x, self.fan_k), -1)
        if self.kind == "san":
            z, mean, std = san_split(x, self.san_slice)
            return torch.cat([z, mean, std.log()], -1)
        return x.float()


class GRN(nn.Module):
    """Gated residual network (TFT, Lim et al. 2021, eq. 2-4):
    GRN(a, c) = LayerNorm(skip(a) + GLU(W1 ELU(W2 a + W3 c + b2) + b1)).

    The GLU lets the block switch itself off, so depth costs little when a signal is simple.
    """

    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float, d_ctx: int = 0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.ctx = nn.Linear(d_ctx, d_hidden, bias=False) if d_ctx else None
        self.fc2 = nn.Linear(d_hidden, 2 * d_out)
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, a: Tensor, c: Tensor | None = None) -> Tensor:
        """a: [..., d_in], c: [..., d_ctx] or None -> [..., d_out]."""
        h = self.fc1(a)
        if self.ctx is not None and c is not None:
            h = h + self.ctx(c)
        h = F.glu(self.fc2(self.drop(F.elu(h))), dim=-1)  # [..., d_out]
        return self.norm(self.skip(a) + h)


class VariableSelection(nn.Module):
    """Vectorised variable selection network.

    Each input variable f gets its own linear embedding e_f = x_f W_f + b_f (W, b: [F, D]; TFT's
    continuous-input embedding). A GRN over the day-t inputs gives each stock input-dependent softmax
    weights w[N, F] (TFT's selection weights, one set per stock-day, shared over its L-day history), and
    the selected vector at each past day is sum_f w_f e_f. Because the embeddings are linear,
    sum_f w_f (x_f W_f + b_f) = (w * x) @ W + w @ b: two einsums over the feature axis, never the
    [N, L, F, D] tensor of per-feature embeddings. TFT's per-variable GRNs are left out and the gate
    runs once per stock rather than once per stock and day: together that is what keeps the block
    affordable on a CPU (the LSTM and the GRNs after it supply the non-linearity).
    """

    def __init__(self, n_features: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_features, d_model) / math.sqrt(n_features))
        self.bias = nn.Parameter(torch.zeros(n_features, d_model))
        self.gate = GRN(n_features, d_model, d_model, dropout)
        self.logits = nn.Linear(d_model, n_features)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: [N, L, F] -> (selected [N, L, D], weights [N, F])."""
        w = torch.softmax(self.logits(self.gate(x[:, -1])), dim=-1)  # [N, F], from day t's inputs
        wx = w.unsqueeze(1) * x  # [N, L, F]
        h = wx @ self.weight + (w @ self.bias).unsqueeze(1)  # [N, L, D]: the einsum nlf,fd->nld as one matmul
        return self.norm(h), w


class InterpretableAttention(nn.Module):
    """TFT's interpretable multi-head attention, queried from the last day only.

    Heads have their own query/key projections but share one value projection, so averaging the
    heads' attention gives a single, readable weight per past day: out = W_o (mean_h A_h) V.
    The stock state at t is all the model needs, so only day t queries (days <= t: causal by design).
    x: [N, L, D] -> (out [N, D], attn [N, heads, L]).
    """

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"model.hidden ({d_model}) must be divisible by model.heads ({heads})")
        self.heads, self.d_head = heads, d_model // heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, self.d_head)  # shared across heads
        self.o = nn.Linear(self.d_head, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: [N, L, D] -> (out [N, D], attn [N, heads, L])."""
        n, n_len, _ = x.shape
        q = self.q(x[:, -1]).view(n, self.heads, 1, self.d_head)  # [N, h, 1, dh]
        k = self.k(x).view(n, n_len, self.heads, self.d_head).transpose(1, 2)  # [N, h, L, dh]
        v = self.v(x)  # [N, L, dh]
        scores = (q @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(self.d_head)  # [N, h, L]
        attn = torch.softmax(scores, dim=-1)  # [N, h, L]
        mixed = torch.einsum("nl,nld->nd", self.drop(attn).mean(1), v)  # [N, dh]
        return self.o(mixed), attn


class GateAddNorm(nn.Module):
    """LayerNorm(residual + GLU(x)): TFT's gated skip connection around a sub-block."""

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, 2 * d_model)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        """x, residual: [..., D] -> [..., D]."""
        return self.norm(residual + F.glu(self.fc(self.drop(x)), dim=-1))
