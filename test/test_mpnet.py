"""MPNet (issue 18): its bucketed relative-position bias becomes a [heads, 2N - 1] table that the fused attention
kernel reads, on every target; and the real all-mpnet-base-v2, from its five packages, against PyTorch and
sentence-transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as T
from conftest import max_error, on_lavapipe, padded_pair, reference

import bertc

TOL = 1e-4


def tiny_mpnet(seed: int = 0):
    torch.manual_seed(seed)
    cfg = T.MPNetConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=300)
    model = T.AutoModel.from_config(cfg).eval()
    with torch.no_grad():  # transformers' init (std 0.02) leaves the bias too small to tell a kernel that drops it
        model.encoder.relative_attention_bias.weight.normal_(0.0, 2.0)
    return model


def _inputs(length: int, pad: int, seed: int):
    return padded_pair(length, pad, seed, 1)  # MPNet's padding id


def test_the_bias_matters():
    """Without its bias the model's output moves by far more than TOL: the tests below could fail."""
    model = tiny_mpnet()
    ids, mask = _inputs(23, 17, 0)
    with_bias = reference(model, ids, mask)
    with torch.no_grad():
        model.encoder.relative_attention_bias.weight.zero_()
    assert max_error(with_bias, reference(model, ids, mask), mask) > 100 * TOL


@pytest.mark.parametrize("target, how", [("host", "dynamic"), ("host", "static"), ("linux-arm64", "dynamic"),
                                         ("vulkan", "dynamic"), ("vulkan", "static")])
def test_mpnet_matches_pytorch(target, how, tmp_path, monkeypatch):
    if target == "vulkan":
        on_lavapipe(monkeypatch)
    model = tiny_mpnet()
    kw = {"max_seq_len": 40} if how == "dynamic" else {"seq_len": 23}
    art = bertc.compile(model, target=target, out=tmp_path / "m.bertc", batch=2, **kw)
    assert art.report["fusion"]["attention"] == 2, art.report["fusion"]
    assert "bertc.relative_bias" not in art.report["ops"]  # the bias rides in the fused kernel
    compiled = art.load()
    for length, pad in ((23, 17), (7, 3), (1, 1)):
        ids, mask = _inputs(length, pad, length)
        err = max_error(compiled(ids, mask), reference(model, ids, mask), mask)
        print(f"mpnet {target} {how} L={length}: max |error| {err:.2e}")
        assert err <= TOL


@pytest.fixture(scope="module")
def mpnet_path():
    try:
        from bertc.packaged import all_mpnet_base_v2

        return all_mpnet_base_v2()
    except bertc.BertcError as e:
        pytest.skip(str(e))


def test_real_all_mpnet_base_v2(mpnet_path, tmp_path):
    """The real checkpoint, every length up to 512: last_hidden_state against PyTorch, the pooled, normalized
    sentence embedding (the artifact's head) against sentence-transformers'."""
    from sentence_transformers import SentenceTransformer

    art = bertc.compile(mpnet_path, target="host", out=tmp_path / "mpnet.bertc")
    assert art.manifest.max_seq_len == 512 and art.report["fusion"]["attention"] == 12
    compiled = art.load(threads=2)
    model = T.AutoModel.from_pretrained(str(mpnet_path)).eval()
    tok = T.AutoTokenizer.from_pretrained(str(mpnet_path))
    st = SentenceTransformer(str(mpnet_path), device="cpu")
    texts = ["a gripping, funny film that never lets up", "dull",
             "The quick brown fox jumps over the lazy dog near the river bank, twice, for no reason at all."]
    want = st.encode(texts, convert_to_numpy=True)
    for text, emb in zip(texts, want):
        enc = tok(text, return_tensors="np")
        ours = compiled(enc["input_ids"], enc["attention_mask"])
        err = max_error({"last_hidden_state": ours["last_hidden_state"]},
                        reference(model, enc["input_ids"], enc["attention_mask"]), enc["attention_mask"])
        got = ours["sentence_embedding"][0]
        cos = float(got @ emb / np.linalg.norm(got) / np.linalg.norm(emb))
        print(f"all-mpnet-base-v2, {enc['input_ids'].shape[1]} tokens: max |error| {err:.2e}, cosine {cos:.7f}")
        assert err <= TOL and cos >= 0.99999


def test_two_positions_are_padding(tmp_path):
    """MPNet counts positions from padding_idx + 1, as RoBERTa does: 300 rows take 298 tokens."""
    with pytest.raises(bertc.BertcError, match="--max-seq-len 299 is longer than the model's 298 positions"):
        bertc.compile(tiny_mpnet(), target="host", out=tmp_path / "m.bertc", max_seq_len=299)
