"""The smoke test (`make smoke`): the first check after any edit, a few seconds. One tiny BERT goes
through the whole path a user takes (torch model -> passes -> emitted C -> the runtime's C API through
ctypes) and agrees with PyTorch, padded tokens included. It proves the pieces still fit together, not
that each is right: the per-pass lit tests and test_models.py do that."""

from __future__ import annotations

from conftest import max_error, random_inputs, reference, tiny_model

import bertc

TOL = 1e-4  # fp32, as test_models.py


def test_tiny_bert_matches_pytorch(tmp_path):
    # one layer and 8 tokens: the compile dominates, and its C build is the runtime's whole API
    model = tiny_model("bert", layers=1)
    compiled = bertc.compile(model, target="host", seq_len=8, out=tmp_path / "smoke.bertc").load(threads=2)
    ids, mask, types = random_inputs(1, 8, 120, seed=1, pad_from=6)
    ours = compiled(ids, mask, types)
    assert ours["last_hidden_state"].shape == (1, 8, 32)
    assert max_error(ours, reference(model, ids, mask, types), mask) <= TOL
