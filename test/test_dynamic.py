"""Dynamic sequence length (issue 17): a model exported with a ``torch.export.Dim`` on the sequence keeps
``?`` for the length from the import through --raise-torch, --fuse-attention and --fuse-epilogues, and fuses
exactly as the static compile of the same model does; compiled with max_seq_len=N, one artifact runs every
length 1..N at that length and matches PyTorch there, on host and on ARM64 (qemu), while a static compile
is what it was."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter

import numpy as np
import pytest
import torch
from bertc.dialects import bertc as B
from bertc.passes import PassContext
from conftest import (
    ARCHS,
    FUSED_ATTENTION,
    MORE_ARCHS,
    NO_TOKEN_TYPES,
    ROTARY,
    _Encoder,
    max_error,
    on_lavapipe,
    random_inputs,
    reference,
    tiny_model,
)
from torch_mlir import ir

import bertc
from bertc import cli
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


# ------------------------------------------------------------------ compiled and run at the input's length
# One artifact per model for every length up to its bound; each length is compared with PyTorch eager at
# that same length (no padding on either side), batch 2 so that two sentences of different lengths run
# together, padded to the longer.

TOL = 1e-4
BOUND = 64


@pytest.fixture(scope="module")
def bert_dynamic(tmp_path_factory):
    model = tiny_model("bert")
    art = bertc.compile(model, target="host", seq_len=8, max_seq_len=BOUND, batch=2,
                        out=tmp_path_factory.mktemp("dyn") / "bert.bertc")
    return model, art, art.load()


@pytest.mark.parametrize("length", [1, 7, 27, BOUND])
def test_every_length_matches_pytorch_at_that_length(bert_dynamic, length):
    model, _, compiled = bert_dynamic
    # at 27: the second sentence is 20 tokens, padded to the first's 27 with the mask
    ids, mask, types = random_inputs(2, length, 120, seed=length)
    if length == 27:
        ids[1, 20:], mask[1, 20:] = 0, 0
    types[:, length // 2:] = 1
    ours = compiled(ids, mask, types)
    assert ours["last_hidden_state"].shape == (2, length, 32) and ours["pooler_output"].shape == (2, 32)
    assert max_error(ours, reference(model, ids, mask, types), mask) <= TOL


def test_the_artifact_says_it_is_dynamic(bert_dynamic):
    _, art, compiled = bert_dynamic
    assert art.manifest.dynamic and art.manifest.max_seq_len == art.manifest.seq_len == BOUND
    assert compiled.seq_len == BOUND and compiled.dynamic
    source = (art.path / "src" / "model.c").read_text()
    assert "const int64_t L = x->seq;" in source and ".header.dynamic = 1," in source
    assert "bertc.linear [2, ?, 96]" in source  # the per-op report names the run's length ?
    # the GEMMs take the run's rows, batch 2 x L, and split them over threads by their work at that length
    assert re.search(r"bertc_linear_packed\(bertc_pool_sized\(p, \(int64_t\)\(6144\*L\), BERTC_SERIAL_MACS\), "
                     r"[^;]*\(2\*L\), 96, 32,", source), source


def test_a_length_beyond_the_bound_is_refused(bert_dynamic, tmp_path):
    _, art, compiled = bert_dynamic
    ids = np.full((2, BOUND + 1), 5, np.int64)
    with pytest.raises(BertcError, match=rf"sequence length {BOUND + 1} is outside 1..{BOUND} \(the compiled "
                                         r"--max-seq-len\)"):
        compiled(ids)
    ids.tofile(tmp_path / "ids.bin")  # the C tool, bertc_run, refuses it the same way
    r = subprocess.run([str(art.path / "bertc_run"), str(art.path), "--input-ids", str(tmp_path / "ids.bin"),
                        "--seq", str(BOUND + 1)], capture_output=True, text=True, check=False)
    assert r.returncode == 4 and f"outside 1..{BOUND} (the compiled --max-seq-len)" in r.stderr, r.stderr


def test_bertc_run_returns_the_input_length(bert_dynamic, tmp_path, capsys):
    _, art, _ = bert_dynamic
    np.save(tmp_path / "ids.npy", np.full((2, 5), 7, np.int64))
    assert cli.main(["run", str(art.path), "--input-ids", str(tmp_path / "ids.npy")]) == 0
    assert "last_hidden_state: shape [2, 5, 32]" in capsys.readouterr().out


def test_bench_prices_each_length(bert_dynamic, capsys):
    _, art, _ = bert_dynamic
    assert cli.main(["bench", str(art.path), "--lengths", "1,7", "--runs", "2", "--warmup", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dynamic"] and [row["length"] for row in report["lengths"]] == [1, 7]
    assert cli.main(["bench", str(art.path), "--lengths", f"1,{BOUND + 1}"]) == 2
    assert f"every length must be in 1..{BOUND}" in capsys.readouterr().err


def test_a_bound_of_two_tokens_compiles_and_runs_both_lengths(tmp_path):
    """--max-seq-len 2: traced for lengths up to 2, BERT's mask took a path raise-torch does not lower; exported for
    up to 3 it is the same program, bounded at 2."""
    model = tiny_model("bert")
    compiled = bertc.compile(model, target="host", max_seq_len=2, out=tmp_path / "two.bertc").load()
    for length in (1, 2):
        ids, mask, types = random_inputs(1, length, 120, seed=length)
        assert max_error(compiled(ids, mask, types), reference(model, ids, mask, types), mask) <= TOL
    with pytest.raises(BertcError, match=r"sequence length 3 is outside 1..2"):
        compiled(np.full((1, 3), 5, np.int64))


def test_roberta_positions_from_the_ids_at_a_run_length(tmp_path):
    model = tiny_model("roberta", "sdpa")
    compiled = bertc.compile(model, target="host", seq_len=8, max_seq_len=32, out=tmp_path / "r.bertc").load()
    ids, mask, _ = random_inputs(1, 13, 120, seed=3, pad_from=10)
    ours = compiled(ids, mask)
    assert ours["last_hidden_state"].shape == (1, 13, 32)
    assert max_error(ours, reference(model, ids, mask), mask) <= TOL


def test_static_compile_is_untouched(tmp_path):
    """Without --max-seq-len the emitted C is what it was before dynamic lengths (no L, no dynamic flag, output
    slots without seq_dim), and shorter inputs are still padded to the compiled length."""
    model = tiny_model("bert")
    art = bertc.compile(model, target="host", seq_len=16, out=tmp_path / "s.bertc")
    source = (art.path / "src" / "model.c").read_text()
    assert "x->seq" not in source and "dynamic" not in source and ", ?" not in source
    assert '{"last_hidden_state", ' in source and re.search(r'\{"last_hidden_state", \d+, 3, \{1, 16, 32, 0\}\},',
                                                            source)
    assert not art.manifest.dynamic and "max_seq_len" not in json.loads((art.path / "manifest.json").read_text())
    ids, mask, types = random_inputs(1, 9, 120, seed=1)
    assert max_error(art.load()(ids, mask, types), reference(model, ids, mask, types), mask) <= TOL


def test_max_seq_len_and_seq_len_are_one_or_the_other(capsys):
    assert cli.main(["compile", "m", "--seq-len", "64", "--max-seq-len", "128"]) == 2
    assert "give --seq-len (one length, shorter inputs padded to it) or --max-seq-len" in capsys.readouterr().err


def test_fp16_arm64_under_qemu_at_a_run_length(tmp_path):
    """The same emitted C on ARM64 (the NEON kernels, fp16 weight panels), run by bertc_run under qemu."""
    if shutil.which("qemu-aarch64") is None:
        pytest.skip("no qemu-aarch64")
    model = tiny_model("bert")
    art = bertc.compile(model, target="linux-arm64", seq_len=8, max_seq_len=32, dtype="fp16",
                        out=tmp_path / "a.bertc")
    compiled = art.load()
    ids, mask, types = random_inputs(1, 11, 120, seed=11, pad_from=9)
    ours = compiled(ids, mask, types)
    assert ours["last_hidden_state"].shape == (1, 11, 32)
    assert max_error(ours, reference(model, ids, mask, types), mask) <= 5e-2  # fp16 GEMM weights


# ------------------------------------------------------------ every family on every target at the lengths
# Each family compiled once per target with a bound past 129 that divides no tile (host 6x16 / AVX-512's,
# NEON's 8x12, the Vulkan GEMM's 64 rows), then run at 1, 2, 7, 27, 64, 129 and the bound, always a batch of two
# sentences of different lengths: the second is two thirds as long, padded to the first's (each family's pad
# id) and masked, so the program runs at the longer one's length.
FAMILY_BOUND = 137
FAMILY_LENGTHS = (1, 2, 7, 27, 64, 129, FAMILY_BOUND)  # 2: MobileBERT is exported for 3.. (bertc/export.py)
PAD_ID = {"roberta": 1, "esm": 1, "nomic_bert": 0, "eurobert": 0}  # tiny_config's pad_token_id
MASK_ID = {"esm": 2}  # ESM's token dropout zeroes <mask> tokens and scales the rest by their share of the row




@pytest.mark.parametrize("target", ["host", "linux-arm64", "vulkan"])
@pytest.mark.parametrize("arch", ARCHS + list(MORE_ARCHS) + ROTARY)
def test_every_family_at_every_length_on_every_target(arch, target, tmp_path, monkeypatch):
    if target == "linux-arm64" and shutil.which("qemu-aarch64") is None:
        pytest.skip("no qemu-aarch64")
    if target == "vulkan":
        on_lavapipe(monkeypatch)
    impl = MORE_ARCHS.get(arch, ("eager",))[-1]  # ERNIE in sdpa here: test_models.py runs its eager form on host
    model = tiny_model(arch, impl)
    started = time.perf_counter()  # printed for README's coverage table, never asserted
    art = bertc.compile(model, target=target, max_seq_len=FAMILY_BOUND, batch=2, out=tmp_path / "m.bertc")
    took = time.perf_counter() - started
    # rotary families too: one rotary op on the fused Q|K|V rows
    assert art.report["fusion"]["attention"] == FUSED_ATTENTION.get(arch, 2)
    compiled = art.load()
    worst = 0.0
    for length in FAMILY_LENGTHS:
        ids, mask, types = random_inputs(2, length, 120, seed=length)
        short = max(1, 2 * length // 3)
        ids[1, short:], mask[1, short:] = PAD_ID.get(arch, 0), 0
        if arch in MASK_ID:  # in both rows, the padded one's too: its share counts real tokens only
            ids[:, 1:short:3] = MASK_ID[arch]
        types[:, length // 2:] = 1 if arch not in NO_TOKEN_TYPES else 0
        ours = compiled(ids, mask, types) if arch not in NO_TOKEN_TYPES else compiled(ids, mask)
        assert ours["last_hidden_state"].shape == (2, length, 32), (length, ours["last_hidden_state"].shape)
        err = max_error(ours, reference(model, ids, mask, types), mask)
        assert err <= TOL, (length, err)
        worst = max(worst, err)
    print(f"{arch}-{impl} on {target}, lengths {FAMILY_LENGTHS} in batches of two: max |error| {worst:.2e}; "
          f"compiled in {took:.1f} s; fusion {art.report['fusion']}")


def test_the_default_is_every_length_up_to_the_positions(tmp_path):
    """Neither --seq-len nor --max-seq-len: every length up to the model's usable positions (RoBERTa's start
    after its padding id), at most 512, since a dynamic program costs nothing at a given length; a
    TorchScript archive, traced at one length, keeps one length (128)."""
    bert = bertc.compile(tiny_model("bert"), target="host", out=tmp_path / "b.bertc")
    assert bert.manifest.dynamic and bert.manifest.max_seq_len == 300  # tiny_config's max_position_embeddings
    roberta = tiny_model("roberta", max_pos=600)
    art = bertc.compile(roberta, target="host", out=tmp_path / "r.bertc")
    assert art.manifest.max_seq_len == 512  # capped
    ids, mask, _ = random_inputs(1, 9, 120, seed=4)
    assert max_error(art.load()(ids, mask), reference(roberta, ids, mask), mask) <= TOL
    assert bertc.compile(tiny_model("roberta", max_pos=40), out=tmp_path / "r40.bertc").manifest.max_seq_len == 38
    model = tiny_model("bert")
    example = tuple(torch.from_numpy(a) for a in random_inputs(1, 16, 120)[:2])
    torch.jit.trace(model, example, strict=False).save(str(tmp_path / "ts.pt"))
    ts = bertc.compile(str(tmp_path / "ts.pt"), out=tmp_path / "ts.bertc")
    assert not ts.manifest.dynamic and ts.manifest.seq_len == 128
    assert cli.main(["compile", str(tmp_path / "ts.pt"), "-q", "-o", str(tmp_path / "ts2.bertc")]) == 0


# One family per op set the half-float GEMMs meet that BERT's do not: ReLU epilogues and separate V rows
# (MobileBERT), unfused matmuls and gathers (DeBERTa-v2), fused Wqkv rows and GeGLU (ModernBERT), token dropout and
# an erf GELU (ESM), SiLU gates and RMSNorm (EuroBERT); the rest share BERT's GEMMs and attention.
FP16_FAMILIES = ["mobilebert", "deberta-v2", "modernbert", "esm", "eurobert"]


@pytest.mark.parametrize("target", ["linux-arm64", "vulkan"])
@pytest.mark.parametrize("arch", FP16_FAMILIES)
def test_families_in_fp16(arch, target, tmp_path, monkeypatch):
    if target == "linux-arm64" and shutil.which("qemu-aarch64") is None:
        pytest.skip("no qemu-aarch64")
    if target == "vulkan":
        on_lavapipe(monkeypatch)
    model = tiny_model(arch, MORE_ARCHS.get(arch, ("eager",))[-1])
    art = bertc.compile(model, target=target, max_seq_len=40, batch=2, dtype="fp16", out=tmp_path / "h.bertc")
    assert list(art.report["precision"]["linears"]) == ["fp16"]  # every GEMM's weights in half floats
    ids, mask, types = random_inputs(2, 27, 120, seed=5)
    ids[1, 18:], mask[1, 18:] = PAD_ID.get(arch, 0), 0
    if arch in MASK_ID:
        ids[:, 1:18:3] = MASK_ID[arch]
    ours = art.load()(ids, mask, types) if arch not in NO_TOKEN_TYPES else art.load()(ids, mask)
    err = max_error(ours, reference(model, ids, mask, types), mask)
    print(f"{arch} fp16 on {target}: max |error| {err:.2e}")
    assert err <= 5e-2  # half-float GEMM weights, as BERT's fp16 tests allow
