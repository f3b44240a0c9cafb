"""--emit-c: C that calls the runtime's kernels, one call per op, plus the weights image.

Input (after plan-memory)::

    %5 = "bertc.linear"(%4, %w, %b) {activation = "gelu", bertc.offset = 4096 : i64, ...}
           : (tensor<1x8x32xf32>, tensor<64x32xf32>, tensor<64xf32>) -> tensor<1x8x64xf32>

Output (C)::

    /* bertc.linear [1, 8, 64] */
    BERTC_TIMED(3, bertc_linear(p, A(float, 1024), W(float, 0), W(float, 8192), NULL, A(float, 4096), 8, 64, 32,
                                BERTC_ACT_GELU));

In a module with a dynamic length (``tensor<1x?x32xf32>``, ``bertc.max_seq_len = N``) every size that
has the run's length is a C expression in ``L``, which model_run reads first (``const int64_t L =
x->seq;``): ``bertc_linear(..., (L), 64, 32, ...)`` does L rows, attention attends over L keys. The
arena and scratch are sized for N; a static module's C is what it was before dynamic lengths.

Each op has one small emitter in ``EMITTERS``; the walk, the weights image and the program's inputs
and outputs are passes/codegen.py's, shared with --emit-vulkan. BERTC_TIMED (runtime/src/program.h)
adds the call's time into op_seconds[3]; the program lists each op's name and kernel (``ops[]``) for
bertc_run's per-op report, which the cost model is calibrated from. Constants (weights, literals,
their concatenations and the [K,N] transposes the GEMM reads) are folded in numpy and laid out in
weights.bin, 64-byte aligned; its sha256 is compiled into the program so the runtime can
refuse weights that are not the ones this code was built for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from bertc.dialects import bertc as B
from torch_mlir import ir

from bertc.errors import BertcError
from bertc.sparsity import int8_block_group, kept_blocks, parse_pattern

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
from .common import (
    PassContext,
    dtype_of,
    func_ops,
    module_target,
    shape_of,
    sparsity,
    weight_dtype,
    weight_qmax,
    x_scale,
)
from .seqlen import Size, bound, dims_of, max_seq_len, prod

C_TYPES = {"f32": "float", "i64": "int64_t"}
ACT = {"none": "BERTC_ACT_NONE", "gelu": "BERTC_ACT_GELU", "gelu_tanh": "BERTC_ACT_GELU_TANH",
       "tanh": "BERTC_ACT_TANH", "relu": "BERTC_ACT_RELU", "silu": "BERTC_ACT_SILU"}
BINARY = {B.AddOp: "BERTC_ADD", B.SubOp: "BERTC_SUB", B.MulOp: "BERTC_MUL", B.DivOp: "BERTC_DIV"}


@dataclass
class EmittedC:
    """What emit-c produces: the model's C source and the weights image it indexes."""

    source: str
    weights: bytes
    weights_sha256: str
    arena_bytes: int
    kernels: list[str] = field(default_factory=list)
    missing_weights: list[str] = field(default_factory=list)


class CEmitter(Codegen):
    """Operands as C expressions: A(type, offset) in the arena, W(type, offset) in weights.bin."""

    def __init__(self, module: ir.Operation, ctx: PassContext) -> None:
        super().__init__(module, ctx, "emit-c")
        self.kernels: set[str] = set()
        self.isa = module_target(module).isa
        # int8 linears quantize their input into a work buffer (kernels.h BERTC_I8_WORK): one region past the
        # planned values, as large as the largest needs at the longest length; ops run one at a time
        work = [_i8_work(bound(prod(dims_of(op.operands[0])[:-1]), module), shape_of(op.operands[1])[1])
                for op in func_ops(module) if weight_dtype(op) == "i8"]
        self.i8_work = -(-self.arena_bytes // 64) * 64
        if work:
            self.arena_bytes = self.i8_work + max(work)

    def ptr(self, value: ir.Value, layout: str = "as-is") -> str:
        ctype = "uint16_t" if layout.endswith(":f16") else C_TYPES.get(dtype_of(value))  # half-float bits
        if ctype is None:
            raise BertcError(f"tensors of {dtype_of(value)} are not supported by emit-c")
        where, offset = self.locate(value, layout)
        return f"{'A' if where == 'arena' else 'W'}({ctype}, {offset})"

    def opt(self, value: ir.Value | None) -> str:
        return "NULL" if value is None else self.ptr(value)

    def out(self, op) -> str:
        return self.ptr(op.results[0])

    def call(self, kernel: str, *args) -> str:
        self.kernels.add(kernel)
        return f"{kernel}({', '.join(str(a) for a in args)})"

    def kernel(self, op, *args) -> str:
        """A call of the op's own kernel (its ``traits.kernel`` in the dialect); the pool sized by the op's elements
        where the kernel is one that SERIAL_POOL names."""
        kernel = B.traits_of(op).kernel
        if SERIAL_POOL.get(kernel) in ELEMENTWISE_POOL and args and args[0] == "p":
            args = (sized_pool(prod(dims_of(op.results[0])), SERIAL_POOL[kernel]), *args[1:])
        return self.call(kernel, *args)


# Kernels whose calls run on the calling thread alone when their work is below the pool.h macro named
# (bertc_pool_sized: splitting less costs more than it saves): output elements, or a GEMM's multiply-adds (the kept
# blocks' where sparse). bertc/cost.py SERIAL_BELOW prices them so.
SERIAL_POOL = {**dict.fromkeys(("bertc_layer_norm", "bertc_rms_norm", "bertc_softmax", "bertc_unary", "bertc_rotary"),
                               "BERTC_SERIAL_ELEMENTS"),
               **dict.fromkeys(("bertc_binary", "bertc_embedding"), "BERTC_SERIAL_COPY_ELEMENTS"),
               **dict.fromkeys(("bertc_linear", "bertc_linear_packed", "bertc_linear_packed_f16",
                                "bertc_linear_sparse"), "BERTC_SERIAL_MACS"),
               **dict.fromkeys(("bertc_linear_packed_i8", "bertc_linear_sparse_i8"), "BERTC_SERIAL_MACS_I8")}
ELEMENTWISE_POOL = ("BERTC_SERIAL_ELEMENTS", "BERTC_SERIAL_COPY_ELEMENTS")  # sized by their output's elements


def sized_pool(work: Size, below: str) -> str:
    """The pool argument of a call whose work (a C expression in L) decides whether it splits."""
    return f"bertc_pool_sized(p, (int64_t){work}, {below})"


def _f(x: float) -> str:
    if math.isinf(x):
        return "-INFINITY" if x < 0 else "INFINITY"
    return f"{x!r}f" if "e" in repr(x) or "." in repr(x) else f"{x!r}.0f"


def _arr(xs: list[int]) -> str:
    return "(const int64_t[4]){" + ", ".join(str(x) for x in xs) + "}"


def emit_embedding(e: CEmitter, op) -> str:
    ids = dims_of(op.operands[1])
    return e.kernel(op, "p", e.ptr(op.operands[0]), e.ptr(op.operands[1]), e.out(op), prod(ids),
                    shape_of(op.operands[0])[1])


def _i8_work(m: int, k: int) -> int:
    """kernels.h's BERTC_I8_WORK(M, K): M rounded up to 16 rows of K rounded up to 4 bytes, a scale and a zero
    point each."""
    return -(-m // 16) * 16 * (-(-k // 4) * 4 + 8)


def emit_linear(e: CEmitter, op) -> str:
    n, k = shape_of(op.operands[1])
    m = prod(dims_of(op.operands[0])[:-1])
    bias, res = e.opt(op.bias), e.opt(op.residual)
    act = ACT[op.attributes["activation"].value]
    sp = sparsity(op)
    if sp is not None and sp["format"] == "sparse":  # --prune-patterns: the kept blocks, offsets and indices
        pattern = parse_pattern(sp["pattern"])
        kept = kept_blocks(sp["density"], pattern, n, k) * pattern.r * pattern.c  # as the cost model prices it
        if weight_dtype(op) == "i8":  # int8 blocks and a scale per output feature (on x86 in groups of 4)
            r, c, rows, o_off, o_idx, o_val, o_s, o_c, group = e.image.place_sparse(
                op.operands[1], pattern.r, pattern.c, int8=True, qmax=weight_qmax(op),
                group=int8_block_group(e.isa, pattern.c))
            w = (f"&(const bertc_block_sparse_i8){{{r}, {c}, {rows}, W(int32_t, {o_off}), W(int32_t, {o_idx}), "
                 f"W(int8_t, {o_val}), W(float, {o_s}), W(int32_t, {o_c}), {group}}}")
            return e.call("bertc_linear_sparse_i8", sized_pool(m * kept, SERIAL_POOL["bertc_linear_sparse_i8"]),
                          e.ptr(op.operands[0]), w, bias, res, e.out(op), m, n, k, act, f"A(int8_t, {e.i8_work})")
        r, c, rows, o_off, o_idx, o_val = e.image.place_sparse(op.operands[1], pattern.r, pattern.c)
        w = (f"&(const bertc_block_sparse){{{r}, {c}, {rows}, W(int32_t, {o_off}), W(int32_t, {o_idx}), "
             f"W(float, {o_val})}}")
        return e.call("bertc_linear_sparse", sized_pool(m * kept, SERIAL_POOL["bertc_linear_sparse"]),
                      e.ptr(op.operands[0]), w, bias, res, e.out(op), m, n, k, act)
    if "bertc.tile" in op.attributes:  # --pack-weights chose a tile (and maybe half-float weights)
        mr, nr, kc = ir.DenseI64ArrayAttr(op.attributes["bertc.tile"])
        wdtype = weight_dtype(op)
        tile = f"&(const bertc_gemm_tile){{{mr}, {nr}, {kc}}}"
        if wdtype == "i8":  # int8 panels, scales and column sums (kernels.h's bertc_qweight)
            qmax = weight_qmax(op)
            o_w, o_s, o_c = e.image.place_int8(op.operands[1], nr, qmax)
            w = (f"&(const bertc_qweight){{W(int8_t, {o_w}), W(float, {o_s}), W(int32_t, {o_c}), "
                 f"{_f(x_scale(op) or 0.0)}, {qmax}}}")
            return e.call("bertc_linear_packed_i8", sized_pool(m * (n * k), SERIAL_POOL["bertc_linear_packed_i8"]),
                          e.ptr(op.operands[0]), w, bias, res, e.out(op), m, n, k, act, tile, f"A(int8_t, {e.i8_work})")
        f16 = wdtype == "f16"
        w = e.ptr(op.operands[1], f"panels:{nr}:{'f16' if f16 else 'f32'}")
        kernel = "bertc_linear_packed_f16" if f16 else "bertc_linear_packed"
        return e.call(kernel, sized_pool(m * (n * k), SERIAL_POOL[kernel]), e.ptr(op.operands[0]), w, bias, res,
                      e.out(op), m, n, k, act, tile)
    return e.kernel(op, sized_pool(m * (n * k), SERIAL_POOL["bertc_linear"]), e.ptr(op.operands[0]),
                    e.ptr(op.operands[1], "kn"), bias, res, e.out(op), m, n, k, act)


def emit_layer_norm(e: CEmitter, op) -> str:
    s = dims_of(op.results[0])
    res = e.opt(op.residual)  # placed first: the weights image's order is the emitted order
    return e.kernel(op, "p", e.ptr(op.input), res, e.ptr(op.gamma), e.ptr(op.beta), e.out(op), prod(s[:-1]),
                    s[-1], _f(op.attributes["eps"].value))


def emit_rms_norm(e: CEmitter, op) -> str:
    s = dims_of(op.results[0])
    return e.kernel(op, "p", e.ptr(op.input), e.ptr(op.gamma), e.out(op), prod(s[:-1]), s[-1],
                    _f(op.attributes["eps"].value))


def emit_attention(e: CEmitter, op) -> str:
    b, s, h = dims_of(op.results[0])
    rel = op.rel_bias  # MPNet's relative positions: a [heads, 2R - 1] table
    span = 0 if rel is None else (shape_of(rel)[1] + 1) // 2
    qk = e.ptr(op.qkv)  # Q|K|V rows, V from column 2H; or Q|K rows and V's own (MobileBERT)
    v, qk_row, v_row = (f"{qk} + {2 * h}", 3 * h, 3 * h) if op.v is None else (e.ptr(op.v), 2 * h, h)
    return e.kernel(op, "p", qk, qk_row, v, v_row, e.ptr(op.mask), e.opt(rel), span, disentangled(e, op),
                    op.window.value, e.out(op), b, s, h, op.attributes["num_heads"].value,
                    _f(op.attributes["scale"].value))


def disentangled(e: CEmitter, op) -> str:
    """DeBERTa's c2p / p2c scores and their column tables, kernels.h's bertc_disentangled (NULL: none)."""
    dims = position_terms(op)
    if dims is None:
        return "NULL"
    fields = (e.opt(op.c2p), e.opt(op.p2c), e.opt(op.c2p_index), e.opt(op.p2c_index), *dims)
    return f"&(const bertc_disentangled){{{', '.join(map(str, fields))}}}"


def emit_relative_bias(e: CEmitter, op) -> str:
    b, heads, s, _ = dims_of(op.results[0])
    return e.kernel(op, e.ptr(op.operands[0]), e.out(op), b, heads, s, (shape_of(op.operands[0])[1] + 1) // 2)


def emit_relative_gather(e: CEmitter, op) -> str:
    b, s, w = dims_of(op.operands[0])
    return e.kernel(op, e.ptr(op.operands[0]), e.ptr(op.operands[1]), e.out(op), b, s, w,
                    (shape_of(op.operands[1])[0] + 1) // 2)


def emit_mask_bias(e: CEmitter, op) -> str:
    b, _, q, k = dims_of(op.results[0])
    return e.kernel(op, e.ptr(op.operands[0]), e.out(op), b, q, k, _f(mask_bias_fill(op)))


def emit_position_ids(e: CEmitter, op) -> str:
    b, s = dims_of(op.results[0])
    return e.kernel(op, e.ptr(op.operands[0]), e.out(op), b, s, op.attributes["padding_idx"].value)


def emit_token_dropout(e: CEmitter, op) -> str:
    b, s, _ = dims_of(op.results[0])
    return e.kernel(op, e.ptr(op.operands[0]), e.ptr(op.operands[1]), e.out(op), b, s, op.attributes["token"].value,
                    _f(op.attributes["keep"].value))


def emit_cast(e: CEmitter, op) -> str:
    return e.kernel(op, e.ptr(op.operands[0]), e.out(op), prod(dims_of(op.results[0])))


def emit_binary(e: CEmitter, op) -> str:
    out, sa, sb = binary_strides(op)
    return e.kernel(op, "p", BINARY[type(op)], e.ptr(op.operands[0]), _arr(sa), e.ptr(op.operands[1]), _arr(sb),
                    e.out(op), _arr(out))


def emit_unary(e: CEmitter, op) -> str:
    return e.kernel(op, "p", ACT[unary_activation(op)], e.ptr(op.operands[0]), e.out(op),
                    prod(dims_of(op.results[0])))


def emit_pow(e: CEmitter, op) -> str:
    return e.kernel(op, e.ptr(op.operands[0]), e.out(op), prod(dims_of(op.results[0])),
                    _f(op.attributes["exponent"].value))


def emit_softmax(e: CEmitter, op) -> str:
    s = dims_of(op.results[0])
    return e.kernel(op, "p", e.ptr(op.operands[0]), e.out(op), prod(s[:-1]), s[-1])


def emit_transpose(e: CEmitter, op) -> str:
    out, st = transpose_strides(op)
    return e.kernel(op, e.ptr(op.operands[0]), e.out(op), _arr(out), _arr(st))


def emit_matmul(e: CEmitter, op) -> str:
    batch, m, n, k, sa, sb = matmul_dims(op)
    return e.kernel(op, "p", e.ptr(op.operands[0]), e.ptr(op.operands[1]), e.out(op), batch, m, n, k, sa, sb)


def emit_rotary(e: CEmitter, op) -> str:
    b, s, c = dims_of(op.operands[0])
    return e.kernel(op, "p", e.ptr(op.operands[0]), e.ptr(op.operands[1]), e.ptr(op.operands[2]), e.out(op), b, s, c,
                    shape_of(op.operands[1])[1], op.attributes["columns"].value,
                    int(op.attributes["style"].value == "interleaved"))


def emit_trigram(e: CEmitter, op) -> str:
    b, s, dim = dims_of(op.operands[0])
    return e.kernel(op, e.ptr(op.operands[0]), e.out(op), b, s, dim)


def emit_depthwise_conv1d(e: CEmitter, op) -> str:
    b, s, c = dims_of(op.input)
    return e.kernel(op, "p", e.ptr(op.input), e.ptr(op.weight, "kn"), e.out(op), b, s, c, shape_of(op.weight)[1])


def emit_span_conv(e: CEmitter, op) -> str:
    b, s, c = dims_of(op.input)
    _, _, heads, k = shape_of(op.kernels)
    return e.kernel(op, "p", e.ptr(op.input), e.ptr(op.kernels), e.out(op), b, s, c, heads, k)


def emit_slice(e: CEmitter, op) -> str:
    elem = 8 if dtype_of(op.operands[0]) == "i64" else 4
    return e.kernel(op, e.ptr(op.operands[0]), e.out(op), *slice_dims(op), elem)


EMITTERS: dict[str, Callable[[CEmitter, ir.OpView], str]] = {cls.OPERATION_NAME: fn for cls, fn in {
    B.EmbeddingOp: emit_embedding,
    B.LinearOp: emit_linear,
    B.LayerNormOp: emit_layer_norm,
    B.RmsNormOp: emit_rms_norm,
    B.AttentionOp: emit_attention,
    B.MaskBiasOp: emit_mask_bias,
    B.PositionIdsOp: emit_position_ids,
    B.CastOp: emit_cast,
    B.TokenDropoutOp: emit_token_dropout,
    B.RelativeBiasOp: emit_relative_bias,
    B.RelativeGatherOp: emit_relative_gather,
    **{cls: emit_binary for cls in BINARY},
    B.GeluOp: emit_unary,
    B.TanhOp: emit_unary,
    B.ReluOp: emit_unary,
    B.SiluOp: emit_unary,
    B.PowOp: emit_pow,
    B.SoftmaxOp: emit_softmax,
    B.TransposeOp: emit_transpose,
    B.MatmulOp: emit_matmul,
    B.SliceOp: emit_slice,
    B.RotaryOp: emit_rotary,
    B.TrigramOp: emit_trigram,
    B.DepthwiseConv1dOp: emit_depthwise_conv1d,
    B.SpanConvOp: emit_span_conv,
}.items()}


def scratch_floats(module: ir.Operation) -> str:
    """Per-thread scratch floats: the largest of kernels.h's bounds over the program's ops (attention's at
    the longest length a dynamic program runs)."""
    bounds = set()
    for op in func_ops(module):
        if isinstance(op, B.AttentionOp):
            _, seq, width = dims_of(op.results[0])
            head = width // op.attributes["num_heads"].value
            bounds.add(f"BERTC_SCRATCH_ATTENTION({bound(seq, module)}, {head})")
        elif isinstance(op, B.LinearOp):
            sp = sparsity(op)
            sparse = sp is not None and sp["format"] == "sparse"
            if weight_dtype(op) == "i8":  # (their quantized rows are in the arena: CEmitter.i8_work)
                if sparse:
                    bounds.add(f"BERTC_SCRATCH_SPARSE_I8({shape_of(op.operands[1])[1]})")
                continue
            if sparse:
                bounds.add(f"BERTC_SCRATCH_SPARSE({shape_of(op.operands[1])[1]}, {parse_pattern(sp['pattern']).c})")
            else:
                bounds.add(f"BERTC_SCRATCH_LINEAR({shape_of(op.operands[1])[1]})")
    scratch = "64"
    for each in sorted(bounds):
        scratch = f"MAX2({scratch}, {each})"
    return scratch


def emit_c(module: ir.Operation, ctx: PassContext) -> None:
    e = CEmitter(module, ctx)
    lines, ops = [], []  # ops: (name and result shape, kernel) of each timed call
    for op, call in e.walk(EMITTERS, "kernel"):
        lines += [f"  /* {op_label(op)} */", f"  BERTC_TIMED({len(ops)}, {call});"]
        ops.append((op_label(op), call.partition("(")[0]))
    h = e.header(ops)
    tuning = "    .tuning = {{{0.chunks_per_thread}, {0.attention_block}, {0.gemm_row_block}}},".format(
        module_target(module))
    source = "\n".join([
        "/* Generated by bertc --emit-c. Do not edit: recompile the model instead. */",
        "#include <math.h>",
        "#include <stddef.h>",
        '#include "kernels.h"',
        '#include "program.h"',
        "",
        "#define A(T, off) ((T *)(x->arena + (off)))",
        "#define W(T, off) ((const T *)(x->weights + (off)))",
        "#define MAX2(a, b) ((a) > (b) ? (a) : (b))",
        "",
        "static void model_run(const bertc_exec *x) {",
        "  bertc_pool *p = x->pool;",
        "  (void)p;",
        *(["  const int64_t L = x->seq; /* this run's length: the sizes below are expressions in it */",
           "  (void)L;"] if max_seq_len(module) is not None else []),
        *lines,
        "}",
        "",
        *outputs_table(h),
        "",
        "static const char *const kernels[] = {" + ", ".join(f'"{k}"' for k in sorted(e.kernels)) + "};",
        "",
        *ops_table(h),
        "",
        "const bertc_program bertc_compiled_program = {",
        *program_header_fields(h, after={
            "type_vocab_size": [f"    .scratch_floats = {scratch_floats(module)},", tuning],
            "outputs": [f"    .num_kernels = {len(e.kernels)},", "    .kernels = kernels,"],
            "ops": ["    .run = model_run,"]}),
        "};",
        "",
    ])
    ctx.outputs["emit-c"] = EmittedC(source, h.weights, h.weights_sha256, h.arena_bytes, sorted(e.kernels),
                                     e.missing_weights())
