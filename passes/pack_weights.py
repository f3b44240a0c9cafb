"""--pack-weights: choose the GEMM tile per linear and mark its weight for packed storage.

Before::

    %2 = "bertc.linear"(%x, %w, %b) {activation = "gelu"} : (tensor<1x8x32xf32>, tensor<64x32xf32>, ...)

After (options, else the tile of the module's ``bertc.target``)::

    %2 = "bertc.linear"(%x, %w, %b) {activation = "gelu", bertc.tile = array<i64: 8, 12, 256>} ...

The weight keeps its logical [N, K] type: ``bertc.tile`` says how emit-c lays it out in
weights.bin (panels of nr columns, K-major inside a panel, the last panel zero-padded; see
runtime/kernels/kernels.h) and which micro-kernel tile the call uses. Only a linear whose weight is
a constant (weight, concat of weights) can be packed ahead of time; others are left alone, and so
is a linear that --prune-patterns made sparse (emit-c stores its kept blocks instead; with dtype=i8 it gets
``bertc.weight_dtype = "i8"`` alone: int8 blocks).

With ``dtype=f16`` (``bertc compile --dtype fp16``: the module's ``bertc.dtype``) the packed
weights are stored as IEEE half floats, ``bertc.weight_dtype = "f16"``, and the GEMM runs on the
target's FP16 arithmetic; activations, bias and residual stay fp32. With ``dtype=i8`` (``--dtype int8``)
they are stored as int8 with a scale per output feature, ``bertc.weight_dtype = "i8"``, and the GEMM
quantizes its input per row at run time (kernels.h, bertc_linear_packed_i8); or, where the module's
``bertc.act_scales`` (``--calibrate``: bertc/int8_scales.py) holds a scale for each weight the linear is made
of, with the largest of them, ``bertc.x_scale`` (static)::

    module attributes {bertc.act_scales = {"l0.q.weight" = 5.0e-02 : f32, "l0.k.weight" = 4.0e-02 : f32}, ...}
    %2 = "bertc.linear"(%x, %qk, %b) {bertc.weight_dtype = "i8", bertc.x_scale = 5.0e-02 : f32, ...}

Where the target's int8 kernel needs weights narrower than [-127, 127] (AVX2 without VNNI: targets.py's
AVX2_I8_TILE), the int8 linear also carries ``bertc.qmax = 63 : i32``, and emit-c quantizes its weight to it.

Options: ``pack-weights{mr=8 nr=12 kc=256 dtype=f32}`` (dtype f32, f16 or i8); each defaults to the target's / module's value.
"""

from __future__ import annotations

from bertc.dialects import bertc as B
from torch_mlir import ir

from bertc.errors import BertcError

from .common import PassContext, func_ops, module_target, producer, sparsity, weight_names


def _target_tile(module: ir.Operation, dtype: str) -> tuple[int, int, int]:
    target = module_target(module)
    t = {"f32": target.tile, "f16": target.fp16_tile, "i8": target.int8_tile}[dtype]
    if t is None:
        raise BertcError(f"--pack-weights dtype={dtype}: target '{target.name}' has no {dtype} kernels; use f32")
    return t.mr, t.nr, t.kc


def _option_tile(ctx: PassContext, default: tuple[int, int, int]) -> tuple[int, int, int]:
    opts = ctx.options.get("pack-weights", {})
    unknown = set(opts) - {"mr", "nr", "kc", "dtype"}
    if unknown:
        raise BertcError(f"--pack-weights has no option {sorted(unknown)}; it takes mr, nr, kc, dtype")
    tile = []
    for key, value in zip(("mr", "nr", "kc"), default):
        v = opts.get(key, str(value))
        top = 16 if key == "mr" else 4096  # kernels.h: the scratch packs at most 16 rows of x
        if not v.isdigit() or not 1 <= int(v) <= top:
            raise BertcError(f"--pack-weights {key}={v}: expected an integer in 1..{top}")
        tile.append(int(v))
    return tile[0], tile[1], tile[2]


def _weight_dtype(module: ir.Operation, ctx: PassContext) -> str:
    default = module.attributes["bertc.dtype"].value if "bertc.dtype" in module.attributes else "f32"
    dtype = ctx.options.get("pack-weights", {}).get("dtype", default)
    if dtype not in ("f32", "f16", "i8"):
        raise BertcError(f"--pack-weights dtype={dtype}: expected f32, f16 or i8")
    return dtype


def pack_weights(module: ir.Operation, ctx: PassContext) -> None:
    dtype = _weight_dtype(module, ctx)
    tile = _option_tile(ctx, _target_tile(module, dtype))
    attr = ir.DenseI64ArrayAttr.get(list(tile))
    qmax = getattr(module_target(module).int8_tile, "qmax", 127) if dtype == "i8" else 127
    scales = ir.DictAttr(module.attributes["bertc.act_scales"]) if "bertc.act_scales" in module.attributes else {}
    for op in func_ops(module):
        if not isinstance(op, B.LinearOp):
            continue
        if (sparsity(op) or {}).get("format") == "sparse":  # laid out by emit-c as blocks (--prune-patterns)
            if dtype == "i8":  # int8 blocks, bertc_linear_sparse_i8 (no tile: the blocks are its layout)
                op.attributes["bertc.weight_dtype"] = ir.StringAttr.get(dtype)
                if qmax != 127:  # 7-bit: AVX2 without VNNI runs them in groups of 4 on VPMADDUBSW
                    op.attributes["bertc.qmax"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(32), qmax)
            continue
        w = producer(op.operands[1])
        if w is not None and B.category_of(w) == "constant":
            op.attributes["bertc.tile"] = attr
            if dtype != "f32":
                op.attributes["bertc.weight_dtype"] = ir.StringAttr.get(dtype)
            if qmax != 127:  # the target's int8 kernel reads narrower weights (AVX2 without VNNI: 63)
                op.attributes["bertc.qmax"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(32), qmax)
            names = weight_names(op.operands[1])
            if dtype == "i8" and names and all(n in scales for n in names):
                s = max(ir.FloatAttr(scales[n]).value for n in names)
                op.attributes["bertc.x_scale"] = ir.FloatAttr.get(ir.F32Type.get(), s)
