"""MLIR context set-up and the module attributes the passes read, shared by the driver, the cost
model, bertc-opt and the tests."""

from __future__ import annotations

from typing import Any

from torch_mlir import ir
from torch_mlir._mlir_libs import _mlir
from torch_mlir.dialects import torch as torch_d

from .dialects import bertc as bertc_d

# The bindings look for a Python module of each op's dialect, torch_mlir.dialects.<name> by default; for the bertc
# ops that import failed, again for every op seen (1,580 failed imports to price a 2-layer BERT: 80% of the cost
# model's time, and half of the passes'). bertc.dialects.bertc is that module.
_mlir.globals.append_dialect_search_prefix("bertc.dialects")


def make_context() -> ir.Context:
    """A context with the torch and bertc dialects loaded."""
    ctx = ir.Context()
    torch_d.register_dialect(ctx)
    with ctx:
        bertc_d.load()
    return ctx


def set_weight_dtype(module: ir.Module, dtype: str) -> None:
    """The module's GEMM weight type (``bertc.dtype``, which pack-weights reads) for --dtype fp32 | fp16 | int8."""
    module.operation.attributes["bertc.dtype"] = ir.StringAttr.get({"fp16": "f16", "int8": "i8"}.get(dtype, "f32"))


def annotate(module: ir.Module, loaded: Any, target: str, dtype: str | None = None,
             act_scales: dict[str, float] | None = None) -> None:
    """Stamp an imported program with what the passes read besides its ops: on the function, the
    program's input and output names and vocabulary sizes (from the frontend's LoadedModel or an
    IRProgram); on the module, the target (``bertc.target``: the ISA and tile) and, when given, the
    GEMM weights' dtype ("fp32" | "fp16" | "int8"; pack-weights reads f32 when it is absent) and, for a program
    whose length is dynamic (``loaded.max_seq_len``), its bound ``bertc.max_seq_len``: what --plan-memory
    lays the arena out for and the longest run the program takes; ``act_scales`` (--calibrate): the static int8
    input scale of the linear reading each named weight, ``bertc.act_scales``. Call inside the module's context."""
    f = next(op for op in module.body.operations if op.operation.name == "func.func")
    strs = lambda xs: ir.ArrayAttr.get([ir.StringAttr.get(x) for x in xs])
    i64 = ir.IntegerType.get_signless(64)
    f.attributes["bertc.input_names"] = strs(loaded.input_names)
    f.attributes["bertc.output_names"] = strs(loaded.output_names)
    f.attributes["bertc.vocab_size"] = ir.IntegerAttr.get(i64, loaded.vocab_size)
    f.attributes["bertc.type_vocab_size"] = ir.IntegerAttr.get(i64, max(loaded.max_token_type, 1))
    module.operation.attributes["bertc.target"] = ir.StringAttr.get(target)
    if dtype is not None:
        set_weight_dtype(module, dtype)
    if act_scales:
        f32 = ir.F32Type.get()
        module.operation.attributes["bertc.act_scales"] = ir.DictAttr.get(
            {name: ir.FloatAttr.get(f32, s) for name, s in act_scales.items()})
    if getattr(loaded, "max_seq_len", None) is not None:
        module.operation.attributes["bertc.max_seq_len"] = ir.IntegerAttr.get(i64, loaded.max_seq_len)
