"""--dtype int8 (issue 19): GEMM weights in int8 with a scale per output feature, each GEMM's input quantized
per row at run time. On the real MiniLM and real rt-sentiment snippets, against PyTorch's fp32: on the host's
integer kernels (VNNI or AVX2; the kernels themselves are held to the reference bit for bit by kernel_check,
test_kernels.py) and on ARM64 under qemu. With --prune-patterns (and --force): pruned
matrices as sparse int8 blocks, against PyTorch running the same pruned weights in fp32. The GPU's
weight-only int8 (gemm_i8) is test_vulkan.py's."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import transformers as T

import bertc
from bertc.sparsity import apply_masks, model_masks, parse_spec
from bertc.targets import get_target, host_target
from search.tasks import load_task

# Mean-pooled sentence embeddings (sentence-transformers' MiniLM pooling) against PyTorch fp32. Over the whole
# test split the int8 model's cosine is 0.997 on average and never below 0.989 (benchmarks/int8.py); a
# snippet at 0.98 would mean a broken kernel or scale, not the rounding of int8.
MIN_COSINE = 0.98


def snippets(n: int) -> list[str]:
    return [text for text, _ in load_task("rt-sentiment").test[:n]]


def cosines(model, minilm_path, texts: list[str], pad_to: int | None = None, prune: str | None = None) -> list[float]:
    """Each text's mean-pooled embedding against PyTorch's fp32 (with ``prune``, its weights pruned by that SPEC)."""
    tok = T.AutoTokenizer.from_pretrained(minilm_path)
    ref_model = T.AutoModel.from_pretrained(minilm_path).eval()
    if prune:
        apply_masks(ref_model, model_masks(ref_model, prune))
    out = []
    for text in texts:
        enc = tok(text, return_tensors="np", **({"padding": "max_length", "truncation": True, "max_length": pad_to} if pad_to else {}))
        keep = enc["attention_mask"][0].astype(bool)
        with torch.inference_mode():
            ref = ref_model(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state.numpy()[0]
        ours = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])["last_hidden_state"][0]
        a, b = ours[keep].mean(0), ref[keep].mean(0)
        out.append(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    return out


def test_minilm_int8_on_the_host(minilm_path, tmp_path):
    """Every linear of MiniLM in int8, the rest fp32 as report.json says; each snippet's embedding within
    MIN_COSINE of PyTorch's, at its own length (dynamic) and padded (static, the padding masked)."""
    art = bertc.compile(minilm_path, target="host", max_seq_len=64, dtype="int8", out=tmp_path / "d.bertc")
    assert art.manifest.dtype == "int8"
    precision = json.loads((art.path / "report.json").read_text())["precision"]
    assert precision["linears"] == {"int8": 25}  # 6 layers x (QKV, output, FFN in, FFN out) + the pooler
    assert precision["int8_activations"] == "dynamic, per row"
    assert {"bertc.attention", "bertc.layer_norm", "bertc.embedding"} <= set(precision["fp32_ops"])
    model = art.load(threads=2)
    texts = snippets(12)
    dynamic = cosines(model, minilm_path, texts)
    impl = model.kernels()["bertc_linear_packed_i8"]
    assert impl == ("avx2" if host_target().isa == "avx2" else "ref")
    static = bertc.compile(minilm_path, target="host", seq_len=48, dtype="int8", out=tmp_path / "s.bertc")
    padded = cosines(static.load(threads=1), minilm_path, texts[:4], pad_to=48)
    print(f"int8 ({impl}) vs PyTorch fp32, sentence cosine: dynamic min {min(dynamic):.5f} mean "
          f"{np.mean(dynamic):.5f}; padded min {min(padded):.5f}")
    assert min(dynamic) >= MIN_COSINE and min(padded) >= MIN_COSINE
    assert padded == pytest.approx(dynamic[:4], abs=1e-5)  # the padding changes nothing: rows quantize alone


def test_minilm_int8_calibrated_on_the_host(minilm_path, tmp_path):
    """--calibrate task:rt-sentiment: one static scale per GEMM input from the task's train texts, named in
    report.json and stamped on its int8 linear, where it keeps the noise 28 dB under the input: the attention's
    GEMMs, not the FFN's (README); the embeddings of test snippets within MIN_COSINE of PyTorch's."""
    art = bertc.compile(minilm_path, target="host", max_seq_len=64, dtype="int8", calibrate="task:rt-sentiment",
                        out=tmp_path / "c.bertc")
    precision = art.report["precision"]
    scales = precision["int8_input_scales"]
    assert precision["int8_activations"] == "static, per tensor, calibrated on task:rt-sentiment (256 texts); " \
        f"{25 - len(scales)} of 25 GEMMs dynamic, per row (a static scale's noise was less than 28 dB under their input)"
    assert len(scales) >= 10 and all(0 < s < 10 for s in scales.values())
    assert not [w for w in scales if "intermediate" in w or "output.dense" in w and "attention" not in w]  # FFN
    qkv = "encoder.layer.0.attention.self.query.weight+encoder.layer.0.attention.self.key.weight+" \
          "encoder.layer.0.attention.self.value.weight"
    assert qkv in scales and "encoder.layer.0.attention.output.dense.weight" in scales  # fused Q/K/V: one input
    assert (art.path / "src" / "model.mlir").read_text().count("bertc.x_scale") == len(scales)
    got = cosines(art.load(threads=2), minilm_path, snippets(12))
    print(f"static int8 vs PyTorch fp32, sentence cosine: min {min(got):.5f} mean {np.mean(got):.5f}")
    assert min(got) >= MIN_COSINE, got


@pytest.mark.parametrize("calibrate, dtype, error", [
    ("task:rt-sentiment", "fp32", "--calibrate chooses the int8 GEMMs' activation scales ahead of time; it needs --dtype int8"),
    ("task:no-such-task", "int8", "unknown task 'no-such-task'; known tasks: rt-sentiment"),
    ("missing.txt", "int8", r"--calibrate .*missing.txt: cannot read it \(No such file or directory\)"),
    ("empty.txt", "int8", "--calibrate .*empty.txt: no texts in it"),
    ("latin1.txt", "int8", r"--calibrate .*latin1.txt: not UTF-8 \(byte 3\); convert it with `iconv -t UTF-8`"),
    (["a gripping, funny film"], "int8", "--calibrate needs the model's tokenizer to read the texts"),
])
def test_calibrate_refuses_bad_input(calibrate, dtype, error, tmp_path, monkeypatch):
    """Each before the slow steps but the last, which finds a model with no tokenizer only once it is loaded."""
    from conftest import tiny_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(bertc.BertcError, match=error):
        bertc.compile(tiny_model("bert"), seq_len=8, dtype=dtype, calibrate=calibrate, out=tmp_path / "x.bertc")


@pytest.mark.skipif(shutil.which("qemu-aarch64") is None, reason="qemu-aarch64 is not installed")
def test_minilm_int8_on_arm64_under_qemu(minilm_path, tmp_path, monkeypatch):
    """One artifact, two CPUs: qemu's default CPU has i8mm (SMMLA), a Cortex-A76 only SDOT; the kernel is chosen at
    run time, and the integer sums are exact, so both give the same bits."""
    art = bertc.compile(minilm_path, target="linux-arm64", seq_len=24, dtype="int8", out=tmp_path / "a.bertc")
    phone = art.load(threads=2)
    got = cosines(phone, minilm_path, snippets(2), pad_to=24)
    assert phone.last_report["kernels"]["bertc_linear_packed_i8"] == "neon-i8mm"  # SMMLA (ARMv8.6-A i8mm)
    assert min(got) >= MIN_COSINE, got
    monkeypatch.setenv("QEMU_CPU", "cortex-a76")
    a76 = art.load(threads=2)
    assert cosines(a76, minilm_path, snippets(2), pad_to=24) == got
    assert a76.last_report["kernels"]["bertc_linear_packed_i8"] == "neon"  # SDOT (ARMv8.2-A dot product)
    # static scales (--calibrate on a file of texts): the same bits from SDOT and SMMLA again
    (tmp_path / "texts.txt").write_text("\n".join(text for text, _ in load_task("rt-sentiment").train[:32]) + "\n")
    cal = bertc.compile(minilm_path, target="linux-arm64", seq_len=24, dtype="int8", out=tmp_path / "s.bertc",
                        calibrate=str(tmp_path / "texts.txt"))
    assert "texts.txt (32 texts); " in cal.report["precision"]["int8_activations"]
    static_a76 = cosines(cal.load(threads=2), minilm_path, snippets(2), pad_to=24)
    monkeypatch.delenv("QEMU_CPU")
    assert cosines(cal.load(threads=2), minilm_path, snippets(2), pad_to=24) == static_a76
    assert min(static_a76) >= MIN_COSINE and static_a76 != got, static_a76


def check_sparse_report(art, target: str, spec: str) -> None:
    """report.json: every pruned matrix (6 layers x 4; the pooler stays dense) int8, stored sparse (--force), with
    the int8 rate the rule read (an estimate on x86, none on ARM64)."""
    sp = json.loads((art.path / "report.json").read_text())["sparsity"]
    pattern, tgt = parse_spec(spec).pattern, get_target(target)
    assert len(sp["matrices"]) == sp["sparse_matrices"] == 24 and sp["rates"] == tgt.sparse_gain_source("i8")
    for row in sp["matrices"]:
        assert (row["pattern"], row["format"], row["dtype"]) == (str(pattern), "sparse", "int8")
        assert row["density"] == pytest.approx(parse_spec(spec).density, abs=0.01)
        gain = tgt.sparse_gain(pattern, row["density"], "i8")
        assert row["expected_gain"] == (None if gain is None else round(gain, 2))


def test_int8_block_rates_are_read_for_the_int8_kernel_the_host_runs(tmp_path, monkeypatch):
    """x86 with and without AVX-512 VNNI run other dense int8 and int8-block kernels (8-bit VPDPBUSD, 7-bit
    VPMADDUBSW), so each reads its own int8 rates ("int8_vnni", "int8"); a host without its entry keeps int8 blocks
    dense and says why."""
    from bertc import targets

    rates = {"avx2": {"gains": {"16x1": {"0.25": 3.0}}, "source": "fp32 here",
                      "int8": {"gains": {"16x1": {"0.25": 2.0}}, "source": "AVX2 int8 here"}}}
    monkeypatch.setattr(targets, "RATES_FILE", tmp_path / "rates.json")
    (tmp_path / "rates.json").write_text(json.dumps(rates))
    targets._sparse_rates.cache_clear()  # and again after, when RATES_FILE is the real one once more
    try:
        pattern = parse_spec("16x1@0.25").pattern
        with targets.host_cpu_as(["avx2", "fma"]):
            t = get_target("host")
            assert t.rates_key("i8") == "int8" and t.sparse_gain(pattern, 0.25, "i8") == 2.0
            assert t.sparse_gain(pattern, 0.25) == 3.0 and t.sparse_gain_source("i8") == "AVX2 int8 here"
        with targets.host_cpu_as(["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"]):
            t = get_target("host")
            assert t.rates_key("i8") == "int8_vnni" and t.sparse_gain(pattern, 0.25, "i8") is None
            assert "no int8 sparse kernel rates" in t.sparse_gain_source("i8")
            rates["avx2"]["int8_vnni"] = {"gains": {"16x1": {"0.25": 1.5}}, "source": "VNNI int8 here"}
            (tmp_path / "rates.json").write_text(json.dumps(rates))
            targets._sparse_rates.cache_clear()
            assert t.sparse_gain(pattern, 0.25, "i8") == 1.5 and t.sparse_gain(pattern, 0.25) == 3.0
    finally:
        targets._sparse_rates.cache_clear()


def test_pruned_minilm_as_sparse_int8_blocks_on_the_host(minilm_path, tmp_path):
    spec = "16x1@0.5"
    art = bertc.compile(minilm_path, target="host", max_seq_len=64, dtype="int8", prune=spec, force_sparse=True,
                        out=tmp_path / "p.bertc")
    check_sparse_report(art, "host", spec)
    model = art.load(threads=2)
    got = cosines(model, minilm_path, snippets(6), prune=spec)
    assert model.kernels()["bertc_linear_sparse_i8"] == ("avx2" if host_target().isa == "avx2" else "ref")
    print(f"sparse int8 16x1@0.5 vs PyTorch fp32 on the same pruned weights: min {min(got):.5f}")
    assert min(got) >= MIN_COSINE, got


@pytest.mark.skipif(shutil.which("qemu-aarch64") is None, reason="qemu-aarch64 is not installed")
def test_pruned_minilm_as_sparse_int8_blocks_on_arm64_under_qemu(minilm_path, tmp_path):
    spec = "2:4"  # 8x1 blocks, 2 of every 4 kept
    art = bertc.compile(minilm_path, target="linux-arm64", seq_len=24, dtype="int8", prune=spec, force_sparse=True,
                        out=tmp_path / "a.bertc")
    check_sparse_report(art, "linux-arm64", spec)
    phone = art.load(threads=2)
    got = cosines(phone, minilm_path, snippets(2), pad_to=24, prune=spec)
    assert phone.last_report["kernels"]["bertc_linear_sparse_i8"] == "neon"
    print(f"sparse int8 2:4 on ARM64 (qemu) vs PyTorch fp32 on the same pruned weights: min {min(got):.5f}")
    assert min(got) >= MIN_COSINE, got



def test_calibrate_is_refused_on_a_gpu_target(tmp_path):
    """Vulkan's int8 is weight-only: its GEMM inputs stay fp32, so there is no activation scale to calibrate."""
    with pytest.raises(bertc.BertcError, match="target 'vulkan' is a GPU, whose int8 GEMMs are weight-only"):
        bertc.compile("unused", target="vulkan", seq_len=8, dtype="int8", calibrate="task:rt-sentiment",
                      out=tmp_path / "x.bertc")


@pytest.mark.parametrize("flags, qmax", [({"avx2", "fma"}, 63), ({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}, None)])
def test_avx2_without_vnni_packs_7_bit_weights(flags, qmax, monkeypatch):
    """AVX2's VPMADDUBSW sums pairs of x's unsigned bytes times w in int16, which saturates unless |w| <= 63: on
    such a host pack-weights marks every int8 linear bertc.qmax = 63 (emit-c quantizes to it, and the kernel falls
    back to its rows for a wider weight, kernel_check); VPDPBUSD sums in int32, so a VNNI host keeps [-127, 127]."""
    from bertc.passes import PassContext
    from bertc.passes.codegen import quantize_int8
    from torch_mlir import ir

    from bertc import targets
    from bertc.ir import make_context
    from bertc.pipeline import run_pass
    from bertc.synth import bert_ir

    monkeypatch.setattr(targets, "_host_flags", lambda: frozenset(flags))
    cfg = T.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    with make_context(), ir.Location.unknown():
        module = ir.Module.parse(bert_ir(cfg, seq_len=8))
        for flag in ("fuse-attention", "fuse-epilogues", "pack-weights{dtype=i8}"):
            run_pass(module, flag, PassContext())
        text = str(module)
    linears = [line for line in text.splitlines() if '"bertc.linear"' in line]
    assert linears and all('bertc.weight_dtype = "i8"' in line for line in linears)
    marked = [line for line in linears if f"bertc.qmax = {qmax} : i32" in line]
    assert len(marked) == (len(linears) if qmax else 0) and ("bertc.qmax" in text) == bool(qmax)
    q, scale = quantize_int8(np.array([[0.5, -1.0, 0.25]], np.float32), 63)
    assert q.tolist() == [[32, -63, 16]] and scale.tolist() == [np.float32(1.0) / 63]
