"""canonicalize-glu: a gated linear unit's one projection, chunked in two -> two linears (an FX pass).

ModernBERT's MLP projects to 2I features at once and chunks them, ``input, gate = Wi(x).chunk(2, -1)``, then
computes ``gelu(input) * gate``. As written, bertc would run the GEMM, copy each half out (two slices) and run
the GELU as a pass of its own. Two linears on Wi's row blocks give the same values with no copies, and the GELU
folds into the first one's GEMM epilogue (fuse-epilogues), as it does for the separate gate and up projections
of NomicBERT's and EuroBERT's SwiGLU. Like canonicalize-conv, an FX pass on the torch.export program
(bertc/frontend.py runs it), not in the MLIR registry.

Before (modeling_modernbert.py)::

    linear_2 = aten.linear.default(x, p_wi_weight)          # [B, S, 2I]
    chunk = aten.chunk.default(linear_2, 2, -1)
    getitem_12 = chunk[0]                                   # input
    getitem_13 = chunk[1]                                   # gate
    gelu = aten.gelu.default(getitem_12)

After::

    linear_a = aten.linear.default(x, <Wi's rows 0 .. I - 1>)
    linear_b = aten.linear.default(x, <Wi's rows I .. 2I - 1>)
    gelu = aten.gelu.default(linear_a)
"""

from __future__ import annotations

import operator

import torch
from torch import fx

from .fx_graph import like, value_of

_A = torch.ops.aten


def _halves(ep: torch.export.ExportedProgram, g: fx.Graph, chunk: fx.Node) -> bool:
    """``chunk(linear(x, W, b), 2, -1)`` read only through its two items: each item becomes the linear of its half
    of W's rows (and of b). False, and nothing changed, for any other chunk."""
    lin, parts, dim = chunk.args[0], chunk.args[1], chunk.args[2] if len(chunk.args) > 2 else 0
    if not isinstance(lin, fx.Node) or lin.target is not _A.linear.default or len(lin.users) != 1 or parts != 2:
        return False
    weight = value_of(ep, lin.args[1])
    bias = value_of(ep, lin.args[2]) if len(lin.args) > 2 and lin.args[2] is not None else None
    if weight is None or dim not in (-1, lin.meta["val"].dim() - 1) or weight.shape[0] % 2 \
            or (len(lin.args) > 2 and lin.args[2] is not None and bias is None):
        return False
    items = list(chunk.users)
    if any(u.target is not operator.getitem or u.args[1] not in (0, 1) for u in items):
        return False
    half = weight.shape[0] // 2
    for item in items:
        rows = slice(item.args[1] * half, (item.args[1] + 1) * half)
        args = (lin.args[0], weight.detach()[rows].clone(), *(() if bias is None else (bias.detach()[rows].clone(),)))
        with g.inserting_before(item):
            node = g.call_function(_A.linear.default, args)
        like(node, lin, item.meta["val"])  # the item's value (not the linear's tensor_meta), the linear's module
        item.replace_all_uses_with(node)
    return True


def canonicalize_glu(ep: torch.export.ExportedProgram) -> None:
    """Split each GLU's chunked projection into two linears (in place)."""
    g = ep.graph
    for chunk in list(g.find_nodes(op="call_function", target=_A.chunk.default)):
        _halves(ep, g, chunk)
    g.eliminate_dead_code()
    g.lint()
