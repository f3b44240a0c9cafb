"""Small IR helpers the passes share: tensor types, op walking, replacement, dead-code removal."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bertc.dialects import bertc as B
from torch_mlir import ir

from bertc.errors import BertcError
from bertc.targets import get_target

DTYPES = {"f32": np.float32, "i64": np.int64, "i32": np.int32, "i1": np.bool_}


@dataclass
class PassContext:
    """What a pass may need beyond the IR: weight data, options, and side outputs (emitted C)."""

    weights: Any = None  # bertc.frontend.WeightStore, absent for hand-written IR
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    error: BertcError | None = None


def tensor_type(shape: list[int], dtype: str = "f32") -> ir.RankedTensorType:
    elem = {"f32": ir.F32Type.get(), "i64": ir.IntegerType.get_signless(64),
            "i32": ir.IntegerType.get_signless(32), "i1": ir.IntegerType.get_signless(1)}[dtype]
    return ir.RankedTensorType.get(list(shape), elem)


def shape_of(value: ir.Value) -> list[int]:
    return list(ir.RankedTensorType(value.type).shape)


def dtype_of(value: ir.Value) -> str:
    return str(ir.RankedTensorType(value.type).element_type)


def module_target(module: ir.Operation):
    """The bertc.targets.Target named by the module's ``bertc.target`` (default: host)."""
    return get_target(module.attributes["bertc.target"].value if "bertc.target" in module.attributes else "host")


def sparsity(op) -> dict[str, Any] | None:
    """A linear's ``bertc.sparsity`` (from --prune-patterns) as a dict, or None."""
    if "bertc.sparsity" not in op.attributes:
        return None
    d = ir.DictAttr(op.attributes["bertc.sparsity"])
    return {k: d[k].value for k in ("pattern", "density", "format", "gain") if k in d}


def weight_dtype(op) -> str:
    """A linear's packed weight type (``bertc.weight_dtype`` from --pack-weights): f32, f16 or i8."""
    return op.attributes["bertc.weight_dtype"].value if "bertc.weight_dtype" in op.attributes else "f32"


def weight_qmax(op) -> int:
    """An int8 linear's weight bound, |q| <= qmax (``bertc.qmax`` from --pack-weights: 63 where the target's int8
    kernel reads 7-bit weights), else 127."""
    return ir.IntegerAttr(op.attributes["bertc.qmax"]).value if "bertc.qmax" in op.attributes else 127


def weight_names(value: ir.Value) -> list[str]:
    """The ``bertc.weight`` names a linear's weight operand is made of (one, or a concat's: fused Q, K, V)."""
    op = producer(value)
    if isinstance(op, B.WeightOp):
        return [op.attributes["name"].value]
    return [n for v in op.operands for n in weight_names(v)] if isinstance(op, B.ConcatOp) else []


def x_scale(op) -> float | None:
    """An int8 linear's static input scale (``bertc.x_scale`` from --pack-weights, --calibrate), or None: per row."""
    return ir.FloatAttr(op.attributes["bertc.x_scale"]).value if "bertc.x_scale" in op.attributes else None


def func_ops(module: ir.Operation) -> Iterator[ir.Operation]:
    """The ops of every func body in the module, in order (a snapshot: safe to mutate)."""
    for f in module.regions[0].blocks[0].operations:
        if f.operation.name == "func.func":
            yield from list(f.regions[0].blocks[0].operations)


def producer(value: ir.Value) -> ir.OpView | None:
    """The op defining ``value`` (None for block arguments)."""
    owner = value.owner
    return owner.opview if isinstance(owner, ir.Operation) else (owner if isinstance(owner, ir.OpView) else None)


def is_op(value: ir.Value, kind: type | tuple[type, ...]) -> bool:
    """Whether ``value`` is a result of an op of class ``kind`` (e.g. ``B.LinearOp``)."""
    return isinstance(producer(value), kind)


def users(value: ir.Value) -> list[ir.OpView]:
    return [u.owner.opview if isinstance(u.owner, ir.Operation) else u.owner for u in value.uses]


def erase_dead(module: ir.Operation, keep: frozenset = frozenset()) -> None:
    """Erase bertc ops whose results are unused, to a fixed point (every bertc op is pure: value
    semantics; func.return and other dialects' ops stay), but for the operations in ``keep``."""
    changed = True
    while changed:
        changed = False
        for op in reversed(list(func_ops(module))):
            if op.operation in keep:
                continue
            if B.traits_of(op) is not None and op.results and all(not list(r.uses) for r in op.results):
                op.operation.erase()
                changed = True


def source_location(op) -> str:
    """'module encoder.layer.0.attention (BertSelfAttention), modeling_bert.py:245' from an op's
    location: the owning submodule (recorded by the frontend) and the innermost model-code line."""
    frames = re.findall(r'"([^"]+)":(\d+)', str(op.location))
    module = next((f for f, _ in frames if f.startswith("module ")), None)
    code = [f"{f}:{n}" for f, n in frames
            if not f.startswith("module ") and "/torch/" not in f and "bertc/export.py" not in f]
    parts = ([module] if module else []) + code[-1:]
    return ", ".join(parts) if parts else (f"{frames[-1][0]}:{frames[-1][1]}" if frames else "an unknown location")


def parse_options(text: str) -> dict[str, str]:
    """'key=value key2=value2' (xDSL / mlir-opt style) -> dict."""
    out = {}
    for item in text.replace(",", " ").split():
        if "=" not in item:
            raise BertcError(f"pass option '{item}' is not key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out
