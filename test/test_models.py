"""Compiled models agree with PyTorch (fp32, max abs error <= 1e-4) on the real MiniLM and on
every supported architecture, with eager and sdpa attention, padded inputs included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as T
from conftest import (
    ARCHS,
    FUSED_ATTENTION,
    MATMULS_A_LAYER,
    MORE_ARCHS,
    NO_TOKEN_TYPES,
    ROTARY,
    max_error,
    random_inputs,
    reference,
    save_pt2,
    tiny_model,
)

import bertc

TOL = 1e-4


@pytest.mark.parametrize("arch,impl", [(a, i) for a in ARCHS for i in ("eager", "sdpa")]
                         + [(a, i) for a, impls in MORE_ARCHS.items() for i in impls])
def test_architecture_matches_pytorch(arch, impl, tmp_path):
    model = tiny_model(arch, impl)
    art = bertc.compile(model, seq_len=24, out=tmp_path / "m.bertc")
    # Every attention block fused (MegatronBERT's behind its pre-LayerNorm too; MobileBERT's with V's rows apart),
    # every FFN GELU folded into its GEMM (ALBERT's and BigBird's tanh GELU arrives as pow/tanh/mul and stays
    # elementwise).
    fused = FUSED_ATTENTION.get(arch, 2)
    assert art.report["fusion"]["attention"] == fused
    assert art.report["fusion"]["unfused_matmul"] == 2 * (2 - fused) + 2 * MATMULS_A_LAYER.get(arch, 0)
    if arch not in ("albert", "big_bird", "modernbert"):  # ModernBERT: GeGLU's GELU of half the columns
        assert art.report["fusion"]["linear_with_activation"] >= 2
    compiled = art.load(threads=2)
    for seq, pad_from in ((24, None), (24, 17), (9, 5)):
        ids, mask, types = random_inputs(1, seq, 120, seed=seq + (pad_from or 0), pad_from=pad_from)
        types[:, seq // 2:] = 1  # a second segment, where the model has token types
        ours = compiled(ids, mask, types) if arch not in NO_TOKEN_TYPES else compiled(ids, mask)
        ref = reference(model, ids, mask, types)
        assert ours["last_hidden_state"].shape == (1, seq, 32)
        assert ("pooler_output" in ours) == ("pooler_output" in ref)
        assert max_error(ours, ref, mask) <= TOL


@pytest.mark.parametrize("arch", ROTARY)
def test_rotary_family_matches_pytorch(arch, tmp_path):
    """At one fixed length (test_dynamic.py runs them at every length on every target): the rotation is one op
    on the fused Q|K|V rows, its tables constants of the compile, and attention still one kernel."""
    model = tiny_model(arch)
    art = bertc.compile(model, seq_len=24, out=tmp_path / "m.bertc")
    assert art.report["fusion"]["attention"] == 2 and art.report["fusion"]["unfused_matmul"] == 0
    assert art.report["ops"]["bertc.rotary"] == 2
    if arch == "esm":  # its erf-written GELU folded into the FFN GEMMs, its mask a cast and a mul
        assert art.report["fusion"]["linear_with_activation"] >= 2 and art.report["ops"]["bertc.cast"] == 1
    if arch in ("nomic_bert", "eurobert"):  # SwiGLU: SiLU folded into each gate's GEMM, the product a mul
        assert art.report["fusion"]["linear_with_activation"] == 2 and art.report["ops"]["bertc.mul"] == 2
    if arch == "eurobert":  # pre-RMSNorm: two a layer and a final one, each one op with its weight
        assert art.report["ops"]["bertc.rms_norm"] == 5 and "bertc.constant" not in art.report["ops"]
    compiled = art.load(threads=2)
    for seq, pad_from in ((24, None), (24, 17), (9, 5)):
        ids, mask, types = random_inputs(1, seq, 120, seed=seq + (pad_from or 0), pad_from=pad_from)
        ours = compiled(ids, mask, types) if arch not in NO_TOKEN_TYPES else compiled(ids, mask)
        assert max_error(ours, reference(model, ids, mask, types), mask) <= TOL


def test_deberta_v1_with_the_config_defaults_matches_pytorch(tmp_path):
    """DebertaConfig's defaults differ from deberta-base's (tiny_config's "deberta"): absolute positions added to
    the embeddings, and here a type table too, beside c2p and p2c over 64 relative positions, fewer than the
    length (the span stops growing at 64, and the gathers clamp); dynamic, at lengths either side of 64."""
    torch.manual_seed(0)
    config = T.DebertaConfig(vocab_size=120, max_position_embeddings=300, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64, relative_attention=True,
                             pos_att_type=["c2p", "p2c"], max_relative_positions=64, type_vocab_size=2)
    model = T.AutoModel.from_config(config).eval()
    compiled = bertc.compile(model, max_seq_len=80, batch=2, out=tmp_path / "m.bertc").load(threads=2)
    for seq, pad_from in ((80, None), (70, 50), (9, 5)):
        ids, mask, types = random_inputs(2, seq, 120, seed=seq, pad_from=pad_from)
        types[:, seq // 2:] = 1
        assert max_error(compiled(ids, mask, types), reference(model, ids, mask, types), mask) <= TOL


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_real_minilm_matches_pytorch(minilm_path, impl, tmp_path):
    model = T.AutoModel.from_pretrained(minilm_path, attn_implementation=impl).eval()
    art = bertc.compile(model, seq_len=128, out=tmp_path / "minilm.bertc")
    tok = T.AutoTokenizer.from_pretrained(minilm_path)
    enc = tok(["a gripping, funny film", "the plot never comes together and the jokes fall flat"],
              padding="max_length", max_length=128, return_tensors="np")
    ids, mask, types = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
    for threads in (1, 2):
        compiled = art.load(threads=threads)
        for row in range(2):
            ours = compiled(ids[row:row + 1], mask[row:row + 1], types[row:row + 1])
            ref = reference(model, ids[row:row + 1], mask[row:row + 1], types[row:row + 1])
            assert max_error(ours, ref, mask[row:row + 1]) <= TOL


def test_batch_of_two(tmp_path):
    model = tiny_model("bert")
    compiled = bertc.compile(model, seq_len=16, batch=2, out=tmp_path / "b2.bertc").load()
    ids, mask, types = random_inputs(2, 16, 120, seed=3)
    mask[1, 10:] = 0
    assert max_error(compiled(ids, mask, types), reference(model, ids, mask, types), mask) <= TOL


def test_short_inputs_are_padded_by_bertc(tmp_path):
    model = tiny_model("bert")
    compiled = bertc.compile(model, seq_len=32, out=tmp_path / "p.bertc").load()
    ids, mask, types = random_inputs(1, 7, 120, seed=5)
    ours = compiled(ids)  # no mask, no token types: all ones / zeros
    assert ours["last_hidden_state"].shape == (1, 7, 32)
    assert max_error(ours, reference(model, ids, mask, types), mask) <= TOL


# ---------------------------------------------------------------- every MODEL form


def _check_path(model, path, tmp_path, **kw):
    compiled = bertc.compile(str(path), seq_len=16, out=tmp_path / "from_path.bertc", **kw).load()
    ids, mask, types = random_inputs(1, 16, 120, seed=9, pad_from=12)
    assert max_error(compiled(ids, mask, types), reference(model, ids, mask, types), mask) <= TOL


def test_hugging_face_folder(tmp_path):
    model = tiny_model("roberta")
    model.save_pretrained(tmp_path / "hf")
    _check_path(model, tmp_path / "hf", tmp_path)


def test_state_dict_with_config(tmp_path):
    model = tiny_model("electra")
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, tmp_path / "sd.pt")
    _check_path(model, tmp_path / "sd.pt", tmp_path)


def test_torch_export_program(tmp_path):
    model = tiny_model("bert", "sdpa")
    save_pt2(model, tmp_path / "m.pt2")
    _check_path(model, tmp_path / "m.pt2", tmp_path)


@pytest.mark.parametrize("arch,impl,with_types", [(a, "eager", False) for a in ARCHS] + [("bert", "sdpa", True)])
def test_torchscript_archive(arch, impl, with_types, tmp_path):
    """A traced TorchScript archive (config.torchscript=True: tuple outputs) is converted by
    torch.export, folded to static shapes and fused like the eager model."""
    cfg = tiny_model(arch, impl).config
    cfg.torchscript = True
    torch.manual_seed(0)
    model = T.AutoModel.from_config(cfg).eval()
    ids, mask, types = random_inputs(1, 16, 120, seed=4, pad_from=11)
    types[:, 5:11] = 1
    example = tuple(torch.from_numpy(a) for a in ((ids, mask, types) if with_types else (ids, mask)))
    torch.jit.trace(model, example, strict=False).save(str(tmp_path / "m.ts"))
    # compiled for a longer sequence than it was traced with
    art = bertc.compile(str(tmp_path / "m.ts"), seq_len=24, out=tmp_path / "ts.bertc")
    ids, mask, types = random_inputs(1, 24, 120, seed=5, pad_from=19)
    types[:, 7:19] = 1
    assert art.report["fusion"]["attention"] == 2
    ours = art.load()(ids, mask, types)
    cfg.torchscript = False  # the reference returns a ModelOutput with named fields
    ref = reference(model, ids, mask, types if with_types else np.zeros_like(types))
    assert sorted(ours) == sorted(k for k in ref if k in ("last_hidden_state", "pooler_output"))
    assert max_error(ours, ref, mask) <= TOL


def test_pickled_module_needs_trust(tmp_path):
    model = tiny_model("distilbert")
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(bertc.BertcError, match="--trust-pickle"):
        bertc.compile(str(tmp_path / "whole.pt"), seq_len=16, out=tmp_path / "x.bertc")
    assert not (tmp_path / "x.bertc").exists()
    _check_path(model, tmp_path / "whole.pt", tmp_path, trust_pickle=True)


def test_convbert_heads_groups_and_kernel(tmp_path):
    """ConvBERT beyond tiny_config's: four heads (two attention, two span convolution heads of 8), a kernel of 5 taps,
    a grouped FFN (num_groups 2: one linear of block-diagonal weight), embeddings narrower than the hidden size."""
    torch.manual_seed(0)
    cfg = T.ConvBertConfig(vocab_size=120, max_position_embeddings=300, embedding_size=16, hidden_size=32,
                           num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, conv_kernel_size=5,
                           num_groups=2)
    model = T.AutoModel.from_config(cfg).eval()
    art = bertc.compile(model, max_seq_len=40, batch=2, out=tmp_path / "m.bertc")
    assert art.report["fusion"]["attention"] == 2 and art.report["fusion"]["unfused_matmul"] == 0
    compiled = art.load()
    for length in (3, 40):
        ids, mask, types = random_inputs(2, length, 120, seed=length, pad_from=length - 2)
        assert max_error(compiled(ids, mask, types), reference(model, ids, mask, types), mask) <= TOL
