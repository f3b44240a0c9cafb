"""--fuse-attention: the attention block becomes one ``bertc.attention`` on merged Q|K|V rows.

Before (raise-torch gives this for both the eager and the sdpa spelling)::

    %q  = "bertc.linear"(%x, %wq, %bq) ...            -> [B,S,H]
    %qh = "bertc.transpose"("bertc.reshape"(%q)) {perm = [0,2,1,3]} -> [B,n,S,D]
    %kh = ... the same for K, then {perm = [0,1,3,2]} -> [B,n,D,S]
    %vh = ... the same for V                           -> [B,n,S,D]
    %s  = "bertc.mul"("bertc.matmul"(%qh, %kh), %scale)
    %p  = "bertc.softmax"("bertc.add"(%s, "bertc.mask_bias"(%mask)))
    %o  = "bertc.reshape"("bertc.transpose"("bertc.matmul"(%p, %vh)) {perm = [0,2,1,3]}) -> [B,S,H]

After::

    %w   = "bertc.concat"(%wq, %wk, %wv) {dim = 0}
    %b   = "bertc.concat"(%bq, %bk, %bv) {dim = 0}
    %qkv = "bertc.linear"(%x, %w, %b) ...               -> [B,S,3H]
    %o   = "bertc.attention"(%qkv, %mask) {num_heads = n, scale = s} -> [B,S,H]

A relative-position bias added to the scores (MPNet: ``"bertc.add"(%s, "bertc.relative_bias"(%table))``
before the mask) becomes the attention's third operand, the [n, 2N-1] table::

    %o   = "bertc.attention"(%qkv, %mask, %table) {num_heads = n, scale = s, operandSegmentSizes = ...}

MobileBERT's queries and keys project its shared bottleneck and its values the layer input: Q and K merge
into one GEMM of Q|K rows [B,S,2H], V's linear stays, and the attention reads it as a fourth operand::

    %qk  = "bertc.linear"(%x, "bertc.concat"(%wq, %wk), "bertc.concat"(%bq, %bk)) -> [B,S,2H]
    %o   = "bertc.attention"(%qk, %mask, %v) {num_heads = n, scale = s, operandSegmentSizes = [1, 1, 0, 1]}

Rotary encoders (RoFormer, ESM) rotate Q and K between the projection and the split
(``"bertc.rotary"(%q, %cos, %sin) {columns = H}``, from raise-torch); with the same tables on both,
one rotary on the fused rows takes their place: ``"bertc.rotary"(%qkv, %cos, %sin) {columns = 2H}``
before the attention (V's columns copied).

One projection already [B,S,3H] (ModernBERT's Wqkv, no bias) whose rows raise-torch sliced into Q, K and V
(``"bertc.slice"(%qkv) {dim = 2, start = 0 | H | 2H}``, each then split into heads as above) is the
attention's input as it is: no concat. A mask with a local window (``"bertc.mask_bias"(%mask) {window = w}``,
ModernBERT's sliding layers) gives the attention its ``window = w``.

DeBERTa's disentangled attention adds content-to-position and position-to-content scores, each a GEMM of the
heads merged [B*n,S,D] against position keys or queries [B*n,D,W] whose columns ``bertc.relative_gather`` picks by
relative position (p2c's then transposed), each term divided by the scale (a term scaled otherwise, as DeBERTa v1
scales its position queries, has its heads multiplied by the ratio: the kernel scales all three alike)::

    %c  = "bertc.relative_gather"("bertc.matmul"(%qh, %pos_k), %ci)         -> [B*n,S,S]
    %p  = "bertc.transpose"("bertc.relative_gather"("bertc.matmul"(%kh, %pos_q), %pi)) {perm = [0,2,1]}
    %s  = "bertc.add"("bertc.matmul"(%qh, %kh^T / s), "bertc.add"(%c / s, %p / s))

The GEMMs stay (on Q and K sliced from the fused rows) and the attention picks the scores itself, so neither the
gathered [B*n,S,S] terms nor the sum of them is ever written::

    %o   = "bertc.attention"(%qkv, %mask, "bertc.matmul"(%qh', %pos_k), %ci, "bertc.matmul"(%kh', %pos_q), %pi)

Any transpose chain that yields the same head layout matches (view+permute, transpose(1,2),
transpose(-1,-2) on K); the scale may sit on the scores or on Q. Nothing fuses when Q and K are not
projections of one input, the mask is not a padding mask, or a head layout differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from bertc.dialects import bertc as B
from torch_mlir import ir

from .common import PassContext, erase_dead, func_ops, is_op, producer, shape_of, tensor_type


@dataclass(frozen=True)
class Heads:
    """A projection split into heads: linear output [B,S,H] -> (rotary) -> reshape [B,S,n,D] -> permute."""

    linear: ir.OpView
    perm: tuple[int, ...]  # from [B,S,n,D] to the layout seen by the matmul
    heads: int
    rotary: ir.OpView | None = None  # a bertc.rotary of all H columns between the linear and the split
    start: int | None = None  # the first of the linear's columns read (a slice of fused Q|K|V rows); None: all
    width: int = 0  # H: the columns split into heads


@dataclass(frozen=True)
class PositionScores:
    """One of DeBERTa's disentangled terms: ``relative_gather(matmul(heads, positions), index)``, on Q's heads
    (c2p) or K's (p2c, read transposed)."""

    heads: Heads  # whose rows the GEMM multiplies, merged [B*n,S,D]
    positions: ir.Value  # the GEMM's other side [B*n,D,W]: position keys (c2p) or queries (p2c)
    index: ir.Value  # the gather's i64 [2N-1] columns
    scale: float


@dataclass(frozen=True)
class AttentionMatch:
    q: Heads
    k: Heads
    v: Heads
    mask: ir.Value
    scale: float
    output: ir.OpView  # the final reshape back to [B,S,H]
    rel: ir.Value | None = None  # a bertc.relative_bias's [n, 2N-1] table, added to the scores (MPNet)
    c2p: PositionScores | None = None  # DeBERTa's content-to-position scores (Q against the position keys)
    p2c: PositionScores | None = None  # and position-to-content (K against the position queries)
    v_apart: bool = False  # V projects another input than Q and K (MobileBERT): its rows stay its own linear's
    window: int = 0  # the mask's local window (ModernBERT's sliding layers); 0: none

    @property
    def fused_rows(self) -> bool:
        """Whether Q, K and V are the three column blocks of one projection (ModernBERT's Wqkv)."""
        return self.q.linear == self.k.linear == self.v.linear and (self.q.start, self.k.start, self.v.start) \
            == (0, self.q.width, 2 * self.q.width) and shape_of(self.q.linear.results[0])[-1] == 3 * self.q.width


def splat_value(value: ir.Value) -> float | None:
    p = producer(value)
    if not isinstance(p, B.ConstantOp):
        return None
    attr = ir.DenseElementsAttr(p.attributes["value"])
    if attr.is_splat:
        return float(attr.get_splat_value().value)
    arr = np.array(attr)
    return float(arr.flat[0]) if arr.size and np.all(arr == arr.flat[0]) else None


def perm_of(value: ir.Value) -> list[int] | None:
    """The permutation of the transpose that makes ``value``; None where no transpose does."""
    return list(ir.DenseI64ArrayAttr(producer(value).attributes["perm"])) if is_op(value, B.TransposeOp) else None


def heads_merged(value: ir.Value, rank: int) -> ir.Value | None:
    """The [B,n,S,X] value a [B*n,S,X] one reshapes (rank 4), or the [B*n,S,X] one a [B,n,S,X] reshapes (rank 3):
    DeBERTa computes its attention on heads merged into the batch."""
    if not is_op(value, B.ReshapeOp):
        return None
    src = producer(value).operands[0]
    four, three = (shape_of(src), shape_of(value)) if rank == 4 else (shape_of(value), shape_of(src))
    if len(four) == 4 and len(three) == 3 and four[2:] == three[1:] and four[0] * four[1] == three[0]:
        return src
    return None


def match_heads(value: ir.Value) -> Heads | None:
    perm = (0, 1, 2, 3)
    if len(shape_of(value)) == 3:  # heads merged [B*n,S,D], or [B*n,D,S] transposed
        swapped = perm_of(value) == [0, 2, 1]
        value = heads_merged(producer(value).operands[0] if swapped else value, 4)
        if value is None:
            return None
        perm = (0, 1, 3, 2) if swapped else perm
    while is_op(value, B.TransposeOp):
        t = producer(value)
        p = list(ir.DenseI64ArrayAttr(t.attributes["perm"]))
        if len(p) != 4:
            return None
        perm = tuple(p[i] for i in perm)  # out dim j reads input dim p[perm[j]]
        value = t.operands[0]
    if not is_op(value, B.ReshapeOp):
        return None
    r = producer(value)
    src, split = shape_of(r.operands[0]), shape_of(r.results[0])
    if len(src) != 3 or len(split) != 4 or split[:2] != src[:2] or split[2] * split[3] != src[2]:
        return None
    rows, rotary = r.operands[0], None
    if is_op(rows, B.RotaryOp) and producer(rows).attributes["columns"].value == src[2]:
        rotary = producer(rows)
        rows = rotary.operands[0]
    start = None
    if is_op(rows, B.SliceOp) and producer(rows).dim.value == 2:  # a column block of fused Q|K|V rows
        start, rows = producer(rows).start.value, producer(rows).operands[0]
    if not is_op(rows, B.LinearOp):
        return None
    lin = producer(rows)
    if lin.residual is not None or lin.activation.value != "none":
        return None
    return Heads(lin, perm, split[2], rotary, start, src[2])


def same_rotation(a: ir.OpView | None, b: ir.OpView | None) -> bool:
    """Whether Q and K are rotated alike (or neither is): one rotary on the Q|K columns of the fused rows."""
    if a is None or b is None:
        return a is b
    return all(_same_table(x, y) for x, y in zip(a.operands[1:], b.operands[1:])) \
        and a.attributes["style"] == b.attributes["style"]


def _same_table(a: ir.Value, b: ir.Value) -> bool:
    """One value, or the same named weight read twice (the importer reads a table once per use)."""
    pa, pb = producer(a), producer(b)
    return a == b or (isinstance(pa, B.WeightOp) and isinstance(pb, B.WeightOp) and a.type == b.type
                      and pa.attributes["name"] == pb.attributes["name"])


def _scaled(value: ir.Value) -> tuple[ir.Value, float]:
    """Strip a multiply (or divide) by a scalar constant."""
    p = producer(value)
    if isinstance(p, (B.MulOp, B.DivOp)):
        c = splat_value(p.operands[1])
        if c is not None and shape_of(p.operands[1]) in ([], [1]):
            return p.operands[0], (c if isinstance(p, B.MulOp) else 1.0 / c)
    return value, 1.0


def _score_terms(value: ir.Value) -> list[ir.Value]:
    """The summands of a tree of same-shaped ``bertc.add``s (an add of a scalar 0 dropped): DeBERTa's scores."""
    p = producer(value)
    if isinstance(p, B.AddOp) and shape_of(p.operands[1]) in ([], [1]) and splat_value(p.operands[1]) == 0.0:
        return _score_terms(p.operands[0])
    if isinstance(p, B.AddOp) and shape_of(p.operands[0]) == shape_of(p.operands[1]) == shape_of(value):
        return _score_terms(p.operands[0]) + _score_terms(p.operands[1])
    return [value]


def match_position_scores(term: ir.Value) -> tuple[str, PositionScores] | None:
    """A disentangled term: ("c2p", ...) for ``gather(Q P_k^T) / s``, ("p2c", ...) for ``gather(K P_q^T)^T / s``."""
    x, scale = _scaled(term)
    kind = "c2p"
    if perm_of(x) == [0, 2, 1]:
        kind, x = "p2c", producer(x).operands[0]
    if not is_op(x, B.RelativeGatherOp) or not is_op(producer(x).operands[0], B.MatmulOp):
        return None
    gemm = producer(producer(x).operands[0])
    rows, row_scale = _scaled(gemm.operands[0])
    heads = match_heads(rows)
    if heads is None or heads.perm != (0, 2, 1, 3) or len(shape_of(rows)) != 3:
        return None
    return kind, PositionScores(heads, gemm.operands[1], producer(x).operands[1], scale * row_scale)


def _same_heads(a: Heads, b: Heads) -> bool:
    """One projection's heads, whatever their layout (K's are read transposed by Q K^T, as they are by p2c)."""
    return (a.linear, a.start, a.width, a.heads) == (b.linear, b.start, b.width, b.heads) \
        and same_rotation(a.rotary, b.rotary)


def match_disentangled(terms: list[ir.Value]) -> tuple[ir.Value, dict[str, PositionScores]] | None:
    """The Q K^T term of DeBERTa's scores and its c2p / p2c terms (at most one each), else None."""
    found: dict[str, PositionScores] = {}
    rest = []
    for t in terms:
        pos = match_position_scores(t)
        if pos is None:
            rest.append(t)
        elif pos[0] in found:
            return None
        else:
            found[pos[0]] = pos[1]
    return (rest[0], found) if len(rest) == 1 else None


def match_attention(output: ir.OpView) -> AttentionMatch | None:
    """``output`` is a candidate final reshape [B,n,S,D]-ish -> [B,S,H]."""
    if len(shape_of(output.results[0])) != 3:
        return None
    t = output.operands[0]
    if perm_of(t) != [0, 2, 1, 3]:
        return None
    pv_out = producer(t).operands[0]
    pv = producer(heads_merged(pv_out, 3) or pv_out)
    if not isinstance(pv, B.MatmulOp):
        return None
    probs, v_side = pv.operands[0], pv.operands[1]
    probs = heads_merged(probs, 4) or probs
    if not is_op(probs, B.SoftmaxOp):
        return None
    scores = producer(probs).operands[0]
    mask, window = None, 0
    if is_op(scores, B.AddOp) and is_op(producer(scores).operands[1], B.MaskBiasOp):
        bias = producer(producer(scores).operands[1])
        mask, window = bias.operands[0], bias.window.value
        scores = producer(scores).operands[0]
    if mask is None:
        return None
    rel = None
    if is_op(scores, B.AddOp) and is_op(producer(scores).operands[1], B.RelativeBiasOp):
        rel = producer(producer(scores).operands[1]).operands[0]
        scores = producer(scores).operands[0]
    scores = heads_merged(scores, 3) or scores
    split = match_disentangled(_score_terms(scores))
    if split is None:
        return None
    scores, pos = split
    scores, scale = _scaled(scores)
    if not is_op(scores, B.MatmulOp):
        return None
    qk = producer(scores)
    q_side, q_scale = _scaled(qk.operands[0])
    k_side, k_scale = _scaled(qk.operands[1])
    q, k, v = match_heads(q_side), match_heads(k_side), match_heads(v_side)
    if not (q and k and v):
        return None
    scale *= q_scale * k_scale
    for kind, heads in (("c2p", q), ("p2c", k)):  # each term on its own side's heads
        if kind in pos and not _same_heads(pos[kind].heads, heads):
            return None
    if q.perm != (0, 2, 1, 3) or v.perm != (0, 2, 1, 3) or k.perm != (0, 2, 3, 1):
        return None
    if not (q.heads == k.heads == v.heads) or v.rotary is not None or not same_rotation(q.rotary, k.rotary):
        return None
    if rel is not None and shape_of(rel)[0] != q.heads:
        return None
    if any(h.start is not None for h in (q, k, v)):  # column blocks: of one projection, in Q|K|V order
        m = AttentionMatch(q, k, v, mask, scale, output, rel, pos.get("c2p"), pos.get("p2c"), window=window)
        return m if m.fused_rows and shape_of(output.results[0])[-1] == q.width else None
    v_apart = v.linear.operands[0] != q.linear.operands[0]
    biases = [h.linear.bias is not None for h in ((q, k) if v_apart else (q, k, v))]
    if q.linear.operands[0] != k.linear.operands[0] or len(set(biases)) != 1:
        return None
    if not shape_of(output.results[0]) == shape_of(q.linear.results[0]) == shape_of(v.linear.results[0]):
        return None
    return AttentionMatch(q, k, v, mask, scale, output, rel, pos.get("c2p"), pos.get("p2c"), v_apart, window)


def merged_rows(m: AttentionMatch) -> ir.Value:
    """The Q|K|V rows [B,S,3H] (Q|K [B,S,2H] where V is apart): the one projection's, or a new GEMM on the
    weights concatenated."""
    q, k, v = m.q.linear, m.k.linear, m.v.linear
    if m.fused_rows:
        return q.results[0]
    merged = (q, k) if m.v_apart else (q, k, v)  # the projections of one input, one GEMM
    n, kdim = shape_of(q.operands[1])
    cols = len(merged) * n
    i64 = ir.IntegerType.get_signless(64)
    w = B.ConcatOp([p.operands[1] for p in merged], ir.IntegerAttr.get(i64, 0), tensor_type([cols, kdim])).out
    b = None
    if q.bias is not None:
        b = B.ConcatOp([p.bias for p in merged], ir.IntegerAttr.get(i64, 0), tensor_type([cols])).out
    x = q.operands[0]
    return B.LinearOp(x, w, ir.StringAttr.get("none"), tensor_type(shape_of(x)[:-1] + [cols]), bias=b).out


def position_gemm(qkv: ir.Value, pos: PositionScores, start: int, scale: float) -> ir.Value:
    """c2p or p2c again, on the heads of the fused rows' columns [start, start + H) (Q's or K's): ``pos.positions``
    [B*n,D,W] against them merged [B*n,S,D] -> [B*n,S,W], the rows the attention reads (which it multiplies by the
    attention's ``scale``: a term scaled otherwise has its heads multiplied by the ratio first)."""
    b, s, _ = shape_of(qkv)
    n, h = pos.heads.heads, pos.heads.width
    i64 = ir.IntegerType.get_signless(64)
    rows = B.SliceOp(qkv, ir.IntegerAttr.get(i64, 2), ir.IntegerAttr.get(i64, start), tensor_type([b, s, h])).out
    split = B.ReshapeOp(rows, tensor_type([b, s, n, h // n])).out
    heads = B.TransposeOp(split, ir.DenseI64ArrayAttr.get([0, 2, 1, 3]), tensor_type([b, n, s, h // n])).out
    merged = B.ReshapeOp(heads, tensor_type([b * n, s, h // n])).out
    if not math.isclose(pos.scale, scale, rel_tol=1e-6):  # the kernel scales the term as Q K^T: the rest on its rows
        ratio = B.ConstantOp(ir.DenseElementsAttr.get(np.array(pos.scale / scale, np.float32)), tensor_type([])).out
        merged = B.MulOp(merged, ratio, merged.type).out
    return B.MatmulOp(merged, pos.positions, tensor_type([b * n, s, shape_of(pos.positions)[-1]])).out


@dataclass(frozen=True)
class MergedRows:
    """New Q|K|V rows and the projections merged into them, each with its first column: another reader of a
    projection (ConvBERT's query feeds its span convolution too) takes its columns of the rows instead, once the
    attention's own readers are gone."""

    rows: ir.Value
    projections: tuple[tuple[ir.OpView, int], ...]


def rewrite(m: AttentionMatch) -> MergedRows | None:
    n = m.q.width
    i64 = ir.IntegerType.get_signless(64)
    with ir.InsertionPoint(m.output.operation), m.output.location:
        qkv = merged_rows(m)
        projections = (m.q.linear, m.k.linear) if m.v_apart else (m.q.linear, m.k.linear, m.v.linear)
        merged = None if m.fused_rows else MergedRows(qkv, tuple((p, i * n) for i, p in enumerate(projections)))
        rot = m.q.rotary
        if rot is not None:  # Q and K rotated in place of the fused rows (V copied, where it is one of them)
            qkv = B.RotaryOp(qkv, rot.operands[1], rot.operands[2], rot.attributes["style"],
                             ir.IntegerAttr.get(i64, 2 * n), qkv.type).out
        pos = {}
        for kind, p, start in (("c2p", m.c2p, 0), ("p2c", m.p2c, n)):
            if p is not None:
                pos |= {kind: position_gemm(qkv, p, start, m.scale), f"{kind}_index": p.index}
        att = B.AttentionOp(qkv, m.mask, ir.IntegerAttr.get(i64, m.q.heads), ir.FloatAttr.get_f32(m.scale),
                            m.output.results[0].type, rel_bias=m.rel, v=m.v.linear.results[0] if m.v_apart else None,
                            window=ir.IntegerAttr.get(i64, m.window), **pos).out
    m.output.results[0].replace_all_uses_with(att)
    return merged


def read_from_rows(merged: MergedRows, order: dict) -> None:
    """Each merged projection that something besides its attention still reads: that reader takes the projection's
    columns of the merged rows (a slice: a copy of them) rather than a GEMM of its own. The rows were built where the
    attention ends, and such a reader may come before it (ConvBERT's convolution branch): they move up to the last
    projection first, with their concatenated weights. A reader before that keeps its projection's own GEMM."""
    at = max((p for p, _ in merged.projections), key=lambda p: order[p.operation])
    readers = [(p, start) for p, start in merged.projections if list(p.results[0].uses)]
    if any(order.get(u.owner, -1) < order[at.operation] for p, _ in readers for u in p.results[0].uses):
        return
    if readers:
        rows = producer(merged.rows)
        for op in [producer(v) for v in rows.operands[1:] if isinstance(producer(v), B.ConcatOp)] + [rows]:
            op.operation.move_after(at.operation)
            at = op
    for p in {p for p, _ in merged.projections} - {p for p, _ in readers}:
        p.operation.erase()
    i64 = ir.IntegerType.get_signless(64)
    for p, start in readers:
        with ir.InsertionPoint.after(rows.operation), p.location:
            cols = B.SliceOp(merged.rows, ir.IntegerAttr.get(i64, len(shape_of(merged.rows)) - 1),
                             ir.IntegerAttr.get(i64, start), p.results[0].type).out
        p.results[0].replace_all_uses_with(cols)


def fuse_attention(module: ir.Operation, ctx: PassContext) -> None:
    merged = []
    for op in func_ops(module):
        if isinstance(op, B.ReshapeOp):
            m = match_attention(op)
            if m is not None and (rows := rewrite(m)) is not None:
                merged.append(rows)
    # the attention's own readers of each projection, not the projections: read_from_rows sees who else reads them
    erase_dead(module, keep=frozenset(p.operation for rows in merged for p, _ in rows.projections))
    order = {op.operation: i for i, op in enumerate(func_ops(module))}
    for rows in merged:
        read_from_rows(rows, order)
    erase_dead(module)
