"""The ways people save and configure the models they deploy (issue 18): RoBERTa-family configs as the
checkpoints ship them, torch.export programs saved the plain way and under any file name, TorchScript
traced without a mask. Each compiles and matches PyTorch, or says what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as T
from conftest import max_error, random_inputs, reference, tiny_model

import bertc

TOL = 1e-4  # fp32, as test_models.py
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
         "vocab_size": 120, "max_position_embeddings": 40}


@pytest.mark.parametrize("config", [T.RobertaConfig, T.XLMRobertaConfig])
def test_roberta_family_with_one_token_type(config, tmp_path):
    """roberta-base, xlm-roberta-base and camembert-base ship type_vocab_size 1: only token type 0 exists."""
    torch.manual_seed(0)
    model = T.AutoModel.from_config(config(type_vocab_size=1, **SMALL)).eval()
    compiled = bertc.compile(model, target="host", seq_len=16, out=tmp_path / "r.bertc").load()
    ids, mask, types = random_inputs(1, 16, 120, seed=1, pad_from=11)
    assert max_error(compiled(ids, mask, types), reference(model, ids, mask, types), mask) <= TOL
    with pytest.raises(bertc.BertcError, match="token type id 1.*pass zeros or no token_type_ids"):
        compiled(ids, mask, np.ones_like(types))  # would read past the one-row table
    # positions start after the padding id: 38 of the 40 rows are usable
    with pytest.raises(bertc.BertcError, match="38 positions"):
        bertc.compile(model, target="host", seq_len=39, out=tmp_path / "long.bertc")


@pytest.mark.parametrize("name", ["m.pt2", "model.pt"])
def test_plain_torch_export_program(name, tmp_path):
    """torch.export.save(torch.export.export(model, (ids, mask))) as the torch docs show it: transformers'
    non-persistent buffers (position_ids) stay in the program's constants; the archive is recognised by
    its content, whatever the file is called."""
    model = tiny_model("bert")
    ids, mask, types = random_inputs(1, 16, 120, seed=1, pad_from=11)
    program = torch.export.export(model, (torch.from_numpy(ids), torch.from_numpy(mask)))
    assert program.graph_signature.non_persistent_buffers  # what made torch-mlir's import fail
    torch.export.save(program, tmp_path / name)
    compiled = bertc.compile(str(tmp_path / name), target="host", seq_len=16, out=tmp_path / "p.bertc").load()
    assert max_error(compiled(ids, mask, types), reference(model, ids, mask, types), mask) <= TOL


@pytest.fixture(scope="module")
def traced_on_ids(tmp_path_factory):
    """A BERT traced on input_ids alone (no attention_mask in its graph), compiled at its traced length."""
    cfg = tiny_model("bert").config
    cfg.torchscript = True
    torch.manual_seed(0)
    model = T.AutoModel.from_config(cfg).eval()
    ids, _, _ = random_inputs(1, 16, 120, seed=4)
    path = tmp_path_factory.mktemp("ts") / "ids.ts"
    torch.jit.trace(model, (torch.from_numpy(ids),), strict=False).save(str(path))
    cfg.torchscript = False  # the reference returns a ModelOutput with named fields
    return model, bertc.compile(str(path), target="host", seq_len=16, out=path.parent / "ids.bertc").load()


def test_torchscript_without_mask_unpadded(traced_on_ids):
    model, compiled = traced_on_ids
    ids, mask, types = random_inputs(1, 16, 120, seed=5)
    for given in (mask, None):
        assert max_error(compiled(ids, given, types), reference(model, ids, mask, types), mask) <= TOL


def test_torchscript_without_mask_refuses_padding(traced_on_ids):
    """Its graph has no mask to apply: a padded input would attend its padding (a silent 5e-3 error)."""
    _, compiled = traced_on_ids
    ids, mask, types = random_inputs(1, 16, 120, seed=5, pad_from=11)
    with pytest.raises(bertc.BertcError, match="without an attention_mask input"):
        compiled(ids, mask, types)
    with pytest.raises(bertc.BertcError, match="without an attention_mask input"):
        compiled(ids[:, :11])  # shorter than compiled: bertc would pad it, unmasked


def test_the_readmes_trace_line_as_written(tmp_path):
    """README's `torch.jit.trace(model, (input_ids, attention_mask), strict=False).save(PATH)` on a transformers model
    as it comes (dict outputs: without strict=False torch refuses to trace it), compiled and run padded."""
    model = tiny_model("bert")
    ids, mask, types = random_inputs(1, 16, 120, seed=6, pad_from=12)
    torch.jit.trace(model, (torch.from_numpy(ids), torch.from_numpy(mask)), strict=False).save(str(tmp_path / "m.pt"))
    compiled = bertc.compile(str(tmp_path / "m.pt"), target="host", seq_len=16, out=tmp_path / "m.bertc").load()
    assert max_error(compiled(ids, mask, types), reference(model, ids, mask, types), mask) <= TOL
