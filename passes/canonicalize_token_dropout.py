"""canonicalize-token-dropout: ESM's token dropout -> one ``bertc::token_dropout`` scale (an FX pass).

ESM-2 ships with ``token_dropout: true``, and its embeddings apply it in eval mode too: a ``<mask>`` token's
embedding is zeroed, and every other one is scaled by 0.88 / (1 - the share of ``<mask>`` tokens among the
row's real tokens), 0.88 being the share kept in training. The share is a per-row count over the input ids
divided by the mask's sum: comparisons, sums and divisions of integer tensors that bertc has no kernels
for. The whole of it is one per-token factor; this pass writes it as one op, which raise-torch lowers to
``bertc.token_dropout``, and the embeddings are multiplied by it. Like canonicalize-trigram, an FX pass on
the torch.export program (bertc/frontend.py runs it), not in the MLIR registry.

Before (modeling_esm.py, mask token 2)::

    eq = aten.eq.Scalar(input_ids, 2)
    unsqueeze = aten.unsqueeze.default(eq, -1)
    masked_fill = aten.masked_fill.Scalar(embedding, unsqueeze, 0.0)
    sum_1 = aten.sum.dim_IntList(attention_mask, [-1])
    sum_2 = aten.sum.dim_IntList(aten.eq.Scalar(input_ids, 2), [-1])
    div = aten.div.Tensor(aten.to.dtype(sum_2, torch.float32), sum_1)
    mul_1 = aten.mul.Tensor(masked_fill, 0.88)
    div_1 = aten.div.Tensor(mul_1, unsqueeze(unsqueeze(aten.rsub.Scalar(div, 1), 1), 2))

After::

    token_dropout = bertc.token_dropout.default(input_ids, attention_mask, 2, 0.88)   # [B, S, 1]
    div_1 = aten.mul.Tensor(embedding, token_dropout)

The denominator is matched by value (evaluated on trial inputs holding ``<mask>`` tokens and padding, and
compared with 1 - count / length), so a model whose scale differs from ESM's is left alone, and raise-torch
names its ops.
"""

from __future__ import annotations

import torch
from torch import fx

from .canonicalize_inputs import evaluate_nodes, trial_inputs, trial_length
from .fx_graph import like


@torch.library.custom_op("bertc::token_dropout", mutates_args=())
def token_dropout(ids: torch.Tensor, mask: torch.Tensor, token: int, keep: float) -> torch.Tensor:
    """[B, S, 1]: 0 where ids == token, else keep / (1 - count(ids == token) / sum(mask)) of the row."""
    hit = ids == token
    share = hit.sum(-1).float() / mask.sum(-1)
    return torch.where(hit, 0.0, keep / (1 - share)[:, None]).unsqueeze(-1).float()


@token_dropout.register_fake
def _(ids, mask, token, keep):
    return ids.new_empty(*ids.shape, 1, dtype=torch.float32)


_A = torch.ops.aten


def _zeroed_tokens(fill: fx.Node, ids: fx.Node) -> int | None:
    """The token id t of ``masked_fill(x, unsqueeze(eq(ids, t), -1), 0.0)``; None for any other node."""
    if fill.target is not _A.masked_fill.Scalar or fill.args[2] not in (0, 0.0):
        return None
    cond = fill.args[1]
    if cond.target is not _A.unsqueeze.default or cond.args[1] not in (-1, 2):
        return None
    eq = cond.args[0]
    if eq.target is not _A.eq.Scalar or eq.args[0] is not ids or not isinstance(eq.args[1], int):
        return None
    return eq.args[1]


def _is_one_minus_share(value, ids: torch.Tensor, mask: torch.Tensor, token: int) -> bool:
    """Whether ``value`` is [B, 1, 1] of 1 - count(ids == token) / sum(mask) per row."""
    want = 1 - (ids == token).sum(-1).float() / mask.sum(-1)
    return isinstance(value, torch.Tensor) and value.shape == (ids.shape[0], 1, 1) and torch.allclose(
        value.flatten().float(), want, rtol=1e-6)


def canonicalize_token_dropout(ep: torch.export.ExportedProgram, input_names: list[str]) -> None:
    """Replace ESM's token dropout, ``masked_fill(x, ids == t, 0) * keep / share``, by ``x * bertc::token_dropout``
    (in place). ``input_names`` names the program's user inputs in order."""
    g = ep.graph
    user = [p for p, spec in zip(g.find_nodes(op="placeholder"), ep.graph_signature.input_specs)
            if spec.kind.name == "USER_INPUT"]
    role = dict(zip(input_names, user))
    if "input_ids" not in role or "attention_mask" not in role:
        return
    ids, mask = role["input_ids"], role["attention_mask"]
    found = []
    for fill in g.find_nodes(op="call_function", target=_A.masked_fill.Scalar):
        token = _zeroed_tokens(fill, ids)
        if token is None or len(fill.users) != 1:
            continue
        scaled = next(iter(fill.users))
        if scaled.target is not _A.mul.Tensor or not isinstance(scaled.args[1], float) or len(scaled.users) != 1:
            continue
        divided = next(iter(scaled.users))
        if divided.target is not _A.div.Tensor or divided.args[0] is not scaled:
            continue
        found.append((fill, token, scaled.args[1], divided))
    if not found:
        return
    trials = trial_inputs(ep, input_names, trial_length(ep), trials=3)
    at_ids, at_mask = input_names.index("input_ids"), input_names.index("attention_mask")
    for fill, token, keep, divided in found:
        for ins in trials:  # every trial holds the token, so that a denominator blind to it shows
            ins[at_ids][:, 1::3] = token
        shares = [evaluate_nodes(ep, ins, {divided.args[1]})[divided.args[1]] for ins in trials]
        if not all(_is_one_minus_share(s, ins[at_ids], ins[at_mask], token) for s, ins in zip(shares, trials)):
            continue
        with g.inserting_before(divided):
            scale = g.call_function(torch.ops.bertc.token_dropout.default, (ids, mask, token, keep))
            node = g.call_function(_A.mul.Tensor, (fill.args[0], scale))
        like(scale, divided, ids.meta["val"].new_empty(*ids.meta["val"].shape, 1, dtype=torch.float32))
        like(node, divided, divided.meta["val"])
        divided.replace_all_uses_with(node)
    g.eliminate_dead_code()
    g.lint()
