"""canonicalize-glu (passes/canonicalize_glu.py): a GLU's chunked projection becomes two linears on its weight's row
halves, with the output unchanged; a chunk whose projection is read elsewhere too is left."""

from __future__ import annotations

import pytest
import torch
from bertc.passes.canonicalize_glu import canonicalize_glu
from bertc.passes.canonicalize_inputs import evaluate_nodes


class GeGLU(torch.nn.Module):
    """ModernBERT's MLP (``bias``: with Wi's bias; ``shared``: the projection also read whole, so not split)."""

    def __init__(self, bias: bool, shared: bool = False):
        super().__init__()
        self.wi, self.wo, self.shared = torch.nn.Linear(8, 12, bias=bias), torch.nn.Linear(6, 8), shared

    def forward(self, x):
        h = self.wi(x)
        inp, gate = h.chunk(2, dim=-1)
        out = self.wo(torch.nn.functional.gelu(inp) * gate)
        return out + h.sum(-1, keepdim=True) if self.shared else out


@pytest.mark.parametrize("bias,shared", [(False, False), (True, False), (False, True)])
def test_glu_projection_becomes_two_linears(bias, shared):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)
    ep = torch.export.export(GeGLU(bias, shared).eval(), (x,))
    want = ep.module()(x)
    canonicalize_glu(ep)
    ops = [n for n in ep.graph.nodes if n.op == "call_function"]
    linears = [n for n in ops if n.target is torch.ops.aten.linear.default]
    assert any(n.target is torch.ops.aten.chunk.default for n in ops) == shared
    assert len(linears) == (2 if shared else 3)
    if not shared:  # the GELU reads the first half's linear, which fuse-epilogues folds it into
        gelu = next(n for n in ops if n.target is torch.ops.aten.gelu.default)
        assert gelu.args[0] in linears and gelu.args[0].args[1].shape == (6, 8)
    out = ep.graph.output_node().args[0][0]  # run by an interpreter: the graph holds the halves as tensor literals
    torch.testing.assert_close(evaluate_nodes(ep, [x], {out})[out], want, rtol=1e-6, atol=1e-6)
