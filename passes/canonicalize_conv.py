"""canonicalize-conv: ConvBERT's convolutions over the sequence -> ``bertc::depthwise_conv1d`` and
``bertc::span_conv``, its head concatenation and grouped FFN -> linears (an FX pass).

ConvBERT gives half its heads to a span-based dynamic convolution. Its key is a separable convolution
of the hidden states (a depthwise conv1d of kernel k along the sequence, then a pointwise conv1d, a
matmul, and a bias), written on the transposed [B, C, S] layout; its output mixes each position's k
neighbours (an ``unfold``, which torch.export writes as ``im2col``) with weights softmaxed over k. Neither
conv1d nor im2col is anything bertc runs, and both read the run's length: each becomes one op on
[B, S, C] rows, which raise-torch lowers to ``bertc.depthwise_conv1d`` and ``bertc.span_conv``; the
pointwise conv1d and its bias become one ``aten.linear``. Like canonicalize-trigram, this is an FX pass
on the torch.export program (bertc/frontend.py runs it), not in the MLIR registry.

Before (modeling_convbert.py, one layer, abridged)::

    transpose = aten.transpose.int(x, 1, 2)
    conv1d = aten.conv1d.default(transpose, p_depthwise_weight, None, [1], [4], [1], 32)    # [C, 1, 9]
    conv1d_1 = aten.conv1d.default(conv1d, p_pointwise_weight)                             # [A, C, 1]
    add_ = aten.add_.Tensor(conv1d_1, p_bias)                                              # [A, 1]
    transpose_1 = aten.transpose.int(add_, 1, 2)
    ...
    softmax = aten.softmax.int(aten.reshape.default(kernel_logits, [-1, 9, 1]), 1)
    im2col = aten.im2col.default(unsqueeze(contiguous(transpose(reshape(conv_out, [2, -1, A]), 1, 2)), -1),
                                 [9, 1], [1, 1], [4, 0], [1, 1])
    matmul = aten.matmul.default(reshape(reshape(transpose(im2col, 1, 2), [2, -1, A, 9]), [-1, D, 9]), softmax)

After::

    depthwise_conv1d = bertc.depthwise_conv1d.default(x, _tensor_constant0)                # weight [C, 9]
    transpose_1 = aten.linear.default(depthwise_conv1d, _tensor_constant1, _tensor_constant2)
    ...
    softmax = aten.softmax.int(aten.reshape.default(kernel_logits, [2, -1, h, 9]), -1)
    span_conv = bertc.span_conv.default(conv_out, softmax)                                  # [B, S, A]
    reshape_5 = aten.reshape.default(span_conv, [2, -1, h, D])     # was reshape(reshape(matmul, [-1, A]), [2, -1, h, D])

and the attention heads beside the convolution's, ``dense(view(cat([context, conv_out], 2), [2, L, 2A]))``, become
two linears on the output projection's column blocks, added (fuse-epilogues makes the add a residual); a grouped
FFN (num_groups > 1: a batched matmul of feature groups between permutes) is one linear of block-diagonal weight::

    linear_default_2 = aten.linear.default(aten.reshape.default(permute, [2, -1, A]), _tensor_constant3, p_dense_bias)
    linear_default_3 = aten.linear.default(aten.reshape.default(reshape_5, [2, -1, A]), _tensor_constant4)
    linear_5 = aten.add.Tensor(linear_default_2, linear_default_3)
    add_7 = aten.linear.default(layer_norm_1, _tensor_constant5, p_intermediate_dense_bias)  # [G*o, G*i], was
    # reshape(permute(matmul(permute(reshape(layer_norm_1, [-1, G, i]), [1, 0, 2]), p_weight), [1, 0, 2]), [2, -1, G*o]) + bias

Both convolutions see zeros past the run's length and before 0, as PyTorch's padding at that length: a
padded position's neighbours are its row's other tokens, pad tokens included, as in the model.
"""

from __future__ import annotations

import torch
from torch import fx

from .fx_graph import like, value_of

_A = torch.ops.aten


@torch.library.custom_op("bertc::depthwise_conv1d", mutates_args=())
def depthwise_conv1d(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """out[b, s, c] = sum_j weight[c, j] * x[b, s + j - k // 2, c] for x [B, S, C], weight [C, k]; zeros past the ends."""
    c, k = weight.shape
    return torch.nn.functional.conv1d(x.transpose(1, 2), weight[:, None, :], padding=k // 2, groups=c).transpose(1, 2)


@torch.library.custom_op("bertc::span_conv", mutates_args=())
def span_conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """out[b, s, h*D + d] = sum_j w[b, s, h, j] * x[b, s + j - k // 2, h*D + d] for x [B, S, H*D], w [B, S, H, k]."""
    b, s, heads, k = w.shape
    cols = torch.nn.functional.pad(x, [0, 0, k // 2, k // 2]).unfold(1, k, 1)  # [B, S, C, k]
    return (cols.reshape(b, s, heads, -1, k) * w[:, :, :, None, :]).sum(-1).reshape(x.shape)


def _shaped_like_input(x, _):
    return torch.empty_like(x)


depthwise_conv1d.register_fake(_shaped_like_input)
span_conv.register_fake(_shaped_like_input)


def _arg(node: fx.Node, i: int, default):
    return node.args[i] if len(node.args) > i else node.kwargs.get(_CONV_ARGS[i], default)


_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


def _is(node, target) -> bool:
    return isinstance(node, fx.Node) and node.op == "call_function" and node.target in target


def _untransposed(node) -> fx.Node | None:
    """x for ``transpose(x, 1, 2)`` of a 3-D x, else None."""
    if _is(node, (_A.transpose.int,)) and sorted(d % 3 for d in node.args[1:3]) == [1, 2] \
            and node.args[0].meta["val"].dim() == 3:
        return node.args[0]
    return None


def _plain(conv: fx.Node, pad: int, groups: int) -> bool:
    return (list(_arg(conv, 3, [1])) == [1] and list(_arg(conv, 4, [0])) == [pad]
            and list(_arg(conv, 5, [1])) == [1] and _arg(conv, 6, 1) == groups)


def _dims(val) -> list[str]:
    return [str(d) for d in val.shape]


def _sole_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _separable(ep: torch.export.ExportedProgram, g: fx.Graph, conv: fx.Node) -> bool:
    """Rewrite one depthwise conv1d of a transposed [B, S, C] x (and the pointwise conv1d and bias after it)."""
    x = _untransposed(_arg(conv, 0, None))
    weight = value_of(ep, _arg(conv, 1, None))
    if x is None or weight is None or weight.dim() != 3 or weight.shape[1] != 1 or weight.shape[2] % 2 == 0:
        return False
    c, _, k = weight.shape
    if _arg(conv, 2, None) is not None or not _plain(conv, k // 2, c) or x.meta["val"].shape[2] != c:
        return False
    with g.inserting_before(conv):
        dw = g.call_function(torch.ops.bertc.depthwise_conv1d.default, (x, weight.detach().reshape(c, k).clone()))
    like(dw, conv, x.meta["val"])
    # the pointwise conv1d (kernel 1) and its [O, 1] bias, transposed back: one linear on the rows
    pw = _sole_user(conv)
    pw_w = value_of(ep, _arg(pw, 1, None)) if _is(pw, (_A.conv1d.default,)) else None
    add = _sole_user(pw) if pw_w is not None else None
    # ``x += self.bias``: in place on the pointwise conv's fresh output (canonicalize-inputs, later, would make
    # it out of place)
    bias = value_of(ep, add.args[1]) if _is(add, (_A.add.Tensor, _A.add_.Tensor)) and add.args[0] is pw else None
    back = _sole_user(add) if bias is not None else None
    if (pw_w is not None and pw_w.dim() == 3 and pw_w.shape[2] == 1 and _arg(pw, 2, None) is None and _plain(pw, 0, 1)
            and bias is not None and bias.shape == (pw_w.shape[0], 1) and back is not None
            and _untransposed(back) is add and len(add.args) == 2):
        with g.inserting_before(back):
            lin = g.call_function(_A.linear.default, (dw, pw_w.detach()[:, :, 0].clone(), bias.detach()[:, 0].clone()))
        like(lin, pw, back.meta["val"])
        back.replace_all_uses_with(lin)
        for dead in (back, add, pw, conv):  # the in-place add_ is not dead code to FX: take it out by hand
            g.erase_node(dead)
        return True
    with g.inserting_before(conv):  # the depthwise conv alone: back to the [B, C, S] layout its users read
        t = g.call_function(_A.transpose.int, (dw, 1, 2))
    like(t, conv, conv.meta["val"])
    conv.replace_all_uses_with(t)
    return True


def _im2col_rows(node) -> tuple[fx.Node, int] | None:
    """(x [B, S, C], k) for ``im2col(unsqueeze(transpose(x, 1, 2), -1), [k, 1], [1, 1], [k // 2, 0], [1, 1])``,
    through the reshapes and contiguous the model puts between them."""
    if not _is(node, (_A.im2col.default,)):
        return None
    src, kernel, dilation, padding, stride = node.args[:5]
    if list(dilation) != [1, 1] or list(stride) != [1, 1] or kernel[1] != 1 or kernel[0] % 2 == 0 \
            or list(padding) != [kernel[0] // 2, 0]:
        return None
    if not _is(src, (_A.unsqueeze.default,)) or src.args[1] not in (-1, 3):
        return None
    t = src.args[0]
    while _is(t, (_A.contiguous.default, _A.clone.default)):
        t = t.args[0]
    x = _untransposed(t)
    while _is(x, (_A.reshape.default, _A.view.default)) and x.args[0].meta["val"].shape == x.meta["val"].shape:
        x = x.args[0]
    return (x, kernel[0]) if x is not None else None


def _span(g: fx.Graph, matmul: fx.Node) -> bool:
    """Rewrite ``matmul(unfold(x) as [B*S*h, D, k], softmax(w as [B*S*h, k, 1], 1))`` into ``bertc::span_conv``."""
    cols, probs = matmul.args
    while _is(cols, (_A.reshape.default, _A.view.default)):
        cols = cols.args[0]
    found = _im2col_rows(cols.args[0]) if _is(cols, (_A.transpose.int,)) and sorted(cols.args[1:3]) == [1, 2] else None
    if found is None or not _is(probs, (_A.softmax.int, _A._softmax.default)) or probs.args[1] not in (1, -2):
        return False
    (x, k), logits = found, probs.args[0]
    if not _is(logits, (_A.reshape.default, _A.view.default)):
        return False
    logits = logits.args[0]
    xv, lv, mv = x.meta["val"], logits.meta["val"], matmul.meta["val"]
    b, s, c = xv.shape
    if lv.dim() != 3 or lv.shape[:2] != xv.shape[:2] or lv.shape[2] % k or mv.shape[-1] != 1:
        return False
    heads, d = lv.shape[2] // k, mv.shape[-2]
    if heads * d != c or probs.meta["val"].shape[-2:] != (k, 1):
        return False
    # the matmul's rows [B*S*h, D, 1] are read through reshapes; the first of them back at [B, S, ...] takes the
    # convolution's rows (bertc.reshape keeps the run's length in one dimension, never B*S)
    rows = _sole_user(matmul)
    while _is(rows, (_A.reshape.default, _A.view.default)) and _dims(rows.meta["val"])[:2] != _dims(xv)[:2]:
        rows = _sole_user(rows)
    if not _is(rows, (_A.reshape.default, _A.view.default)):
        return False
    with g.inserting_before(rows):
        split = g.call_function(_A.reshape.default, (logits, [b, -1, heads, k]))
        soft = g.call_function(_A.softmax.int, (split, -1))
        out = g.call_function(torch.ops.bertc.span_conv.default, (x, soft))
        back = g.call_function(_A.reshape.default, (out, [b, -1, *rows.meta["val"].shape[2:]]))
    with xv.fake_mode:
        split.meta["val"] = lv.reshape(b, s, heads, k)
        soft.meta["val"] = torch.empty_like(split.meta["val"])
    for node in (split, soft, out, back):
        like(node, matmul, node.meta.get("val", xv if node is out else rows.meta["val"]))
    rows.replace_all_uses_with(back)
    return True


def _split_concat(ep: torch.export.ExportedProgram, g: fx.Graph, cat: fx.Node) -> bool:
    """``linear(view(cat([a, c], 2), [B, S, C]), W, b)`` of head blocks [B, S, h, D] is ``linear(a, W_a, b) +
    linear(c, W_c)``, W_a and W_c W's columns of each: no concatenation runs."""
    parts, dim = cat.args[0], cat.args[1] if len(cat.args) > 1 else 0
    view = _sole_user(cat)
    lin = _sole_user(view) if _is(view, (_A.view.default, _A.reshape.default)) else None
    weight = value_of(ep, lin.args[1]) if _is(lin, (_A.linear.default,)) and lin.args[0] is view else None
    vals = [p.meta["val"] for p in parts]
    if weight is None or dim not in (2, -2) or any(v.dim() != 4 for v in vals) or view.meta["val"].dim() != 3:
        return False
    b, s = vals[0].shape[:2]
    widths = [v.shape[2] * v.shape[3] for v in vals]
    if sum(widths) != weight.shape[1] or view.meta["val"].shape[2] != weight.shape[1]:
        return False
    total, start = None, 0
    with g.inserting_before(lin):
        for i, (part, width) in enumerate(zip(parts, widths)):
            rows = g.call_function(_A.reshape.default, (part, [b, -1, width]))
            bias = lin.args[2:3] if i == 0 else ()
            term = g.call_function(_A.linear.default, (rows, weight.detach()[:, start:start + width].clone(), *bias))
            with vals[0].fake_mode:
                like(rows, cat, vals[i].reshape(b, s, width))
            like(term, lin, lin.meta["val"])
            if total is not None:
                term = g.call_function(_A.add.Tensor, (total, term))
                like(term, lin, lin.meta["val"])
            total, start = term, start + width
    lin.replace_all_uses_with(total)
    return True


def _grouped_linear(ep: torch.export.ExportedProgram, g: fx.Graph, matmul: fx.Node) -> bool:
    """ConvBERT's grouped FFN (num_groups G > 1): ``reshape(permute(matmul(permute(reshape(x, [-1, G, i]), [1, 0, 2]),
    W [G, i, o]), [1, 0, 2]), [B, -1, G*o]) + bias`` is one linear of x whose weight is block-diagonal (G times the
    multiply-adds of the groups, in one GEMM kernel bertc has)."""
    inner, weight = matmul.args[0], value_of(ep, matmul.args[1])
    split = inner.args[0] if _is(inner, (_A.permute.default,)) and list(inner.args[1]) == [1, 0, 2] else None
    outer = _sole_user(matmul)
    rows = _sole_user(outer) if _is(outer, (_A.permute.default,)) and list(outer.args[1]) == [1, 0, 2] else None
    if weight is None or weight.dim() != 3 or not _is(split, (_A.reshape.default, _A.view.default)) \
            or not _is(rows, (_A.reshape.default, _A.view.default)):
        return False
    x, (groups, i, o) = split.args[0], weight.shape
    if x.meta["val"].dim() != 3 or x.meta["val"].shape[2] != groups * i or rows.meta["val"].dim() != 3 \
            or rows.meta["val"].shape[2] != groups * o or list(split.meta["val"].shape[1:]) != [groups, i]:
        return False
    full = torch.block_diag(*weight.detach().transpose(1, 2))  # [G*o, G*i]: group g's W[g]^T on the diagonal
    add = _sole_user(rows)
    bias = value_of(ep, add.args[1]) if _is(add, (_A.add.Tensor,)) and add.args[0] is rows else None
    done = add if bias is not None and bias.shape == (groups * o,) else rows
    with g.inserting_before(done):
        lin = g.call_function(_A.linear.default, (x, full, *([bias.detach()] if done is add else [])))
    like(lin, matmul, done.meta["val"])
    done.replace_all_uses_with(lin)
    return True


def canonicalize_conv(ep: torch.export.ExportedProgram) -> None:
    """Replace ConvBERT's separable conv1d and span convolution by bertc ops, and its concatenation of attention and
    convolution heads by the output projection's column blocks (in place)."""
    g = ep.graph
    for conv in list(g.find_nodes(op="call_function", target=_A.conv1d.default)):
        if conv.users:  # the pointwise conv1d of a rewritten separable conv is dead
            _separable(ep, g, conv)
    for matmul in list(g.find_nodes(op="call_function", target=_A.matmul.default)):
        _span(g, matmul) or _grouped_linear(ep, g, matmul)
    if any(n.target is torch.ops.bertc.span_conv.default for n in g.nodes):  # ConvBERT's heads, only there
        for cat in list(g.find_nodes(op="call_function", target=_A.cat.default)):
            _split_concat(ep, g, cat)
    g.eliminate_dead_code()
    g.lint()
