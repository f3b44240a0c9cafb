"""--plan-memory: one arena for every activation, offsets chosen from liveness.

Before::

    %0 = "bertc.linear"(%arg0, %w) {...} : (...) -> tensor<1x8x96xf32>
    %1 = "bertc.attention"(%0, %arg1) {...} : (...) -> tensor<1x8x32xf32>

After (offsets in bytes; the function carries the input slots, the module the arena size)::

    %0 = "bertc.linear"(%arg0, %w) {bertc.offset = 128 : i64, ...}
    %1 = "bertc.attention"(%0, %arg1) {bertc.offset = 3200 : i64, ...}
    func.func @main(...) attributes {bertc.arg_offsets = array<i64: 0, 64>}
    module attributes {bertc.arena_bytes = 4224 : i64, bertc.live_peak_bytes = 4224 : i64}

Ops of the dialect's "constant" category (weights, constants and their concatenations) live in
weights.bin, not the arena; a "view" op (reshape) aliases its input and extends that buffer's
life. The planner itself (``plan_arena``) is a pure function of sizes and lifetimes.

A module whose length is dynamic (``tensor<1x?x32xf32>``, with ``bertc.max_seq_len = N`` on the module)
is laid out once, for N: each buffer's slot holds its size at the longest run. A run of L <= N tokens
uses the start of each slot (every size is a polynomial in L with non-negative coefficients, so it
grows with L), and two buffers that do not overlap at N do not overlap at L: one arena, every length.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertc.dialects import bertc as B
from torch_mlir import ir

from .common import PassContext, dtype_of
from .seqlen import bound, dims_of, prod

ALIGN = 64
ELEM_BYTES = {"f32": 4, "i64": 8, "i32": 4, "i1": 1}


@dataclass(frozen=True)
class Buffer:
    size: int  # bytes
    first: int  # index of the op that defines it
    last: int  # index of the last op that reads it (inclusive)


@dataclass(frozen=True)
class ArenaPlan:
    offsets: list[int]
    arena_bytes: int
    live_peak_bytes: int  # the most bytes alive at once: a lower bound for arena_bytes


def _overlap(a: Buffer, b: Buffer) -> bool:
    return a.first <= b.last and b.first <= a.last


def plan_arena(buffers: list[Buffer], align: int = ALIGN) -> ArenaPlan:
    """Greedy by size: place the largest buffers first at the lowest offset that does not
    collide with any placed buffer alive at the same time."""
    offsets = [0] * len(buffers)
    placed: list[int] = []
    for i in sorted(range(len(buffers)), key=lambda i: (-buffers[i].size, buffers[i].first)):
        b = buffers[i]
        size = -(-b.size // align) * align
        clashes = sorted((offsets[j], offsets[j] + -(-buffers[j].size // align) * align)
                         for j in placed if _overlap(b, buffers[j]))
        offset = 0
        for lo, hi in clashes:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        offsets[i] = offset
        placed.append(i)
    end = max((o + -(-b.size // align) * align for o, b in zip(offsets, buffers)), default=0)
    events = sorted({b.first for b in buffers})
    peak = max((sum(b.size for b in buffers if b.first <= t <= b.last) for t in events), default=0)
    return ArenaPlan(offsets, end, peak)


def nbytes(value: ir.Value, module: ir.Operation) -> int:
    """The value's bytes, at the module's bound when its shape has the run-time length."""
    return bound(prod(dims_of(value)) * ELEM_BYTES[dtype_of(value)], module)


def plan_memory(module: ir.Operation, ctx: PassContext) -> None:
    for f in module.regions[0].blocks[0].operations:
        if f.operation.name != "func.func":
            continue
        block = f.regions[0].blocks[0]
        ops = list(block.operations)
        root: dict = {}  # value -> the value owning its storage (views point to their source)
        values: list = []  # storage owners, in definition order
        first: dict = {}
        last: dict = {}
        for a in block.arguments:
            root[a] = a
            values.append(a)
            first[a] = 0
        consts: set = set()
        for i, op in enumerate(ops):
            for v in op.operands:
                if v in root:
                    last[root[v]] = max(last.get(root[v], 0), i)
            category = B.category_of(op)
            if category == "constant" or (category == "view" and op.operands[0] in consts):
                consts.update(op.results)
                continue
            for r in op.results:
                if category == "view" and op.operands[0] in root:
                    root[r] = root[op.operands[0]]
                else:
                    root[r] = r
                    values.append(r)
                    first[r] = i
        end = len(ops)
        for v in ops[-1].operands:  # returned values stay alive to the end
            if v in root:
                last[root[v]] = end
        buffers = [Buffer(nbytes(v, module), first[v], max(last.get(v, first[v]), first[v])) for v in values]
        plan = plan_arena(buffers)
        i64 = ir.IntegerType.get_signless(64)
        offset_of = dict(zip(values, plan.offsets))
        for op in ops:
            if not op.results or op.results[0] not in offset_of:
                continue
            op.attributes["bertc.offset"] = ir.IntegerAttr.get(i64, offset_of[op.results[0]])
        f.attributes["bertc.arg_offsets"] = ir.DenseI64ArrayAttr.get([offset_of[a] for a in block.arguments])
        module.attributes["bertc.arena_bytes"] = ir.IntegerAttr.get(i64, plan.arena_bytes)
        module.attributes["bertc.live_peak_bytes"] = ir.IntegerAttr.get(i64, plan.live_peak_bytes)
