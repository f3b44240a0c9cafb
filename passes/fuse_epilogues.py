"""--fuse-epilogues: activations and residual adds ride on the kernel that produces their input.

Before::

    %h = "bertc.linear"(%x, %w1, %b1) {activation = "none"}
    %g = "bertc.gelu"(%h) {approximate = "none"}
    %o = "bertc.linear"(%g, %w2, %b2) {activation = "none"}
    %r = "bertc.add"(%o, %x)
    %n = "bertc.layer_norm"(%r, %gamma, %beta)

After::

    %h = "bertc.linear"(%x, %w1, %b1) {activation = "gelu"}
    %o = "bertc.linear"(%h, %w2, %b2, %x) {activation = "none"}      (residual operand)
    %n = "bertc.layer_norm"(%o, %gamma, %beta)

An add that no linear can take (the embeddings' sum) folds into the LayerNorm after it:
``layer_norm(a + b)`` becomes ``layer_norm(a, residual = b)``. Nothing fuses into a producer
whose result has other users, and an activation never fuses into a linear that already has a
residual (the kernel applies the activation first).
"""

from __future__ import annotations

from bertc.dialects import bertc as B
from torch_mlir import ir

from .codegen import ACTIVATION, unary_activation
from .common import PassContext, erase_dead, func_ops, producer, shape_of


def _sole_user(value: ir.Value) -> bool:
    return len(list(value.uses)) == 1


def _rebuild_linear(lin, *, activation: str | None = None, residual: ir.Value | None = None, at=None) -> ir.Value:
    with ir.InsertionPoint(at or lin.operation), lin.location:
        new = B.LinearOp(lin.operands[0], lin.operands[1], ir.StringAttr.get(activation or lin.activation.value),
                         lin.results[0].type, bias=lin.bias, residual=residual if residual is not None else lin.residual)
    return new.out


def fuse_activation(op) -> bool:
    lin = producer(op.operands[0])
    if not isinstance(lin, B.LinearOp) or not _sole_user(lin.results[0]):
        return False
    if lin.activation.value != "none" or lin.residual is not None:
        return False
    act = unary_activation(op)  # every one of them has a BERTC_ACT_* epilogue
    op.results[0].replace_all_uses_with(_rebuild_linear(lin, activation=act, at=op.operation))
    return True


def fuse_residual(op) -> bool:
    a, b = op.operands[0], op.operands[1]
    if shape_of(a) != shape_of(b) or shape_of(a) != shape_of(op.results[0]):
        return False
    for lin_value, other in ((a, b), (b, a)):
        lin = producer(lin_value)
        if isinstance(lin, B.LinearOp) and lin.residual is None and _sole_user(lin_value):
            op.results[0].replace_all_uses_with(_rebuild_linear(lin, residual=other, at=op.operation))
            return True
    return False


def fuse_add_into_layer_norm(op) -> bool:
    add = producer(op.input)
    if not isinstance(add, B.AddOp) or op.residual is not None or not _sole_user(op.input):
        return False
    a, b = add.operands[0], add.operands[1]
    if shape_of(a) != shape_of(b):
        return False
    with ir.InsertionPoint(op.operation), op.location:
        new = B.LayerNormOp(a, op.gamma, op.beta, op.attributes["eps"], op.results[0].type, residual=b)
    op.results[0].replace_all_uses_with(new.out)
    return True


def fuse_epilogues(module: ir.Operation, ctx: PassContext) -> None:
    for op in func_ops(module):
        if isinstance(op, (B.GeluOp, *ACTIVATION)):
            fuse_activation(op)
    erase_dead(module)
    for op in func_ops(module):
        if isinstance(op, B.AddOp):
            fuse_residual(op)
    erase_dead(module)
    for op in func_ops(module):
        if isinstance(op, B.LayerNormOp):
            fuse_add_into_layer_norm(op)
    erase_dead(module)
