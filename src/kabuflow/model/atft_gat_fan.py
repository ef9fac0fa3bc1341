"""ATFT-GAT-FAN: FAN/SAN input norm -> variable selection -> LSTM + interpretable attention -> GATv2 -> quantiles."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv

from kabuflow.config import ModelConfig
from kabuflow.model.layers import GRN, GateAddNorm, InputNorm, InterpretableAttention, VariableSelection

EDGE_DIM = 3  # graph edge attributes: rho, same_sector, same_market


class GraphBlock(nn.Module):
    """Neighbours' inputs and GATv2 layers over the day's stock graph, joined to the temporal state by a gate.

    g0 = h + W_p peer, peer = the rho+-weighted mean of the neighbours' inputs on the day ([N, F]);
    g = stack of LayerNorm(g + ELU(GATv2(g, edges, edge_attr))) starting from g0; then
    out = (1 - z) * h + z * g with z = sigmoid(W [h, g]) per stock and channel, so the model can
    ignore neighbours where they carry nothing (z -> 0) and the gate is readable afterwards.

    Why the peer term: a neighbour's temporal state is trained to predict the neighbour, so it need not
    keep the neighbour's own recent move that drives a lead-lag; the peer term hands the neighbour mean
    of the inputs to the GAT directly (the README's design experiments: the GATv2 stack alone bought
    nothing measurable).
    """

    def __init__(self, d_model: int, n_inputs: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"model.hidden ({d_model}) must be divisible by model.gat_heads ({heads})")
        self.peer = nn.Linear(n_inputs, d_model)
        self.convs = nn.ModuleList(
            GATv2Conv(d_model, d_model // heads, heads=heads, edge_dim=EDGE_DIM, dropout=dropout)
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(layers))
        self.gate = nn.Linear(2 * d_model, d_model)

    def forward(
        self, h: Tensor, peer: Tensor, edge_index: Tensor, edge_attr: Tensor
    ) -> tuple[Tensor, Tensor]:
        """h: [N, D]; peer: [N, F] the neighbours' mean of the day's inputs (`peer_mean`); edge_index:
        [2, E] long; edge_attr: [E, 3] -> (out [N, D], gate [N, D])."""
        g = h + self.peer(peer)  # [N, D]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            g = norm(g + F.elu(conv(g, edge_index, edge_attr)))  # [N, D] (heads concatenated)
        z = torch.sigmoid(self.gate(torch.cat([h, g], -1)))  # [N, D]
        return (1 - z) * h + z * g, z


def peer_mean(x: Tensor, edge_index: Tensor, rho: Tensor) -> Tensor:
    """Each target's mean of its source neighbours' x weighted by max(rho, 0); 0 without such a neighbour.

    x: [N, F]; edge_index: [2, E] (source, target); rho: [E] -> [N, F].
    """
    w = rho.clamp(min=0).to(x.dtype)  # [E]
    src, dst = edge_index
    num = torch.zeros_like(x).index_add_(0, dst, x[src] * w[:, None])  # [N, F]
    den = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device).index_add_(0, dst, w)  # [N]
    return num / den.clamp(min=1e-6)[:, None]


class QuantileHead(nn.Module):
    """Per-horizon quantiles that cannot cross: the median plus cumulative softplus offsets either side."""

    def __init__(self, d_model: int, n_horizons: int, quantiles: tuple[float, ...]) -> None:
        super().__init__()
        if 0.5 not in quantiles or list(quantiles) != sorted(quantiles):
            raise ValueError(f"model.quantiles must be increasing and contain 0.5, got {quantiles}")
        self.n_h, self.n_q, self.mid = n_horizons, len(quantiles), quantiles.index(0.5)
        self.fc = nn.Linear(d_model, n_horizons * self.n_q)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, h: Tensor) -> Tensor:
        """h: [N, D] -> quantiles [N, H, Q], increasing along Q."""
        raw = self.fc(h).view(-1, self.n_h, self.n_q)  # [N, H, Q]
        mid = raw[..., self.mid : self.mid + 1]  # [N, H, 1]
        up = mid + F.softplus(raw[..., self.mid + 1 :]).cumsum(-1)  # [N, H, Q - mid - 1]
        down = mid - F.softplus(raw[..., : self.mid]).flip(-1).cumsum(-1).flip(-1)  # [N, H, mid]
        return torch.cat([down, mid, up], -1)


class ATFTGATFAN(nn.Module):
    """The ranking model. One forward = one trading day's cross-section.

    x: [N, L, F] (N stocks, L-day history, F features), the day's graph (edge_index [2, E],
    edge_attr [E, 3]) -> quantiles [N, H, Q] and an aux dict with the variable-selection weights
    [N, c*F], the attention over past days [N, heads, L] and the graph gate [N, D].

    With model.wide (Wide & Deep), a linear map of the day's inputs and their neighbours' rho+-weighted
    mean shifts every quantile: most of the signal is that linear map, which the deep part would
    otherwise have to rediscover in a few hundred steps (the README's design experiments).
    """

    def __init__(self, cfg: ModelConfig, n_features: int, n_horizons: int) -> None:
        super().__init__()
        self.cfg, self.n_features, self.n_horizons = cfg, n_features, n_horizons
        d = cfg.hidden
        self.input_norm = InputNorm(cfg.input_norm, cfg.fan_k, cfg.san_slice)
        self.vsn = VariableSelection(InputNorm.CHANNELS[cfg.input_norm] * n_features, d, cfg.dropout)
        lstm_dropout = cfg.dropout if cfg.lstm_layers > 1 else 0.0
        self.lstm = nn.LSTM(d, d, num_layers=cfg.lstm_layers, batch_first=True, dropout=lstm_dropout)
        self.lstm_gate = GateAddNorm(d, cfg.dropout)
        self.attn = InterpretableAttention(d, cfg.heads, cfg.dropout)
        self.attn_gate = GateAddNorm(d, cfg.dropout)
        self.ffn = GRN(d, cfg.ff_mult * d, d, cfg.dropout)  # position-wise GRN, transformer-style width
        self.graph = (
            GraphBlock(d, n_features, cfg.gat_layers, cfg.gat_heads, cfg.dropout) if cfg.use_graph else None
        )
        self.head = QuantileHead(d, n_horizons, tuple(cfg.quantiles))
        # The wide path: a linear map of the day's inputs (and their neighbour mean) added to every
        # quantile of each horizon; zero at initialisation, so the deep part starts alone.
        wide_in = n_features * (2 if cfg.use_graph else 1)
        self.wide = nn.Linear(wide_in, n_horizons) if cfg.wide else None
        if self.wide is not None:
            nn.init.zeros_(self.wide.weight)
            nn.init.zeros_(self.wide.bias)

    def encode(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The temporal part, stock by stock (nothing mixes rows): x [N, L, F] -> state h [N, D] and the
        variable-selection weights [N, c*F] and attention [N, heads, L]. Its shapes are fixed for a
        fixed N, which is what CUDA graphs need (`kabuflow.train.loop.forward_fn`)."""
        z = self.input_norm(x)  # [N, L, c*F]
        e, w = self.vsn(z)  # [N, L, D], [N, c*F]
        o, _ = self.lstm(e)  # [N, L, D]
        s = self.lstm_gate(o, e)  # [N, L, D]
        a, attn = self.attn(s)  # [N, D], [N, heads, L]
        h = self.ffn(self.attn_gate(a, s[:, -1]))  # [N, D]
        return h, {"vsn_weights": w, "attention": attn}

    def forward(
        self, x: Tensor, edge_index: Tensor | None = None, edge_attr: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """x: [N, L, F]; edge_index [2, E] / edge_attr [E, 3] (ignored without a graph block)."""
        h, aux = self.encode(x)  # [N, D]
        wide_in = [x[:, -1]]  # [N, F]
        if self.graph is not None:
            if edge_index is None or edge_attr is None:
                raise ValueError("model.use_graph is on but no graph was passed for the day")
            peer = peer_mean(
                x[:, -1], edge_index, edge_attr[:, 0]
            )  # [N, F]: the graph block's and the wide path's
            h, aux["graph_gate"] = self.graph(h, peer, edge_index, edge_attr)  # [N, D], [N, D]
            wide_in.append(peer)
        q = self.head(h)  # [N, H, Q]
        if self.wide is not None:
            q = q + self.wide(torch.cat(wide_in, -1))[..., None]  # the same shift for every quantile
        return q, aux


class Ensemble(nn.Module):
    """Members of one architecture trained from different seeds; the output is their mean (quantiles and
    aux alike): a model fitted to ~1 % R-squared labels is partly a random function of its seed, and
    the mean of independently seeded members removes part of that noise. Exposes `cfg` and `n_horizons`
    like a single model.
    """

    def __init__(self, members: list[ATFTGATFAN]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.cfg, self.n_features, self.n_horizons = (
            members[0].cfg,
            members[0].n_features,
            members[0].n_horizons,
        )

    def forward(
        self, x: Tensor, edge_index: Tensor | None = None, edge_attr: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Same inputs and outputs as ATFTGATFAN.forward: the members' mean."""
        outs = [m(x, edge_index, edge_attr) for m in self.members]
        q = torch.stack([o[0] for o in outs]).mean(0)
        return q, {k: torch.stack([o[1][k] for o in outs]).mean(0) for k in outs[0][1]}


def build_model(cfg: ModelConfig, n_features: int, n_horizons: int) -> ATFTGATFAN | Ensemble:
    """A single ATFT-GAT-FAN, or an Ensemble of cfg.members of them (weights as initialised here)."""
    if cfg.members <= 1:
        return ATFTGATFAN(cfg, n_features, n_horizons)
    return Ensemble([ATFTGATFAN(cfg, n_features, n_horizons) for _ in range(cfg.members)])


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """Plain dict (tuples as lists) so a checkpoint loads with torch.load(weights_only=True)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """Inverse of model_config_to_dict; unknown keys are an error (a checkpoint from another version)."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"checkpoint model config has unknown keys {unknown}")
    return ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
