"""MLIR context set-up shared by the driver, bertc-opt and the tests."""

from __future__ import annotations

from torch_mlir import ir


def make_context() -> ir.Context:
    """A context with the torch and bertc dialects loaded."""
    from torch_mlir.dialects import torch as torch_d

    from .dialects import bertc as bertc_d

    ctx = ir.Context()
    torch_d.register_dialect(ctx)
    with ctx:
        bertc_d.load()
    return ctx
