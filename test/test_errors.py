"""Bad input gets a clear error (BertcError in Python, a status code and message from C), never
a crash, and a failed compile leaves nothing that looks like an artifact."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
import transformers as T
from conftest import random_inputs, tiny_model

import bertc
from bertc.artifact import read_manifest, sha256_file


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "bert.bertc"
    bertc.compile(tiny_model("bert"), seq_len=16, out=out)
    return out


def _copy(artifact, tmp_path):
    dst = tmp_path / "copy.bertc"
    shutil.copytree(artifact, dst)
    return dst


def test_truncated_weights(artifact, tmp_path):
    art = _copy(artifact, tmp_path)
    data = (art / "weights.bin").read_bytes()
    (art / "weights.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(bertc.BertcError, match="truncated"):
        bertc.load(art)


def _flip_weight_byte(artifact, tmp_path):
    art = _copy(artifact, tmp_path)
    data = bytearray((art / "weights.bin").read_bytes())
    data[100] ^= 0xFF
    (art / "weights.bin").write_bytes(bytes(data))
    return art


def test_altered_weights_caught_by_python(artifact, tmp_path):
    art = _flip_weight_byte(artifact, tmp_path)
    with pytest.raises(bertc.BertcError, match="sha256"):
        bertc.load(art)


def test_altered_weights_caught_by_c_runtime(artifact, tmp_path):
    """Even with a manifest rewritten to match, the C loader refuses weights it was not built for."""
    art = _flip_weight_byte(artifact, tmp_path)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["weights.bin"]["sha256"] = sha256_file(art / "weights.bin")
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(bertc.BertcError, match="names other weights"):
        bertc.load(art)
    ids = tmp_path / "ids.bin"
    np.ones(16, np.int64).tofile(ids)
    r = subprocess.run([str(art / "bertc_run"), str(art), "--input-ids", str(ids)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 2 and "names other weights" in r.stderr


def test_corrupt_manifest(artifact, tmp_path):
    art = _copy(artifact, tmp_path)
    (art / "manifest.json").write_text("{ not json")
    with pytest.raises(bertc.BertcError, match="corrupt"):
        bertc.load(art)


def test_missing_library(artifact, tmp_path):
    art = _copy(artifact, tmp_path)
    lib = read_manifest(art).library
    (art / lib).unlink()
    with pytest.raises(bertc.BertcError, match="missing"):
        bertc.load(art)


def test_missing_artifact(tmp_path):
    with pytest.raises(bertc.BertcError, match="does not exist"):
        bertc.load(tmp_path / "nope.bertc")


@pytest.mark.parametrize("bad, message", [
    (lambda ids: ids + 1000, "outside the vocabulary|outside \\[0, 120\\)"),
    (lambda ids: ids - 1000, "outside \\[0, 120\\)"),
])
def test_token_ids_out_of_range(artifact, bad, message):
    model = bertc.load(artifact)
    ids, mask, types = random_inputs(1, 16, 120)
    with pytest.raises(bertc.BertcError, match=message):
        model(bad(ids), mask, types)
    # the model still works afterwards
    assert model(ids, mask, types)["last_hidden_state"].shape == (1, 16, 32)


def test_bad_token_types_and_mask(artifact):
    model = bertc.load(artifact)
    ids, mask, types = random_inputs(1, 16, 120)
    with pytest.raises(bertc.BertcError, match="token type id 5"):
        model(ids, mask, types + 5)
    with pytest.raises(bertc.BertcError, match="attention mask value 3"):
        model(ids, mask * 3, types)


def test_wrong_shapes_and_dtypes(artifact):
    model = bertc.load(artifact)
    ids, mask, _ = random_inputs(1, 16, 120)
    with pytest.raises(bertc.BertcError, match="sequence length 40 is outside 1..16"):
        model(np.zeros((1, 40), np.int64))
    with pytest.raises(bertc.BertcError, match="batch 2 differs"):
        model(np.zeros((2, 16), np.int64))
    with pytest.raises(bertc.BertcError, match="must hold integers"):
        model(ids.astype(np.float32))
    with pytest.raises(bertc.BertcError, match="must be \\[batch, seq\\]"):
        model(ids[None])
    with pytest.raises(bertc.BertcError, match="attention_mask has shape"):
        model(ids, mask[:, :5])


def test_unknown_target(tmp_path):
    with pytest.raises(bertc.BertcError, match="unknown target 'mars'"):
        bertc.compile(tiny_model("bert"), target="mars", out=tmp_path / "x.bertc")


def test_missing_model_path(tmp_path):
    with pytest.raises(bertc.BertcError, match="does not exist"):
        bertc.compile(str(tmp_path / "nothing"), out=tmp_path / "x.bertc")


def test_unsupported_op_names_op_and_source(tmp_path):
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(50, 8)

        def forward(self, input_ids, attention_mask=None):
            return torch.sin(self.emb(input_ids))

    with pytest.raises(bertc.BertcError) as e:
        bertc.compile(Odd(), seq_len=8, out=tmp_path / "odd.bertc")
    assert "unsupported op 'torch.aten.sin' at module" in str(e.value) and "(Odd)" in str(e.value)
    assert "bertc-opt" in str(e.value)  # the repro command
    assert not (tmp_path / "odd.bertc").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".odd.bertc")]


def test_failed_recompile_keeps_previous_artifact(artifact, tmp_path):
    art = _copy(artifact, tmp_path)
    before = (art / "manifest.json").read_text()

    class Odd(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None):
            return torch.sin(input_ids.float())

    with pytest.raises(bertc.BertcError):
        bertc.compile(Odd(), seq_len=16, out=art)
    assert (art / "manifest.json").read_text() == before
    assert bertc.load(art)(np.ones((1, 16), np.int64))["last_hidden_state"].shape == (1, 16, 32)


def test_seq_len_longer_than_model(tmp_path):
    with pytest.raises(bertc.BertcError, match="max_position_embeddings"):
        bertc.compile(tiny_model("bert", max_pos=64), seq_len=128, out=tmp_path / "x.bertc")


def test_bigbird_block_sparse_past_its_full_attention_is_refused(tmp_path):
    model = tiny_model("big_bird")
    model.config.attention_type, model.config.block_size = "block_sparse", 8  # full up to (5 + 2 * 3 random) * 8
    with pytest.raises(bertc.BertcError, match="block_sparse attention, which transformers uses past 88 tokens.*"
                                               "--max-seq-len 88 or less"):
        bertc.compile(model, max_seq_len=100, out=tmp_path / "x.bertc")


def test_longformer_is_refused_by_name(tmp_path):
    model = T.AutoModel.from_config(T.LongformerConfig(vocab_size=120, max_position_embeddings=300, hidden_size=32,
                                                       num_hidden_layers=1, num_attention_heads=2,
                                                       intermediate_size=64, attention_window=8)).eval()
    with pytest.raises(bertc.BertcError, match="Longformer's attention .* global tokens .* not supported yet"):
        bertc.compile(model, max_seq_len=64, out=tmp_path / "x.bertc")
