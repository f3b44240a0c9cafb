"""canonicalize-inputs (passes/canonicalize_inputs.py) on tiny hand-written modules: the mask and
position-id arithmetic it must recognise, each replaced by one stand-in op (or a constant) with the
outputs unchanged, and arithmetic it must leave alone."""

from __future__ import annotations

import torch
from bertc.passes.canonicalize_inputs import canonicalize_inputs
from torch import fx

B, S, H, VOCAB = 2, 8, 4, 64  # the pass draws input ids below 50
NAMES = ["input_ids", "attention_mask"]
MIN = torch.finfo(torch.float32).min


class Encoder(torch.nn.Module):
    """One attention score matrix over embeddings; subclasses say how the mask and positions are built."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.words = torch.nn.Embedding(VOCAB, H)
        self.positions = torch.nn.Embedding(VOCAB + 1, H)  # NoKnownForm indexes it with input_ids + 1

    def forward(self, input_ids, attention_mask):
        x = self.words(input_ids) + self.positions(self.position_ids(input_ids))
        scores = (x @ x.transpose(1, 2))[:, None]  # [B, 1, S, S]
        return torch.softmax(scores + self.bias(attention_mask), -1) @ x[:, None]

    def position_ids(self, input_ids):  # BERT: 0..S-1, whatever the input
        return torch.arange(input_ids.shape[1]).unsqueeze(0)

    def bias(self, mask):  # BERT before transformers 4.3x: (1 - mask) * min, added to the scores
        return (1.0 - mask[:, None, None, :].float()) * MIN


class RobertaPositions(Encoder):
    def position_ids(self, input_ids):  # padding id 1: positions count real tokens from 2
        keep = input_ids.ne(1).int()
        return (torch.cumsum(keep, dim=1).type_as(keep) * keep).long() + 1


class BooleanMask(Encoder):
    """sdpa's form: a boolean keep mask broadcast to [B, 1, S, S]."""

    def forward(self, input_ids, attention_mask):
        x = self.words(input_ids)[:, None]
        keep = attention_mask.bool()[:, None, None, :].expand(B, 1, S, S)
        return torch.nn.functional.scaled_dot_product_attention(x, x, x, attn_mask=keep)


class SlidingWindow(Encoder):
    """ModernBERT's local layers: keys more than 2 positions from the query masked too (local_attention 4)."""

    def bias(self, mask):
        i = torch.arange(mask.shape[1])
        near = (i[:, None] - i[None, :]).abs() <= 2
        keep = mask.bool()[:, None, None, :] & near
        return torch.where(keep, torch.tensor(0.0), torch.tensor(MIN))


class NoKnownForm(Encoder):
    """Input-only arithmetic that is neither a mask bias nor position ids."""

    def position_ids(self, input_ids):
        return input_ids + 1

    def bias(self, mask):
        return mask[:, None, None, :].float() * 2.0


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[0, 5, 1, 7, 1, 2, 9, 3], [4, 1, 1, 6, 8, 1, 0, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0], [1, 0, 1, 1, 0, 1, 1, 1]])
    return ids, mask


def canonicalized(module: torch.nn.Module) -> tuple[torch.export.ExportedProgram, torch.Tensor]:
    """The module exported and canonicalized, and its output before the pass."""
    ep = torch.export.export(module.eval(), inputs(), strict=False)
    with torch.no_grad():
        before = ep.module()(*inputs())
    canonicalize_inputs(ep, NAMES)
    return ep, before


def run(ep: torch.export.ExportedProgram) -> torch.Tensor:
    """The rewritten graph, interpreted: FX cannot generate code for the tensor constants it now holds."""
    state = {**ep.state_dict, **ep.constants}
    args = iter(inputs())
    values = [next(args) if s.kind.name == "USER_INPUT" else state[s.target] for s in ep.graph_signature.input_specs]
    with torch.no_grad():
        return fx.Interpreter(ep.graph_module).run(*values)[0]


def calls(ep: torch.export.ExportedProgram) -> dict:
    return {n.target: n for n in ep.graph.nodes if n.op == "call_function"}


def model_input(ep: torch.export.ExportedProgram, name: str) -> fx.Node:
    return next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == name)


def test_additive_mask_becomes_mask_bias_and_arange_a_constant():
    ep, before = canonicalized(Encoder())
    ops = calls(ep)
    bias = ops[torch.ops.bertc.mask_bias.default]
    assert bias.args == (model_input(ep, "attention_mask"), [B, 1, 1, S], MIN)
    assert torch.ops.aten.arange.default not in ops and torch.ops.aten.mul.Tensor not in ops
    positions = next(n for n in ep.graph.nodes if n.op == "call_function" and n.args[0].name == "p_positions_weight")
    assert torch.equal(positions.args[1], torch.arange(S)[None])  # folded to its value
    assert torch.equal(run(ep), before)


def test_roberta_position_ids_become_one_op():
    ep, before = canonicalized(RobertaPositions())
    ops = calls(ep)
    assert ops[torch.ops.bertc.position_ids.default].args == (model_input(ep, "input_ids"), 1)
    assert torch.ops.aten.cumsum.default not in ops and torch.ops.aten.ne.Scalar not in ops
    assert torch.equal(run(ep), before)


def test_boolean_mask_becomes_keep_mask():
    ep, before = canonicalized(BooleanMask())
    ops = calls(ep)
    assert ops[torch.ops.bertc.keep_mask.default].args == (model_input(ep, "attention_mask"), [B, 1, S, S])
    assert torch.ops.aten.expand.default not in ops
    assert torch.equal(run(ep), before)


def test_sliding_window_mask_becomes_mask_bias_with_its_window():
    ep, before = canonicalized(SlidingWindow())
    assert calls(ep)[torch.ops.bertc.mask_bias.default].args == (model_input(ep, "attention_mask"), [B, 1, S, S],
                                                                  MIN, 4)
    assert torch.equal(run(ep), before)


def test_arithmetic_of_no_known_form_is_left_alone():
    module = NoKnownForm()
    ep, before = canonicalized(module)
    untouched = torch.export.export(module, inputs(), strict=False)
    untouched.graph.eliminate_dead_code()
    kept = [t for t in calls(untouched) if t != torch.ops.aten._assert_tensor_metadata.default]
    assert list(calls(ep)) == kept
    assert not any(str(t).startswith("bertc.") for t in calls(ep))
    assert torch.equal(run(ep), before)


class InPlaceSum(Encoder):
    """MegatronBERT's embeddings: ``x += positions`` on the fresh sum, and an in-place write through a view."""

    def forward(self, input_ids, attention_mask):
        x = self.words(input_ids) + self.words(input_ids.flip(1))
        x += self.positions(self.position_ids(input_ids))
        x.view(-1)[:H].mul_(2.0)  # writes x through a view: must stay in place
        return super().forward(input_ids, attention_mask) + x


def test_in_place_op_on_a_fresh_tensor_becomes_out_of_place():
    ep, before = canonicalized(InPlaceSum())
    ops = calls(ep)
    assert torch.ops.aten.add_.Tensor not in ops
    assert ops[torch.ops.aten.mul_.Tensor].args[0].target == torch.ops.aten.slice.Tensor
    assert torch.equal(run(ep), before)


class ZeroPositions(Encoder):
    def position_ids(self, input_ids):  # ERNIE's task type ids: zeros as long as the input, read from no data
        return torch.zeros(input_ids.shape, dtype=torch.long)


def test_a_fill_of_the_run_time_length_becomes_a_slice_of_it_at_the_bound():
    seq = torch.export.Dim("seq", min=2, max=16)
    ep = torch.export.export(ZeroPositions().eval(), inputs(), dynamic_shapes=({1: seq}, {1: seq}), strict=False)
    with torch.no_grad():
        before = ep.module()(*inputs())
    canonicalize_inputs(ep, NAMES)
    ops = calls(ep)
    full, dim, start, end = ops[torch.ops.aten.slice.Tensor].args
    assert torch.equal(full, torch.zeros(B, 16, dtype=torch.long)) and (dim, start) == (1, 0)
    assert end.target == torch.ops.aten.sym_size.int and torch.ops.aten.zeros.default not in ops
    assert torch.equal(run(ep), before)


class MovingWindow(Encoder):
    """DeBERTa v1's relative positions: the rows of its relative embeddings within the run's span of the middle (a
    slice between bounds read by ``.item()``), projected to keys and scaled in place, and gathered from the
    content-to-position scores at column i - j + span."""

    M = 20

    def __init__(self):
        super().__init__()
        self.rel = torch.nn.Parameter(torch.randn(2 * self.M, H))
        self.proj = torch.nn.Linear(H, H, bias=False)

    def forward(self, input_ids, attention_mask):
        x, length = self.words(input_ids), input_ids.shape[1]
        span = torch.tensor(min(length, self.M))
        keys = self.proj(self.rel[self.M - span:self.M + span])[None]
        keys /= 2.0
        c2p = (x @ keys.transpose(-1, -2))[:, None]  # [B, 1, L, 2 span]
        at = torch.arange(length)[:, None] - torch.arange(length)[None, :]
        return torch.gather(c2p, -1, torch.clamp(at + span, 0, span * 2 - 1).expand(B, 1, length, length))


def test_a_window_that_moves_with_the_length_becomes_the_longest_and_a_relative_gather():
    seq = torch.export.Dim("seq", min=2, max=16)
    ep = torch.export.export(MovingWindow().eval(), inputs(), dynamic_shapes=({1: seq}, {1: seq}), strict=False)
    with torch.no_grad():
        before = ep.module()(*inputs())
    canonicalize_inputs(ep, NAMES)  # the .item() bounds range to int_oo: the trials' length must not read them
    ops = calls(ep)
    assert torch.ops.bertc.relative_gather.default in ops
    assert not {torch.ops.aten.item.default, torch.ops.aten.gather.default, torch.ops.aten.div_.Tensor} & set(ops)
    table = ops[torch.ops.bertc.relative_gather.default].args[1]
    assert table.shape == (31,) and int(table[15]) == 16  # j = i: the middle of the 32-row window at length 16
    torch.testing.assert_close(run(ep), before)
