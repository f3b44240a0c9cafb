"""canonicalize-norms: an RMSNorm or a LayerNorm written out -> ``aten.rms_norm`` / ``aten.layer_norm`` (an FX pass).

EuroBERT (as Llama, T5) normalises with ``w * (x * rsqrt(mean(x^2, -1) + eps))``, DeBERTa v1 with its own
LayerNorm, ``w * ((x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps)) + b``; torch.export keeps the pow, means,
subs, add, sqrt or rsqrt and muls (and the no-op ``.to(float32)`` around them), and bertc has no reduction kernel
and should not need one: as ``aten.rms_norm`` or ``aten.layer_norm`` each is raise-torch's one ``bertc.rms_norm``
or ``bertc.layer_norm``, one pass over each row. Like canonicalize-gelu this rewrites the torch.export program
(bertc/frontend.py runs it); it is not in the MLIR registry.

Each ``mean`` over the last dimension (keepdim) starts a candidate: x is its argument or a tensor its argument
reads, eps the scalar an ``add`` in the region adds, and the value tried as the norm is each node up to three
users past the mean, the furthest first. The nodes between x and the candidate must read nothing but x and
scalars, and nothing outside may read them; the candidate is accepted when that sub-graph, run on random rows of
x's width, equals ``x * rsqrt(mean(x^2) + eps)`` (an RMSNorm) or ``layer_norm(x, eps)`` without its affine part.
A product of the result with a [D] parameter (the norm's weight) joins the op, and for a LayerNorm a sum with a
[D] parameter after it (its bias); anything else computed with a mean is left, and raise-torch names it.

Before (EuroBERT's input_layernorm)::

    to_7 = aten.to.dtype(embedding, torch.float32)
    pow_1 = aten.pow.Tensor_Scalar(to_7, 2)
    mean = aten.mean.dim(pow_1, [-1], True)
    add_2 = aten.add.Tensor(mean, 1e-05)
    rsqrt = aten.rsqrt.default(add_2)
    mul_3 = aten.mul.Tensor(to_7, rsqrt)
    to_8 = aten.to.dtype(mul_3, torch.float32)
    mul_4 = aten.mul.Tensor(p_model_layers_0_input_layernorm_weight, to_8)

After::

    rms_norm = aten.rms_norm.default(to_7, [32], p_model_layers_0_input_layernorm_weight, 1e-05)

Before (DeBERTa v1's DebertaLayerNorm)::

    to = aten.to.dtype(embedding, torch.float32)
    mean = aten.mean.dim(to, [-1], True)
    sub = aten.sub.Tensor(to, mean)
    pow_1 = aten.pow.Tensor_Scalar(sub, 2)
    mean_1 = aten.mean.dim(pow_1, [-1], True)
    sub_1 = aten.sub.Tensor(to, mean)
    add = aten.add.Tensor(mean_1, 1e-07)
    sqrt = aten.sqrt.default(add)
    div = aten.div.Tensor(sub_1, sqrt)
    to_1 = aten.to.dtype(div, torch.float32)
    mul = aten.mul.Tensor(p_embeddings_layernorm_weight, to_1)
    add_1 = aten.add.Tensor(mul, p_embeddings_layernorm_bias)

After::

    layer_norm = aten.layer_norm.default(to, [32], p_embeddings_layernorm_weight, p_embeddings_layernorm_bias, 1e-07)
"""

from __future__ import annotations

import torch
from torch import fx

from .fx_graph import REFUSALS, region, run, users_within


def canonicalize_norms(ep: torch.export.ExportedProgram) -> None:
    """Replace every written-out RMSNorm and LayerNorm by ``aten.rms_norm`` / ``aten.layer_norm`` (in place)."""
    g = ep.graph
    params = {spec.arg.name for spec in ep.graph_signature.input_specs
              if spec.kind == torch.export.graph_signature.InputKind.PARAMETER}
    for mean in list(g.find_nodes(op="call_function", target=torch.ops.aten.mean.dim)):
        if mean.graph is None or not isinstance(mean.args[0], fx.Node):
            continue
        for x in [mean.args[0], *mean.args[0].all_input_nodes]:
            match = _match(x, mean)
            if match is None:
                continue
            norm, eps, centred = match
            weight, out = _weight(norm, params, _width(x))
            bias, out = _bias(out, params, _width(x)) if centred and weight is not None else (None, out)
            with g.inserting_before(out):
                if centred:
                    node = g.call_function(torch.ops.aten.layer_norm.default, (x, [_width(x)], weight, bias, eps))
                else:
                    node = g.call_function(torch.ops.aten.rms_norm.default, (x, [_width(x)], weight, eps))
            node.meta["val"] = out.meta.get("val")
            out.replace_all_uses_with(node)
            for check in [u for n in _between(x, out) for u in n.users if u not in _users(n)]:
                g.erase_node(check)  # a dtype assertion on a value the norm replaced would keep it alive
            g.eliminate_dead_code()
            break
    g.lint()


def _width(x: fx.Node) -> int:
    return int(x.meta["val"].shape[-1])


def _match(x: fx.Node, mean: fx.Node) -> tuple[fx.Node, float, bool] | None:
    """(the node up to three users past ``mean`` whose value is x's RMSNorm or LayerNorm, eps, whether it is a
    LayerNorm), or None."""
    if list(mean.args[1]) not in ([-1], [x.meta["val"].dim() - 1]) or not (len(mean.args) > 2 and mean.args[2]):
        return None
    for cand in reversed(users_within(mean)):  # the furthest first
        nodes = region(x, cand)
        eps = _eps(nodes or [])
        if nodes is None or eps is None:
            continue
        for centred in (False, True):
            if _is_norm(x, nodes, cand, eps, centred):
                return cand, eps, centred
    return None


def _eps(region: list[fx.Node]) -> float | None:
    adds = [a for n in region if n.target == torch.ops.aten.add.Tensor for a in n.args if isinstance(a, float)]
    return adds[0] if len(adds) == 1 else None


def _is_norm(x: fx.Node, nodes: list[fx.Node], out: fx.Node, eps: float, centred: bool) -> bool:
    rows = torch.randn(5, _width(x), generator=torch.Generator().manual_seed(0)) * 3 + 1
    try:
        v = run(nodes, {x: rows})[out]
    except REFUSALS:
        return False
    if centred:
        want = torch.nn.functional.layer_norm(rows, [_width(x)], eps=eps)
    else:
        want = rows * torch.rsqrt(rows.pow(2).mean(-1, keepdim=True) + eps)
    return isinstance(v, torch.Tensor) and v.shape == rows.shape and torch.allclose(v, want, rtol=1e-5, atol=1e-5)


def _between(x: fx.Node, out: fx.Node) -> set[fx.Node]:
    """The computed nodes from x (exclusive) up to ``out`` (inclusive)."""
    seen, stack = set(), [out]
    while stack:
        n = stack.pop()
        if n is not x and n not in seen and n.op == "call_function":
            seen.add(n)
            stack.extend(n.all_input_nodes)
    return seen


def _users(n: fx.Node) -> list[fx.Node]:
    """n's users but torch.export's dtype assertions (one beside each ``.to``), which compute nothing."""
    return [u for u in n.users if u.target is not torch.ops.aten._assert_tensor_metadata.default]


def _weight(norm: fx.Node, params: set[str], width: int) -> tuple[fx.Node | None, fx.Node]:
    """(the [D] parameter the norm is multiplied by, and that product) when there is one; else (None, norm).
    A ``.to(float32)`` between them (EuroBERT's cast back to the input's dtype) is a no-op in an f32 program."""
    users = _users(norm)
    if len(users) == 1 and users[0].target == torch.ops.aten.to.dtype and users[0].args[1:] == (torch.float32,):
        norm, users = users[0], _users(users[0])
    if len(users) != 1 or users[0].target != torch.ops.aten.mul.Tensor:
        return None, norm
    (mul,) = users
    other = [a for a in mul.args if a is not norm]
    if len(other) == 1 and isinstance(other[0], fx.Node) and other[0].name in params \
            and tuple(other[0].meta["val"].shape) == (width,):
        return other[0], mul
    return None, norm


def _bias(out: fx.Node, params: set[str], width: int) -> tuple[fx.Node | None, fx.Node]:
    """(the [D] parameter added to the weighted LayerNorm, and that sum) when there is one; else (None, out)."""
    users = _users(out)
    if len(users) != 1 or users[0].target != torch.ops.aten.add.Tensor or len(users[0].args) != 2:
        return None, out
    (add,) = users
    other = [a for a in add.args if a is not out]
    if len(other) == 1 and isinstance(other[0], fx.Node) and other[0].name in params \
            and tuple(other[0].meta["val"].shape) == (width,):
        return other[0], add
    return None, out
