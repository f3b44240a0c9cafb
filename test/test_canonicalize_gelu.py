"""canonicalize-gelu (passes/canonicalize_gelu.py): GELUs written with erf become aten.gelu with the output
unchanged; erf in anything else is left for raise-torch to name."""

from __future__ import annotations

import math

import pytest
import torch
from bertc.passes.canonicalize_gelu import canonicalize_gelu


def _erf_read_twice(x):
    e = torch.erf(x / math.sqrt(2.0))
    return x * 0.5 * (1.0 + e) + e


FORMS = {
    "esm": lambda x: x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))),
    "scaled first": lambda x: 0.5 * x * (1.0 + torch.erf(x * 0.7071067811865476)),
    "not a gelu": lambda x: x * torch.erf(x),
    "erf read twice": _erf_read_twice,
}


class Ffn(torch.nn.Module):
    def __init__(self, act):
        super().__init__()
        torch.manual_seed(0)
        self.up, self.act = torch.nn.Linear(8, 16), act

    def forward(self, x):
        return self.act(self.up(x))


@pytest.mark.parametrize("form", FORMS)
def test_erf_gelu_becomes_aten_gelu(form):
    x = torch.randn(2, 5, 8)
    ep = torch.export.export(Ffn(FORMS[form]).eval(), (x,), strict=False)
    with torch.no_grad():
        before = ep.module()(x)
    canonicalize_gelu(ep)
    targets = {n.target for n in ep.graph.nodes if n.op == "call_function"}
    gelu = form in ("esm", "scaled first")
    assert (torch.ops.aten.gelu.default in targets) == gelu and (torch.ops.aten.erf.default in targets) != gelu
    with torch.no_grad():
        assert torch.allclose(ep.module()(x), before, atol=1e-6)
