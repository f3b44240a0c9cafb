"""--raise-torch: torch dialect (from torch-mlir's FX importer) to bertc ops on builtin tensors.

Before::

    %w = "bertc.weight"() {name = "encoder.layer.0.attention.self.query.weight"} : () -> !torch.vtensor<[32,32],f32>
    %q = torch.aten.linear %x, %w, %b : ... -> !torch.vtensor<[1,8,32],f32>
    %r = torch.aten.view %q, %shape : ... -> !torch.vtensor<[1,8,2,16],f32>

After::

    %w = "bertc.weight"() {name = "encoder.layer.0.attention.self.query.weight"} : () -> tensor<32x32xf32>
    %q = "bertc.linear"(%x, %w, %b) {activation = "none", ...} : (...) -> tensor<1x8x32xf32>
    %r = "bertc.reshape"(%q) : (tensor<1x8x32xf32>) -> tensor<1x8x2x16xf32>

The function is rebuilt op by op; each torch op has one small handler in ``HANDLERS``. An op
without a handler is an error naming the op and the model source line it came from.
scaled_dot_product_attention is raised to its eager form (matmul, scale, bias, softmax,
matmul), so that fuse-attention has one form to recognise.

A dynamic dimension (a model exported with a ``torch.export.Dim`` on the sequence) stays dynamic:
``!torch.vtensor<[1,?],si64>`` becomes ``tensor<1x?xi64>``, and ``torch.aten.size.int`` of it is a
``RunTimeSize`` that only shape arguments may take (the position ids' ``slice(table, 1, 0, L)``
becomes ``"bertc.slice"(%table) {start = 0} -> tensor<1x?xi64>``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from bertc.dialects import bertc as B
from torch_mlir import ir
from torch_mlir.dialects import func

from bertc.errors import BertcError

from .common import PassContext, erase_dead, is_op, producer, shape_of, source_location, tensor_type

_TORCH_DTYPES = {"f32": "f32", "si64": "i64", "i64": "i64", "si32": "i32", "i1": "i1", "ui8": "i1"}


def convert_type(t: ir.Type) -> ir.Type:
    s = str(t)
    m = re.fullmatch(r"!torch\.vtensor<\[([-\d,?]*)\],(\w+)>", s)
    if not m:
        if s.startswith("tensor<"):
            return t
        raise BertcError(f"cannot raise type {s}: bertc needs ranked tensors (torch.export gives them)")
    dims = [B.DYNAMIC if d == "?" else int(d) for d in m.group(1).split(",") if d]
    if m.group(2) not in _TORCH_DTYPES:
        raise BertcError(f"element type {m.group(2)} is not supported (bertc compiles fp32 models)")
    return tensor_type(dims, _TORCH_DTYPES[m.group(2)])


@dataclass(frozen=True)
class RunTimeSize:
    """``torch.aten.size.int`` of a dynamic dimension: known only at run time, so only handlers that
    read sizes from result types (slice's end, view's shape list) may take it."""

    of: ir.Value
    dim: int


class Raiser:
    """Walks one torch-dialect function and builds its bertc twin."""

    def __init__(self) -> None:
        self.values: dict[Any, Any] = {}  # old ir.Value -> new ir.Value or Python constant

    # -- helpers used by the handlers
    def get(self, v: ir.Value) -> Any:
        return self.values[v]

    def const(self, value: float, like: ir.Value | None = None) -> ir.Value:
        dtype = "f32" if like is None else str(ir.RankedTensorType(like.type).element_type)
        np_dtype = {"f32": np.float32, "i64": np.int64, "i1": np.bool_}.get(dtype, np.float32)
        attr = ir.DenseElementsAttr.get(np.array(value, dtype=np_dtype), type=tensor_type([], dtype).element_type)
        return B.ConstantOp(attr, tensor_type([], dtype)).out

    def operand(self, v: Any, like: ir.Value) -> ir.Value:
        return v if isinstance(v, ir.Value) else self.const(v, like)

    def run(self, old: func.FuncOp) -> func.FuncOp:
        arg_types = [convert_type(a.type) for a in old.arguments]
        res_types = [convert_type(t) for t in old.type.results]
        new = func.FuncOp(old.name.value, (arg_types, res_types))
        for i in range(len(old.attributes)):
            named = old.attributes[i]
            if named.name.startswith("bertc."):
                new.attributes[named.name] = named.attr
        block = new.add_entry_block()
        for a, b in zip(old.arguments, block.arguments):
            self.values[a] = b
        with ir.InsertionPoint(block):
            for op in old.entry_block.operations:
                name = op.operation.name
                handler = HANDLERS.get(name)
                if name == "torch.operator":
                    handler = HANDLERS.get("torch.operator:" + op.attributes["name"].value)
                if handler is None:
                    shown = name if name != "torch.operator" else op.attributes["name"].value
                    raise BertcError(f"unsupported op '{shown}' at {source_location(op)}: bertc has no lowering "
                                     "for it yet; please report it with the model you compiled")
                with op.location:
                    out = handler(self, op)
                if name == "func.return":
                    continue
                if len(op.results) == 1:
                    self.values[op.results[0]] = out
                elif len(op.results) > 1:  # prim.ListUnpack: one value per result
                    self.values.update(zip(op.results, out))
        return new


def _result_type(op) -> ir.Type:
    return convert_type(op.results[0].type)


def _constant(r: Raiser, op):
    if "value" not in op.attributes:
        return None
    a = op.attributes["value"]
    if isinstance(a, ir.IntegerAttr):
        return a.value
    if isinstance(a, ir.FloatAttr):
        return a.value
    if isinstance(a, ir.BoolAttr):
        return a.value
    if isinstance(a, ir.StringAttr):
        return a.value
    return str(a)


def _literal(r: Raiser, op):
    attr, rtype = ir.DenseElementsAttr(op.attributes["value"]), _result_type(op)
    if attr.type != rtype:  # torch literals of integers are signed (si64); bertc's are signless
        values = np.full(rtype.shape, attr.get_splat_value().value) if attr.is_splat else np.array(attr)
        attr = ir.DenseElementsAttr.get(values.astype(np.int64 if "i64" in str(rtype) else values.dtype), type=rtype)
    return B.ConstantOp(attr, rtype).out


def _weight(r: Raiser, op):
    return B.WeightOp(op.attributes["name"], _result_type(op)).out


def _size(r: Raiser, op):
    x, dim = r.get(op.operands[0]), r.get(op.operands[1])
    s = shape_of(x)
    dim %= len(s)
    return RunTimeSize(x, dim) if s[dim] == B.DYNAMIC else s[dim]


def _list(r: Raiser, op):
    return [r.get(v) for v in op.operands]


def _identity(r: Raiser, op):
    return r.get(op.operands[0])


def _dropout(r: Raiser, op):
    if r.get(op.operands[2]):
        raise BertcError("dropout in training mode: call model.eval() before compiling")
    return r.get(op.operands[0])


def _to_dtype(r: Raiser, op):
    return _converted(r.get(op.operands[0]), _result_type(op), op)


def _converted(x: ir.Value, to: ir.Type, op) -> ir.Value:
    """x in ``to``'s element type: as it is, or an i64 tensor (a mask, ids) as f32 through bertc.cast."""
    have, want = (str(ir.RankedTensorType(t).element_type) for t in (x.type, to))
    if have == want:
        return x
    if (have, want) != ("i64", "f32"):
        raise BertcError(f"dtype conversion {x.type} -> {to} at {source_location(op)} is not supported (bertc "
                         "converts i64 to f32 only: a mask or ids used as numbers)")
    return B.CastOp(x, tensor_type(shape_of(x), "f32")).out


def _to_dtype_layout(r: Raiser, op):
    # ERNIE's ``inputs_embeds.to(device)``: dtype, layout, device, pin_memory, non_blocking, copy, memory_format
    layout, memory_format = r.get(op.operands[2]), r.get(op.operands[7])
    if layout not in (None, 0) or memory_format not in (None, 0, 1):  # strided; contiguous or preserve
        raise BertcError(f"conversion to layout {layout} / memory format {memory_format} at {source_location(op)} "
                         "is not supported: bertc tensors are dense and row-major")
    return _to_dtype(r, op)


def _embedding(r: Raiser, op):
    return B.EmbeddingOp(r.get(op.operands[0]), r.get(op.operands[1]), _result_type(op)).out


def _binary(kind: type, scalar_alpha: bool = True) -> Callable:
    def handler(r: Raiser, op):
        a, b = r.get(op.operands[0]), r.get(op.operands[1])
        if scalar_alpha and len(op.operands) > 2 and r.get(op.operands[2]) not in (1, 1.0, None):
            raise BertcError(f"{op.operation.name} with alpha != 1 at {source_location(op)} is not supported")
        out = _result_type(op)  # torch promotes an i64 tensor beside a float one (ESM's embeddings * mask)
        a, b = (_converted(v, out, op) if isinstance(v, ir.Value) else v for v in (a, b))
        like = a if isinstance(a, ir.Value) else b
        return kind(r.operand(a, like), r.operand(b, like), out).out

    return handler


def _rsub(r: Raiser, op):
    a, b = r.get(op.operands[0]), r.get(op.operands[1])
    return B.SubOp(r.operand(b, a), a, _result_type(op)).out


def _linear(r: Raiser, op):
    x, w = r.get(op.operands[0]), r.get(op.operands[1])
    b = r.get(op.operands[2]) if len(op.operands) > 2 else None
    return B.LinearOp(x, w, ir.StringAttr.get("none"), _result_type(op), bias=b if isinstance(b, ir.Value) else None).out


def _layer_norm(r: Raiser, op):
    x, norm_shape, g, b, eps = (r.get(v) for v in op.operands[:5])
    n = shape_of(x)[-1]
    if list(norm_shape) != [n]:
        raise BertcError(f"layer_norm over {norm_shape} at {source_location(op)}: only the last dimension is supported")
    g = g if isinstance(g, ir.Value) else B.ConstantOp(ir.DenseElementsAttr.get(np.ones(n, np.float32)), tensor_type([n])).out
    b = b if isinstance(b, ir.Value) else B.ConstantOp(ir.DenseElementsAttr.get(np.zeros(n, np.float32)), tensor_type([n])).out
    return B.LayerNormOp(x, g, b, ir.FloatAttr.get_f32(eps), _result_type(op)).out


def _rms_norm(r: Raiser, op):
    x, norm_shape, g, eps = (r.get(v) for v in op.operands[:4])
    n = shape_of(x)[-1]
    if list(norm_shape) != [n]:
        raise BertcError(f"rms_norm over {norm_shape} at {source_location(op)}: only the last dimension is supported")
    g = g if isinstance(g, ir.Value) else B.ConstantOp(ir.DenseElementsAttr.get(np.ones(n, np.float32)), tensor_type([n])).out
    eps = float(np.finfo(np.float32).eps) if eps is None else eps  # torch's default for an f32 input
    return B.RmsNormOp(x, g, ir.FloatAttr.get_f32(eps), _result_type(op)).out


def _reshape(r: Raiser, op):
    x = r.get(op.operands[0])
    if x.type == _result_type(op):  # sdpa's output arrives through a no-op reshape
        return x
    return B.ReshapeOp(x, _result_type(op)).out


def _transpose(r: Raiser, op):
    x = r.get(op.operands[0])
    rank = len(shape_of(x))
    d0, d1 = (r.get(v) % rank for v in op.operands[1:3])
    perm = list(range(rank))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return B.TransposeOp(x, ir.DenseI64ArrayAttr.get(perm), _result_type(op)).out


def _permute(r: Raiser, op):
    x = r.get(op.operands[0])
    perm = [d % len(shape_of(x)) for d in r.get(op.operands[1])]
    return B.TransposeOp(x, ir.DenseI64ArrayAttr.get(perm), _result_type(op)).out


def _matmul(r: Raiser, op):
    return B.MatmulOp(r.get(op.operands[0]), r.get(op.operands[1]), _result_type(op)).out


def _softmax(r: Raiser, op):
    x = r.get(op.operands[0])
    dim = r.get(op.operands[1])
    if dim % len(shape_of(x)) != len(shape_of(x)) - 1:
        raise BertcError(f"softmax over dim {dim} at {source_location(op)}: only the last dimension is supported")
    return B.SoftmaxOp(x, _result_type(op)).out


def _gelu(r: Raiser, op):
    approx = r.get(op.operands[1]) if len(op.operands) > 1 else "none"
    return B.GeluOp(input=r.get(op.operands[0]), approximate=ir.StringAttr.get(approx), out=_result_type(op)).out


def _unary(kind: type) -> Callable:
    def handler(r: Raiser, op):
        return kind(r.get(op.operands[0]), _result_type(op)).out

    return handler


def _pow(r: Raiser, op):
    return B.PowOp(input=r.get(op.operands[0]), exponent=ir.FloatAttr.get_f32(float(r.get(op.operands[1]))),
                   out=_result_type(op)).out


def _slice(r: Raiser, op):
    x = r.get(op.operands[0])
    dim, start, _end, step = (r.get(v) for v in op.operands[1:5])
    rank_shape = shape_of(x)
    dim %= len(rank_shape)
    if isinstance(start, RunTimeSize) or (rank_shape[dim] == B.DYNAMIC and start is not None and start < 0):
        raise BertcError(f"slice from the end of the run-time length at {source_location(op)} is not supported")
    start = 0 if start is None else (start + rank_shape[dim] if start < 0 else start)
    if step not in (1, None):
        raise BertcError(f"strided slice (step {step}) at {source_location(op)} is not supported")
    return B.SliceOp(x, ir.IntegerAttr.get(ir.IntegerType.get_signless(64), dim),
                     ir.IntegerAttr.get(ir.IntegerType.get_signless(64),
                                        start if rank_shape[dim] == B.DYNAMIC else min(start, rank_shape[dim])),
                     _result_type(op)).out


def _select(r: Raiser, op):
    x = r.get(op.operands[0])
    dim, index = r.get(op.operands[1]), r.get(op.operands[2])
    s = shape_of(x)
    dim %= len(s)
    if s[dim] != B.DYNAMIC:
        index %= s[dim]
    elif index < 0:
        raise BertcError(f"select from the end of the run-time length at {source_location(op)} is not supported")
    kept = list(s)
    kept[dim] = 1
    i64 = ir.IntegerType.get_signless(64)
    sl = B.SliceOp(x, ir.IntegerAttr.get(i64, dim), ir.IntegerAttr.get(i64, index), tensor_type(kept)).out
    return B.ReshapeOp(sl, _result_type(op)).out


@dataclass(frozen=True)
class Pieces:
    """``unbind`` (``keep_dim`` False) or ``chunk`` of ``of`` along ``dim``: its parts are made when
    ``prim.ListUnpack`` gives their types."""

    of: ir.Value
    dim: int
    keep_dim: bool


def _unbind(r: Raiser, op):
    x = r.get(op.operands[0])
    return Pieces(x, r.get(op.operands[1]) % len(shape_of(x)), False)


def _chunk(r: Raiser, op):
    x = r.get(op.operands[0])
    return Pieces(x, r.get(op.operands[2]) % len(shape_of(x)), True)


def _list_unpack(r: Raiser, op):
    """Each part a ``bertc.slice``. An unbind of rows split by a view (ModernBERT's fused Wqkv: [B,S,3H] viewed
    [B,S,3,n,D], unbound on dim 2) slices the rows themselves, [B,S,H] each, then splits them: the form of three
    projections, which fuse-attention knows."""
    pieces = r.get(op.operands[0])
    if not isinstance(pieces, Pieces):
        raise BertcError(f"prim.ListUnpack of {type(pieces).__name__} at {source_location(op)} is not supported")
    x, dim, i64 = pieces.of, pieces.dim, ir.IntegerType.get_signless(64)
    shp = shape_of(x)
    src = producer(x).operands[0] if is_op(x, B.ReshapeOp) else None
    rows = src is not None and not pieces.keep_dim and shape_of(src)[:dim] == shp[:dim] \
        and len(shape_of(src)) == dim + 1 and math.prod(shp[dim:]) == shape_of(src)[dim]
    out, start = [], 0
    for res in op.results:
        want = convert_type(res.type)
        if rows:
            width = shape_of(src)[dim] // shp[dim]
            part = B.SliceOp(src, ir.IntegerAttr.get(i64, dim), ir.IntegerAttr.get(i64, start),
                             tensor_type(shape_of(src)[:dim] + [width])).out
        else:
            width = ir.RankedTensorType(want).shape[dim] if pieces.keep_dim else 1
            part = B.SliceOp(x, ir.IntegerAttr.get(i64, dim), ir.IntegerAttr.get(i64, start),
                             tensor_type(shp[:dim] + [width] + shp[dim + 1:])).out
        out.append(part if part.type == want else B.ReshapeOp(part, want).out)
        start += width
    return out


def _expand(r: Raiser, op):
    x = r.get(op.operands[0])
    if x.type != _result_type(op):
        raise BertcError(f"broadcasting expand {x.type} -> {_result_type(op)} at {source_location(op)} is not supported")
    return x


def _window(r: Raiser, op, at: int) -> ir.IntegerAttr:
    """The mask's local-attention window (canonicalize-inputs' last argument; 0 or absent: none)."""
    window = r.get(op.operands[at]) if len(op.operands) > at else 0
    return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), window or 0)


def _mask_bias(r: Raiser, op):
    fill = r.get(op.operands[2])
    return B.MaskBiasOp(r.get(op.operands[0]), ir.FloatAttr.get_f32(fill), _result_type(op), window=_window(r, op, 3)).out


def _keep_mask(r: Raiser, op):
    # A boolean keep-mask only ever feeds sdpa's attn_mask, which adds -inf where False.
    t = convert_type(op.results[0].type)
    return B.MaskBiasOp(r.get(op.operands[0]), ir.FloatAttr.get_f32(-math.inf), tensor_type(ir.RankedTensorType(t).shape),
                        window=_window(r, op, 2)).out


def _position_ids(r: Raiser, op):
    pad = r.get(op.operands[1])
    return B.PositionIdsOp(r.get(op.operands[0]), ir.IntegerAttr.get(ir.IntegerType.get_signless(64), pad), _result_type(op)).out


def _token_dropout(r: Raiser, op):
    ids, mask, token, keep = (r.get(v) for v in op.operands)
    return B.TokenDropoutOp(ids, mask, ir.IntegerAttr.get(ir.IntegerType.get_signless(64), token),
                            ir.FloatAttr.get_f32(keep), _result_type(op)).out


def _relative_bias(r: Raiser, op):
    return B.RelativeBiasOp(r.get(op.operands[2]), _result_type(op)).out
def _relative_gather(r: Raiser, op):
    return B.RelativeGatherOp(r.get(op.operands[0]), r.get(op.operands[1]), _result_type(op)).out


def _rotary(r: Raiser, op):
    # bertc.rotary works on rows [B, S, n*D]: the heads [B, n, S, D] are usually a projection's rows split and
    # transposed, which it takes back (fuse-attention then finds the projection); a scalar factor on the heads
    # (ESM scales its queries first) moves past the rotation, which is linear.
    x, cos, sin, interleaved = (r.get(v) for v in op.operands)
    factor = None
    if isinstance(producer(x), B.MulOp) and shape_of(producer(x).operands[1]) == []:
        x, factor = producer(x).operands
    b, n, s, d = shape_of(x)
    t = producer(x)
    if isinstance(t, B.TransposeOp) and list(ir.DenseI64ArrayAttr(t.attributes["perm"])) == [0, 2, 1, 3] \
            and is_op(t.operands[0], B.ReshapeOp) and shape_of(producer(t.operands[0]).operands[0]) == [b, s, n * d]:
        rows = producer(t.operands[0]).operands[0]
    else:
        perm = ir.DenseI64ArrayAttr.get([0, 2, 1, 3])
        rows = B.ReshapeOp(B.TransposeOp(x, perm, tensor_type([b, s, n, d])).out, tensor_type([b, s, n * d])).out
    i64 = ir.IntegerType.get_signless(64)
    rotated = B.RotaryOp(rows, cos, sin, ir.StringAttr.get("interleaved" if interleaved else "halves"),
                         ir.IntegerAttr.get(i64, n * d), rows.type).out
    split = B.ReshapeOp(rotated, tensor_type([b, s, n, d])).out
    heads = B.TransposeOp(split, ir.DenseI64ArrayAttr.get([0, 2, 1, 3]), tensor_type([b, n, s, d])).out
    return heads if factor is None else B.MulOp(heads, factor, heads.type).out


def _trigram(r: Raiser, op):
    return B.TrigramOp(r.get(op.operands[0]), _result_type(op)).out


def _depthwise_conv1d(r: Raiser, op):
    return B.DepthwiseConv1dOp(r.get(op.operands[0]), r.get(op.operands[1]), _result_type(op)).out


def _span_conv(r: Raiser, op):
    return B.SpanConvOp(r.get(op.operands[0]), r.get(op.operands[1]), _result_type(op)).out


def _sdpa(r: Raiser, op):
    q, k, v, mask, dropout, causal, scale = (r.get(x) for x in op.operands[:7])
    if causal:
        raise BertcError(f"causal attention at {source_location(op)}: bertc compiles bidirectional encoders")
    if dropout not in (0, 0.0, None):
        raise BertcError("attention dropout is on: call model.eval() before compiling")
    qs, ks = shape_of(q), shape_of(k)
    if scale is None:
        scale = 1.0 / math.sqrt(qs[-1])
    perm = list(range(len(ks)))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    kt = B.TransposeOp(k, ir.DenseI64ArrayAttr.get(perm), tensor_type([ks[i] for i in perm])).out
    scores_t = tensor_type(qs[:-1] + [ks[-2]])
    s = B.MatmulOp(q, kt, scores_t).out
    s = B.MulOp(s, r.const(scale), scores_t).out
    if isinstance(mask, ir.Value):
        if str(ir.RankedTensorType(mask.type).element_type) != "f32":
            raise BertcError(f"sdpa with a {mask.type} mask at {source_location(op)} is not supported")
        s = B.AddOp(s, mask, scores_t).out
    p = B.SoftmaxOp(s, scores_t).out
    return B.MatmulOp(p, v, _result_type(op)).out


def _return(r: Raiser, op):
    func.ReturnOp([r.get(v) for v in op.operands])


HANDLERS: dict[str, Callable] = {
    "torch.constant.int": _constant,
    "torch.constant.float": _constant,
    "torch.constant.bool": _constant,
    "torch.constant.str": _constant,
    "torch.constant.device": _constant,
    "torch.constant.none": lambda r, op: None,
    "torch.prim.ListConstruct": _list,
    "torch.aten.size.int": _size,
    "torch.vtensor.literal": _literal,
    B.WeightOp.OPERATION_NAME: _weight,  # the frontend puts parameters in as bertc.weight already
    "torch.aten.embedding": _embedding,
    "torch.aten.add.Tensor": _binary(B.AddOp),
    "torch.aten.add.Scalar": _binary(B.AddOp),
    "torch.aten.sub.Tensor": _binary(B.SubOp),
    "torch.aten.sub.Scalar": _binary(B.SubOp),
    "torch.aten.rsub.Scalar": _rsub,
    "torch.aten.mul.Tensor": _binary(B.MulOp, False),
    "torch.aten.mul.Scalar": _binary(B.MulOp, False),
    "torch.operator:torch.aten.multiply.Tensor": _binary(B.MulOp, False),  # ConvBERT spells it out
    "torch.aten.div.Tensor": _binary(B.DivOp, False),
    "torch.aten.div.Scalar": _binary(B.DivOp, False),
    "torch.aten.linear": _linear,
    "torch.aten.layer_norm": _layer_norm,
    "torch.aten.rms_norm": _rms_norm,
    "torch.aten.dropout": _dropout,
    "torch.aten.view": _reshape,
    "torch.aten.reshape": _reshape,
    "torch.aten.unsqueeze": _reshape,
    "torch.aten.squeeze.dim": _reshape,
    "torch.aten.flatten.using_ints": _reshape,
    "torch.aten.transpose.int": _transpose,
    "torch.aten.permute": _permute,
    "torch.aten.contiguous": _identity,
    "torch.aten.clone": _identity,
    "torch.aten.detach": _identity,
    "torch.aten.alias": _identity,
    "torch.aten.to.dtype": _to_dtype,
    "torch.aten.type_as": _to_dtype,
    "torch.aten.to.dtype_layout": _to_dtype_layout,
    "torch.aten.expand": _expand,
    "torch.aten.unbind.int": _unbind,
    "torch.aten.chunk": _chunk,
    "torch.prim.ListUnpack": _list_unpack,
    "torch.aten.matmul": _matmul,
    "torch.aten.bmm": _matmul,
    "torch.aten.softmax.int": _softmax,
    "torch.aten._softmax": _softmax,
    "torch.aten.gelu": _gelu,
    "torch.aten.tanh": _unary(B.TanhOp),
    "torch.aten.relu": _unary(B.ReluOp),
    "torch.aten.silu": _unary(B.SiluOp),
    "torch.aten.pow.Tensor_Scalar": _pow,
    "torch.aten.slice.Tensor": _slice,
    "torch.aten.select.int": _select,
    "torch.aten.scaled_dot_product_attention": _sdpa,
    "torch.operator:torch.bertc.mask_bias": _mask_bias,
    "torch.operator:torch.bertc.keep_mask": _keep_mask,
    "torch.operator:torch.bertc.position_ids": _position_ids,
    "torch.operator:torch.bertc.relative_bias": _relative_bias,
    "torch.operator:torch.bertc.relative_gather": _relative_gather,
    "torch.operator:torch.bertc.rotary": _rotary,
    "torch.operator:torch.bertc.trigram": _trigram,
    "torch.operator:torch.bertc.token_dropout": _token_dropout,
    "torch.operator:torch.bertc.depthwise_conv1d": _depthwise_conv1d,
    "torch.operator:torch.bertc.span_conv": _span_conv,
    "func.return": _return,
}


def raise_torch(module: ir.Operation, ctx: PassContext) -> None:
    block = module.regions[0].blocks[0]
    for old in [op for op in block.operations if op.operation.name == "func.func"]:
        with ir.InsertionPoint(old), old.location:
            Raiser().run(old)
        old.operation.erase()
    erase_dead(module)
