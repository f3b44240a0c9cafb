"""canonicalize-rotary: rotary position embeddings (RoPE) -> one ``bertc::rotary`` op each (an FX pass).

A rotary encoder (RoFormer, ESM) turns each query and key head ``x`` [B, n, S, D] into
``x * cos + rotate(x) * sin``, where ``cos`` and ``sin`` depend on the position only, and
``rotate`` pairs the features and negates one of each pair: RoFormer's pairs are neighbours
(``stack([-x[..., 1::2], x[..., ::2]], -1)``), ESM's (GPT-NeoX's) the two halves (``cat(-x2, x1)``).
The tables arrive as sinusoids of an arange, a gather from a frozen table, strided slices and
stacks: nothing bertc should run. Like canonicalize-inputs (which runs after it, on what is left),
this is an FX pass on the torch.export program, not in the MLIR registry; bertc/frontend.py runs it.

Each ``add(mul(x, C), mul(R, S))`` whose ``C`` and ``S`` read no model input is evaluated once on
random inputs; when ``R`` equals one of the two rotations of ``x`` and ``C``, ``S`` are per-position
rows of x's last dimension, it becomes ``bertc::rotary(x, cos, sin, interleaved)`` with the tables as
constants ([S, D]). Recognising by value holds across transformers versions and dtype round trips
(ESM rotates a ``.float()`` copy of x). In a program with a dynamic length the tables are evaluated
once more at the bound N and kept whole ([N, D]): a run of L tokens reads their first L rows.

Before (RoFormer, seq_len 8, one head's query; abridged)::

    embedding_2 = aten.embedding.default(p_embed_positions_weight, arange_4)     # [8, 16]: sin | cos
    chunk = aten.chunk.default(unsqueeze_13, 2, -1)
    reshape_as = aten.reshape_as.default(aten.stack.default([sin, sin], -1), unsqueeze_13)
    ...
    slice_1 = aten.slice.Tensor(transpose, 3, 1, 9223372036854775807, 2)
    stack_2 = aten.stack.default([aten.neg.default(slice_1), slice_2], -1)
    add_3 = aten.add.Tensor(aten.mul.Tensor(transpose, reshape_as_1),
                            aten.mul.Tensor(aten.reshape_as.default(stack_2, transpose), reshape_as))

After::

    rotary_default = bertc.rotary.default(transpose, _tensor_constant0, _tensor_constant1, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx

from .canonicalize_inputs import evaluate_nodes, reads_no_input, trial_inputs, trial_length


@torch.library.custom_op("bertc::rotary", mutates_args=())
def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """x [..., S, D] rotated by the first S rows of the [T, D] tables; raise-torch lowers it to bertc.rotary."""
    s = x.shape[-2]
    return x * cos[:s] + rotate(x, interleaved) * sin[:s]


@rotary.register_fake
def _(x, cos, sin, interleaved):
    return torch.empty_like(x)


def rotate(x: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """The feature pairs of x swapped, the first of each negated: (x0, x1) -> (-x1, x0)."""
    if interleaved:
        return torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


@dataclass(frozen=True)
class Candidate:
    """``add = x * c + r * s``, with c and s reading no model input."""

    add: fx.Node
    x: fx.Node
    r: fx.Node
    c: fx.Node
    s: fx.Node


def canonicalize_rotary(ep: torch.export.ExportedProgram, input_names: list[str], max_seq_len: int | None) -> None:
    """Replace every recognised rotary embedding by ``bertc::rotary`` (in place)."""
    g = ep.graph
    users = {p for p, spec in zip(g.find_nodes(op="placeholder"), ep.graph_signature.input_specs)
             if spec.kind.name == "USER_INPUT"}
    # the tables of a dynamic program have the run's length and still read no input
    found = _candidates(g, {n for n, none in reads_no_input(g, users).items() if not none})
    if not found:
        return
    length = trial_length(ep)
    keep = {n for c in found for n in (c.x, c.r, c.c, c.s)}
    vals = evaluate_nodes(ep, trial_inputs(ep, input_names, length)[0], keep)
    at_bound = {} if max_seq_len is None else evaluate_nodes(ep, trial_inputs(ep, input_names, max_seq_len)[0], keep)
    done, tables = set(), {}
    for cand in found:
        if cand.add in done:
            continue
        x, r, c, s = (vals[n] for n in (cand.x, cand.r, cand.c, cand.s))
        style = _style(x, r, c, s)
        if style is None:
            continue
        cos, sin = (_table(tables, n, vals[n], at_bound.get(n)) for n in (cand.c, cand.s))
        if cos is None or sin is None:
            continue
        with g.inserting_before(cand.add):
            node = g.call_function(torch.ops.bertc.rotary.default, (cand.x, cos, sin, style))
        node.meta["val"] = cand.add.meta["val"]
        cand.add.replace_all_uses_with(node)
        done.add(cand.add)
    g.eliminate_dead_code()
    g.lint()


def _table(tables: dict, node: fx.Node, trial: torch.Tensor, at_bound: torch.Tensor | None) -> torch.Tensor | None:
    """``node``'s value as a [T, D] table: its trial value, or in a dynamic program its value at the bound, whose
    first rows must be the trial's (None when they are not: the table is not a function of the position alone).
    Equal tables are one tensor (every layer recomputes them), which the frontend stores once."""
    if node not in tables:
        table = (trial if at_bound is None else at_bound).reshape(-1, trial.shape[-1])
        same = torch.allclose(table[: trial.shape[-2]], trial.reshape(-1, trial.shape[-1]))
        known = [t for t in tables.values() if t is not None and t.shape == table.shape and torch.equal(t, table)]
        tables[node] = None if not same else known[0] if known else table.clone()
    return tables[node]


def _candidates(g: fx.Graph, reads: set[fx.Node]) -> list[Candidate]:
    """Every reading of ``add(mul(., .), mul(., .))`` as ``x * c + r * s``, x and r reading inputs, c and s not."""
    def orders(t: fx.Node):
        return [(a, b) for a, b in (t.args, t.args[::-1]) if a in reads and isinstance(b, fx.Node) and b not in reads]

    out = []
    for n in g.find_nodes(op="call_function", target=torch.ops.aten.add.Tensor):
        terms = [a for a in n.args if isinstance(a, fx.Node) and a.target is torch.ops.aten.mul.Tensor]
        if len(terms) != 2 or len(n.args) != 2:
            continue
        for first, second in (terms, terms[::-1]):
            out += [Candidate(n, x, r, c, s) for x, c in orders(first) for r, s in orders(second)]
    return out


def _style(x: torch.Tensor, r: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> bool | None:
    """True (neighbouring pairs) or False (halves) when r rotates x and c, s are per-position rows of x's
    last dimension (broadcast over batch and heads); None otherwise."""
    if not all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in (x, r, c, s)) or x.dim() < 2:
        return None
    rows = x.shape[-2:]
    if x.shape[-1] % 2 or any(t.shape[-2:] != rows or t.numel() != rows.numel() for t in (c, s)):
        return None
    for interleaved in (True, False):
        if r.shape == x.shape and torch.equal(r, rotate(x, interleaved)):
            return interleaved
    return None
