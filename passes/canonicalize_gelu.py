"""canonicalize-gelu: a GELU written out with erf -> ``aten.gelu`` (an FX pass).

ESM (and the original BERT code it copies) writes its activation as ``x * 0.5 * (1 + erf(x / sqrt(2)))``
rather than calling ``F.gelu``; torch.export keeps the five ops, and bertc has no erf kernel and should
not need one: as ``aten.gelu`` it is raise-torch's ``bertc.gelu`` and fuse-epilogues folds it into the
GEMM that produces x. Like canonicalize-rotary and canonicalize-inputs this rewrites the torch.export
program (bertc/frontend.py runs it first); it is not in the MLIR registry.

Each ``erf`` starts a candidate: x is a tensor its argument reads, and the value tried as the GELU is each
node up to three users past the erf. The nodes between x and the candidate must read nothing but x and
scalars, and no node among them may be read from outside; the candidate is accepted when that sub-graph,
run on x = a grid over [-8, 8], equals ``gelu(x)``. Recognising by value holds for ``0.5 * x * (...)``,
``x * 0.7071...`` or ``erf(x / 1.4142...)`` alike; erf used for anything else is left, and raise-torch names it.

Before (ESM's intermediate layer)::

    mul = aten.mul.Tensor(linear, 0.5)
    div = aten.div.Tensor(linear, 1.4142135623730951)
    erf = aten.erf.default(div)
    add = aten.add.Tensor(erf, 1.0)
    mul_1 = aten.mul.Tensor(mul, add)

After::

    gelu = aten.gelu.default(linear)
"""

from __future__ import annotations

import torch
from torch import fx

from .fx_graph import REFUSALS, region, run, users_within

_GRID = torch.linspace(-8.0, 8.0, 161)


def canonicalize_gelu(ep: torch.export.ExportedProgram) -> None:
    """Replace every erf-written GELU by ``aten.gelu`` (in place)."""
    g = ep.graph
    for erf in list(g.find_nodes(op="call_function", target=torch.ops.aten.erf.default)):
        if erf.graph is None:  # removed with an earlier match
            continue
        for x in erf.args[0].all_input_nodes if isinstance(erf.args[0], fx.Node) else []:
            gelu = _match(x, erf)
            if gelu is not None:
                with g.inserting_before(gelu):
                    node = g.call_function(torch.ops.aten.gelu.default, (x,))
                node.meta["val"] = gelu.meta.get("val")
                gelu.replace_all_uses_with(node)
                g.eliminate_dead_code()
                break
    g.lint()


def _match(x: fx.Node, erf: fx.Node) -> fx.Node | None:
    """The node up to three users past ``erf`` whose value is gelu(x), computed from x and scalars alone."""
    for cand in users_within(erf):
        nodes = region(x, cand)
        if nodes is not None and _is_gelu(x, nodes, cand):
            return cand
    return None


def _is_gelu(x: fx.Node, nodes: list[fx.Node], out: fx.Node) -> bool:
    try:
        v = run(nodes, {x: _GRID})[out]
    except REFUSALS:  # an op that needs x's real shape: not elementwise
        return False
    return isinstance(v, torch.Tensor) and v.shape == _GRID.shape and torch.allclose(
        v, torch.nn.functional.gelu(_GRID), rtol=0, atol=1e-6)
