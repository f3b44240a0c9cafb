"""The pass registry: flag -> entry point, one line per pass (file = flag with - for _)."""

from __future__ import annotations

from collections.abc import Callable

from .common import PassContext
from .emit_c import emit_c
from .emit_vulkan import emit_vulkan
from .fuse_attention import fuse_attention
from .fuse_epilogues import fuse_epilogues
from .pack_weights import pack_weights
from .plan_memory import plan_memory
from .prune_patterns import prune_patterns
from .raise_torch import raise_torch

PASSES: dict[str, Callable[..., None]] = {
    "raise-torch": raise_torch,  # torch dialect -> bertc ops
    "fuse-attention": fuse_attention,  # eager/sdpa attention + Q/K/V linears -> bertc.attention
    "fuse-epilogues": fuse_epilogues,  # bias+GELU, residual add into linear
    "prune-patterns": prune_patterns,  # block / N:M sparsity on linear weights, stored sparse where faster
    "pack-weights": pack_weights,  # GEMM tile per linear; weights stored as panels
    "plan-memory": plan_memory,  # liveness-based arena offsets
    "emit-c": emit_c,  # C source calling the runtime's kernels
    "emit-vulkan": emit_vulkan,  # GLSL compute dispatch list for the Vulkan executor
}

__all__ = ["PASSES", "PassContext"]
