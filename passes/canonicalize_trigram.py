"""canonicalize-trigram: MobileBERT's trigram of token embeddings -> one ``bertc::trigram`` op (an FX pass).

MobileBERT embeds tokens in E features (128) and widens them to the hidden size with a kernel-3
convolution written as a concatenation: each position's embedding beside its right and left
neighbours' (zeros past the ends), then a linear of 3E inputs. Pads of slices are nothing bertc
runs, and slicing ``[:, :-1]`` of a run-time length cannot be said in bertc.slice; the three views
become one op, which raise-torch lowers to ``bertc.trigram``. Like canonicalize-rotary, this is an
FX pass on the torch.export program (bertc/frontend.py runs it), not in the MLIR registry.

Before (modeling_mobilebert.py)::

    slice_1 = aten.slice.Tensor(embedding, 1, 1, 9223372036854775807)
    pad = aten.pad.default(slice_1, [0, 0, 0, 1, 0, 0], 'constant', 0.0)     # x[s + 1]
    slice_2 = aten.slice.Tensor(embedding, 1, 0, -1)
    pad_1 = aten.pad.default(slice_2, [0, 0, 1, 0, 0, 0], 'constant', 0.0)   # x[s - 1]
    cat = aten.cat.default([pad, embedding, pad_1], 2)

After::

    trigram = bertc.trigram.default(embedding)

A padded row shifts across its pad tokens as the model does: the op sees the whole row, and only
the run's length ends it.
"""

from __future__ import annotations

import torch
from torch import fx


@torch.library.custom_op("bertc::trigram", mutates_args=())
def trigram(x: torch.Tensor) -> torch.Tensor:
    """out[b, s] = x[b, s + 1] | x[b, s] | x[b, s - 1] for x [B, S, E], zeros past the ends: [B, S, 3E]."""
    pad = torch.nn.functional.pad
    return torch.cat([pad(x[:, 1:], [0, 0, 0, 1]), x, pad(x[:, :-1], [0, 0, 1, 0])], dim=2)


@trigram.register_fake
def _(x):
    return x.new_empty(*x.shape[:2], 3 * x.shape[2])


_PADS = (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default)  # pad(x, pads, mode, value)
_LAST = (9223372036854775807, None)  # x[:, 1:] as torch.export writes its end


def shifted(node: fx.Node) -> tuple[fx.Node, int] | None:
    """(x, +1) for ``pad(x[:, 1:], [0, 0, 0, 1])`` (row s holds x[s + 1]), (x, -1) for ``pad(x[:, :-1],
    [0, 0, 1, 0])``, zero-filled; None for anything else."""
    if not isinstance(node, fx.Node) or node.target not in _PADS:
        return None
    if node.target is torch.ops.aten.pad.default:
        sl, pads, mode, value = (list(node.args) + ["constant", None])[:4]
    else:
        (sl, pads, value), mode = (list(node.args) + [0.0])[:3], "constant"
    pads = list(pads) + [0] * 6
    if mode != "constant" or value not in (0, 0.0, None) or pads[:2] != [0, 0] or any(pads[4:6]):
        return None
    if not isinstance(sl, fx.Node) or sl.target is not torch.ops.aten.slice.Tensor or sl.args[1] != 1:
        return None
    start, end = (list(sl.args[2:4]) + [0, None])[:2]
    if pads[2:4] == [0, 1] and start == 1 and end in _LAST:
        return sl.args[0], 1
    if pads[2:4] == [1, 0] and start in (0, None) and end == -1:
        return sl.args[0], -1
    return None


def canonicalize_trigram(ep: torch.export.ExportedProgram) -> None:
    """Replace every ``cat([x[s + 1], x, x[s - 1]], -1)`` of a [B, S, E] x by ``bertc::trigram(x)`` (in place)."""
    g = ep.graph
    for cat in g.find_nodes(op="call_function", target=torch.ops.aten.cat.default):
        parts, dim = cat.args[0], cat.args[1] if len(cat.args) > 1 else 0
        if len(parts) != 3 or dim not in (2, -1) or parts[1].meta["val"].dim() != 3:
            continue
        x = parts[1]
        if shifted(parts[0]) != (x, 1) or shifted(parts[2]) != (x, -1):
            continue
        with g.inserting_before(cat):
            node = g.call_function(torch.ops.bertc.trigram.default, (x,))
        node.meta["val"] = cat.meta["val"]
        cat.replace_all_uses_with(node)
    g.eliminate_dead_code()
    g.lint()
