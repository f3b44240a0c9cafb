"""DeBERTa-v2/v3 (issue 18): its disentangled attention is one fused kernel on every target. The c2p and p2c
scores (Q against the position keys, K against the position queries) stay GEMMs; the attention picks their columns
by relative position itself, so no bertc.relative_gather is left. Tiny models with position terms large enough that
a kernel dropping or misplacing either one fails, in DeBERTa-v3's form and in the v2 forms with one term only and
position projections of their own."""

from __future__ import annotations

import pytest
import torch
import transformers as T
from conftest import max_error, on_lavapipe, padded_pair, reference, tiny_config

import bertc

TOL = 1e-4
V3 = {}  # tiny_config's: DeBERTa-v3-base's flags (shared keys, c2p and p2c, 16 log buckets, LayerNorm'd positions)
C2P_OWN_KEYS = {"pos_att_type": ["c2p"], "share_att_key": False}
P2C_ONLY = {"pos_att_type": ["p2c"]}


def tiny_deberta(**config):
    torch.manual_seed(0)
    cfg = tiny_config("deberta-v2")
    for key, value in config.items():
        setattr(cfg, key, value)
    model = T.AutoModel.from_config(cfg).eval()
    with torch.no_grad():  # transformers' init (std 0.02) leaves the attention too flat to tell a kernel that drops
        # a position term; LayerNorm(rel_embeddings) scaled up makes the position keys and queries large
        model.encoder.rel_embeddings.weight.normal_(0.0, 1.0)
        model.encoder.LayerNorm.weight.normal_(0.0, 2.0)
        for name, p in model.named_parameters():
            if name.endswith(("_proj.weight", "attention.output.dense.weight")):
                p.normal_(0.0, 0.2)
    return model


def _inputs(length: int, pad: int, seed: int):
    return padded_pair(length, pad, seed, 0)  # tiny_config's padding id


def test_the_position_terms_matter():
    """Without its position embeddings the model's output moves by far more than TOL: the tests below could fail."""
    model = tiny_deberta()
    ids, mask = _inputs(23, 17, 0)
    with_terms = reference(model, ids, mask)
    with torch.no_grad():
        model.encoder.rel_embeddings.weight.zero_()
        model.encoder.LayerNorm.bias.zero_()
    assert max_error(with_terms, reference(model, ids, mask), mask) > 100 * TOL


@pytest.mark.parametrize("target, config", [("host", V3), ("host", C2P_OWN_KEYS), ("host", P2C_ONLY),
                                            ("linux-arm64", V3), ("vulkan", V3), ("vulkan", C2P_OWN_KEYS)],
                         ids=["host-v3", "host-c2p", "host-p2c", "arm64-v3", "vulkan-v3", "vulkan-c2p"])
def test_deberta_fuses_and_matches_pytorch(target, config, tmp_path, monkeypatch):
    if target == "vulkan":
        on_lavapipe(monkeypatch)
    model = tiny_deberta(**config)
    art = bertc.compile(model, target=target, out=tmp_path / "m.bertc", batch=2, max_seq_len=40)
    assert art.report["fusion"]["attention"] == 2, art.report["fusion"]
    # one GEMM a layer for each position term, none for the scores
    assert art.report["fusion"]["unfused_matmul"] == 2 * len(config.get("pos_att_type", "cp")), art.report["fusion"]
    assert "bertc.relative_gather" not in art.report["ops"]
    compiled = art.load()
    worst = 0.0
    for length, pad in ((23, 17), (40, 29), (7, 3), (1, 1)):
        ids, mask = _inputs(length, pad, length)
        err = max_error(compiled(ids, mask), reference(model, ids, mask), mask)
        assert err <= TOL, (length, err)
        worst = max(worst, err)
    print(f"DeBERTa {config or 'v3'} on {target}: max |error| {worst:.2e}")  # for README, never asserted


def test_a_term_scaled_apart_fuses(tmp_path, monkeypatch):
    """p2c divided by another scale than Q K^T and c2p (as DeBERTa v1 scales its position queries): the kernel scales
    all three alike, so K's heads are multiplied by the ratio before p2c's GEMM, and the model still matches."""
    import transformers.models.deberta_v2.modeling_deberta_v2 as deberta

    calls, scale = [0], deberta.scaled_size_sqrt

    def p2c_apart(x, factor):  # called for Q K^T, c2p and p2c in each layer, in that order
        calls[0] += 1
        return scale(x, factor) * (0.7 if calls[0] % 3 == 0 else 1.0)

    monkeypatch.setattr(deberta, "scaled_size_sqrt", p2c_apart)
    model = tiny_deberta()
    art = bertc.compile(model, target="host", out=tmp_path / "m.bertc", batch=2, max_seq_len=40)
    assert art.report["fusion"]["attention"] == 2 and "bertc.relative_gather" not in art.report["ops"]
    compiled = art.load()
    for length, pad in ((23, 17), (7, 3)):
        ids, mask = _inputs(length, pad, length)
        calls[0] = 0
        assert max_error(compiled(ids, mask), reference(model, ids, mask), mask) <= TOL
