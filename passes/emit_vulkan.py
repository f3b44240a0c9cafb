"""--emit-vulkan: the dispatch list that runs the model on a Vulkan device, plus the weights image.

Input (after plan-memory)::

    %5 = "bertc.linear"(%4, %w, %b) {activation = "gelu", bertc.offset = 4096 : i64, ...}
           : (tensor<1x8x32xf32>, tensor<64x32xf32>, tensor<64xf32>) -> tensor<1x8x64xf32>

Output (C, compiled with runtime/vulkan/vulkan.c into the artifact's library)::

    static const bertc_vk_pipeline pipelines[] = {
        /* 0 */ {0, 5, {8, 8, 8, 8, 32}},   /* gemm: 8x8 invocations of 8x8 sums, K slices of 32 */
    };
    static const bertc_vk_dispatch dispatches[] = {
        /* 3: bertc.linear [1, 8, 64] */ {0, {1, 1, 1}, 12, {8, 64, 32, 1024, 1152, 1088, NONE, 1536, 1, 0, 0, 0}},
    };

Each op becomes one dispatch of a GLSL compute shader (runtime/vulkan/shaders/NAME.comp, NAME being
the op's ``traits.shader`` in the dialect), built by one small function in ``EMITTERS``; the walk,
the weights image and the program's inputs and outputs are passes/codegen.py's, shared with --emit-c.
A dispatch has its specialization constants (workgroup and tile sizes from the target's ``GpuParams``,
bertc/targets.py; never constants in the shader text), the push constants (shapes, and the operands as
word offsets into the one device buffer: the arena first, then weights.bin from ``weights_offset``),
and the workgroup counts. A pipeline is a (shader, specialization constants) pair. The build compiles
each used shader to SPIR-V with glslangValidator (bertc/toolchain.py) and compiles its sha256 into the
program (``BERTC_SPV_SHA256_<shader>``), so the runtime refuses SPIR-V it was not built with.

Linear weights are stored [K, N] (half floats with ``bertc.dtype = "f16"``: the ``gemm_f16``
shader, which needs the device's storageBuffer16BitAccess and shaderFloat16; int8 with ``bertc.dtype = "i8"``,
quantized as the CPU path's are (codegen.quantize_int8), [K, N] bytes and an fp32 scale per output feature n:
the ``gemm_i8`` shader, one more push constant (the scales' word offset), and storageBuffer8BitAccess). An int8
GEMM here is weight-only: its input stays fp32 (the CPU's int8 kernels quantize it per row).

A module whose length is dynamic (``tensor<1x?x32xf32>``, ``bertc.max_seq_len = N``) gets the same
tables, their values at N, and one more: each push constant or workgroup count that depends on the
run's length L (a passes/seqlen.py ``Len``), as the coefficients of its polynomial, which the executor
evaluates at each run's L (a workgroup count as ceil(value / per), so GEMM rows and attention queries
cover L, never N). Attention takes L in a seventh push constant (``attention_seq``: attention.comp with
-DSEQ_FROM_PUSH; its shared score row keeps the bound N as its size)::

    static const bertc_vk_seq_size seq_sizes[] = {
        /* 6: bertc.linear push[0] = (L) */ {6, BERTC_VK_PUSH, 0, {0, 1, 0}, 1},
        /* 6: bertc.linear groups.y = ceil((L) / 64) */ {6, BERTC_VK_GROUPS, 1, {0, 1, 0}, 64},
        /* 7: bertc.attention push[6] = (L) */ {7, BERTC_VK_PUSH, 6, {0, 1, 0}, 1},
    };

A static module's program has no such table and is what it was before dynamic lengths.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

from bertc.dialects import bertc as B
from torch_mlir import ir

from bertc.errors import BertcError

from .codegen import (
    Codegen,
    binary_strides,
    mask_bias_fill,
    matmul_dims,
    op_label,
    ops_table,
    outputs_table,
    position_terms,
    program_header_fields,
    slice_dims,
    transpose_strides,
    unary_activation,
)
from .common import PassContext, dtype_of, module_target, producer, shape_of, sparsity
from .seqlen import Len, Size, bound, dims_of, max_seq_len, prod

NONE = 0xFFFFFFFF  # an absent operand (common.glsl)
ACT = {"none": 0, "gelu": 1, "gelu_tanh": 2, "tanh": 3, "relu": 4, "silu": 5}
POW = 100  # unary.comp: y = x ^ exponent
BINARY = {B.AddOp: 0, B.SubOp: 1, B.MulOp: 2, B.DivOp: 3}
MAX_GROUPS = 65535  # Vulkan's smallest maxComputeWorkGroupCount; the elementwise shaders loop past it
# shader name -> (source in runtime/vulkan/shaders/, glslangValidator -D defines): each kernel op's shader,
# and gemm.comp's variant for half-float weights
SHADERS = {B.traits_of(n).shader: (f"{B.traits_of(n).shader}.comp", ()) for n in B.names_in("kernel")}
SHADERS["gemm_f16"] = ("gemm.comp", ("WEIGHT_F16",))
SHADERS["gemm_i8"] = ("gemm.comp", ("WEIGHT_I8",))
# a GEMM variant's device features, as vk_program.h's BERTC_VK_NEEDS_* bits the executor checks at open
NEEDS = {"gemm_f16": "BERTC_VK_NEEDS_F16", "gemm_i8": "BERTC_VK_NEEDS_I8"}
# attention.comp's variants, each define a suffix: the run's length L in a push constant (a dynamic program); MPNet's
# relative-position bias (2 more push constants); MobileBERT's V rows apart from Q|K (1 more); ModernBERT's local
# layers' window (1 more); DeBERTa's c2p and p2c scores (6 more). The extra push constants follow push[6] (the run's
# length) in this order.
ATTENTION_VARIANTS = {"_seq": "SEQ_FROM_PUSH", "_rel": "REL_BIAS", "_v": "V_APART", "_win": "WINDOW",
                      "_pos": "POSITIONS"}
SHADERS.update({"attention" + "".join(chosen): ("attention.comp", tuple(ATTENTION_VARIANTS[c] for c in chosen))
                for n in range(1, len(ATTENTION_VARIANTS) + 1) for chosen in combinations(ATTENTION_VARIANTS, n)})
MAX_DEGREE = 2  # vk_program.h's bertc_vk_seq_size holds coefficients of 1, L and L*L (attention scores: L*L)


@dataclass(frozen=True)
class LenGroups:
    """ceil(count / per) workgroups, 1..MAX_GROUPS, where count depends on the run's length: what the
    executor computes at each run (a static count is an int, computed here)."""

    count: Len
    per: int

    def at(self, length: int) -> int:
        return max(1, min(-(-self.count.at(length) // self.per), MAX_GROUPS))


Groups = int | LenGroups


@dataclass(frozen=True)
class Dispatch:
    label: str  # the op and its result shape
    shader: str
    spec: tuple[int, ...]  # specialization constants: workgroup x, y, then the shader's own
    push: tuple[Size, ...]  # each an int, or a Len in a module with a dynamic length
    groups: tuple[Groups, Groups, Groups]
    shared_bytes: int = 0


@dataclass(frozen=True)
class SeqSize:
    """A push constant or workgroup count of one dispatch that follows the run's length: the
    executor sets dispatches[dispatch].push[index] (or .groups[index]) to value.at(L) (ceil(value.at(L) / per))."""

    dispatch: int
    label: str
    kind: str  # "push" | "groups"
    index: int
    value: Len
    per: int = 1

    def c_initializer(self) -> str:
        coef = dict(self.value.terms)
        if max(coef) > MAX_DEGREE:
            raise BertcError(f"{self.label}: {self.kind}[{self.index}] = {self.value} has a power of L above "
                             f"{MAX_DEGREE}, more than the Vulkan executor evaluates (vk_program.h)")
        what = (f"groups.{'xyz'[self.index]} = ceil({self.value} / {self.per})" if self.kind == "groups"
                else f"push[{self.index}] = {self.value}")
        kind = "BERTC_VK_GROUPS" if self.kind == "groups" else "BERTC_VK_PUSH"
        return (f"/* {self.dispatch}: {self.label.split()[0]} {what} */ {{{self.dispatch}, {kind}, {self.index}, "
                f"{_c_list(coef.get(p, 0) for p in range(MAX_DEGREE + 1))}, {self.per}}},")


def at_bound(d: Dispatch, module: ir.Operation) -> Dispatch:
    """The dispatch at the module's longest length (what its row of the dispatch table holds)."""
    return Dispatch(d.label, d.shader, d.spec, tuple(bound(x, module) for x in d.push),
                    tuple(g.at(max_seq_len(module)) if isinstance(g, LenGroups) else g for g in d.groups),
                    d.shared_bytes)


def seq_sizes(i: int, d: Dispatch) -> list[SeqSize]:
    """Dispatch i's push constants and workgroup counts that depend on the run's length."""
    return ([SeqSize(i, d.label, "push", j, x) for j, x in enumerate(d.push) if isinstance(x, Len)]
            + [SeqSize(i, d.label, "groups", j, g.count, g.per) for j, g in enumerate(d.groups)
               if isinstance(g, LenGroups)])


@dataclass
class EmittedVulkan:
    """What emit-vulkan produces: the program's C source (the dispatch list), the shaders it uses
    (name -> source file and defines), and the weights image it indexes."""

    source: str
    shaders: dict[str, tuple[str, tuple[str, ...]]]
    weights: bytes
    weights_sha256: str
    arena_bytes: int
    dispatches: list[Dispatch] = field(default_factory=list)
    kernels: list[str] = field(default_factory=list)
    missing_weights: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)  # BERTC_VK_NEEDS_* (device features)


def _bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def _groups(n: Size, per: int) -> Groups:
    """Workgroups of ``per`` items each over n items (the elementwise shaders loop past MAX_GROUPS)."""
    return LenGroups(n, per) if isinstance(n, Len) else max(1, min(-(-n // per), MAX_GROUPS))


def _ceil(n: Size, per: int) -> Groups:
    """ceil(n / per) workgroups: GEMM tiles."""
    return LenGroups(n, per) if isinstance(n, Len) else -(-n // per)


class VkEmitter(Codegen):
    """Operands as word offsets into the one device buffer: the arena, then weights.bin."""

    def __init__(self, module: ir.Operation, ctx: PassContext) -> None:
        super().__init__(module, ctx, "emit-vulkan")
        self.weights_offset = -(-self.arena_bytes // 64) * 64  # weights.bin's place in the device buffer
        self.target = module_target(module)
        if self.target.gpu is None:
            raise BertcError(f"--emit-vulkan needs a GPU target (vulkan, android-vulkan); the module's is "
                             f"'{self.target.name}'")
        self.gpu = self.target.gpu
        self.dtype = module.attributes["bertc.dtype"].value if "bertc.dtype" in module.attributes else "f32"

    def byte(self, value: ir.Value, layout: str = "as-is") -> int:
        """The operand's byte offset in the device buffer."""
        where, offset = self.locate(value, layout)
        return offset if where == "arena" else self.weights_offset + offset

    def word(self, value: ir.Value, layout: str = "as-is") -> int:
        if dtype_of(value) not in ("f32", "i64"):
            raise BertcError(f"tensors of {dtype_of(value)} are not supported by emit-vulkan")
        return self.byte(value, layout) // 4

    def opt(self, value) -> int:
        return NONE if value is None else self.word(value)

    def dispatch(self, op, spec: tuple[int, ...], push: tuple[Size, ...], groups: tuple[Groups, Groups, Groups],
                 shared_bytes: int = 0, shader: str | None = None) -> Dispatch:
        """One dispatch of the op's own shader (its ``traits.shader`` in the dialect) or a variant of it."""
        return Dispatch(op_label(op), shader or B.traits_of(op).shader, spec, push, groups, shared_bytes)

    def elementwise(self, op, n: Size, *push: Size) -> Dispatch:
        wg = self.gpu.elementwise_wg
        return self.dispatch(op, (wg, 1), tuple(push), (_groups(n, wg), 1, 1))

    def rows(self, op, rows: Size, *push: Size) -> Dispatch:
        wg = self.gpu.row_wg
        groups = LenGroups(rows, 1) if isinstance(rows, Len) else min(rows, MAX_GROUPS)
        return self.dispatch(op, (wg, 1), tuple(push), (groups, 1, 1), 4 * wg)

    def gemm(self, op, weights: str, m: Size, n: Size, k: Size, batch: int, push: tuple[Size, ...]) -> Dispatch:
        """gemm.comp for weights of type ``weights`` (f32; f16: gemm_f16; i8: gemm_i8, which stages them as fp32)."""
        g = self.gpu
        (wx, wy), tm, tn, bk = g.gemm_wg, g.gemm_tm, g.gemm_tn, g.gemm_bk
        bm, bn = wy * tm, wx * tn
        shared = bk * (bm + bn) * (2 if weights == "f16" else 4)
        shader = B.traits_of(op).shader if weights == "f32" else f"gemm_{weights}"
        return Dispatch(op_label(op), shader, (wx, wy, tm, tn, bk), push, (_ceil(n, bn), _ceil(m, bm), batch), shared)


def gpu_weight_dtype(op, dtype: str) -> str:
    """A linear's weight type on the GPU in a module of ``bertc.dtype`` ``dtype`` (f32, f16, i8): a constant's is
    the module's; a weight computed at run time stays f32."""
    w = producer(op.operands[1])
    return dtype if w is not None and B.category_of(w) == "constant" else "f32"


def emit_linear(e: VkEmitter, op) -> Dispatch:
    if (sparsity(op) or {}).get("format") == "sparse":
        raise BertcError("--emit-vulkan has no sparse GEMM: compile without --prune-patterns for a GPU target")
    n, k = dims_of(op.operands[1])
    m = prod(dims_of(op.operands[0])[:-1])
    weights = gpu_weight_dtype(op, e.dtype)
    w = op.operands[1]  # the weights' offset in elements: words, halves or bytes; int8's scales after the push
    wkn = {"f32": lambda: e.word(w, "kn"), "f16": lambda: e.byte(w, "kn:f16") // 2, "i8": lambda: e.byte(w, "kn:i8")}
    scales = (e.word(w, "scales:i8"),) if weights == "i8" else ()
    push = (m, n, k, e.word(op.operands[0]), wkn[weights](), e.opt(op.bias), e.opt(op.residual), e.word(op.results[0]),
            ACT[op.attributes["activation"].value], 0, 0, 0, *scales)
    return e.gemm(op, weights, m, n, k, 1, push)


def emit_matmul(e: VkEmitter, op) -> Dispatch:
    batch, m, n, k, sa, sb = matmul_dims(op)
    push = (m, n, k, e.word(op.operands[0]), e.word(op.operands[1]), NONE, NONE, e.word(op.results[0]), ACT["none"],
            sa, sb, m * n)
    return e.gemm(op, "f32", m, n, k, batch, push)


def emit_attention(e: VkEmitter, op) -> Dispatch:
    b, s, h = dims_of(op.results[0])
    heads = op.attributes["num_heads"].value
    d = h // heads
    wg = e.gpu.row_wg
    push = (e.word(op.qkv), e.word(op.mask), e.word(op.results[0]), h, heads, _bits(op.attributes["scale"].value))
    extra, suffix = (), ""  # after the run's length, which stays push[6]
    if op.rel_bias is not None:  # the table and R
        extra, suffix = (e.word(op.rel_bias), (shape_of(op.rel_bias)[1] + 1) // 2), "_rel"
    if op.v is not None:  # V's own rows (MobileBERT), Q|K rows in qkv
        extra, suffix = (*extra, e.word(op.v)), suffix + "_v"
    if op.window.value:  # a local layer's window (ModernBERT), after all the others
        extra, suffix = (*extra, op.window.value), suffix + "_win"
    if position_terms(op):  # DeBERTa's position scores, their tables, W and R: after all the others
        extra = (*extra, e.opt(op.c2p), e.opt(op.p2c), e.opt(op.c2p_index), e.opt(op.p2c_index), *position_terms(op))
        suffix += "_pos"
    if isinstance(s, Len):  # the shared score row is sized for the bound; the run's length comes in a push constant
        n = bound(s, e.module)
        return e.dispatch(op, (wg, 1, n, d), (*push, s, *extra), (LenGroups(s, 1), heads, b), 4 * (d + n + wg),
                          "attention_seq" + suffix)
    return e.dispatch(op, (wg, 1, s, d), (*push, *extra), (s, heads, b), 4 * (d + s + wg),
                      "attention" + suffix if suffix else None)


def emit_layer_norm(e: VkEmitter, op) -> Dispatch:
    s = dims_of(op.results[0])
    rows = prod(s[:-1])
    return e.rows(op, rows, e.word(op.input), e.opt(op.residual), e.word(op.gamma), e.word(op.beta),
                  e.word(op.results[0]), rows, s[-1], _bits(op.attributes["eps"].value))


def emit_rms_norm(e: VkEmitter, op) -> Dispatch:
    s = dims_of(op.results[0])
    rows = prod(s[:-1])
    return e.rows(op, rows, e.word(op.input), e.word(op.gamma), e.word(op.results[0]), rows, s[-1],
                  _bits(op.attributes["eps"].value))


def emit_softmax(e: VkEmitter, op) -> Dispatch:
    s = dims_of(op.results[0])
    rows = prod(s[:-1])
    return e.rows(op, rows, e.word(op.operands[0]), e.word(op.results[0]), rows, s[-1])


def emit_embedding(e: VkEmitter, op) -> Dispatch:
    n, dim = prod(dims_of(op.operands[1])), dims_of(op.operands[0])[1]
    if dtype_of(op.operands[1]) != "i64":
        raise BertcError(f"bertc.embedding with {dtype_of(op.operands[1])} ids: emit-vulkan reads int64 ids")
    return e.elementwise(op, n * dim, e.word(op.operands[0]), e.word(op.operands[1]), e.word(op.results[0]), n, dim)


def emit_binary(e: VkEmitter, op) -> Dispatch:
    out, sa, sb = binary_strides(op)
    return e.elementwise(op, prod(out), BINARY[type(op)], e.word(op.operands[0]), e.word(op.operands[1]),
                         e.word(op.results[0]), *out, *sa, *sb)


def _unary(e: VkEmitter, op, act: int, exponent: int) -> Dispatch:
    n = prod(dims_of(op.results[0]))
    return e.elementwise(op, n, act, e.word(op.operands[0]), e.word(op.results[0]), n, exponent)


def emit_unary(e: VkEmitter, op) -> Dispatch:
    return _unary(e, op, ACT[unary_activation(op)], 0)


def emit_pow(e: VkEmitter, op) -> Dispatch:
    return _unary(e, op, POW, _bits(op.attributes["exponent"].value))


def emit_transpose(e: VkEmitter, op) -> Dispatch:
    out, st = transpose_strides(op)
    return e.elementwise(op, prod(out), e.word(op.operands[0]), e.word(op.results[0]), 0, 0, *out, *st)


def emit_slice(e: VkEmitter, op) -> Dispatch:
    outer, size, start, count, inner = slice_dims(op)
    words = (2 if dtype_of(op.operands[0]) == "i64" else 1) * inner
    return e.elementwise(op, outer * count * words, e.word(op.operands[0]), e.word(op.results[0]), outer, size,
                         start, count, words)


def emit_rotary(e: VkEmitter, op) -> Dispatch:
    b, s, c = dims_of(op.operands[0])
    return e.elementwise(op, b * s * c, e.word(op.operands[0]), e.word(op.operands[1]), e.word(op.operands[2]),
                         e.word(op.results[0]), b * s, s, c, dims_of(op.operands[1])[1], op.attributes["columns"].value,
                         int(op.attributes["style"].value == "interleaved"))


def emit_trigram(e: VkEmitter, op) -> Dispatch:
    b, s, dim = dims_of(op.operands[0])
    return e.elementwise(op, b * s * 3 * dim, e.word(op.operands[0]), e.word(op.results[0]), b * s, s, dim)


def emit_depthwise_conv1d(e: VkEmitter, op) -> Dispatch:  # seq_conv.comp, beside span_conv (heads 0: per channel)
    b, s, c = dims_of(op.input)
    return e.elementwise(op, b * s * c, e.word(op.input), e.word(op.weight), e.word(op.results[0]), b * s, s, c,
                         shape_of(op.weight)[1], 0)


def emit_span_conv(e: VkEmitter, op) -> Dispatch:
    b, s, c = dims_of(op.input)
    _, _, heads, k = shape_of(op.kernels)
    return e.elementwise(op, b * s * c, e.word(op.input), e.word(op.kernels), e.word(op.results[0]), b * s, s, c, k,
                         heads)


def emit_mask_bias(e: VkEmitter, op) -> Dispatch:
    b, _, q, k = dims_of(op.results[0])
    return e.elementwise(op, b * q * k, e.word(op.operands[0]), e.word(op.results[0]), b, q, k,
                         _bits(mask_bias_fill(op)))


def emit_relative_bias(e: VkEmitter, op) -> Dispatch:
    b, heads, s, _ = dims_of(op.results[0])
    return e.elementwise(op, b * heads * s * s, e.word(op.operands[0]), e.word(op.results[0]), b, heads, s,
                         (shape_of(op.operands[0])[1] + 1) // 2)


def emit_relative_gather(e: VkEmitter, op) -> Dispatch:
    b, s, w = dims_of(op.operands[0])
    return e.elementwise(op, b * s * s, e.word(op.operands[0]), e.word(op.operands[1]), e.word(op.results[0]), b, s, w,
                         (shape_of(op.operands[1])[0] + 1) // 2)


def emit_cast(e: VkEmitter, op) -> Dispatch:
    n = prod(dims_of(op.results[0]))
    return e.elementwise(op, n, e.word(op.operands[0]), e.word(op.results[0]), n)


def emit_token_dropout(e: VkEmitter, op) -> Dispatch:
    b, s, _ = dims_of(op.results[0])
    wg = e.gpu.elementwise_wg
    words = (e.word(op.operands[0]), e.word(op.operands[1]), e.word(op.results[0]), b, s,
             op.attributes["token"].value & 0xFFFFFFFF, _bits(op.attributes["keep"].value))
    return e.dispatch(op, (wg, 1), words, (_groups(b, wg), 1, 1))


def emit_position_ids(e: VkEmitter, op) -> Dispatch:
    b, s = dims_of(op.results[0])
    pad = op.attributes["padding_idx"].value
    wg = e.gpu.elementwise_wg
    return e.dispatch(op, (wg, 1), (e.word(op.operands[0]), e.word(op.results[0]), b, s, pad & 0xFFFFFFFF),
                      (_groups(b, wg), 1, 1))


EMITTERS: dict[str, Callable[[VkEmitter, ir.OpView], Dispatch]] = {cls.OPERATION_NAME: fn for cls, fn in {
    B.LinearOp: emit_linear,
    B.MatmulOp: emit_matmul,
    B.AttentionOp: emit_attention,
    B.LayerNormOp: emit_layer_norm,
    B.RmsNormOp: emit_rms_norm,
    B.SoftmaxOp: emit_softmax,
    B.EmbeddingOp: emit_embedding,
    **{cls: emit_binary for cls in BINARY},
    B.GeluOp: emit_unary,
    B.TanhOp: emit_unary,
    B.ReluOp: emit_unary,
    B.SiluOp: emit_unary,
    B.PowOp: emit_pow,
    B.TransposeOp: emit_transpose,
    B.SliceOp: emit_slice,
    B.MaskBiasOp: emit_mask_bias,
    B.PositionIdsOp: emit_position_ids,
    B.CastOp: emit_cast,
    B.TokenDropoutOp: emit_token_dropout,
    B.RelativeBiasOp: emit_relative_bias,
    B.RelativeGatherOp: emit_relative_gather,
    B.RotaryOp: emit_rotary,
    B.TrigramOp: emit_trigram,
    B.DepthwiseConv1dOp: emit_depthwise_conv1d,
    B.SpanConvOp: emit_span_conv,
}.items()}


def _c_list(xs) -> str:
    return "{" + ", ".join("NONE" if x == NONE else str(x) for x in xs) + "}"


def _seq_sizes_table(sizes: list[SeqSize]) -> list[str]:
    return ["/* What follows the run's length L (1..header.seq_len), set before each run: {dispatch, what, index,",
            " * {c0, c1, c2}: the value c0 + c1*L + c2*L*L, per: workgroups are ceil(value / per), 1..65535} */",
            "static const bertc_vk_seq_size seq_sizes[] = {", *[f"    {x.c_initializer()}" for x in sizes], "};", ""]


def emit_vulkan(module: ir.Operation, ctx: PassContext) -> None:
    e = VkEmitter(module, ctx)
    dispatches: list[Dispatch] = []
    for _, d in e.walk(EMITTERS, "shader"):
        if d.shared_bytes > e.gpu.max_shared_bytes:
            raise BertcError(f"{d.label} needs {d.shared_bytes} bytes of shared memory, more than target "
                             f"'{e.target.name}' allows ({e.gpu.max_shared_bytes}): compile with a shorter "
                             f"{'--max-seq-len' if max_seq_len(module) else '--seq-len'}")
        dispatches.append(d)
    sizes = [x for i, d in enumerate(dispatches) for x in seq_sizes(i, d)]
    dispatches = [at_bound(d, module) for d in dispatches]
    shaders = sorted({d.shader for d in dispatches})
    pipelines = sorted({(d.shader, d.spec) for d in dispatches})
    h = e.header([(d.label, d.shader) for d in dispatches])
    needs = [NEEDS[n] for n in shaders if n in NEEDS]
    lines = [
        "/* Generated by bertc --emit-vulkan. Do not edit: recompile the model instead.",
        f" * Target {e.target.name}; shaders (runtime/vulkan/shaders/): "
        + ", ".join(f"{n} ({SHADERS[n][0]}{''.join(' -D' + x for x in SHADERS[n][1])})" for n in shaders) + ". */",
        '#include "vk_program.h"',
        "",
        "#define NONE 0xffffffffu",
        "",
        "static const bertc_vk_shader shaders[] = {",
        *[f'    {{"{n}", BERTC_SPV_SHA256_{n}}},' for n in shaders],
        "};",
        "",
        "/* {shader, number of specialization constants, {workgroup x, workgroup y, the shader's own}} */",
        "static const bertc_vk_pipeline pipelines[] = {",
        *[f"    /* {i} */ {{{shaders.index(sh)}, {len(spec)}, {_c_list(spec)}}},  /* {sh} */"
          for i, (sh, spec) in enumerate(pipelines)],
        "};",
        "",
        "/* {pipeline, {workgroups x, y, z}, number of push constants, {push constants}} */",
        "static const bertc_vk_dispatch dispatches[] = {",
        *[f"    /* {i}: {d.label} */ {{{pipelines.index((d.shader, d.spec))}, {_c_list(d.groups)}, {len(d.push)}, "
          f"{_c_list(d.push)}}}," for i, d in enumerate(dispatches)],
        "};",
        "",
        *(_seq_sizes_table(sizes) if sizes else []),
        *ops_table(h),
        "",
        *outputs_table(h),
        "",
        "const bertc_vk_program bertc_vk_compiled_program = {",
        *program_header_fields(h, after={
            "arena_bytes": [f"    .weights_offset = {e.weights_offset},"],
            "outputs": [f"    .num_shaders = {len(shaders)},", "    .shaders = shaders,",
                        f"    .num_pipelines = {len(pipelines)},", "    .pipelines = pipelines,"],
            "ops": ["    .dispatches = dispatches,",
                    *([f"    .num_seq_sizes = {len(sizes)},", "    .seq_sizes = seq_sizes,"] if sizes else []),
                    f"    .needs = {' | '.join(needs) or 0},",
                    f"    .shared_bytes = {max((d.shared_bytes for d in dispatches), default=0)},",
                    f"    .max_invocations = {max((d.spec[0] * d.spec[1] for d in dispatches), default=1)},"]}),
        "};",
        "",
    ]
    ctx.outputs["emit-vulkan"] = EmittedVulkan("\n".join(lines), {n: SHADERS[n] for n in shaders}, h.weights,
                                               h.weights_sha256, h.arena_bytes, dispatches, shaders,
                                               e.missing_weights(), needs)
