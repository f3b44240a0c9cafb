"""canonicalize-token-dropout (passes/canonicalize_token_dropout.py): ESM's <mask>-share scaling of its embeddings
becomes one bertc::token_dropout factor, with the output unchanged; a scale of another denominator is left."""

from __future__ import annotations

import pytest
import torch
from bertc.passes.canonicalize_token_dropout import canonicalize_token_dropout


class Embeddings(torch.nn.Module):
    """EsmEmbeddings' token dropout, and (``form="length"``) one that divides by the input's length, not the mask's
    sum: the same where nothing is padded, so only trials with padding tell them apart."""

    def __init__(self, form):
        super().__init__()
        self.table = torch.nn.Embedding(64, 8)  # the trials draw ids below 50
        self.form = form

    def forward(self, input_ids, attention_mask):
        x = self.table(input_ids).masked_fill((input_ids == 3).unsqueeze(-1), 0.0)
        lengths = attention_mask.sum(-1) if self.form == "esm" else input_ids.shape[1]
        share = (input_ids == 3).sum(-1).float() / lengths
        return x * 0.88 / (1 - share)[:, None, None]


@pytest.mark.parametrize("form", ["esm", "length"])
def test_token_dropout_becomes_one_factor(form):
    torch.manual_seed(0)
    ids = torch.tensor([[5, 3, 7, 3, 9, 1], [3, 4, 4, 6, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    ep = torch.export.export(Embeddings(form).eval(), (ids, mask))
    want = ep.module()(ids, mask)
    canonicalize_token_dropout(ep, ["input_ids", "attention_mask"])
    ops = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert (torch.ops.bertc.token_dropout.default in ops) == (form == "esm")
    assert (torch.ops.aten.masked_fill.Scalar in ops) == (form != "esm")
    torch.testing.assert_close(ep.module()(ids, mask), want, rtol=1e-6, atol=1e-6)
