"""--emit-c: C that calls the runtime's kernels, one call per op, plus the weights image.

Input (after plan-memory)::

    %5 = "bertc.linear"(%4, %w, %b) {activation = "gelu", bertc.offset = 4096 : i64, ...}
           : (tensor<1x8x32xf32>, tensor<64x32xf32>, tensor<64xf32>) -> tensor<1x8x64xf32>

Output (C)::

    /* bertc.linear [1, 8, 64] */
    BERTC_TIMED(3, bertc_linear(p, A(float, 1024), W(float, 0), W(float, 8192), NULL, A(float, 4096), 8, 64, 32,
                                BERTC_ACT_GELU));

Each op has one small emitter in ``EMITTERS``. BERTC_TIMED (runtime/src/program.h) adds the call's
time into op_seconds[3]; the program lists each op's name and kernel (``ops[]``) for bertc_run's
per-op report, which the cost model is calibrated from. Constants (weights, literals, their
concatenations and the [K,N] transposes the GEMM reads) are folded in numpy and laid out in
weights.bin, 64-byte aligned; its sha256 is compiled into the program so the runtime can
refuse weights that are not the ones this code was built for.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from torch_mlir import ir

from bertc.artifact import FORMAT_VERSION  # the runtime refuses a manifest of any other version
from bertc.errors import BertcError
from bertc.sparsity import compress, parse_pattern

from .common import PassContext, dtype_of, func_ops, module_target, producer, shape_of, source_location, sparsity
from .plan_memory import CONSTANT_OPS, VIEW_OPS

C_TYPES = {"f32": "float", "i64": "int64_t"}
ACT = {"none": "BERTC_ACT_NONE", "gelu": "BERTC_ACT_GELU", "gelu_tanh": "BERTC_ACT_GELU_TANH",
       "tanh": "BERTC_ACT_TANH", "relu": "BERTC_ACT_RELU"}


@dataclass
class EmittedC:
    """What emit-c produces: the model's C source and the weights image it indexes."""

    source: str
    weights: bytes
    weights_sha256: str
    arena_bytes: int
    kernels: list[str] = field(default_factory=list)
    missing_weights: list[str] = field(default_factory=list)


class WeightsImage:
    """Folds constant values to numpy and packs them, 64-byte aligned, deduplicated."""

    def __init__(self, store) -> None:
        self.store = store
        self.blob = bytearray()
        self.offsets: dict = {}
        self.missing: list[str] = []

    def fold(self, value: ir.Value) -> np.ndarray:
        op = producer(value)
        name = op.operation.name
        dt = {"f32": np.float32, "i64": np.int64}.get(dtype_of(value), np.float32)
        if name == "bertc.weight":
            key = op.attributes["name"].value
            arrays = self.store.arrays if self.store is not None else {}
            if key not in arrays:
                self.missing.append(key)
                return np.zeros(shape_of(value), dt)
            return np.asarray(arrays[key], dtype=dt).reshape(shape_of(value))
        if name == "bertc.constant":
            attr = ir.DenseElementsAttr(op.attributes["value"])
            if attr.is_splat:
                return np.full(shape_of(value), np.array(attr.get_splat_value().value), dt)
            return np.array(attr, dtype=dt).reshape(shape_of(value))
        if name == "bertc.concat":
            return np.concatenate([self.fold(v) for v in op.operands], axis=op.attributes["dim"].value)
        if name in VIEW_OPS:
            return self.fold(op.operands[0]).reshape(shape_of(value))
        raise BertcError(f"{name} is not a constant")

    def place(self, value: ir.Value, layout: str = "as-is") -> int:
        key = (value, layout)
        if key not in self.offsets:
            arr = self.fold(value)
            if layout in ("kn", "kn:f16"):  # linear weights [N, K] -> [K, N]: the GEMM streams rows of N
                arr = arr.T.astype(np.float16) if layout == "kn:f16" else arr.T  # (half floats: emit-vulkan)
            elif layout.startswith("panels"):  # kernels.h: [N, K] -> [ceil(N/nr), K, nr], zero-padded
                _, nr, dtype = layout.split(":")
                n, k = arr.shape
                padded = np.zeros((-(-n // int(nr)) * int(nr), k), np.float16 if dtype == "f16" else arr.dtype)
                padded[:n] = arr
                arr = padded.reshape(-1, int(nr), k).transpose(0, 2, 1)
            self.offsets[key] = self.append(arr)
        return self.offsets[key]

    def append(self, arr: np.ndarray) -> int:
        self.blob.extend(b"\0" * (-len(self.blob) % 64))
        offset = len(self.blob)
        self.blob.extend(np.ascontiguousarray(arr).tobytes())
        return offset

    def place_sparse(self, value: ir.Value, r: int, c: int) -> tuple:
        """A pruned weight as kernels.h's bertc_block_sparse: (r, c, block rows, and the image offsets of
        the block offsets, the indices and the values)."""
        key = (value, f"sparse:{r}:{c}")
        if key not in self.offsets:
            s = compress(self.fold(value), r, c)
            self.offsets[key] = (r, c, s.offsets.size - 1, self.append(s.offsets), self.append(s.index),
                                 self.append(s.values))
        return self.offsets[key]


class Emitter:
    def __init__(self, ctx: PassContext) -> None:
        self.image = WeightsImage(ctx.weights)
        self.arena: dict = {}  # value -> arena offset
        self.kernels: set[str] = set()

    def ptr(self, value: ir.Value, layout: str = "as-is") -> str:
        ctype = "uint16_t" if layout.endswith(":f16") else C_TYPES.get(dtype_of(value))  # half-float bits
        if ctype is None:
            raise BertcError(f"tensors of {dtype_of(value)} are not supported by emit-c")
        if value in self.arena:
            return f"A({ctype}, {self.arena[value]})"
        p = producer(value)
        if p is not None and p.operation.name in VIEW_OPS:
            return self.ptr(p.operands[0], layout)
        if p is not None and p.operation.name in CONSTANT_OPS:
            return f"W({ctype}, {self.image.place(value, layout)})"
        raise BertcError(f"no storage for {value}: run --plan-memory before --emit-c")

    def out(self, op) -> str:
        return self.ptr(op.results[0])

    def call(self, kernel: str, *args) -> str:
        self.kernels.add(kernel)
        return f"{kernel}({', '.join(str(a) for a in args)})"


def _f(x: float) -> str:
    if math.isinf(x):
        return "-INFINITY" if x < 0 else "INFINITY"
    return f"{x!r}f" if "e" in repr(x) or "." in repr(x) else f"{x!r}.0f"


def _pad4(xs: list[int], fill: int) -> list[int]:
    return [fill] * (4 - len(xs)) + list(xs)


def _arr(xs: list[int]) -> str:
    return "(const int64_t[4]){" + ", ".join(str(x) for x in xs) + "}"


def _strides(shape: list[int]) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def _broadcast_strides(shape: list[int], out_shape: list[int]) -> list[int]:
    shape = [1] * (len(out_shape) - len(shape)) + shape
    return [0 if s == 1 and o != 1 else st for s, o, st in zip(shape, out_shape, _strides(shape))]


def emit_embedding(e: Emitter, op) -> str:
    ids = shape_of(op.operands[1])
    return e.call("bertc_embedding", "p", e.ptr(op.operands[0]), e.ptr(op.operands[1]), e.out(op),
                  math.prod(ids), shape_of(op.operands[0])[1])


def emit_linear(e: Emitter, op) -> str:
    n, k = shape_of(op.operands[1])
    m = math.prod(shape_of(op.operands[0])[:-1])
    bias = e.ptr(op.bias) if op.bias is not None else "NULL"
    res = e.ptr(op.residual) if op.residual is not None else "NULL"
    act = ACT[op.attributes["activation"].value]
    sp = sparsity(op)
    if sp is not None and sp["format"] == "sparse":  # --prune-patterns: the kept blocks, offsets and indices
        pattern = parse_pattern(sp["pattern"])
        r, c, rows, o_off, o_idx, o_val = e.image.place_sparse(op.operands[1], pattern.r, pattern.c)
        w = (f"&(const bertc_block_sparse){{{r}, {c}, {rows}, W(int32_t, {o_off}), W(int32_t, {o_idx}), "
             f"W(float, {o_val})}}")
        return e.call("bertc_linear_sparse", "p", e.ptr(op.operands[0]), w, bias, res, e.out(op), m, n, k, act)
    if "bertc.tile" in op.attributes:  # --pack-weights chose a tile (and maybe half-float weights)
        mr, nr, kc = ir.DenseI64ArrayAttr(op.attributes["bertc.tile"])
        f16 = "bertc.weight_dtype" in op.attributes and op.attributes["bertc.weight_dtype"].value == "f16"
        w = e.ptr(op.operands[1], f"panels:{nr}:{'f16' if f16 else 'f32'}")
        return e.call("bertc_linear_packed_f16" if f16 else "bertc_linear_packed", "p", e.ptr(op.operands[0]), w,
                      bias, res, e.out(op), m, n, k, act, f"&(const bertc_gemm_tile){{{mr}, {nr}, {kc}}}")
    return e.call("bertc_linear", "p", e.ptr(op.operands[0]), e.ptr(op.operands[1], "kn"), bias, res, e.out(op),
                  m, n, k, act)


def emit_layer_norm(e: Emitter, op) -> str:
    s = shape_of(op.results[0])
    res = e.ptr(op.residual) if op.residual is not None else "NULL"
    return e.call("bertc_layer_norm", "p", e.ptr(op.input), res, e.ptr(op.gamma), e.ptr(op.beta), e.out(op),
                  math.prod(s[:-1]), s[-1], _f(op.attributes["eps"].value))


def emit_attention(e: Emitter, op) -> str:
    b, s, h3 = shape_of(op.operands[0])
    return e.call("bertc_attention", "p", e.ptr(op.operands[0]), e.ptr(op.operands[1]), e.out(op), b, s, h3 // 3,
                  op.attributes["num_heads"].value, _f(op.attributes["scale"].value))


def emit_mask_bias(e: Emitter, op) -> str:
    b, _, q, k = shape_of(op.results[0])
    return e.call("bertc_mask_bias", e.ptr(op.operands[0]), e.out(op), b, q, k, _f(op.attributes["fill"].value))


def emit_position_ids(e: Emitter, op) -> str:
    b, s = shape_of(op.results[0])
    return e.call("bertc_position_ids", e.ptr(op.operands[0]), e.out(op), b, s, op.attributes["padding_idx"].value)


def binary_strides(op) -> tuple[list[int], list[int], list[int]]:
    """(out shape, a's strides, b's strides) of a broadcasting binary op, each padded to rank 4 (strides
    of broadcast dimensions 0): what both emitters' binary kernels take."""
    out = shape_of(op.results[0])
    if len(out) > 4:
        raise BertcError(f"{op.operation.name} of rank {len(out)} (at most 4 supported)")
    return (out, _pad4(_broadcast_strides(shape_of(op.operands[0]), out), 0),
            _pad4(_broadcast_strides(shape_of(op.operands[1]), out), 0))


def _binary(code: str) -> Callable:
    def emit(e: Emitter, op) -> str:
        out, sa, sb = binary_strides(op)
        return e.call("bertc_binary", "p", code, e.ptr(op.operands[0]), _arr(sa), e.ptr(op.operands[1]), _arr(sb),
                      e.out(op), _arr(_pad4(out, 1)))

    return emit


def _unary(act: str) -> Callable:
    def emit(e: Emitter, op) -> str:
        if op.operation.name == "bertc.gelu":
            a = "gelu" if op.attributes["approximate"].value == "none" else "gelu_tanh"
        else:
            a = act
        return e.call("bertc_unary", "p", ACT[a], e.ptr(op.operands[0]), e.out(op), math.prod(shape_of(op.results[0])))

    return emit


def emit_pow(e: Emitter, op) -> str:
    return e.call("bertc_pow", e.ptr(op.operands[0]), e.out(op), math.prod(shape_of(op.results[0])),
                  _f(op.attributes["exponent"].value))


def emit_softmax(e: Emitter, op) -> str:
    s = shape_of(op.results[0])
    return e.call("bertc_softmax", "p", e.ptr(op.operands[0]), e.out(op), math.prod(s[:-1]), s[-1])


def emit_transpose(e: Emitter, op) -> str:
    x = shape_of(op.operands[0])
    perm = list(ir.DenseI64ArrayAttr(op.attributes["perm"]))
    if len(x) > 4:
        raise BertcError("transpose of rank > 4 is not supported")
    st = _strides(x)
    return e.call("bertc_transpose", e.ptr(op.operands[0]), e.out(op), _arr(_pad4(shape_of(op.results[0]), 1)),
                  _arr(_pad4([st[i] for i in perm], 0)))


def matmul_dims(op) -> tuple[int, int, int, int, int, int]:
    """(batch, m, n, k, batch stride of a, of b) of a bertc.matmul: a stride is 0 where that operand is
    broadcast over the batch. Both emitters' matmul kernels take these."""
    a, b, o = shape_of(op.operands[0]), shape_of(op.operands[1]), shape_of(op.results[0])
    batch = math.prod(o[:-2])

    def batch_stride(s: list[int]) -> int:
        p = math.prod(s[:-2])
        if p not in (1, batch):
            raise BertcError(f"matmul with partly broadcast batch {s} x {o} is not supported")
        return 0 if p == 1 and batch != 1 else s[-2] * s[-1]

    return batch, a[-2], b[-1], a[-1], batch_stride(a), batch_stride(b)


def emit_matmul(e: Emitter, op) -> str:
    batch, m, n, k, sa, sb = matmul_dims(op)
    return e.call("bertc_matmul", "p", e.ptr(op.operands[0]), e.ptr(op.operands[1]), e.out(op), batch, m, n, k, sa, sb)


def emit_slice(e: Emitter, op) -> str:
    x, o = shape_of(op.operands[0]), shape_of(op.results[0])
    d = op.attributes["dim"].value
    elem = 8 if dtype_of(op.operands[0]) == "i64" else 4
    return e.call("bertc_slice", e.ptr(op.operands[0]), e.out(op), math.prod(x[:d]), x[d], op.attributes["start"].value,
                  o[d], math.prod(x[d + 1:]), elem)


EMITTERS: dict[str, Callable[[Emitter, ir.OpView], str]] = {
    "bertc.embedding": emit_embedding,
    "bertc.linear": emit_linear,
    "bertc.layer_norm": emit_layer_norm,
    "bertc.attention": emit_attention,
    "bertc.mask_bias": emit_mask_bias,
    "bertc.position_ids": emit_position_ids,
    "bertc.add": _binary("BERTC_ADD"),
    "bertc.sub": _binary("BERTC_SUB"),
    "bertc.mul": _binary("BERTC_MUL"),
    "bertc.div": _binary("BERTC_DIV"),
    "bertc.gelu": _unary("gelu"),
    "bertc.tanh": _unary("tanh"),
    "bertc.pow": emit_pow,
    "bertc.softmax": emit_softmax,
    "bertc.transpose": emit_transpose,
    "bertc.matmul": emit_matmul,
    "bertc.slice": emit_slice,
}


def _storage(value: ir.Value) -> ir.Value:
    """The value that owns the arena slot behind a (possibly reshaped) value."""
    p = producer(value)
    return _storage(p.operands[0]) if p is not None and p.operation.name in VIEW_OPS else value


def _names(f, key: str, default: list[str]) -> list[str]:
    if key in f.attributes:
        return [ir.StringAttr(a).value for a in ir.ArrayAttr(f.attributes[key])]
    return default


def program_io(module, f, args, arena: dict) -> tuple[list[str], dict[str, int], tuple[int, int]]:
    """What both emitters write about a program's inputs and outputs: one C initialiser per output
    ({"name", arena offset, rank, {dims}}), each named input's arena offset, and (batch, seq)."""
    ret = list(func_ops(module))[-1]
    input_names = _names(f, "bertc.input_names", ["input_ids", "attention_mask", "token_type_ids"][: len(args)])
    output_names = _names(f, "bertc.output_names", [f"output_{i}" for i in range(len(ret.operands))])
    slots = []
    for nm, v in zip(output_names, ret.operands):
        if _storage(v) not in arena:
            raise BertcError(f"output {nm} is a constant; nothing to compute")
        s = shape_of(v)
        dims = ", ".join(str(d) for d in s + [0] * (4 - len(s)))
        slots.append(f'{{"{nm}", {arena[_storage(v)]}, {len(s)}, {{{dims}}}}}')
    offsets = {n: arena[a] for n, a in zip(input_names, args)}
    b, s = (shape_of(args[0]) + [1, 1])[:2] if args else (1, 1)
    return slots, offsets, (b, s)


def _int_attr(op, key: str, default: int) -> int:
    return ir.IntegerAttr(op.attributes[key]).value if key in op.attributes else default


def emit_c(module: ir.Operation, ctx: PassContext) -> None:
    funcs = [f for f in module.regions[0].blocks[0].operations if f.operation.name == "func.func"]
    if len(funcs) != 1:
        raise BertcError(f"emit-c expects one function, found {len(funcs)}")
    f = funcs[0]
    if "bertc.arena_bytes" not in module.attributes:
        raise BertcError("emit-c needs --plan-memory first (no bertc.arena_bytes on the module)")
    e = Emitter(ctx)
    args = list(f.regions[0].blocks[0].arguments)
    for a, off in zip(args, ir.DenseI64ArrayAttr(f.attributes["bertc.arg_offsets"])):
        e.arena[a] = off
    lines, ops = [], []  # ops: (name and result shape, kernel) of each timed call
    for op in func_ops(module):
        name = op.operation.name
        if "bertc.offset" in op.attributes:
            e.arena[op.results[0]] = op.attributes["bertc.offset"].value
        if name in CONSTANT_OPS or name in VIEW_OPS or name == "func.return":
            continue
        emit = EMITTERS.get(name)
        if emit is None:
            raise BertcError(f"emit-c has no kernel for '{name}' at {source_location(op)}")
        label = f"{name}{' ' + str(shape_of(op.results[0])) if op.results else ''}"
        call = emit(e, op)
        lines += [f"  /* {label} */", f"  BERTC_TIMED({len(ops)}, {call});"]
        ops.append((label, call.partition("(")[0]))
    slots, offset, (b, s) = program_io(module, f, args, e.arena)
    weights = bytes(e.image.blob)
    sha = hashlib.sha256(weights).hexdigest()
    arena = module.attributes["bertc.arena_bytes"].value
    bounds = set()  # per-thread scratch floats: the largest bound of kernels.h over the program's ops
    for op in func_ops(module):
        if op.operation.name == "bertc.attention":
            _, seq, width = shape_of(op.operands[0])
            bounds.add(f"BERTC_SCRATCH_ATTENTION({seq}, {width // 3 // op.attributes['num_heads'].value})")
        elif op.operation.name == "bertc.linear":
            sp = sparsity(op)
            if sp is not None and sp["format"] == "sparse":
                bounds.add(f"BERTC_SCRATCH_SPARSE({shape_of(op.operands[1])[1]}, {parse_pattern(sp['pattern']).c})")
            else:
                bounds.add(f"BERTC_SCRATCH_LINEAR({shape_of(op.operands[1])[1]})")
    scratch = "64"
    for bound in sorted(bounds):
        scratch = f"MAX2({scratch}, {bound})"
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
        *lines,
        "}",
        "",
        "static const bertc_tensor_slot outputs[] = {",
        *[f"    {s_},"for s_ in slots],
        "};",
        "",
        "static const char *const kernels[] = {" + ", ".join(f'"{k}"' for k in sorted(e.kernels)) + "};",
        "",
        "static const bertc_op_info ops[] = {",
        *[f'    {{"{label}", "{kernel}"}},' for label, kernel in ops],
        "};",
        "",
        "const bertc_program bertc_compiled_program = {",
        f"    .format_version = {FORMAT_VERSION},",
        f"    .arena_bytes = {arena},",
        f"    .weights_bytes = {len(weights)},",
        f'    .weights_sha256 = "{sha}",',
        f"    .batch = {b},",
        f"    .seq_len = {s},",
        f"    .vocab_size = {_int_attr(f, 'bertc.vocab_size', 1 << 30)},",
        f"    .type_vocab_size = {_int_attr(f, 'bertc.type_vocab_size', 0)},",
        f"    .scratch_floats = {scratch},",
        "    .tuning = {{{0.chunks_per_thread}, {0.attention_block}, {0.gemm_row_block}}},".format(module_target(module)),
        f"    .ids_offset = {offset.get('input_ids', -1)},",
        f"    .mask_offset = {offset.get('attention_mask', -1)},",
        f"    .types_offset = {offset.get('token_type_ids', -1)},",
        f"    .num_outputs = {len(slots)},",
        "    .outputs = outputs,",
        f"    .num_kernels = {len(e.kernels)},",
        "    .kernels = kernels,",
        f"    .num_ops = {len(ops)},",
        "    .ops = ops,",
        "    .run = model_run,",
        "};",
        "",
    ])
    ctx.outputs["emit-c"] = EmittedC(source, weights, sha, arena, sorted(e.kernels), sorted(set(e.image.missing)))
