"""canonicalize-inputs: the attention mask's and the position ids' arithmetic -> one op each (an FX pass).

The graph a transformers model exports builds its attention mask and position ids from dozens of small
integer ops (arange, unsqueeze, index, __and__, where, cumsum), which bertc has no kernels for and
should not have: at run time they are one broadcast and one scan. This pass rewrites the torch.export
program (a torch FX graph, before the torch-mlir import: it is not an MLIR pass and is not in the
registry of ``passes/__init__.py``); bertc/frontend.py runs it on every program it exports.

Each sub-graph that depends on one model input only (or on nothing) is evaluated with three sets of
random inputs (all ones, right padding, holes) and, when it equals a known form for all of them,
replaced by one op (``bertc::mask_bias``, ``bertc::keep_mask``, ``bertc::position_ids``, defined below
with eager implementations, so a rewritten program still runs in PyTorch) or by its constant value.
Recognising by value rather than by op pattern is what makes it hold across transformers versions and
attention implementations. A sub-graph that matches no form is left alone, and raise-torch names its ops.

Before (RoBERTa, seq_len 8, abridged)::

    ne = aten.ne.Scalar(input_ids, 1)
    to = aten.to.dtype(ne, torch.int32)
    cumsum = aten.cumsum.default(to, 1)
    ...
    add_1 = aten.add.Tensor(to_1, 1)
    embedding_2 = aten.embedding.default(p_position_embeddings_weight, add_1, 1)
    to_2 = aten.to.device(attention_mask, cpu, torch.bool)
    arange = aten.arange.default(1)
    ...                                       # 20 unsqueeze / index / __and__ / expand nodes
    where = aten.where.ScalarOther(expand, zeros, -3.4028234663852886e+38)
    add_6 = aten.add.Tensor(mul_1, where)

After::

    position_ids_default = bertc.position_ids.default(input_ids, 1)
    mask_bias_default = bertc.mask_bias.default(attention_mask, [1, 1, 8, 8], -3.4028234663852886e+38)
    embedding_2 = aten.embedding.default(p_position_embeddings_weight, position_ids_default, 1)
    add_6 = aten.add.Tensor(mul_1, mask_bias_default)

A boolean mask (sdpa attention) becomes ``bertc.keep_mask.default(attention_mask, shape)``; BERT's
``arange`` position ids, which read no input, become a constant tensor.

A program exported with a dynamic sequence length (``torch.export.Dim`` on the inputs' axis 1) is
evaluated at one length inside the Dim's range. A size read from an input (``sym_size``) counts as
reading no data, since every input has the same length; a stand-in's shape keeps the length as
``sym_size(attention_mask, 1)``; and a sub-graph whose value has the run-time length (BERT's position
ids, ``slice(position_ids, 1, 0, L)``) is left alone rather than frozen at the trial's length; one
that reads no input and is one value throughout (ERNIE's ``torch.zeros(input_shape)`` task type ids)
becomes that form: ``slice(zeros([1, N]), 1, 0, L)``, N the Dim's bound.

DeBERTa's disentangled attention: each ``gather(scores, -1, index)`` whose index comes from the length alone
(log-bucketed relative positions) becomes ``bertc.relative_gather.default(scores, table)``, the index's [2N - 1]
diagonals; the position keys and queries, computed from weights alone (LayerNorm(rel_embeddings) projected and
repeated), become constants; and ``masked_fill(scores, ~(mask_i & mask_j), fill)`` becomes ``scores +
mask_bias(mask, [B, 1, 1, L], fill)``, the same on every real query's row (padded queries' rows are read by no one).
DeBERTa v1 slices its relative embeddings to the run's span, ``rel_embeddings[M - span : M + span]`` with span =
min(L, M) read by ``.item()`` (unbacked symbols): the slice becomes the window at the longest length, each gather of
its products reads columns shifted by the difference (and must give the values it gave), and its heads [B, H, L, W]
are gathered as [B * H, L, W] rows.

First, an in-place op on a tensor that no other value sees becomes its out-of-place twin (MegatronBERT's
and BigBird's ``embeddings += position_embeddings``): ``add_ = aten.add_.Tensor(add, embedding_2)``, with
``add`` a fresh sum read by nothing after it, is ``aten.add.Tensor(add, embedding_2)``. torch.export keeps
such ops and torch-mlir imports them as ops on values; one that writes through a view, a weight or an
input is left, and raise-torch refuses it by name.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import sympy
import torch
from torch import fx

from bertc.errors import BertcError

from .fx_graph import run

# --------------------------------------------------------------------------- the stand-in ops
# raise-torch lowers each to the bertc op of the same name.


def _kept(mask: torch.Tensor, shape: list[int], window: int) -> torch.Tensor:
    """Which keys each query attends to: the unpadded ones, and with a ``window`` (ModernBERT's local
    attention) only those within window // 2 positions of the query."""
    keep = mask[:, None, None, :].bool().expand(shape)
    if window:
        q, k = torch.arange(shape[2]), torch.arange(shape[3])
        keep = keep & ((q[:, None] - k[None, :]).abs() <= window // 2)
    return keep


@torch.library.custom_op("bertc::mask_bias", mutates_args=())
def mask_bias(mask: torch.Tensor, shape: list[int], fill: float, window: int = 0) -> torch.Tensor:
    keep = _kept(mask, shape, window)
    return torch.where(keep, torch.zeros((), dtype=torch.float32), torch.tensor(fill, dtype=torch.float32)).clone()


@mask_bias.register_fake
def _(mask, shape, fill, window=0):
    return mask.new_empty(shape, dtype=torch.float32)


@torch.library.custom_op("bertc::keep_mask", mutates_args=())
def keep_mask(mask: torch.Tensor, shape: list[int], window: int = 0) -> torch.Tensor:
    return _kept(mask, shape, window).clone()


@keep_mask.register_fake
def _(mask, shape, window=0):
    return mask.new_empty(shape, dtype=torch.bool)


@torch.library.custom_op("bertc::position_ids", mutates_args=())
def position_ids(ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    keep = ids.ne(padding_idx).long()
    return torch.cumsum(keep, dim=1) * keep + padding_idx


@position_ids.register_fake
def _(ids, padding_idx):
    return torch.empty_like(ids)


@torch.library.custom_op("bertc::relative_bias", mutates_args=())
def relative_bias(x: torch.Tensor, shape: list[int], table: torch.Tensor) -> torch.Tensor:
    """out[b, h, i, j] = table[h, j - i + N - 1] for a table [H, 2N - 1]: a bias that depends only on how
    far key j is from query i (MPNet's and T5's bucketed relative positions), at the length of ``shape``."""
    span = (table.shape[1] + 1) // 2
    q, k = torch.arange(shape[2]), torch.arange(shape[3])
    return table[:, k[None, :] - q[:, None] + span - 1].expand(shape).clone()


@relative_bias.register_fake
def _(x, shape, table):
    return table.new_empty(shape)


@torch.library.custom_op("bertc::relative_gather", mutates_args=())
def relative_gather(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """out[b, i, j] = x[b, i, table[j - i + N - 1]] for x [B, L, W] and a table [2N - 1] of column indices:
    DeBERTa's content-to-position and position-to-content gathers, whose index depends on j - i alone."""
    span, k = (table.shape[0] + 1) // 2, torch.arange(x.shape[1])
    index = table[k[None, :] - k[:, None] + span - 1]
    return torch.gather(x, -1, index.expand(x.shape[0], -1, -1))


@relative_gather.register_fake
def _(x, table):
    return x.new_empty(x.shape[0], x.shape[1], x.shape[1])


# --------------------------------------------------------------------------- the pass


def canonicalize_inputs(ep: torch.export.ExportedProgram, input_names: list[str], type_vocab: int = 2) -> None:
    """Replace input-only and constant sub-graphs by recognised ops or constants (in place).
    ``input_names`` names the program's user inputs in order (input_ids, attention_mask, token_type_ids);
    the trials draw token types below ``type_vocab`` (RoBERTa checkpoints ship with one: only 0 is valid)."""
    g = ep.graph
    for n in list(g.nodes):
        if n.op == "call_function" and n.target == torch.ops.aten._assert_tensor_metadata.default:
            g.erase_node(n)
    _out_of_place(g)
    placeholders = [n for n in g.nodes if n.op == "placeholder"]
    kinds = {p: s for p, s in zip(placeholders, ep.graph_signature.input_specs)}
    _narrow_double_scalars(ep, placeholders, kinds)
    user = [p for p in placeholders if kinds[p].kind.name == "USER_INPUT"]
    role = {p: input_names[i] for i, p in enumerate(user)}
    _relative_biases(ep, kinds, role)
    _static_windows(ep, kinds, role)
    _relative_gathers(ep, kinds, role)
    _fold_weights(ep, kinds, role)
    group = _input_groups(g, kinds, role)
    frontier = [n for n in g.nodes if group(n) is not None and n.op == "call_function"
                and n.target not in (torch.ops.bertc.relative_bias.default, torch.ops.bertc.relative_gather.default)
                and any(group(u) != group(n) for u in n.users)]
    if not frontier:
        return
    trials = [(dict(zip(input_names, ins)), evaluate_nodes(ep, ins, set(frontier)))
              for ins in trial_inputs(ep, input_names, trial_length(ep), type_vocab, trials=3)]
    placeholder_of = {v: k for k, v in role.items()}
    for n in frontier:
        kind = group(n)
        vals = [vals_[n] for _, vals_ in trials]
        if not all(isinstance(v, torch.Tensor) for v in vals):
            continue
        # a value as long as the run's input cannot be frozen at the trial's length
        frozen_ok = not _has_run_time_length(n)
        replacement = None
        if kind == "const":
            # torch-mlir imports a list argument only if all its items are graph values
            in_list = any(isinstance(a, (list, tuple)) and n in a for u in n.users for a in u.args)
            if frozen_ok and not in_list and all(torch.equal(vals[0], v) for v in vals[1:]):
                replacement = vals[0].clone()
            elif not in_list:
                replacement = _fill_of_run_time_length(ep, n, vals, user[0])
        elif kind in ("attention_mask", "input_ids"):
            if kind == "attention_mask":
                op = _match_mask(n, vals, [ins[kind] for ins, _ in trials], _window(ep, kinds, n, vals[0]))
            else:
                op = _match_position_ids(n, vals, [ins[kind] for ins, _ in trials])
            if op is not None:
                replacement = _new_node(g, placeholder_of[kind], op, n)
            elif kind == "attention_mask" and _fills_padding(n, vals, [ins[kind] for ins, _ in trials]):
                _masked_fills_as_bias(g, n, placeholder_of[kind])
                continue
        if replacement is None and kind != "const" and frozen_ok and all(torch.equal(vals[0], v) for v in vals[1:]):
            # Reads an input but gives the same value for every trial: in a traced TorchScript
            # graph, token_type_ids gathered from a zero buffer at the position ids.
            replacement = vals[0].clone()
        if replacement is None:
            continue
        replace_uses(n, replacement)
    _drop_unread_writes(g)
    g.lint()


def _relative_biases(ep: torch.export.ExportedProgram, kinds: dict, role: dict) -> None:
    """A [B, H, L, L] float value computed from learned weights and the run's length alone, read by a node
    that reads the inputs (MPNet's bucketed relative positions gathered from an embedding and added to the
    attention scores), becomes ``bertc::relative_bias`` when it depends on j - i alone: its diagonals at the
    longest length N are the [H, 2N - 1] table, and at a shorter length it must be that table's corner."""
    g = ep.graph
    no_input, x, batch, length, longest = _length_only_setting(ep, role)
    for n in list(g.nodes):
        val = n.meta.get("val")
        if (n.op != "call_function" or not no_input[n] or all(no_input[u] for u in n.users)
                or not isinstance(val, torch.Tensor) or val.dim() != 4 or not val.is_floating_point()
                or not str(val.shape[2]) == str(val.shape[3]) == str(length)):
            continue
        full = _evaluate_at(ep, kinds, n, batch, longest)
        table = _diagonals(full)
        if table is None:
            continue
        if not isinstance(length, int):  # the value at another length is the same table's corner
            short = _evaluate_at(ep, kinds, n, batch, trial_length(ep))
            if not torch.equal(short, relative_bias(short, list(short.shape), table)):
                continue
        replace_uses(n, _new_node(g, x, StandIn(torch.ops.bertc.relative_bias.default, (list(full.shape), table)), n))
    g.eliminate_dead_code()  # the bucket arithmetic (after _out_of_place: MPNet's add_ is an add by now)


def _length_only_setting(ep: torch.export.ExportedProgram, role: dict) -> tuple:
    """What a search for values of the length alone needs: which nodes read no input's data, the first input
    (input_ids), the batch, the run's length (an int, or a symbol) and the longest length (the bound)."""
    x = next(iter(role))
    batch, length = x.meta["val"].shape[:2]
    longest = length if isinstance(length, int) else trial_length(ep, 1 << 30)
    return reads_no_input(ep.graph, role), x, batch, length, longest


def reads_no_input(g: fx.Graph, users) -> dict[fx.Node, bool]:
    """Per node: whether it reads no model input's data (weights, constants and the run's length only: a size
    read from an input counts as none, since every input has the run's length); ``users``: the placeholders of
    the model's inputs."""
    no_input: dict[fx.Node, bool] = {}
    for n in g.nodes:
        if n.op == "placeholder":
            no_input[n] = n not in users
        else:
            no_input[n] = n.target is torch.ops.aten.sym_size.int or all(no_input[a] for a in n.all_input_nodes)
    return no_input


def _static_windows(ep: torch.export.ExportedProgram, kinds: dict, role: dict) -> None:
    """``slice(w, dim, item(start), item(end))`` of weights with bounds computed from the run's length (DeBERTa v1's
    ``rel_embeddings[M - span : M + span]``, span = min(L, M)) becomes the window at the longest length N, which holds
    every shorter one: what is computed from it (the position keys and queries) then has a static shape and folds. Each
    gather of columns computed from the window reads them shifted by start(L) - start(N); the gathers must give the
    values they gave before at a shorter length, else this refuses the model rather than compute another."""
    g = ep.graph
    no_input, _, batch, _, longest = _length_only_setting(ep, role)
    short = trial_length(ep, 5)
    for n in list(g.find_nodes(op="call_function", target=torch.ops.aten.slice.Tensor)):
        if len(n.args) != 4 or not no_input[n] or not all(
                isinstance(a, fx.Node) and a.target is torch.ops.aten.item.default for a in n.args[2:]):
            continue
        w, dim, start, end = n.args
        # the gathers of products with what is computed from the window (not those of later layers, which read it too)
        computed = {m for m in _descendants(n) if no_input[m]} | {n}
        products = {u for m in computed for u in m.users} | computed
        stack = list(products)
        while stack:  # and their views
            for v in stack.pop().users:
                if v.target in _VIEWS and v not in products:
                    products.add(v)
                    stack.append(v)
        gathers = [u for u in _descendants(n) if u.target is torch.ops.aten.gather.default and u.args[0] in products]
        before = [_evaluate_at(ep, kinds, u, batch, short) for u in gathers]
        lo, hi = (int(_evaluate_at(ep, kinds, a, batch, longest)) for a in (start, end))
        with g.inserting_before(n):
            window = g.call_function(torch.ops.aten.slice.Tensor, (w, dim, lo, hi))
        n.replace_all_uses_with(window)
        for u in gathers:
            with g.inserting_before(u):
                shift = g.call_function(operator.sub, (start, lo))
                index = g.call_function(torch.ops.aten.add.Tensor, (u.args[2], shift))
            shift.meta["val"], index.meta["val"] = start.meta["val"] - lo, u.args[2].meta["val"]
            u.args = (*u.args[:2], index)
        _propagate_shapes(g, window)
        after = [_evaluate_at(ep, kinds, u, batch, short) for u in gathers]
        if not all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(before, after)):
            raise BertcError(f"{n.name} slices weights between bounds read from the sequence length, and the gathers of "
                             "what is computed from it are not the same columns of the slice at the longest length: "
                             "bertc has no op for a window that moves with the length")
    g.eliminate_dead_code()


def _descendants(n: fx.Node) -> list[fx.Node]:
    seen, stack = set(), [n]
    while stack:
        for u in stack.pop().users:
            if u not in seen:
                seen.add(u)
                stack.append(u)
    return [m for m in n.graph.nodes if m in seen]


def _propagate_shapes(g: fx.Graph, changed: fx.Node) -> None:
    """The value metadata of ``changed`` and of every node that reads it, again (torch.export's fake tensors, under
    its symbolic shapes); an ``_assert_scalar`` on a size that is now a number holds, and goes."""
    vals = [n.meta["val"] for n in g.nodes if isinstance(n.meta.get("val"), torch.Tensor)]
    seen, down = {changed}, {changed, *_descendants(changed)}
    with torch._guards.detect_fake_mode(vals):
        for n in [m for m in g.nodes if m in down]:
            if n.op != "call_function" or not (n is changed or any(a in seen for a in n.all_input_nodes)):
                continue
            args, kwargs = fx.node.map_arg((n.args, n.kwargs), lambda a: a.meta["val"])
            if n.target is torch.ops.aten._assert_scalar.default and args[0] is True:
                g.erase_node(n)
                continue
            n.meta["val"] = n.target(*args, **kwargs)
            n.meta.pop("tensor_meta", None)  # the importer would read the old shape there first
            seen.add(n)


def _relative_gathers(ep: torch.export.ExportedProgram, kinds: dict, role: dict) -> None:
    """``gather(x, -1, index)`` with x [B, L, W] and an index computed from the run's length alone (DeBERTa's
    log-bucketed relative positions, clamped into the 2k rows of its position embeddings) becomes
    ``bertc::relative_gather(x, table)`` when index[b, i, j] depends on j - i alone: the [2N - 1] table is its
    diagonals at the longest length N, and at a shorter length the index must be that table's corner. An x of
    heads [B, H, L, W] (DeBERTa v1's) is gathered as [B * H, L, W] rows."""
    g = ep.graph
    no_input, _, batch, length, longest = _length_only_setting(ep, role)
    for n in list(g.nodes):
        if n.op != "call_function" or n.target is not torch.ops.aten.gather.default or len(n.args) != 3:
            continue
        src, dim, index = n.args
        val = src.meta["val"]
        if (not no_input[index] or val.dim() not in (3, 4) or dim not in (-1, val.dim() - 1)
                or str(val.shape[-2]) != str(length) or not isinstance(val.shape[-1], int)
                or not str(index.meta["val"].shape[-2]) == str(index.meta["val"].shape[-1]) == str(length)):
            continue
        table = _diagonals(_evaluate_at(ep, kinds, index, batch, longest).reshape(1, -1, longest, longest))
        if table is None or not torch.equal(table, table[:1].expand_as(table)) or not (
                0 <= int(table.min()) and int(table.max()) < val.shape[-1]):
            continue
        table = table[0].clone()
        if not isinstance(length, int):
            short = _evaluate_at(ep, kinds, index, batch, trial_length(ep))
            k = torch.arange(short.shape[-1])
            if not torch.equal(short, table[k[None, :] - k[:, None] + longest - 1].expand_as(short)):
                continue
        with g.inserting_before(n):
            if val.dim() == 3:
                node = _call(g, torch.ops.bertc.relative_gather.default, src, table)
            else:
                (b, h, _, w), rows = val.shape, _call(g, torch.ops.aten.sym_size.int, src, 2)
                flat = _call(g, torch.ops.aten.view.default, src, [b * h, rows, w])
                gathered = _call(g, torch.ops.bertc.relative_gather.default, flat, table)
                node = _call(g, torch.ops.aten.view.default, gathered, [b, h, rows, rows])
        replace_uses(n, node)
    g.eliminate_dead_code()


def _call(g: fx.Graph, target, *args) -> fx.Node:
    """A new node (at the graph's insertion point) with its value metadata, computed on the fake values of its
    arguments under torch.export's symbolic shapes."""
    node = g.call_function(target, args)
    vals = [n.meta["val"] for n in node.all_input_nodes if isinstance(n.meta.get("val"), torch.Tensor)]
    with torch._guards.detect_fake_mode(vals):
        node.meta["val"] = target(*fx.node.map_arg(args, lambda a: a.meta["val"]))
    return node


_VIEWS = {getattr(torch.ops.aten, name).default for name in (
    "view", "reshape", "permute", "unsqueeze", "expand", "contiguous", "clone", "alias", "detach", "t", "dropout")}
_VIEWS |= {torch.ops.aten.transpose.int, torch.ops.aten.squeeze.dim}


def _fold_weights(ep: torch.export.ExportedProgram, kinds: dict, role: dict) -> None:
    """A float value computed from two or more weights alone (not a view or a lookup of one: BERT's position
    embeddings stay an embedding) and read by a node that reads the inputs becomes a constant of the compile:
    DeBERTa's position keys and queries, LayerNorm(rel_embeddings)'s projections split into heads and repeated
    over the batch, which raise-torch would otherwise need a repeat for. A factor of a matmul whose batch is
    partly broadcast (v1's keys [1, H, d, W] beside queries [B, H, L, d]) is repeated over the batch here, as v2
    repeats its own: bertc's matmul strides a factor over all of the batch or none of it."""
    g = ep.graph
    no_input, computed, weights = reads_no_input(g, role), set(), {}
    for n in g.nodes:
        learned = n.op == "placeholder" and (kinds[n].kind.name == "PARAMETER" or (
            kinds[n].kind.name == "BUFFER" and n.meta["val"].is_floating_point()))  # not position_ids
        weights[n] = {n} if learned else set().union(*[weights[a] for a in n.all_input_nodes])
        if n.op == "call_function" and no_input[n] and len(weights[n]) > 1 and (n.target not in _VIEWS or any(
                a in computed for a in n.all_input_nodes)):
            computed.add(n)
    x = next(iter(role))
    for n in [n for n in g.nodes if n in computed]:
        val = n.meta.get("val")
        if (isinstance(val, torch.Tensor) and val.is_floating_point() and val.dim()
                and all(isinstance(d, int) for d in val.shape) and any(not no_input[u] for u in n.users)
                and not any(isinstance(a, (list, tuple)) and n in a for u in n.users for a in u.args)):
            value = _evaluate_at(ep, kinds, n, *x.meta["val"].shape[:1], 2).clone()
            for u in n.users:
                out = u.meta["val"].shape
                if (u.target is torch.ops.aten.matmul.default and value.dim() == len(out) > 2
                        and value.shape[:-2].numel() not in (1, out[:-2].numel())):
                    value = value.expand(*out[:-2], *value.shape[-2:]).contiguous()
            replace_uses(n, value)
    g.eliminate_dead_code()


def _fills_padding(n: fx.Node, vals: list[torch.Tensor], masks: list[torch.Tensor]) -> bool:
    """Whether ``n`` is the "masked out" condition of ``masked_fill``s of attention scores, true at padded keys on
    every row of a real query (DeBERTa masks padded queries' rows too: rows whose outputs nobody reads)."""
    v0 = vals[0]
    if v0.dtype != torch.bool or v0.dim() != 4 or v0.shape[0] != masks[0].shape[0] or v0.shape[3] != masks[0].shape[1]:
        return False
    if not n.users or any(u.target is not torch.ops.aten.masked_fill.Scalar or u.args[1] is not n for u in n.users):
        return False
    for v, m in zip(vals, masks):
        real = m.bool()[:, None, :, None].expand_as(v)
        if not torch.equal(v[real], (~keep_mask(m, list(v.shape)))[real]):
            return False
    return True


def _masked_fills_as_bias(g: fx.Graph, n: fx.Node, mask: fx.Node) -> None:
    """Each ``masked_fill(scores, n, fill)`` becomes ``scores + mask_bias(mask, [B, 1, 1, L], fill)``: the same
    softmax on real queries' rows (fill is -3.4e38, where any score is lost), in the form fuse-attention knows."""
    for u in list(n.users):
        scores, _, fill = u.args
        val = u.meta["val"]
        like = SimpleNamespace(meta={"val": val[:, :1, :1, :]})
        shape = [d if isinstance(d, int) else 0 for d in like.meta["val"].shape]  # _new_node puts L in a dynamic one
        bias = _new_node(g, mask, StandIn(torch.ops.bertc.mask_bias.default, (shape, fill)), like)
        with g.inserting_before(u):
            add = g.call_function(torch.ops.aten.add.Tensor, (scores, bias))
        add.meta["val"] = val
        replace_uses(u, add)


def _diagonals(v: torch.Tensor) -> torch.Tensor | None:
    """The [H, 2N - 1] table of a [B, H, N, N] value that is the same for every b and Toeplitz in its last two
    dimensions (table[h, N - 1 + d] is every (i, i + d) entry), else None."""
    if not torch.equal(v, v[:1].expand_as(v)):
        return None
    table = torch.cat([v[0, :, 1:, 0].flip(1), v[0, :, 0, :]], dim=1).contiguous()
    return table if torch.equal(relative_bias(v, list(v.shape), table), v) else None


def _evaluate_at(ep: torch.export.ExportedProgram, kinds: dict, target: fx.Node, batch: int, length: int
                 ) -> torch.Tensor:
    """``target``'s value at this sequence length; it reads no input's data, so the inputs are ones."""
    needed, stack = set(), [target]
    while stack:
        n = stack.pop()
        if n not in needed:
            needed.add(n)
            stack.extend(n.all_input_nodes)
    order = [n for n in ep.graph.nodes if n in needed]
    env = {n: torch.ones(batch, length, dtype=torch.long) if kinds[n].kind.name == "USER_INPUT"
           else _stored(ep, kinds[n]) for n in order if n.op == "placeholder"}
    return run([n for n in order if n.op != "placeholder"], env)[target]


def _stored(ep: torch.export.ExportedProgram, spec) -> torch.Tensor:
    """A weight, buffer or constant of the program, by its input spec."""
    if spec.kind.name == "CONSTANT_TENSOR":
        return ep.constants[spec.target]
    return ep.state_dict[spec.target] if spec.target in ep.state_dict else ep.constants[spec.target]


def _input_groups(g: fx.Graph, kinds: dict, role: dict):
    """``group(node)``: the single model input (or "const") a node is a pure function of, else None.
    A dependence on learned weights ends a sub-graph."""
    deps: dict[fx.Node, frozenset] = {}  # the model inputs a node depends on; "param": learned weights
    for n in g.nodes:
        if n.op == "placeholder":
            kind = kinds[n].kind.name
            # A TorchScript archive converted by torch.export holds its weights as buffers, so a
            # floating-point buffer counts as a weight too; integer buffers (position_ids,
            # token_type_ids) are constants.
            learned = kind == "PARAMETER" or (kind == "BUFFER" and n.meta["val"].is_floating_point())
            deps[n] = frozenset([role[n]]) if n in role else frozenset(["param"] if learned else [])
        elif n.target is torch.ops.aten.sym_size.int:
            deps[n] = frozenset()  # the run-time length, which every input shares: no input's data
        else:
            deps[n] = frozenset().union(*[deps[a] for a in n.all_input_nodes]) if n.all_input_nodes else frozenset()

    def group(n):
        d = deps[n]
        if n.op in ("placeholder", "output") or "param" in d or len(d) > 1:
            return None
        return next(iter(d)) if d else "const"

    return group


def _has_run_time_length(n: fx.Node) -> bool:
    val = n.meta.get("val")
    return isinstance(val, torch.Tensor) and any(not isinstance(d, int) for d in val.shape)


def _fill_of_run_time_length(ep: torch.export.ExportedProgram, n: fx.Node, vals: list[torch.Tensor],
                             model_input: fx.Node) -> fx.Node | None:
    """A constant fill as long as the run (ERNIE's task type ids, ``torch.zeros(input_shape)``) as a slice
    of the fill at the bound, ``slice(full, dim, 0, sym_size(model_input, 1))``, as BERT's position ids
    slice their buffer; None for any other value."""
    v, dims, length = vals[0], n.meta["val"].shape, model_input.meta["val"].shape[1]
    dynamic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
    if (len(dynamic) != 1 or str(dims[dynamic[0]]) != str(length) or not v.numel()
            or not all(torch.equal(v, x) for x in vals) or not bool((v == v.flatten()[0]).all())):
        return None
    shape = list(v.shape)
    shape[dynamic[0]] = int(ep.range_constraints[length.node.expr].upper)
    with n.graph.inserting_after(model_input):
        size = n.graph.call_function(torch.ops.aten.sym_size.int, (model_input, 1))
    size.meta["val"] = length
    with n.graph.inserting_before(n):
        full = torch.full(shape, v.flatten()[0].item(), dtype=v.dtype)
        node = n.graph.call_function(torch.ops.aten.slice.Tensor, (full, dynamic[0], 0, size))
    node.meta["val"] = n.meta["val"]
    return node


def trial_length(ep: torch.export.ExportedProgram, preferred: int = 8) -> int:
    """The sequence length the trials run at: ``preferred``, moved inside the range of every dynamic dimension
    of the inputs (a static program has none and ignores it). Other symbols are not lengths: DeBERTa's
    ``rel_embeddings[M - span:]`` reads its bounds with ``.item()``, unbacked symbols ranging to infinity
    (torch's ``int_oo``, which says it is finite: only a sympy Integer is taken as a bound)."""
    dims = {d.node.expr for p, spec in zip(ep.graph.find_nodes(op="placeholder"), ep.graph_signature.input_specs)
            if spec.kind.name == "USER_INPUT" for d in p.meta["val"].shape if isinstance(d, torch.SymInt)}
    length = preferred
    for symbol, bounds in ep.range_constraints.items():
        if symbol in dims:
            upper = int(bounds.upper) if isinstance(bounds.upper, sympy.Integer) else length
            length = max(int(bounds.lower), min(upper, length))
    return length


def trial_inputs(ep: torch.export.ExportedProgram, input_names: list[str], length: int, type_vocab: int = 2,
                 trials: int = 1) -> list[list[torch.Tensor]]:
    """The user inputs of ``trials`` trials (``_random_inputs``) at ``length`` tokens, one list per trial."""
    user = [p for p, spec in zip(ep.graph.find_nodes(op="placeholder"), ep.graph_signature.input_specs)
            if spec.kind.name == "USER_INPUT"]
    shapes = [tuple(d if isinstance(d, int) else length for d in p.meta["val"].shape) for p in user]
    dtypes = [p.meta["val"].dtype for p in user]
    rng = np.random.default_rng(0)
    return [_random_inputs(input_names, shapes, dtypes, rng, t, type_vocab) for t in range(trials)]


def _random_inputs(input_names: list[str], shapes: list[tuple], dtypes, rng: np.random.Generator, trial: int,
                   type_vocab: int = 2):
    """Trial 0: no padding; 1: right padding of random length; 2: holes in the mask and input ids
    drawn from {0, 1, 2}, so that a padding id (RoBERTa's 1) occurs inside the sequence."""
    out = []
    for name, shp, dt in zip(input_names, shapes, dtypes):
        b, s = shp
        if name == "attention_mask":
            lens = rng.integers(1, s + 1, size=b) if trial else np.full(b, s)
            v = (np.arange(s)[None, :] < lens[:, None]).astype(np.int64)
            if trial == 2:  # holes, not only right padding
                v = (rng.random((b, s)) < 0.6).astype(np.int64)
                v[:, 0] = 1
        elif name == "input_ids":
            v = rng.integers(0, 3, size=(b, s)) if trial == 2 else rng.integers(0, 50, size=(b, s))
        else:
            v = rng.integers(0, max(1, type_vocab), size=(b, s))
        out.append(torch.from_numpy(v).to(dt))
    return out


def evaluate_nodes(ep: torch.export.ExportedProgram, user_inputs: list[torch.Tensor], keep: set[fx.Node]) -> dict:
    """The values of the nodes in ``keep`` for these inputs. Only those are held: the interpreter frees every
    other value after its last use, so memory stays that of one eager forward, not of every layer's."""
    values: dict[fx.Node, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            r = super().run_node(n)
            if n in keep:
                values[n] = r
            return r

    args, k = [], 0
    for spec in ep.graph_signature.input_specs:
        if spec.kind.name == "USER_INPUT":
            args.append(user_inputs[k])
            k += 1
        else:
            args.append(_stored(ep, spec))
    with torch.no_grad():
        Recorder(ep.graph_module).run(*args)
    return values


def _out_of_place(g: fx.Graph) -> None:
    """Retarget each in-place op whose written tensor is fresh (made by an op whose result aliases nothing)
    and read by nothing after it, nor through a view, to the out-of-place overload: its users already read
    its result, which is then the only value the write was seen in."""
    order = {n: i for i, n in enumerate(g.nodes)}
    for n in g.nodes:
        if n.op != "call_function" or not isinstance(n.target, torch._ops.OpOverload) or not n.args:
            continue
        schema, target = n.target._schema, n.args[0]
        alias = schema.arguments[0].alias_info if schema.arguments else None
        if not (alias and alias.is_write and isinstance(target, fx.Node) and _is_fresh(target)) or any(
                u is not n and (order[u] > order[n] or not _is_fresh(u)) for u in target.users):
            continue
        packet = getattr(torch.ops.aten, schema.name.removeprefix("aten::").removesuffix("_"), None)
        functional = getattr(packet, schema.overload_name or "default", None)
        if functional is not None and not functional._schema.is_mutable:
            n.target = functional


def _drop_unread_writes(g: fx.Graph) -> None:
    """Dead code, with the in-place ops whose write nobody can read: no user, and the written tensor a fresh one
    seen only through the views leading to the op (DeBERTa v1's ``pos_query_layer /= scale``, once the position
    queries are a constant, and ``torch.tensor(span).detach_()``), and an unread dropout (FX keeps both as impure)."""
    g.eliminate_dead_code()
    for n in reversed(list(g.nodes)):
        if n.op == "call_function" and not n.users and n.target is torch.ops.aten.dropout.default:
            g.erase_node(n)
        if n.op != "call_function" or n.users or not isinstance(n.target, torch._ops.OpOverload) or not (
                n.target._schema.is_mutable and n.args and isinstance(n.args[0], fx.Node)):
            continue
        x = n.args[0]
        while len(x.users) == 1 and x.op == "call_function" and not _is_fresh(x) and isinstance(x.args[0], fx.Node):
            x = x.args[0]  # through the views (and no-op casts) of the written tensor
        if len(x.users) == 1 and _is_fresh(x):
            g.erase_node(n)
            g.eliminate_dead_code()


def _is_fresh(n: fx.Node) -> bool:
    """Whether ``n`` is a new tensor: the result of an op that returns no alias of its inputs."""
    return (n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)
            and not any(r.alias_info is not None for r in n.target._schema.returns))


def _narrow_double_scalars(ep, placeholders, kinds) -> None:
    """TorchScript keeps Python float constants (the 1/sqrt(head_dim) scale) as 0-d float64
    tensors. Beside a float32 tensor a 0-d operand does not promote, so the op computes in
    float32 either way; store them as float32 so that bertc sees one element type."""
    for p in placeholders:
        spec = kinds[p]
        val = p.meta.get("val")
        if (spec.kind.name != "CONSTANT_TENSOR" or not isinstance(val, torch.Tensor) or val.dtype != torch.float64
                or val.dim() != 0 or not all(_result_dtype(u) == torch.float32 for u in p.users)):
            continue
        ep.constants[spec.target] = ep.constants[spec.target].float()
        p.meta["val"] = val.float()


def _result_dtype(n: fx.Node):
    v = n.meta.get("val")
    return v.dtype if isinstance(v, torch.Tensor) else None


# --------------------------------------------------------------------------- the forms it recognises


@dataclass(frozen=True)
class StandIn:
    """A recognised sub-graph: the op that replaces it and the arguments after the model input."""

    op: Any  # torch.ops.bertc.<name>.default
    args: tuple


def _match_mask(n: fx.Node, vals: list[torch.Tensor], masks: list[torch.Tensor], window: int = 0) -> StandIn | None:
    v0 = vals[0]
    if v0.dim() != 4 or v0.shape[0] != masks[0].shape[0] or v0.shape[3] != masks[0].shape[1]:
        return None
    shape = list(v0.shape)
    if v0.dtype == torch.bool:
        if all(torch.equal(v, keep_mask(m, shape, window)) for v, m in zip(vals, masks)):
            return StandIn(torch.ops.bertc.keep_mask.default, (shape, window) if window else (shape,))
        return None
    if v0.dtype != torch.float32:
        return None
    # The fill shows where some key was masked; with nothing ever masked (seq_len 1) any
    # large negative fill gives the same values, so try the one transformers uses.
    for fill in {float(v.min()) for v in vals} - {0.0} | {float(torch.finfo(torch.float32).min)}:
        if all(torch.equal(v, mask_bias(m, shape, fill, window)) for v, m in zip(vals, masks)):
            return StandIn(torch.ops.bertc.mask_bias.default, (shape, fill, window) if window else (shape, fill))
    return None


def _window(ep: torch.export.ExportedProgram, kinds: dict, n: fx.Node, trial: torch.Tensor) -> int:
    """The local-attention window (ModernBERT's ``local_attention``) of a [B, 1, L, L] mask value: keys farther
    than window // 2 from their query are masked even when the mask keeps every token. A window wider than the
    trial length is invisible there, so a dynamic program's mask is read at its longest length, with no padding
    (only the mask's own sub-graph runs). 0: no window (a padding mask)."""
    if trial.dim() != 4 or trial.shape[2] != trial.shape[3]:
        return 0
    full = _evaluate_at(ep, kinds, n, trial.shape[0], trial_length(ep, 1 << 30)) if _has_run_time_length(n) else trial
    kept = (full == 0) if full.is_floating_point() else full.bool()
    half = int(kept[0, 0, 0].sum()) - 1  # query 0 of the all-kept trial sees keys 0 .. half
    if half + 1 >= kept.shape[3]:
        return 0
    return 2 * half


def _match_position_ids(n: fx.Node, vals: list[torch.Tensor], ids: list[torch.Tensor]) -> StandIn | None:
    if vals[0].shape != ids[0].shape or vals[0].dtype != torch.long:
        return None
    # the padding id is one of the integers the sub-graph's ops take (RoBERTa's ne(input_ids, 1), add 1)
    for pad in {int(a) for u in _ancestors(n) for a in u.args if isinstance(a, int)}:
        if all(torch.equal(v, position_ids(i, pad)) for v, i in zip(vals, ids)):
            return StandIn(torch.ops.bertc.position_ids.default, (pad,))
    return None


def _ancestors(n: fx.Node) -> list[fx.Node]:
    seen, stack = [], [n]
    while stack:
        x = stack.pop()
        if x not in seen and x.op == "call_function":
            seen.append(x)
            stack.extend(x.all_input_nodes)
    return seen


# --------------------------------------------------------------------------- graph edits


def _new_node(g: fx.Graph, model_input: fx.Node, stand_in: StandIn, like: fx.Node) -> fx.Node | None:
    """The stand-in op on ``model_input``, placed right after it, with ``like``'s value metadata.
    A shape argument measured at the trial length takes the run-time length where ``like``'s is
    dynamic: ``sym_size(model_input, 1)`` (None when a dimension is some other symbol)."""
    args, anchor = list(stand_in.args), model_input
    dims = like.meta["val"].shape
    if args and isinstance(args[0], list) and any(not isinstance(d, int) for d in dims):
        length = model_input.meta["val"].shape[1]
        if any(not isinstance(d, int) and str(d) != str(length) for d in dims):
            return None
        with g.inserting_after(model_input):
            anchor = g.call_function(torch.ops.aten.sym_size.int, (model_input, 1))
        anchor.meta["val"] = length
        args[0] = [d if isinstance(d, int) else anchor for d in dims]
    with g.inserting_after(anchor):
        node = g.call_function(stand_in.op, (model_input, *args))
    node.meta["val"] = like.meta["val"]
    return node


def replace_uses(n: fx.Node, value: Any) -> None:
    """Make every user of ``n`` take ``value`` (a node or a literal) instead."""
    def swap(a):
        return value if a is n else a

    for u in list(n.users):
        u.args = fx.node.map_arg(u.args, swap)
        u.kwargs = fx.node.map_arg(u.kwargs, swap)
