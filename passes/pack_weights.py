"""--pack-weights: choose the GEMM tile per linear and mark its weight for packed storage.

Before::

    %2 = "bertc.linear"(%x, %w, %b) {activation = "gelu"} : (tensor<1x8x32xf32>, tensor<64x32xf32>, ...)

After (options, else the tile of the module's ``bertc.target``)::

    %2 = "bertc.linear"(%x, %w, %b) {activation = "gelu", bertc.tile = array<i64: 8, 12, 256>} ...

The weight keeps its logical [N, K] type: ``bertc.tile`` says how emit-c lays it out in
weights.bin (panels of nr columns, K-major inside a panel, the last panel zero-padded; see
runtime/kernels/kernels.h) and which micro-kernel tile the call uses. Only a linear whose weight is
a constant (weight, concat of weights) can be packed ahead of time; others are left alone.

Options: ``pack-weights{mr=8 nr=12 kc=256}``; each defaults to the target's value.
"""

from __future__ import annotations

from torch_mlir import ir

from .common import PassContext, func_ops, producer

CONSTANT_OPS = ("bertc.weight", "bertc.constant", "bertc.concat")


def _target_tile(module: ir.Operation) -> tuple[int, int, int]:
    from bertc.targets import get_target

    name = module.attributes["bertc.target"].value if "bertc.target" in module.attributes else "host"
    t = get_target(name).tile
    return t.mr, t.nr, t.kc


def _option_tile(ctx: PassContext, default: tuple[int, int, int]) -> tuple[int, int, int]:
    from bertc.errors import BertcError

    opts = ctx.options.get("pack-weights", {})
    unknown = set(opts) - {"mr", "nr", "kc"}
    if unknown:
        raise BertcError(f"--pack-weights has no option {sorted(unknown)}; it takes mr, nr, kc")
    tile = []
    for key, value in zip(("mr", "nr", "kc"), default):
        v = opts.get(key, str(value))
        top = 16 if key == "mr" else 4096  # kernels.h: the scratch packs at most 16 rows of x
        if not v.isdigit() or not 1 <= int(v) <= top:
            raise BertcError(f"--pack-weights {key}={v}: expected an integer in 1..{top}")
        tile.append(int(v))
    return tile[0], tile[1], tile[2]


def pack_weights(module: ir.Operation, ctx: PassContext) -> None:
    tile = _option_tile(ctx, _target_tile(module))
    attr = ir.DenseI64ArrayAttr.get(list(tile))
    for op in func_ops(module):
        if op.operation.name != "bertc.linear":
            continue
        w = producer(op.operands[1])
        if w is not None and w.operation.name in CONSTANT_OPS:
            op.attributes["bertc.tile"] = attr
