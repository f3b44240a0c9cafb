"""What the backends (--emit-c, --emit-vulkan) share: the op walk, the weights image, the program's
inputs and outputs, and the shape arithmetic their kernels take.

A backend is a table and a render step (one renderer per backend, as in tinygrad)::

    EMITTERS = {"bertc.softmax": emit_softmax, ...}  # op name -> small function (backend, op) -> its code
    e = CEmitter(module, ctx)                          # a Codegen: arena offsets and the weights image
    for op, call in e.walk(EMITTERS, "kernel"): ...    # the kernel ops in order (constants and views have none)
    header = e.header(ops)                             # weights.bin, its sha256, the input and output slots
    program_header_fields(header, after={...})         # the fields every program struct starts with

Constants (weights, literals, their concatenations, and the layouts the kernels read them in) are
folded in numpy into weights.bin, 64-byte aligned; its sha256 is compiled into the program so the
runtime refuses weights that are not the ones the code was built for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from bertc.dialects import bertc as B
from torch_mlir import ir

from bertc.artifact import FORMAT_VERSION  # the runtime refuses a program of any other version
from bertc.errors import BertcError
from bertc.sparsity import compress

from .common import PassContext, dtype_of, func_ops, producer, shape_of, source_location
from .seqlen import Len, Size, bound, dims_of, max_seq_len, prod


def op_label(op) -> str:
    """'bertc.linear [1, 8, 64]': how the program names an op in its per-op report ('[1, ?, 64]' where
    the size is the run's length)."""
    if not op.results:
        return op.operation.name
    dims = ", ".join("?" if isinstance(d, Len) else str(d) for d in dims_of(op.results[0]))
    return f"{op.operation.name} [{dims}]"


class WeightsImage:
    """Folds constant values to numpy and packs them, 64-byte aligned, deduplicated."""

    def __init__(self, store) -> None:
        self.store = store
        self.blob = bytearray()
        self.offsets: dict = {}
        self.missing: list[str] = []

    def fold(self, value: ir.Value) -> np.ndarray:
        op = producer(value)
        dt = {"f32": np.float32, "i64": np.int64}.get(dtype_of(value), np.float32)
        if isinstance(op, B.WeightOp):
            key = op.attributes["name"].value
            arrays = self.store.arrays if self.store is not None else {}
            if key not in arrays:
                self.missing.append(key)
                return np.zeros(shape_of(value), dt)
            return np.asarray(arrays[key], dtype=dt).reshape(shape_of(value))
        if isinstance(op, B.ConstantOp):
            attr = ir.DenseElementsAttr(op.attributes["value"])
            if attr.is_splat:
                return np.full(shape_of(value), np.array(attr.get_splat_value().value), dt)
            return np.array(attr, dtype=dt).reshape(shape_of(value))
        if isinstance(op, B.ConcatOp):
            return np.concatenate([self.fold(v) for v in op.operands], axis=op.attributes["dim"].value)
        if B.category_of(op) == "view":
            return self.fold(op.operands[0]).reshape(shape_of(value))
        raise BertcError(f"{op.operation.name} is not a constant")

    def place(self, value: ir.Value, layout: str = "as-is") -> int:
        op = producer(value)  # a weight read in several places (a rotary table in every layer) is stored once
        key = (op.attributes["name"].value, str(value.type), layout) if isinstance(op, B.WeightOp) else (value, layout)
        if key not in self.offsets:
            arr = self.fold(value)
            if layout in ("kn", "kn:f16"):  # linear weights [N, K] -> [K, N]: the GEMM streams rows of N
                arr = arr.T.astype(np.float16) if layout == "kn:f16" else arr.T  # (half floats: emit-vulkan)
            elif layout in ("kn:i8", "scales:i8"):  # emit-vulkan's int8: q [K, N] bytes and the scales [N], both
                q, scale = quantize_int8(arr)  # placed at once (the shader reads both): one quantization
                for part, a in (("kn:i8", q.T), ("scales:i8", scale)):
                    self.offsets[key[:-1] + (part,)] = self.append(a)
                return self.offsets[key]
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

    def place_int8(self, value: ir.Value, nr: int, qmax: int = 127) -> tuple[int, int, int]:
        """A linear weight as kernels.h's bertc_qweight: the image offsets of the int8 panels, the scales and
        the column sums, quantized to [-qmax, qmax]."""
        key = (value, f"int8:{nr}:{qmax}")
        if key not in self.offsets:
            q, scale = quantize_int8(self.fold(value), qmax)
            n, k = q.shape
            kq = -(-k // 4) * 4
            panels = np.zeros((-(-n // nr) * nr, kq), np.int8)
            panels[:n, :k] = q  # [p, nr, kq/4, 4] -> [p, kq/4, nr, 4]: K in groups of four inside each panel
            panels = panels.reshape(-1, nr, kq // 4, 4).transpose(0, 2, 1, 3)
            self.offsets[key] = (self.append(panels), self.append(scale),
                                 self.append(q.sum(axis=1, dtype=np.int32)))
        return self.offsets[key]

    def place_sparse(self, value: ir.Value, r: int, c: int, int8: bool = False, qmax: int = 127, group: int = 1) -> tuple:
        """A pruned weight as kernels.h's bertc_block_sparse: (r, c, block rows, and the image offsets of
        the block offsets, the indices and the values). ``int8``: bertc_block_sparse_i8, quantized per output
        feature to [-qmax, qmax] first (the pruned weights are zeros, so the scale is the kept ones'), and the
        offsets of the scales and the column sums after, and the ``group`` (sparsity.int8_block_group; group_blocks)."""
        key = (value, f"sparse{':i8' * int8}:{r}:{c}:{qmax}:{group}")
        if key not in self.offsets:
            w, scale = quantize_int8(self.fold(value), qmax) if int8 else (self.fold(value), None)
            s = compress(w, r, c)  # (float32 holds int8 exactly; a block rounded to zeros is dropped)
            offsets, index, values = group_blocks(s, group) if group > 1 else (s.offsets, s.index, s.values)
            self.offsets[key] = (r, c, s.offsets.size - 1, self.append(offsets), self.append(index),
                                 self.append(values.astype(np.int8) if int8 else values),
                                 *((self.append(scale), self.append(w.sum(axis=1, dtype=np.int32)), group)
                                   if int8 else ()))
        return self.offsets[key]


def group_blocks(s, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kernels.h's bertc_block_sparse_i8 in groups: r x 1 blocks ``s`` (sparsity.compress) with each block row's
    blocks padded with zero blocks (at its last block's column) to a multiple of ``group``, and each ``group`` of
    them interleaved per output, block b's weight j at values[(b // group * r + j) * group + b % group]: the offsets,
    the indices and the values."""
    counts = np.diff(s.offsets)
    offsets = np.concatenate([[0], np.cumsum(-(-counts // group) * group)]).astype(np.int32)
    index = np.zeros(offsets[-1], np.int32)
    values = np.zeros((offsets[-1], s.r), s.values.dtype)
    for i, (a, n) in enumerate(zip(s.offsets[:-1], counts)):
        o = offsets[i]
        index[o:o + n], values[o:o + n] = s.index[a:a + n], s.values[a:a + n].reshape(n, s.r)
        index[o + n:offsets[i + 1]] = s.index[a + n - 1] if n else 0
    return offsets, index, values.reshape(-1, group, s.r).transpose(0, 2, 1).reshape(-1)


def quantize_int8(w: np.ndarray, qmax: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """W[N, K] ~ scale[n] * q[n, k]: symmetric int8 per output feature (q in [-qmax, qmax], rounded half to
    even; a zero row has scale 0), as kernels.h's bertc_qweight holds it."""
    amax = np.abs(w).max(axis=1).astype(np.float32)
    inv = np.divide(np.float32(qmax), amax, out=np.zeros_like(amax), where=amax > 0)
    q = np.clip(np.rint(w.astype(np.float32) * inv[:, None]), -qmax, qmax).astype(np.int8)
    return q, (amax / np.float32(qmax)).astype(np.float32)


@dataclass(frozen=True)
class ProgramHeader:
    """What every backend's program struct starts with (runtime/src/program.h): the arena, the weights
    image, the shapes, where the inputs go and where the outputs are read."""

    arena_bytes: int
    weights: bytes  # weights.bin
    weights_sha256: str
    batch: int
    seq_len: int  # the compiled length; of a dynamic program, its bound N (it runs every length 1..N)
    vocab_size: int
    type_vocab_size: int
    input_offsets: dict[str, int]  # input name -> arena offset
    # one bertc_tensor_slot initialiser per output: {"name", arena offset, rank, {dims}}, and of a dynamic
    # program the dimension that is the run's length: {"name", offset, rank, {dims at the bound}, seq_dim}
    outputs: list[str]
    ops: list[tuple[str, str]]  # each op's label and what runs it (a C kernel, a shader), for the per-op report
    dynamic: bool = False  # sizes are expressions in the run's length L (1 <= L <= seq_len): --max-seq-len


class Codegen:
    """A backend's state while it walks the one function of a planned module: where each value's bytes
    are (the arena offsets --plan-memory chose, or the weights image) and the image itself. Backends
    subclass it with how they name an operand (a C pointer, a word offset in the device buffer)."""

    def __init__(self, module: ir.Operation, ctx: PassContext, pass_name: str) -> None:
        funcs = [f for f in module.regions[0].blocks[0].operations if f.operation.name == "func.func"]
        if len(funcs) != 1:
            raise BertcError(f"{pass_name} expects one function, found {len(funcs)}")
        if "bertc.arena_bytes" not in module.attributes:
            raise BertcError(f"{pass_name} needs --plan-memory first (no bertc.arena_bytes on the module)")
        self.module, self.func, self.pass_name = module, funcs[0], pass_name
        self.args = list(self.func.regions[0].blocks[0].arguments)
        self.arena: dict = dict(zip(self.args, ir.DenseI64ArrayAttr(self.func.attributes["bertc.arg_offsets"])))
        self.arena_bytes = module.attributes["bertc.arena_bytes"].value
        self.image = WeightsImage(ctx.weights)

    def locate(self, value: ir.Value, layout: str = "as-is") -> tuple[str, int]:
        """("arena", byte offset) or ("weights", byte offset in weights.bin): a view's bytes are its
        input's, and a constant is folded into the image, in ``layout``, the first time it is asked for."""
        if value in self.arena:
            return "arena", self.arena[value]
        p = producer(value)
        kind = B.category_of(p) if p is not None else None
        if kind == "view":
            return self.locate(p.operands[0], layout)
        if kind == "constant":
            return "weights", self.image.place(value, layout)
        raise BertcError(f"no storage for {value}: run --plan-memory before --{self.pass_name}")

    def walk(self, table: dict[str, Callable[[Any, ir.OpView], Any]], what: str) -> Iterator[tuple[ir.OpView, Any]]:
        """Each kernel op in program order, with what its function in ``table`` made of it. Constants live
        in weights.bin and views alias their input, so neither has code of its own; an op missing from
        the table is named with its place in the model's source (``what`` the backend would have run)."""
        for op in func_ops(self.module):
            name = op.operation.name
            if "bertc.offset" in op.attributes:
                self.arena[op.results[0]] = op.attributes["bertc.offset"].value
            if name == "func.return" or B.category_of(op) in ("constant", "view"):
                continue
            emit = table.get(name)
            if emit is None:
                raise BertcError(f"{self.pass_name} has no {what} for '{name}' at {source_location(op)}")
            yield op, emit(self, op)

    def header(self, ops: list[tuple[str, str]]) -> ProgramHeader:
        """The program header, once the walk has placed every weight and given every op its offset."""
        f, args = self.func, self.args
        ret = list(func_ops(self.module))[-1]
        input_names = _names(f, "bertc.input_names", ["input_ids", "attention_mask", "token_type_ids"][: len(args)])
        output_names = _names(f, "bertc.output_names", [f"output_{i}" for i in range(len(ret.operands))])
        dynamic = max_seq_len(self.module) is not None
        slots = []
        for nm, v in zip(output_names, ret.operands):
            if _storage(v) not in self.arena:
                raise BertcError(f"output {nm} is a constant; nothing to compute")
            s = dims_of(v)
            dims = ", ".join(str(bound(d, self.module)) for d in s + [0] * (4 - len(s)))
            seq_dim = f", {_seq_dim(nm, s)}" if dynamic else ""
            slots.append(f'{{"{nm}", {self.arena[_storage(v)]}, {len(s)}, {{{dims}}}{seq_dim}}}')
        b, s = (dims_of(args[0]) + [1, 1])[:2] if args else (1, 1)
        weights = bytes(self.image.blob)
        return ProgramHeader(self.arena_bytes, weights, hashlib.sha256(weights).hexdigest(), b,
                             bound(s, self.module), _int_attr(f, "bertc.vocab_size", 1 << 30),
                             _int_attr(f, "bertc.type_vocab_size", 0),
                             {n: self.arena[a] for n, a in zip(input_names, args)}, slots, ops, dynamic)

    def missing_weights(self) -> list[str]:
        return sorted(set(self.image.missing))


def program_header_fields(h: ProgramHeader, after: dict[str, list[str]] | None = None) -> list[str]:
    """The designated initialisers of the fields both program structs share, one line each; a backend's
    own fields go ``after`` the shared field they follow (``{"arena_bytes": ["    .weights_offset = 128,"]}``)."""
    fields = [("format_version", FORMAT_VERSION), ("arena_bytes", h.arena_bytes), ("weights_bytes", len(h.weights)),
              ("weights_sha256", f'"{h.weights_sha256}"'), ("batch", h.batch), ("seq_len", h.seq_len),
              ("vocab_size", h.vocab_size), ("type_vocab_size", h.type_vocab_size),
              ("ids_offset", h.input_offsets.get("input_ids", -1)),
              ("mask_offset", h.input_offsets.get("attention_mask", -1)),
              ("types_offset", h.input_offsets.get("token_type_ids", -1)),
              ("num_outputs", len(h.outputs)), ("outputs", "outputs"), ("num_ops", len(h.ops)), ("ops", "ops")]
    if h.dynamic:  # a static program leaves it 0, and its source as it was before dynamic lengths
        fields.insert(fields.index(("seq_len", h.seq_len)) + 1, ("dynamic", 1))
    after = after or {}
    assert not set(after) - {name for name, _ in fields}, f"no shared field {set(after) - dict(fields).keys()}"
    lines = []
    for name, value in fields:
        lines += [f"    .header.{name} = {value},", *after.get(name, [])]
    return lines


def outputs_table(h: ProgramHeader) -> list[str]:
    return ["static const bertc_tensor_slot outputs[] = {", *[f"    {slot}," for slot in h.outputs], "};"]


def ops_table(h: ProgramHeader) -> list[str]:
    return ["static const bertc_op_info ops[] = {", *[f'    {{"{label}", "{runner}"}},' for label, runner in h.ops], "};"]


def _seq_dim(name: str, dims: list[Size]) -> int:
    """The dimension of a dynamic program's output that is the run's length (bertc_tensor_slot.seq_dim,
    which the runtime fills in at each run), 0 when none is: dimension 0 is the batch, never the length."""
    at_l = [i for i, d in enumerate(dims) if isinstance(d, Len)]
    if len(at_l) > 1 or (at_l and (dims[at_l[0]] != Len.L or at_l[0] == 0)):
        raise BertcError(f"output {name} has shape {dims}; a dynamic-length output must have the run's length L as "
                         "one dimension after the batch (as [batch, L, hidden]): compile without --max-seq-len")
    return at_l[0] if at_l else 0


def _storage(value: ir.Value) -> ir.Value:
    """The value that owns the arena slot behind a (possibly reshaped) value."""
    p = producer(value)
    return _storage(p.operands[0]) if p is not None and B.category_of(p) == "view" else value


def _names(f, key: str, default: list[str]) -> list[str]:
    if key in f.attributes:
        return [ir.StringAttr(a).value for a in ir.ArrayAttr(f.attributes[key])]
    return default


def _int_attr(op, key: str, default: int) -> int:
    return ir.IntegerAttr(op.attributes[key]).value if key in op.attributes else default


# ---------------------------------------------------------------- the shapes both backends' kernels take
# Each size is an int, or in a module with a dynamic length a passes/seqlen.py Len (a polynomial in the run's
# length L) that the backend renders: C as an expression in L, Vulkan as coefficients the executor evaluates.


def pad4(xs: list[Size], fill: int) -> list[Size]:
    return [fill] * (4 - len(xs)) + list(xs)


def strides(shape: list[Size]) -> list[Size]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def broadcast_strides(shape: list[Size], out_shape: list[Size]) -> list[Size]:
    shape = [1] * (len(out_shape) - len(shape)) + shape
    return [0 if s == 1 and o != 1 else st for s, o, st in zip(shape, out_shape, strides(shape))]


def binary_strides(op) -> tuple[list[Size], list[Size], list[Size]]:
    """(out shape, a's strides, b's strides) of a broadcasting binary op, each padded to rank 4 (the shape
    with 1s, strides with 0s, as are those of broadcast dimensions): what both emitters' binary kernels take."""
    out = dims_of(op.results[0])
    if len(out) > 4:
        raise BertcError(f"{op.operation.name} of rank {len(out)} (at most 4 supported)")
    return (pad4(out, 1), pad4(broadcast_strides(dims_of(op.operands[0]), out), 0),
            pad4(broadcast_strides(dims_of(op.operands[1]), out), 0))


def transpose_strides(op) -> tuple[list[Size], list[Size]]:
    """(out shape padded to rank 4 with 1s, the input's strides in the output's order padded with 0s)
    of a bertc.transpose: out[i] = in[sum(index_i * stride_i)]."""
    x = dims_of(op.operands[0])
    if len(x) > 4:
        raise BertcError("transpose of rank > 4 is not supported")
    st = strides(x)
    return pad4(dims_of(op.results[0]), 1), pad4([st[i] for i in ir.DenseI64ArrayAttr(op.attributes["perm"])], 0)


def matmul_dims(op) -> tuple[Size, Size, Size, Size, Size, Size]:
    """(batch, m, n, k, batch stride of a, of b) of a bertc.matmul: a stride is 0 where that operand is
    broadcast over the batch. Both emitters' matmul kernels take these."""
    a, b, o = dims_of(op.operands[0]), dims_of(op.operands[1]), dims_of(op.results[0])
    batch = prod(o[:-2])

    def batch_stride(s: list[int]) -> int:
        p = prod(s[:-2])
        if p not in (1, batch):
            raise BertcError(f"matmul with partly broadcast batch {s} x {o} is not supported")
        return 0 if p == 1 and batch != 1 else s[-2] * s[-1]

    return batch, a[-2], b[-1], a[-1], batch_stride(a), batch_stride(b)


def slice_dims(op) -> tuple[Size, Size, int, Size, Size]:
    """(outer, the sliced dimension's size, start, kept count, inner elements) of a bertc.slice: the
    input seen as [outer, dim, inner], out[o, i, :] = in[o, start + i, :]."""
    x, o = dims_of(op.operands[0]), dims_of(op.results[0])
    d = op.attributes["dim"].value
    return prod(x[:d]), x[d], op.attributes["start"].value, o[d], prod(x[d + 1:])


def mask_bias_fill(op) -> float:
    """A bertc.mask_bias's fill. Its kernels and shader know padding only: a local window (ModernBERT's sliding
    layers) runs inside the fused bertc.attention, so one left outside it is refused."""
    if op.window.value:
        raise BertcError(f"a sliding-window attention mask (window {op.window.value}) at {op_label(op)} was not fused "
                         "into a bertc.attention, and only that kernel applies the window: fuse-attention did not "
                         "recognise this attention block; please report it with the model you compiled")
    return op.attributes["fill"].value


def position_terms(op) -> tuple[int, int] | None:
    """A bertc.attention's DeBERTa c2p / p2c scores: (W, their positions; R, the span of their [2R - 1] column
    tables), as kernels.h's bertc_disentangled and attention.comp's POSITIONS read them; None without either."""
    scores, index = op.c2p or op.p2c, op.c2p_index or op.p2c_index
    return None if scores is None else (shape_of(scores)[-1], (shape_of(index)[0] + 1) // 2)


ACTIVATION = {B.TanhOp: "tanh", B.ReluOp: "relu", B.SiluOp: "silu"}  # bertc.gelu's depends on ``approximate``


def unary_activation(op) -> str:
    """The activation a bertc.gelu, tanh, relu or silu computes (gelu's ``approximate`` picks erf or tanh)."""
    if isinstance(op, B.GeluOp):
        return "gelu" if op.attributes["approximate"].value == "none" else "gelu_tanh"
    return ACTIVATION[type(op)]
