"""canonicalize-norms (passes/canonicalize_norms.py): RMSNorms and LayerNorms written out become aten.rms_norm and
aten.layer_norm, their weight (and bias) folded in, with the output unchanged; a mean that is no norm is left."""

from __future__ import annotations

import pytest
import torch
from bertc.passes.canonicalize_norms import canonicalize_norms


class Norm(torch.nn.Module):
    def __init__(self, form):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(16))
        self.form = form

    def forward(self, x):
        h = x.to(torch.float32)
        if self.form == "not a norm":  # centred: a LayerNorm without its shift, not an RMSNorm
            return self.weight * (h - h.mean(-1, keepdim=True))
        r = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        if self.form == "eurobert":
            return self.weight * r.to(x.dtype)
        return r * x.new_tensor(2.0) if self.form == "no weight" else r * self.weight


@pytest.mark.parametrize("form", ["eurobert", "weight after", "no weight", "not a norm"])
def test_written_out_rms_norm_becomes_aten_rms_norm(form):
    torch.manual_seed(0)
    model, x = Norm(form).eval(), torch.randn(2, 5, 16)
    ep = torch.export.export(model, (x,))
    want = ep.module()(x)
    canonicalize_norms(ep)
    nodes = [n for n in ep.graph.nodes if n.op == "call_function"]
    norms = [n for n in nodes if n.target == torch.ops.aten.rms_norm.default]
    assert len(norms) == (form != "not a norm")
    if norms:
        weighted = form != "no weight"
        assert (norms[0].args[2] is not None) == weighted and norms[0].args[3] == pytest.approx(1e-6)
        assert not any(n.target in (torch.ops.aten.mean.dim, torch.ops.aten.rsqrt.default) for n in nodes)
    torch.testing.assert_close(ep.module()(x), want, rtol=1e-5, atol=1e-6)


class LayerNorm(torch.nn.Module):
    """DeBERTa v1's DebertaLayerNorm (eps inside the square root, computed in float), and forms around it."""

    def __init__(self, form):
        super().__init__()
        self.weight, self.bias = torch.nn.Parameter(torch.randn(16)), torch.nn.Parameter(torch.randn(16))
        self.form = form

    def forward(self, x):
        h = x.float()
        mean = h.mean(-1, keepdim=True)
        if self.form == "no variance":  # centred and scaled by a constant: not a norm
            return self.weight * (h - mean) / 3.0 + self.bias
        y = (h - mean) / torch.sqrt((h - mean).pow(2).mean(-1, keepdim=True) + 1e-7)
        if self.form == "deberta":
            return self.weight * y.to(x.dtype) + self.bias
        return y * self.weight if self.form == "no bias" else y


@pytest.mark.parametrize("form", ["deberta", "no bias", "no affine", "no variance"])
def test_written_out_layer_norm_becomes_aten_layer_norm(form):
    torch.manual_seed(0)
    model, x = LayerNorm(form).eval(), torch.randn(2, 5, 16) * 2 + 1
    ep = torch.export.export(model, (x,))
    want = ep.module()(x)
    canonicalize_norms(ep)
    nodes = [n for n in ep.graph.nodes if n.op == "call_function"]
    norms = [n for n in nodes if n.target == torch.ops.aten.layer_norm.default]
    assert len(norms) == (form != "no variance")
    assert not any(n.target == torch.ops.aten.rms_norm.default for n in nodes)
    if norms:
        _, shape, weight, bias, eps = norms[0].args
        assert shape == [16] and eps == pytest.approx(1e-7)
        assert (weight is not None, bias is not None) == {"deberta": (True, True), "no bias": (True, False),
                                                          "no affine": (False, False)}[form]
        assert not any(n.target in (torch.ops.aten.mean.dim, torch.ops.aten.sqrt.default) for n in nodes)
    torch.testing.assert_close(ep.module()(x), want, rtol=1e-5, atol=1e-5)
