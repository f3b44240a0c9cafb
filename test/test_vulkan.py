"""The Vulkan target on Mesa's lavapipe (a CPU Vulkan device; `make setup` installs it): every model of
the host suite agrees with PyTorch within 1e-4; every shader agrees with the C reference kernel on random
shapes that do not divide the workgroup tiles; fp16 and int8 accuracy; an artifact of dynamic length (--max-seq-len)
at several lengths of one run after another; --verify, --fallback cpu, per-dispatch GPU times; and the
errors for a missing library, device or feature."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import transformers as T
from bertc.passes.codegen import quantize_int8
from conftest import ARCHS, max_error, random_inputs, reference, tiny_model

import bertc
from bertc.api import IRProgram, compile_ir, load, verify
from bertc.errors import BertcError, DeviceUnavailable
from bertc.targets import get_target

LAVAPIPE = sorted(glob.glob("/usr/share/vulkan/icd.d/lvp_icd*.json"))
pytestmark = pytest.mark.skipif(not LAVAPIPE or not shutil.which("glslangValidator"),
                                reason="needs Mesa lavapipe and glslangValidator: apt-get install mesa-vulkan-drivers "
                                       "libvulkan-dev glslang-tools (make setup does)")
if LAVAPIPE:  # run on lavapipe even where a GPU is present: the numbers below are lavapipe's
    os.environ["VK_ICD_FILENAMES"] = os.environ["VK_DRIVER_FILES"] = LAVAPIPE[0]
TOL = 1e-4
NO_DEVICE = {"VK_ICD_FILENAMES": "/nonexistent/icd.json", "VK_DRIVER_FILES": "/nonexistent/icd.json"}


@pytest.fixture(scope="module")
def bert_vk(tmp_path_factory):
    """A tiny BERT for vulkan, carrying its CPU build (--fallback cpu)."""
    model = tiny_model("bert")
    art = bertc.compile(model, target="vulkan", seq_len=24, out=tmp_path_factory.mktemp("vk") / "b.bertc",
                        fallback="cpu")
    return model, art


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", ARCHS)
def test_architecture_matches_pytorch_on_lavapipe(arch, impl, tmp_path):
    model = tiny_model(arch, impl)
    art = bertc.compile(model, target="vulkan", seq_len=24, out=tmp_path / "m.bertc")
    assert art.report["fusion"]["attention"] == 2 and art.manifest.shaders
    compiled = art.load()
    assert compiled.device_name.startswith("vulkan: llvmpipe")
    for seq, pad_from in ((24, None), (24, 17), (9, 5)):
        ids, mask, types = random_inputs(1, seq, 120, seed=seq + (pad_from or 0), pad_from=pad_from)
        types[:, seq // 2:] = 1
        ours = compiled(ids, mask, types) if arch != "distilbert" else compiled(ids, mask)
        err = max_error(ours, reference(model, ids, mask, types), mask)
        print(f"{arch}-{impl} seq {seq}: max |error| {err:.2e}")
        assert err <= TOL


def test_real_minilm_and_batch_of_two_on_lavapipe(minilm_path, tmp_path):
    model = T.AutoModel.from_pretrained(minilm_path, attn_implementation="sdpa").eval()
    art = bertc.compile(model, target="vulkan", seq_len=128, batch=2, out=tmp_path / "minilm.bertc")
    tok = T.AutoTokenizer.from_pretrained(minilm_path)
    enc = tok(["a gripping, funny film", "the plot never comes together and the jokes fall flat"],
              padding="max_length", max_length=128, return_tensors="np")
    ids, mask, types = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
    err = max_error(art.load()(ids, mask, types), reference(model, ids, mask, types), mask)
    print(f"MiniLM (seq 128, batch 2) on lavapipe: max |error| {err:.2e}")
    assert err <= TOL


def test_fp16_accuracy_and_missing_feature(tmp_path, monkeypatch):
    model = tiny_model("bert", hidden=64, heads=4, ffn=256)
    art = bertc.compile(model, target="vulkan", seq_len=32, dtype="fp16", out=tmp_path / "h.bertc")
    fp32 = bertc.compile(model, target="vulkan", seq_len=32, out=tmp_path / "f.bertc")
    assert "gemm_f16" in art.manifest.shaders and "gemm" not in art.manifest.shaders
    ids, mask, types = random_inputs(1, 32, 120, seed=2, pad_from=27)
    ref = reference(model, ids, mask, types)
    err16 = max_error(art.load()(ids, mask, types), ref, mask)
    err32 = max_error(fp32.load()(ids, mask, types), ref, mask)
    print(f"fp16 weights and GEMM sums on lavapipe: max |error| {err16:.2e} (fp32: {err32:.2e}); weights "
          f"{art.report['memory']['weights_bytes']} vs {fp32.report['memory']['weights_bytes']} bytes")
    assert err32 <= TOL and err16 <= 5e-3
    assert art.report["memory"]["weights_bytes"] < fp32.report["memory"]["weights_bytes"]
    # a device without shaderFloat16 (BERTC_VULKAN_DISABLE makes lavapipe pretend): a clear error
    for feature in ("shaderFloat16", "storageBuffer16BitAccess"):
        monkeypatch.setenv("BERTC_VULKAN_DISABLE", feature)
        with pytest.raises(DeviceUnavailable, match=f"lacks {feature}.*--dtype fp32"):
            art.load()
    fp32.load()  # fp32 needs neither


def test_minilm_int8_weights_on_lavapipe(minilm_path, tmp_path, monkeypatch):
    """--dtype int8 (issue 19): gemm_i8 reads int8 weights and a scale per output feature, its input fp32 (weight-only,
    unlike the CPU's int8); each snippet's embedding within test_int8's MIN_COSINE of PyTorch's and --verify passing at
    the int8 tolerance; a device without storageBuffer8BitAccess told so and the way out; --fallback cpu runs an int8
    CPU build."""
    from test_int8 import MIN_COSINE, cosines, snippets

    art = bertc.compile(minilm_path, target="vulkan", max_seq_len=64, dtype="int8", fallback="cpu",
                        out=tmp_path / "q.bertc")
    assert art.report["precision"]["linears"] == {"int8": 25}  # each linear of the 6 layers, and the pooler
    assert art.report["precision"]["int8_activations"] == "fp32 (weight-only int8)"
    assert "gemm_i8" in art.manifest.shaders and "gemm" not in art.manifest.shaders
    model = art.load()
    got = cosines(model, minilm_path, snippets(4))
    print(f"MiniLM int8 weights on lavapipe: sentence cosine min {min(got):.5f}")
    assert min(got) >= MIN_COSINE, got
    assert verify(model, art.manifest, art.path)["passed"]
    monkeypatch.setenv("BERTC_VULKAN_DISABLE", "storageBuffer8BitAccess")  # lavapipe pretends to lack it
    with pytest.raises(DeviceUnavailable, match="llvmpipe.* lacks storageBuffer8BitAccess .*--dtype int8 needs: "
                                                "recompile with --dtype fp16.*fp32.*--fallback cpu"):
        art.load()
    cpu = load(art.path, fallback="cpu")
    assert cpu.device_name == "cpu" and cpu.manifest.dtype == "int8" and "bertc_linear_packed_i8" in cpu.kernels()
    assert min(cosines(cpu, minilm_path, snippets(2))) >= MIN_COSINE

def test_gemm_i8_is_the_dequantized_gemm(tmp_path):
    """gemm_i8 on shapes no tile divides: GELU(x @ (q * scale)^T + bias) + residual, q and scale the CPU path's
    quantization (codegen.quantize_int8), to fp32 rounding (the same sums in another order)."""
    rng = np.random.default_rng(19)
    m, k, n = 37, 70, 83
    arrays = {name: rng.standard_normal(shape).astype(np.float32)
              for name, shape in (("x", (1, m, k)), ("w", (n, k)), ("bias", (n,)), ("res", (1, m, n)))}
    ty = {name: f"tensor<{'x'.join(map(str, a.shape))}xf32>" for name, a in arrays.items()}
    text = ("func.func @main(%ids: tensor<1x2xi64>) -> " + ty["res"] + " {\n" + "".join(
        f'  %{name} = "bertc.weight"() {{name = "{name}"}} : () -> {ty[name]}\n' for name in arrays)
        + '  %y = "bertc.linear"(%x, %w, %bias, %res) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 1, 1>}'
        + f' : ({ty["x"]}, {ty["w"]}, {ty["bias"]}, {ty["res"]}) -> {ty["res"]}\n  return %y : {ty["res"]}\n}}\n')
    art = compile_ir(IRProgram(text, arrays, ["input_ids"], ["y"]), "vulkan", tmp_path / "g.bertc", 1, 2, dtype="int8")
    assert art.manifest.shaders == ["gemm_i8"]
    got = load(art.path)(np.zeros((1, 2), np.int64))["y"]
    q, scale = quantize_int8(arrays["w"])
    pre = torch.from_numpy(arrays["x"].astype(np.float64) @ (q * scale[:, None].astype(np.float64)).T + arrays["bias"])
    want = torch.nn.functional.gelu(pre).numpy() + arrays["res"]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()

# ---------------------------------------------------------------- dynamic length (--max-seq-len, issue 17)
DYNAMIC_BOUND = 72  # past the vulkan target's 64-row GEMM tile: a run of 72 tokens has two row tiles, of 7 one


@pytest.fixture(scope="module")
def bert_vk_dynamic(tmp_path_factory):
    """A tiny BERT for vulkan that runs every length 1..DYNAMIC_BOUND at its own length."""
    model = tiny_model("bert")
    out = tmp_path_factory.mktemp("vkd") / "d.bertc"
    return model, bertc.compile(model, target="vulkan", max_seq_len=DYNAMIC_BOUND, out=out)


def test_dynamic_length_matches_pytorch_at_each_length(bert_vk_dynamic):
    """One artifact, lengths one after another (each change of length re-records the command buffer with
    that length's push constants and workgroup counts); the outputs have the input's length."""
    model, art = bert_vk_dynamic
    assert art.manifest.dynamic and "attention_seq" in art.manifest.shaders and "attention" not in art.manifest.shaders
    compiled = art.load()
    for seq, pad_from in ((7, None), (1, None), (DYNAMIC_BOUND, None), (7, 5), (32, 27), (7, None)):
        ids, mask, types = random_inputs(1, seq, 120, seed=seq + (pad_from or 0), pad_from=pad_from)
        types[:, seq // 2:] = 1
        ours = compiled(ids, mask, types)
        assert ours["last_hidden_state"].shape == (1, seq, 32)
        err = max_error(ours, reference(model, ids, mask, types), mask)
        print(f"dynamic bert (bound {DYNAMIC_BOUND}) at seq {seq}, pad from {pad_from}: max |error| {err:.2e}")
        assert err <= TOL


# roberta with sdpa: position ids from input_ids (the position_ids shader over L) and the boolean keep-mask,
# in a batch of two sentences of different lengths (the second padded to the first's; each batch row L apart);
# distilbert: no token types, its own mask form
@pytest.mark.parametrize("arch, impl, batch", [("roberta", "sdpa", 2), ("distilbert", "eager", 1)])
def test_dynamic_length_other_families(arch, impl, batch, tmp_path):
    model = tiny_model(arch, impl)
    compiled = bertc.compile(model, target="vulkan", max_seq_len=24, batch=batch, out=tmp_path / "m.bertc").load()
    for seq, pad_from in ((9, 6), (1, None), (24, None)):
        ids, mask, types = random_inputs(batch, seq, 120, seed=seq, pad_from=pad_from)
        if batch == 2:  # the second sentence is half as long: padded to the first's with roberta's pad id, masked
            ids[1, (seq + 1) // 2:], mask[1, (seq + 1) // 2:] = 1, 0
        ours = compiled(ids, mask, types) if arch != "distilbert" else compiled(ids, mask)
        err = max_error(ours, reference(model, ids, mask, types), mask)
        print(f"dynamic {arch}-{impl} (batch {batch}) at seq {seq}: max |error| {err:.2e}")
        assert ours["last_hidden_state"].shape == (batch, seq, 32) and err <= TOL


def test_dynamic_length_fp16(tmp_path):
    model = tiny_model("bert", hidden=64, heads=4, ffn=256)
    art = bertc.compile(model, target="vulkan", max_seq_len=40, dtype="fp16", out=tmp_path / "h.bertc")
    assert "gemm_f16" in art.manifest.shaders
    ids, mask, types = random_inputs(1, 27, 120, seed=3, pad_from=24)
    ours = art.load()(ids, mask, types)
    assert ours["last_hidden_state"].shape == (1, 27, 64)
    err = max_error(ours, reference(model, ids, mask, types), mask)
    print(f"dynamic fp16 (bound 40) at seq 27: max |error| {err:.2e}")
    assert err <= 5e-3  # as test_fp16_accuracy_and_missing_feature


# ---------------------------------------------------------------- each shader against the C reference kernel


def _kernel_program(rng) -> tuple[IRProgram, int, int]:
    """One module with every shader, on random shapes that do not divide the 64x64 GEMM tile, the
    128-invocation rows or the 256-invocation elementwise groups; inputs are weights (random data) and
    the ids / mask arguments (a second batch row fully masked)."""
    B, S = 2, int(rng.integers(17, 40))
    m, k, n = (int(x) for x in rng.integers(33, 150, size=3))
    heads, d = int(rng.integers(2, 4)), int(rng.choice([8, 16, 24]))
    h = heads * d
    ln = int(rng.integers(20, 300))
    arrays = {}

    def w(name: str, *shape: int) -> str:
        arrays[name] = rng.standard_normal(shape).astype(np.float32)
        return f'%{name} = "bertc.weight"() {{name = "{name}"}} : () -> {t(*shape)}'

    def t(*shape: int, dt: str = "f32") -> str:
        return f"tensor<{'x'.join(map(str, shape))}x{dt}>"

    ops = [w("x", 1, m, k), w("wt", n, k), w("bias", n), w("res", 1, m, n),
           w("qkv", B, S, 3 * h), w("lnx", 1, S, ln), w("lnr", 1, S, ln), w("g", ln), w("b", ln),
           w("sm", B, 3, 5, S), w("table", 130, 20), w("ea", B, 5, 7), w("eb", 7), w("ec", B, 1, 7), w("ed", B, 5, 1),
           w("tr", 3, 4, 5), w("ma", 3, 17, 9), w("mb", 3, 9, 21), w("u", B, S, 11), w("rtab", heads, 2 * S + 5),
           w("qk", B, S, 2 * h), w("vv", B, S, h), w("c2p", B * heads, S, 7), w("p2c", B * heads, S, 7),
           w("cos", S + 3, d), w("sin", S + 3, d), w("dww", 20, 9), w("spk", B, S, 2, 9), w("cx", B, S, 20)]
    seg = "operandSegmentSizes = array<i32"

    def attention(name: str, rel: bool, v: bool, win: int, scale: float, pos: str) -> str:
        operands = [("%qk", t(B, S, 2 * h)) if v else ("%qkv", t(B, S, 3 * h)), ("%mask", t(B, S, dt="i64"))]
        operands += [("%rtab", t(heads, 2 * S + 5))] * rel + [("%vv", t(B, S, h))] * v
        for kind in "cp":  # c2p, p2c: scores [B * heads, S, 7] and a column table
            operands += [(f"%{kind}2{'pc'[kind == 'p']}", t(B * heads, S, 7)), (f"%{kind}at", t(2 * S + 5, dt="i64"))] \
                * (kind in pos)
        sizes = [1, 1, int(rel), int(v)] + [int("c" in pos)] * 2 + [int("p" in pos)] * 2
        return (f'%{name} = "bertc.attention"({", ".join(o for o, _ in operands)}) {{num_heads = {heads} : i64, '
                f"{seg}: {', '.join(map(str, sizes))}>, scale = {scale} : f32, window = {win} : i64}}"
                f" : ({', '.join(ty for _, ty in operands)}) -> {t(B, S, h)}")

    ops += [
        (f'%lin = "bertc.linear"(%x, %wt, %bias, %res) {{activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 1, 1>}}'
         f" : ({t(1, m, k)}, {t(n, k)}, {t(n)}, {t(1, m, n)}) -> {t(1, m, n)}"),
        (f'%lin2 = "bertc.linear"(%x, %wt) {{activation = "tanh", operandSegmentSizes = array<i32: 1, 1, 0, 0>}}'
         f" : ({t(1, m, k)}, {t(n, k)}) -> {t(1, m, n)}"),
        (f'%lin3 = "bertc.linear"(%x, %wt) {{activation = "silu", operandSegmentSizes = array<i32: 1, 1, 0, 0>}}'
         f" : ({t(1, m, k)}, {t(n, k)}) -> {t(1, m, n)}"),
        f'%cat = "bertc.weight"() {{name = "cat"}} : () -> {t(2 * S + 5, dt="i64")}',
        f'%pat = "bertc.weight"() {{name = "pat"}} : () -> {t(2 * S + 5, dt="i64")}',
        # every attention.comp variant of a static length: MPNet's relative bias (r), MobileBERT's V rows apart (v),
        # ModernBERT's local window (w: odd, even, narrower than S), DeBERTa's c2p and p2c scores (c, p: _pos)
        *(attention(*case) for case in (
            ("att", False, False, 0, d ** -0.5, ""), ("attr", True, False, 0, 0.5, ""),
            ("attv", False, True, 0, 0.5, ""), ("attrv", True, True, 0, 0.5, ""),
            ("attw", False, False, 7, d ** -0.5, ""), ("attrw", True, False, 8, 0.5, ""),
            ("attvw", False, True, 6, 0.5, ""), ("attrvw", True, True, 5, 0.5, ""),
            ("attcp", False, False, 0, 0.3, "cp"), ("attc", True, False, 6, 0.3, "c"), ("attp", False, True, 0, 0.3, "p"))),
        f'%rb = "bertc.relative_bias"(%rtab) : ({t(heads, 2 * S + 5)}) -> {t(B, heads, S, S)}',
        (f'%ln = "bertc.layer_norm"(%lnx, %g, %b, %lnr) {{eps = 1.0e-5 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 1>}}'
         f" : ({t(1, S, ln)}, {t(ln)}, {t(ln)}, {t(1, S, ln)}) -> {t(1, S, ln)}"),
        f'%rms = "bertc.rms_norm"(%lnx, %g) {{eps = 1.0e-5 : f32}} : ({t(1, S, ln)}, {t(ln)}) -> {t(1, S, ln)}',
        f'%smx = "bertc.softmax"(%sm) : ({t(B, 3, 5, S)}) -> {t(B, 3, 5, S)}',
        f'%pos = "bertc.position_ids"(%ids) {{padding_idx = 1 : i64}} : ({t(B, S, dt="i64")}) -> {t(B, S, dt="i64")}',
        f'%emb = "bertc.embedding"(%table, %pos) : ({t(130, 20)}, {t(B, S, dt="i64")}) -> {t(B, S, 20)}',
        f'%ids3 = "bertc.slice"(%ids) {{dim = 1 : i64, start = 3 : i64}} : ({t(B, S, dt="i64")}) -> {t(B, 10, dt="i64")}',
        f'%emb2 = "bertc.embedding"(%table, %ids3) : ({t(130, 20)}, {t(B, 10, dt="i64")}) -> {t(B, 10, 20)}',
        f'%sl = "bertc.slice"(%emb) {{dim = 1 : i64, start = 2 : i64}} : ({t(B, S, 20)}) -> {t(B, 7, 20)}',
        f'%add = "bertc.add"(%ea, %eb) : ({t(B, 5, 7)}, {t(7)}) -> {t(B, 5, 7)}',
        f'%mul = "bertc.mul"(%ec, %ed) : ({t(B, 1, 7)}, {t(B, 5, 1)}) -> {t(B, 5, 7)}',
        f'%sub = "bertc.sub"(%ea, %ed) : ({t(B, 5, 7)}, {t(B, 5, 1)}) -> {t(B, 5, 7)}',
        f'%div = "bertc.div"(%ea, %ec) : ({t(B, 5, 7)}, {t(B, 1, 7)}) -> {t(B, 5, 7)}',
        f'%gelu = "bertc.gelu"(%u) {{approximate = "none"}} : ({t(B, S, 11)}) -> {t(B, S, 11)}',
        f'%gelut = "bertc.gelu"(%u) {{approximate = "tanh"}} : ({t(B, S, 11)}) -> {t(B, S, 11)}',
        f'%tanh = "bertc.tanh"(%u) : ({t(B, S, 11)}) -> {t(B, S, 11)}',
        f'%silu = "bertc.silu"(%u) : ({t(B, S, 11)}) -> {t(B, S, 11)}',
        f'%pow = "bertc.pow"(%u) {{exponent = 3.0 : f32}} : ({t(B, S, 11)}) -> {t(B, S, 11)}',
        f'%tp = "bertc.transpose"(%tr) {{perm = array<i64: 2, 0, 1>}} : ({t(3, 4, 5)}) -> {t(5, 3, 4)}',
        f'%mm = "bertc.matmul"(%ma, %mb) : ({t(3, 17, 9)}, {t(3, 9, 21)}) -> {t(3, 17, 21)}',
        f'%mbias = "bertc.mask_bias"(%mask) {{fill = -1.0e4 : f32, window = 0 : i64}} : ({t(B, S, dt="i64")}) -> {t(B, 1, S, S)}',
        f'%cast = "bertc.cast"(%ids) : ({t(B, S, dt="i64")}) -> {t(B, S)}',
        # the position ids as the "mask" it sums: never 0 (a row whose mask is all 0 divides 0 by 0); token 1 is the pad
        (f'%tdrop = "bertc.token_dropout"(%ids, %pos) {{keep = 0.88 : f32, token = 1 : i64}}'
         f' : ({t(B, S, dt="i64")}, {t(B, S, dt="i64")}) -> {t(B, S, 1)}'),
        *(f'%{name} = "bertc.rotary"(%qkv, %cos, %sin) {{columns = {cols} : i64, style = "{style}"}}'
          f" : ({t(B, S, 3 * h)}, {t(S + 3, d)}, {t(S + 3, d)}) -> {t(B, S, 3 * h)}"
          for name, cols, style in (("rot", 2 * h, "interleaved"), ("roth", 3 * h, "halves"))),
        # ConvBERT's convolutions over the sequence: 9 taps, so that S - 4 .. S - 1 reach past the end
        f'%dwc = "bertc.depthwise_conv1d"(%cx, %dww) : ({t(B, S, 20)}, {t(20, 9)}) -> {t(B, S, 20)}',
        f'%span = "bertc.span_conv"(%cx, %spk) : ({t(B, S, 20)}, {t(B, S, 2, 9)}) -> {t(B, S, 20)}',
    ]
    arrays["cat"], arrays["pat"] = (rng.integers(0, 7, size=2 * S + 5) for _ in range(2))  # columns of c2p, p2c
    outs = ["lin", "lin2", "lin3", "att", "attr", "attv", "attrv", "attw", "attrw", "attvw", "attrvw", "attcp", "attc",
            "attp", "rb", "ln", "rms",
            "smx", "emb", "emb2", "sl", "add", "mul", "sub", "div", "gelu", "gelut", "tanh", "silu", "pow", "tp", "mm",
            "mbias", "cast", "tdrop", "rot", "roth", "dwc", "span"]
    types = []
    for line in ops:
        name = line.split(" = ", 1)[0][1:]
        if name in outs:
            types.append(line.rsplit("-> ", 1)[1])
    text = (f"func.func @main(%ids: {t(B, S, dt='i64')}, %mask: {t(B, S, dt='i64')}) -> ({', '.join(types)}) {{\n  "
            + "\n  ".join(ops) + f"\n  return {', '.join('%' + o for o in outs)} : {', '.join(types)}\n}}\n")
    return IRProgram(text, arrays, ["input_ids", "attention_mask"], outs, vocab_size=130), B, S


@pytest.mark.parametrize("seed", [0, 1])
def test_every_shader_matches_the_reference_kernel(seed, tmp_path):
    rng = np.random.default_rng(seed)
    program, B, S = _kernel_program(rng)
    ref_target = replace(get_target("host"), isa="ref")  # the portable C kernels, runtime/kernels/ref
    gpu = compile_ir(program, "vulkan", tmp_path / "gpu.bertc", B, S).load()
    cpu = compile_ir(program, ref_target, tmp_path / "ref.bertc", B, S).load()
    ids = rng.integers(0, 130, size=(B, S)).astype(np.int64)
    ids[0, -3:] = 1  # padding for position_ids
    mask = np.ones((B, S), np.int64)
    mask[0, S // 2:] = 0
    mask[1, :] = 0  # every key masked: attention gives zeros
    ours, want = gpu(ids, mask), cpu(ids, mask)
    assert sorted(ours) == sorted(program.output_names)
    for name in program.output_names:
        err = float(np.abs(ours[name] - want[name]).max() / max(1.0, float(np.abs(want[name]).max())))
        assert ours[name].shape == want[name].shape
        assert err <= 2e-5, f"{name}: relative error {err:.2e}"  # fp32 sums in another order


# ---------------------------------------------------------------- verify, fallback, bench, errors


def test_verify_runs_the_golden_inputs(bert_vk, tmp_path):
    _, art = bert_vk
    gold = art.manifest.golden
    assert gold.tolerance == 1e-3 and (art.path / "golden" / "input_ids.bin").exists()
    result = verify(art.load(), art.manifest, art.path)
    assert result["passed"] and max(result["max_abs_error"].values()) <= TOL
    strict = replace(art.manifest, golden=replace(gold, tolerance=1e-12))  # as a device that computes it wrong would be
    with pytest.raises(BertcError, match="--verify failed.*--fallback cpu"):
        verify(art.load(), strict, art.path)
    r = subprocess.run([sys.executable, "-m", "bertc.cli", "run", str(art.path), "--verify"], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["device"].startswith("vulkan: llvmpipe")


def test_missing_device_library_and_fallback(bert_vk, monkeypatch):
    model, art = bert_vk
    tool = [str(art.path / "bertc_run"), str(art.path)]
    ids = art.path / "golden" / "input_ids.bin"
    r = subprocess.run(tool + ["--input-ids", str(ids)], capture_output=True, text=True, check=False,
                       env={**os.environ, **NO_DEVICE})
    assert r.returncode == 7 and "apt-get install mesa-vulkan-drivers" in r.stderr and "--fallback cpu" in r.stderr
    r = subprocess.run(tool + ["--input-ids", str(ids)], capture_output=True, text=True, check=False,
                       env={**os.environ, "BERTC_VULKAN_LIBRARY": "/nonexistent/libvulkan.so.1"})
    assert r.returncode == 7 and "cannot load the Vulkan loader /nonexistent/libvulkan.so.1" in r.stderr
    for key, value in NO_DEVICE.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(DeviceUnavailable, match="no Vulkan"):
        load(art.path, device="host")(*random_inputs(1, 24, 120)[:2])
    ids, mask, types = random_inputs(1, 24, 120, seed=4, pad_from=20)
    cpu = load(art.path, fallback="cpu")  # the CPU build it carries
    assert cpu.device_name == "cpu"
    assert max_error(cpu(ids, mask, types), reference(model, ids, mask, types), mask) <= TOL
    bare = bertc.compile(model, target="vulkan", seq_len=8, out=art.path.parent / "bare.bertc")
    with pytest.raises(BertcError, match="no CPU build to fall back to: recompile it with --fallback cpu"):
        load(bare.path, fallback="cpu")


def test_bench_reports_per_dispatch_gpu_times(bert_vk):
    _, art = bert_vk
    rep = load(art.path, device="host").bench(np.full((1, 24), 101, np.int64), runs=3, warmup=1)
    assert rep["device_name"].startswith("vulkan: llvmpipe") and rep["kernels"]["gemm"] == "vulkan"
    assert [o["kernel"] for o in rep["ops"]].count("gemm") == 9 and all(o["ms"] > 0 for o in rep["ops"])
    assert 0 < rep["ops_ms"] <= rep["mean_ms"] * 1.05  # GPU time inside the end-to-end latency
    assert next(iter(rep["by_kernel"])) in ("gemm", "attention", "layer_norm")


def test_gpu_target_errors(tmp_path, monkeypatch):
    model = tiny_model("bert")
    with pytest.raises(BertcError, match="no sparse GEMM shader"):
        bertc.compile(model, target="vulkan", prune="16x1@0.5", out=tmp_path / "x.bertc")
    with pytest.raises(BertcError, match="--fallback cpu is for GPU targets"):
        bertc.compile(model, target="host", fallback="cpu", out=tmp_path / "x.bertc")
    S = 4096  # attention keeps a row of S scores in shared memory: more than the 16 KiB a phone is sure to have
    qkv = f"tensor<1x{S}x48xf32>"
    text = (f'func.func @main(%ids: tensor<1x{S}xi64>) -> tensor<1x{S}x16xf32> {{\n  %q = "bertc.weight"() {{name = "q"}} '
            f': () -> {qkv}\n  %a = "bertc.attention"(%q, %ids) {{num_heads = 1 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 1.0 : f32, window = 0 : i64}} : ({qkv}, '
            f"tensor<1x{S}xi64>) -> tensor<1x{S}x16xf32>\n  return %a : tensor<1x{S}x16xf32>\n}}\n")
    program = IRProgram(text, {"q": np.zeros((1, S, 48), np.float32)}, ["input_ids"], ["out"])
    with pytest.raises(BertcError, match="16704 bytes of shared memory.*'android-vulkan' allows \\(16384\\).*shorter --seq-len"):
        compile_ir(program, "android-vulkan", tmp_path / "x.bertc", 1, S)
    monkeypatch.setenv("GLSLANG_VALIDATOR", "/nonexistent/glslangValidator")
    with pytest.raises(BertcError, match="apt-get install glslang-tools"):
        bertc.compile(model, target="vulkan", out=tmp_path / "x.bertc")
    assert not (tmp_path / "x.bertc").exists()


def test_android_vulkan_builds(tmp_path):
    """Cross-built with the android-arm64 toolchain; zig's static bertc_run cannot dlopen the phone's
    libvulkan, and says so (the NDK's dynamic build can)."""
    art = bertc.compile(tiny_model("bert"), target="android-vulkan", seq_len=16, out=tmp_path / "a.bertc",
                        fallback="cpu")
    assert art.manifest.arch == "aarch64" and (art.path / "shaders" / "gemm.spv").exists()
    assert art.manifest.fallback.target == "android-arm64"
    head = (art.path / "bertc_run").read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[18] == 183  # EM_AARCH64
    if art.manifest.toolchain == "zig" and shutil.which("qemu-aarch64"):
        with pytest.raises(DeviceUnavailable, match="statically linked bertc_run cannot load it"):
            load(art.path, device="qemu")(np.full((1, 16), 101, np.int64))
        out = load(art.path, device="qemu", fallback="cpu")(np.full((1, 16), 101, np.int64))
        assert out["last_hidden_state"].shape == (1, 16, 32)


def test_text_in_and_the_embedding_head_on_the_gpu(minilm_path, tmp_path):
    """tokenizer.bin and head.bin with a Vulkan artifact: the encoder on the GPU, the head on the CPU after it."""
    from sentence_transformers import SentenceTransformer

    model = bertc.load(bertc.compile(minilm_path, "vulkan", out=tmp_path / "vk.bertc", seq_len=64).path)
    texts = ["a gripping, funny film", "Crème brûlée, 中文 😀", ""]
    want = SentenceTransformer(minilm_path, device="cpu").encode(texts, convert_to_numpy=True)
    assert np.abs(model.encode(texts) - want).max() < 1e-5
