"""Dynamic sequence length (issue 17), first step: a model exported with a ``torch.export.Dim`` on the
sequence keeps ``?`` for the length from the import through --raise-torch, --fuse-attention and
--fuse-epilogues, and fuses exactly as the static compile of the same model does."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import torch
from bertc.dialects import bertc as B
from bertc.passes import PassContext
from conftest import _Encoder, random_inputs, tiny_model
from torch_mlir import ir

from bertc.errors import BertcError
from bertc.frontend import LoadedModel, export_model, import_torch
from bertc.ir import make_context
from bertc.pipeline import run_pass

EARLY_PASSES = ("raise-torch", "fuse-attention", "fuse-epilogues")


def fused(loaded: LoadedModel) -> tuple[str, Counter]:
    """The IR after the early passes, and its fused ops counted by (name, activation, residual?)."""
    with make_context() as context, ir.Location.unknown():
        module, store = import_torch(loaded, context)
        ctx = PassContext(weights=store)
        for flag in EARLY_PASSES:
            run_pass(module, flag, ctx)
        assert module.operation.verify()
        body = module.body.operations[0].regions[0].blocks[0].operations
        counts = Counter()
        for op in body:
            if isinstance(op, (B.AttentionOp, B.LinearOp, B.LayerNormOp, B.EmbeddingOp)):
                residual = getattr(op, "residual", None) is not None
                act = op.activation.value if isinstance(op, B.LinearOp) else None
                counts[(op.operation.name, act, residual)] += 1
        return str(module), counts


# bert: position ids from a buffer sliced to the run's length, the float mask bias; roberta with sdpa:
# position ids from input_ids (the bertc::position_ids stand-in), the boolean keep-mask, sdpa's eager form.
@pytest.mark.parametrize("arch, impl", [("bert", "eager"), ("roberta", "sdpa")])
def test_dynamic_length_through_fusion(arch, impl):
    text, counts = fused(export_model(tiny_model(arch, impl), seq_len=8, max_seq_len=64))
    _, static_counts = fused(export_model(tiny_model(arch, impl), seq_len=8))
    signature = re.search(r"func\.func @main\((.*)\) -> (.*) \{", text)
    assert signature.group(1).count("tensor<1x?xi64>") == 3, signature.group(0)
    assert signature.group(2).startswith(("tensor<1x?x32xf32>", "(tensor<1x?x32xf32>")), signature.group(0)
    assert "1x8x" not in text and "x8xf32" not in text, "the trace length leaked into a type"
    assert "torch." not in text
    assert counts[("bertc.attention", None, False)] == 2
    assert counts == static_counts


def test_length_beyond_the_positions_is_refused():
    with pytest.raises(BertcError, match="max_position_embeddings"):
        export_model(tiny_model("bert", max_pos=32), seq_len=8, max_seq_len=64)


def test_dynamic_program_needs_max_seq_len(tmp_path):
    """A .pt2 exported with a Dim is refused by a static compile (the later passes need one length),
    with the way out, and taken with max_seq_len."""
    model = tiny_model("bert")
    for mod in model.modules():
        mod._non_persistent_buffers_set.clear()
    example = tuple(torch.from_numpy(a) for a in random_inputs(1, 8, 120))
    seq = torch.export.Dim("seq", max=64)
    program = torch.export.export(_Encoder(model), example, dynamic_shapes=({1: seq},) * 3, strict=False)
    torch.export.save(program, tmp_path / "m.pt2")
    with pytest.raises(BertcError, match="dynamic input shape.*export it again without dynamic_shapes"):
        export_model(tmp_path / "m.pt2", seq_len=8)
    assert export_model(tmp_path / "m.pt2", seq_len=8, max_seq_len=64).input_names[0] == "input_ids"
