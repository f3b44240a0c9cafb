"""--prune-patterns=SPEC: block / N:M sparsity on linear weights, stored sparse where that is faster.

Before::

    %w = "bertc.weight"() {name = "encoder.layer.0.intermediate.dense.weight"} : () -> tensor<1536x384xf32>
    %h = "bertc.linear"(%x, %w, %b) {activation = "gelu"} : (...) -> tensor<1x128x1536xf32>

After ``--prune-patterns=16x1@0.25``::

    %h = "bertc.linear"(%x, %w, %b) {activation = "gelu", bertc.sparsity = {density = 2.500000e-01 : f64,
           format = "sparse", gain = 2.9 : f64, pattern = "16x1"}} : (...) -> tensor<1x128x1536xf32>

Each constant linear weight the SPEC names (bertc/sparsity.py: the encoder layers' linears by
default, rules per layer or per matrix) is pruned by block magnitude: the weight data the pass
context holds is replaced by the masked copy (a ``bertc.constant`` weight gets a masked value), so
every later pass and the PyTorch comparison see the same numbers. A fused Q|K|V weight is pruned
per projection, each with its own density.

``format`` is the choice: ``"sparse"`` (emit-c stores the kept blocks, block offsets and indices,
and calls ``bertc_linear_sparse``) when the target's sparse kernel for this pattern is faster than
its dense GEMM at this density, by the measured rates in bertc/targets.py (``gain``: dense time
over sparse time); else ``"dense"`` (the zeros stay in the dense packed weights). ``force=1``
keeps every pruned matrix sparse. With ``--dtype int8`` (the module's ``bertc.dtype = "i8"``) the same rule
reads the int8 rates (sparse int8 against dense int8; r x 1 blocks, r = 4, 8, 16, the others refused), and
emit-c stores a sparse matrix as int8 blocks with a scale per output feature (``bertc_linear_sparse_i8``).

Options: ``--prune-patterns=SPEC`` or ``--prune-patterns{spec=SPEC force=1}`` (``{force=1}=SPEC``).
"""

from __future__ import annotations

import numpy as np
from bertc.dialects import bertc as B
from torch_mlir import ir

from bertc.errors import BertcError
from bertc.sparsity import SPEC_HELP, PruneSpec, block_mask, check_int8_pattern, parse_spec

from .common import PassContext, func_ops, module_target, producer, shape_of

DATA_OPS = (B.WeightOp, B.ConstantOp)  # the constant ops that hold the numbers (a concat only joins them)


def _components(w: ir.Value) -> list[ir.OpView] | None:
    """The bertc.weight / bertc.constant ops a linear's weight is made of (rows concatenated), or
    None when it is computed at run time."""
    op = producer(w)
    if isinstance(op, DATA_OPS):
        return [op]
    if isinstance(op, B.ConcatOp) and op.dim.value == 0:
        parts = [producer(v) for v in op.operands]
        if all(isinstance(p, DATA_OPS) for p in parts):
            return parts
    return None


def _weight_name(op: ir.OpView) -> str:
    return op.name.value if isinstance(op, B.WeightOp) else "constant"


def _prune_component(op: ir.OpView, spec: PruneSpec, ctx: PassContext) -> tuple[float, int] | None:
    """Mask one weight in place (store or constant); (kept, total) elements, None when not pruned."""
    density = spec.density_for(_weight_name(op))
    shape = shape_of(op.results[0])
    if density is None:
        return None
    if isinstance(op, B.ConstantOp):
        attr = ir.DenseElementsAttr(op.attributes["value"])
        w = (np.full(shape, attr.get_splat_value().value, np.float32) if attr.is_splat
             else np.array(attr, dtype=np.float32).reshape(shape))
        keep = block_mask(w, spec.pattern, density)
        op.attributes["value"] = ir.DenseElementsAttr.get(np.ascontiguousarray(w * keep), type=op.results[0].type)
        return int(keep.sum()), keep.size
    store = ctx.weights.arrays if ctx.weights is not None else {}
    name = _weight_name(op)
    if name not in store:  # hand-written IR without weight data: decide from the SPEC's density
        return density * int(np.prod(shape)), int(np.prod(shape))
    w = np.asarray(store[name], np.float32).reshape(shape)
    keep = block_mask(w, spec.pattern, density)
    store[name] = w * keep  # a new array: the original may be a PyTorch parameter's memory
    return int(keep.sum()), keep.size


def _options(ctx: PassContext) -> tuple[PruneSpec, bool]:
    opts = ctx.options.get("prune-patterns", {})
    unknown = set(opts) - {"spec", "force"}
    if unknown:
        raise BertcError(f"--prune-patterns has no option {sorted(unknown)}; write --prune-patterns=SPEC "
                         "or --prune-patterns{force=1}=SPEC")
    if "spec" not in opts:
        raise BertcError(f"--prune-patterns needs a SPEC: --prune-patterns=16x1@0.25. {SPEC_HELP}")
    force = opts.get("force", "0")
    if force not in ("0", "1", "true", "false"):
        raise BertcError(f"--prune-patterns force={force}: expected 1 or 0")
    return parse_spec(opts["spec"]), force in ("1", "true")


def prune_patterns(module: ir.Operation, ctx: PassContext) -> None:
    spec, force = _options(ctx)
    dtype = module.attributes["bertc.dtype"].value if "bertc.dtype" in module.attributes else "f32"
    if dtype == "f16":
        raise BertcError("--prune-patterns: the sparse kernels are fp32 and int8; compile with --dtype fp32 "
                         "or int8 (or leave out --prune-patterns)")
    if dtype == "i8":
        check_int8_pattern(spec.pattern)
    target = module_target(module)
    for op in func_ops(module):
        if not isinstance(op, B.LinearOp):
            continue
        parts = _components(op.operands[1])
        if parts is None:
            continue
        counts = [_prune_component(p, spec, ctx) for p in parts]
        if all(c is None for c in counts):
            continue
        sizes = [int(np.prod(shape_of(p.results[0]))) for p in parts]  # an unpruned part keeps everything
        density = sum(c[0] if c else s for c, s in zip(counts, sizes)) / sum(sizes)
        gain = target.sparse_gain(spec.pattern, density, dtype)
        sparse = force or (gain is not None and gain > 1.0)
        attrs = {
            "pattern": ir.StringAttr.get(str(spec.pattern)),
            "density": ir.FloatAttr.get_f64(round(density, 4)),
            "format": ir.StringAttr.get("sparse" if sparse else "dense"),
        }
        if gain is not None:  # none: the target has no measured rate for this pattern
            attrs["gain"] = ir.FloatAttr.get_f64(round(gain, 2))
        op.attributes["bertc.sparsity"] = ir.DictAttr.get(attrs)
