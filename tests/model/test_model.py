"""ATFT-GAT-FAN on a 4-node graph: shapes, finiteness, gradients, determinism, and what each block must do."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kabuflow.config import ModelConfig
from kabuflow.model.atft_gat_fan import (
    ATFTGATFAN,
    model_config_from_dict,
    model_config_to_dict,
    n_params,
    peer_mean,
)
from kabuflow.model.layers import InterpretableAttention, VariableSelection, fan_split, san_split

N, L, F, H = 4, 10, 3, 4
EDGES = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])  # two pairs: 0<->1 and 2<->3
EDGE_ATTR = torch.tensor([[0.5, 1.0, 1.0], [0.5, 1.0, 1.0], [0.8, 0.0, 1.0], [0.8, 0.0, 1.0]])


def _cfg(**kw) -> ModelConfig:
    base = {"hidden": 8, "lookback": L, "heads": 2, "gat_heads": 2, "gat_layers": 2, "dropout": 0.0}
    return ModelConfig(**{**base, **kw})


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(N, L, F, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("norm", ["fan", "san", "none"])
@pytest.mark.parametrize("graph", [True, False])
def test_shapes_finite_and_gradients(norm, graph):
    torch.manual_seed(0)
    model = ATFTGATFAN(_cfg(input_norm=norm, use_graph=graph), F, H)
    q, aux = model(_x(), EDGES, EDGE_ATTR)
    assert q.shape == (N, H, 5) and torch.isfinite(q).all()
    assert (q.diff(dim=-1) >= 0).all()  # quantiles never cross
    assert aux["vsn_weights"].shape == (N, {"fan": 2, "san": 3, "none": 1}[norm] * F)
    assert torch.allclose(aux["vsn_weights"].sum(-1), torch.ones(N))
    assert aux["attention"].shape == (N, 2, L)
    assert torch.allclose(aux["attention"].sum(-1), torch.ones(N, 2))
    assert ("graph_gate" in aux) == graph
    q.sum().backward()
    missing = [
        name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    assert not missing


def test_deterministic_under_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = ATFTGATFAN(_cfg(dropout=0.2), F, H).train()
        torch.manual_seed(4)
        outs.append(model(_x(), EDGES, EDGE_ATTR)[0])
    assert torch.equal(outs[0], outs[1])


def test_graph_is_the_only_path_between_stocks():
    """Stocks interact only through graph edges: no BatchNorm, no pooling over the batch."""
    torch.manual_seed(0)
    x2 = _x()
    x2[2] += 5.0  # perturb stock 2, a neighbour of 3 only
    for graph in (True, False):
        model = ATFTGATFAN(_cfg(use_graph=graph), F, H).eval()
        base, moved = model(_x(), EDGES, EDGE_ATTR)[0], model(x2, EDGES, EDGE_ATTR)[0]
        assert torch.equal(base[:2], moved[:2])  # stocks 0, 1: not connected to 2
        assert (not torch.allclose(base[3], moved[3])) == graph  # stock 3 hears stock 2 only via the graph
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_peer_mean_by_hand():
    """Node 0 hears 1 (rho .5) and 2 (rho .25); node 1 hears 0 through a negative rho (weight 0)."""
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]])
    edges = torch.tensor([[1, 2, 0], [0, 0, 1]])  # (source, target)
    got = peer_mean(x, edges, torch.tensor([0.5, 0.25, -0.3]))
    expect = torch.tensor([[(0.5 * 2 + 0.25 * 4) / 0.75, (0.5 * 20 + 0.25 * 40) / 0.75], [0, 0], [0, 0]])
    torch.testing.assert_close(got, expect)


def test_neighbours_todays_inputs_reach_the_stock_through_the_peer_term():
    """With the GATv2 layers removed, stock 3 still hears stock 2's last-day input (and nothing older)."""
    torch.manual_seed(0)
    model = ATFTGATFAN(_cfg(gat_layers=0), F, H).eval()
    x_last, x_old = _x(), _x()
    x_last[2, -1] += 5.0
    x_old[2, :-1] += 5.0
    base = model(_x(), EDGES, EDGE_ATTR)[0]
    assert not torch.allclose(base[3], model(x_last, EDGES, EDGE_ATTR)[0][3])
    torch.testing.assert_close(base[3], model(x_old, EDGES, EDGE_ATTR)[0][3])  # older days: GATv2's job


def test_graph_without_edges_and_missing_graph():
    model = ATFTGATFAN(_cfg(), F, H).eval()
    q, _ = model(_x(), torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 3))  # self-loops only
    assert torch.isfinite(q).all()
    with pytest.raises(ValueError, match="no graph"):
        model(_x())


def test_fan_removes_a_pure_sinusoid():
    n = torch.arange(20, dtype=torch.float32)
    wave = 2.0 + torch.sin(2 * math.pi * 3 * n / 20 + 0.4)  # mean + one frequency
    x = wave.view(1, 20, 1).repeat(2, 1, 1)
    resid, low = fan_split(x, k=2)  # frequencies 0 and 3
    assert resid.abs().max() < 1e-5
    assert torch.allclose(low, x, atol=1e-5)
    resid1, low1 = fan_split(x, k=1)  # only the strongest (the mean 2.0 beats amplitude 1) is removed
    assert torch.allclose(low1, torch.full_like(x, 2.0), atol=1e-5)
    assert torch.allclose(resid1, x - 2.0, atol=1e-5)


@pytest.mark.parametrize("n_len", [10, 11])
def test_fan_matches_torch_fft(n_len):
    x = torch.randn(5, n_len, 3, generator=torch.Generator().manual_seed(0))
    spec = torch.fft.rfft(x, dim=1)
    keep = torch.zeros(spec.shape).scatter_(1, spec.abs().topk(3, dim=1).indices, 1.0)
    ref = torch.fft.irfft(spec * keep, n=n_len, dim=1)
    assert torch.allclose(fan_split(x, 3)[1], ref, atol=1e-5)


def test_san_standardises_each_slice():
    x = torch.randn(2, 12, 3, generator=torch.Generator().manual_seed(0)) * 3 + 1
    z, mean, std = san_split(x, 5)  # slices (from the end): days 7-11, 2-6, and a partial 0-1
    for lo, hi in ((7, 12), (2, 7), (0, 2)):
        assert torch.allclose(z[:, lo:hi].mean(1), torch.zeros(2, 3), atol=1e-5)
        assert torch.allclose(mean[:, lo], x[:, lo:hi].mean(1), atol=1e-5)
        var = x[:, lo:hi].var(1, unbiased=False)
        assert torch.allclose(std[:, lo], (var + 1e-5).sqrt(), atol=1e-5)  # eps keeps flat slices finite
    assert torch.allclose(z * std + mean, x, atol=1e-5)


def test_vsn_equals_explicit_per_feature_embeddings():
    torch.manual_seed(0)
    vsn = VariableSelection(F, 8, 0.0)
    x = _x()
    h, w = vsn(x)
    emb = x.unsqueeze(-1) * vsn.weight + vsn.bias  # [N, L, F, D]: every feature's own embedding
    explicit = vsn.norm((w[:, None, :, None] * emb).sum(2))
    assert torch.allclose(h, explicit, atol=1e-5)


def test_attention_reads_only_the_past_it_is_given():
    torch.manual_seed(0)
    attn = InterpretableAttention(8, 2, 0.0)
    x = torch.randn(3, 6, 8)
    out, a = attn(x)
    assert out.shape == (3, 8) and a.shape == (3, 2, 6)
    y = x.clone()
    y[:, 2] += 1.0  # a different earlier day changes the output; the query is always the last day
    assert not torch.allclose(attn(y)[0], out)


def test_config_round_trip_and_size():
    cfg = _cfg(quantiles=(0.1, 0.5, 0.9))
    d = model_config_to_dict(cfg)
    assert isinstance(d["quantiles"], list) and model_config_from_dict(d) == cfg
    assert n_params(ATFTGATFAN(cfg, F, H)) > n_params(ATFTGATFAN(_cfg(use_graph=False), F, H))
    with pytest.raises(ValueError, match="contain 0.5"):
        ATFTGATFAN(_cfg(quantiles=(0.1, 0.9)), F, H)


def test_wide_path_shifts_every_quantile_by_a_linear_map_of_inputs_and_peer_mean():
    """Zero at initialisation; with weights set, q - deep(q) = W [x_last, peer_mean(x_last)] + b for every
    quantile of each horizon; without a graph the map reads x_last only."""
    torch.manual_seed(0)
    model = ATFTGATFAN(_cfg(), F, H).eval()
    deep = ATFTGATFAN(_cfg(wide=False), F, H).eval()
    deep.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("wide.")})
    x = _x()
    torch.testing.assert_close(model(x, EDGES, EDGE_ATTR)[0], deep(x, EDGES, EDGE_ATTR)[0])
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.wide.weight.copy_(torch.randn(H, 2 * F, generator=gen))
        model.wide.bias.copy_(torch.randn(H, generator=gen))
    shift = model(x, EDGES, EDGE_ATTR)[0] - deep(x, EDGES, EDGE_ATTR)[0]  # [N, H, Q]
    peer = torch.zeros(N, F)
    peer[[0, 1, 2, 3]] = x[[1, 0, 3, 2], -1]  # each node's one neighbour (positive rho)
    want = torch.cat([x[:, -1], peer], -1) @ model.wide.weight.T + model.wide.bias  # [N, H]
    torch.testing.assert_close(shift, want[..., None].expand_as(shift), atol=1e-5, rtol=1e-5)
    solo = ATFTGATFAN(_cfg(use_graph=False), F, H)
    assert solo.wide.in_features == F
