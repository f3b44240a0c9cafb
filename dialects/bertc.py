"""The ``bertc`` dialect: value-semantics ops on ranked tensors, each with a verifier.

Defined with the upstream Python bindings (``dialects.ext``, IRDL underneath), so the ops
parse and print in MLIR's generic form, e.g.::

    %qkv = "bertc.linear"(%x, %w, %b) {activation = "none",
             operandSegmentSizes = array<i32: 1, 1, 1, 0>}
             : (tensor<1x8x32xf32>, tensor<96x32xf32>, tensor<96xf32>) -> tensor<1x8x96xf32>
    %ctx = "bertc.attention"(%qkv, %mask) {num_heads = 2 : i64, scale = 0.25 : f32}
             : (tensor<1x8x96xf32>, tensor<1x8xi64>) -> tensor<1x8x32xf32>

A dimension may be dynamic (``?``, ``tensor<1x?x32xf32>``): the sequence length of a model compiled
for any length up to a bound. Verifiers read ``?`` on both sides as the same unknown length (the one
sequence length of the run), so ``[1, ?, 32]`` matches ``[1, ?, 32]`` but not ``[1, 8, 32]``.

Nothing but op definitions lives here; passes are in ``passes/``.
"""


import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch_mlir import ir
from torch_mlir.dialects.ext import Dialect, Operand, Result, attribute

from bertc.errors import BertcError
from bertc.sparsity import parse_pattern


class Bertc(Dialect, name="bertc"):
    pass


@dataclass(frozen=True)
class OpTraits:
    """What the rest of bertc needs to know about an op, said once beside its definition.

    ``category``: "constant" (folded into weights.bin at emit time: no kernel, no arena buffer),
    "view" (the same bytes under a new shape: aliases its input), or "kernel" (one runtime call on the
    CPU, one shader dispatch on the GPU). A "kernel" op names its C kernel family in
    ``runtime/kernels/kernels.h`` (``kernel``), its shader in ``runtime/vulkan/shaders/`` (``shader``)
    and its kind in the cost model (``cost``: a key of ``bertc.cost.FEATURES``).
    test/test_dialect.py checks that each piece named here exists, and that an op of the other two
    categories has no emitter.
    """

    category: str
    kernel: str | None = None
    shader: str | None = None
    cost: str | None = None

    def __post_init__(self) -> None:
        assert self.category in ("constant", "view", "kernel"), self.category
        assert (self.category == "kernel") == all((self.kernel, self.shader, self.cost)), self


CONSTANT = OpTraits("constant")
VIEW = OpTraits("view")


def _elementwise(kernel: str, shader: str) -> OpTraits:
    return OpTraits("kernel", kernel, shader, "elementwise")


ACTIVATIONS = ("none", "gelu", "gelu_tanh", "tanh", "relu", "silu")
ROTARY_STYLES = ("interleaved", "halves")  # which features a rotary embedding pairs (RotaryOp)


def _no_window() -> ir.IntegerAttr:
    """``window = 0``: every key in reach of every query (a builder's default; the IR always spells it out)."""
    return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), 0)


def _bad_window(op) -> bool:
    return op.window.value < 0 and _fail(op, f"window {op.window.value} is negative (0: no local window)") is False


DYNAMIC = ir.ShapedType.get_dynamic_size()  # a ``?`` dimension as ``shape`` lists it


def shape(value: ir.Value) -> list[int]:
    """The dimensions of a ranked tensor value, ``DYNAMIC`` for a ``?``."""
    return list(ir.RankedTensorType(value.type).shape)


def _fail(op, message: str) -> bool:
    # shapes in messages show a dynamic dimension as MLIR writes it
    op.location.emit_error(f"'{op.OPERATION_NAME}' {message}".replace(str(DYNAMIC), "?"))
    return False


def _same_shape(op, a: ir.Value, b: ir.Value, what: str) -> bool:
    if shape(a) != shape(b):
        return _fail(op, f"{what}: shapes {shape(a)} and {shape(b)} differ")
    return True


def _broadcastable(a: list[int], b: list[int]) -> list[int] | None:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):  # ? against a static size is a mismatch too
            return None
        out.append(y if x == 1 else x)
    return out[::-1]


class WeightOp(Bertc.Operation, name="weight"):
    """A model parameter, looked up by name in the compilation's weight store."""

    traits = CONSTANT

    name: ir.StringAttr
    out: Result[Any]


class ConstantOp(Bertc.Operation, name="constant"):
    """A small literal (scalars of elementwise expressions, folded index tensors)."""

    traits = CONSTANT

    value: Any  # a DenseElementsAttr (IRDL has no named constraint for it)
    out: Result[Any]

    def verify_invariants(self) -> bool:
        if not isinstance(self.value, ir.DenseElementsAttr) or self.value.type != self.out.type:
            return _fail(self, "value must be a dense elements attribute of the result type")
        return True


class ConcatOp(Bertc.Operation, name="concat"):
    """Concatenation of weights; folded at emit time (merged Q/K/V projections)."""

    traits = CONSTANT

    inputs: Sequence[Operand[Any]]
    dim: ir.IntegerAttr
    out: Result[Any]

    def verify_invariants(self) -> bool:
        d = self.dim.value
        shapes = [shape(v) for v in self.inputs]
        total = DYNAMIC if any(s[d] == DYNAMIC for s in shapes) else sum(s[d] for s in shapes)
        expect = list(shapes[0])
        expect[d] = total
        if any(len(s) != len(expect) for s in shapes) or shape(self.out) != expect:
            return _fail(self, f"result shape {shape(self.out)} is not the concat {expect}")
        return True


class EmbeddingOp(Bertc.Operation, name="embedding"):
    """out[..., :] = table[ids[...], :]"""

    traits = OpTraits("kernel", "bertc_embedding", "embedding", "embedding")

    table: Operand[Any]
    ids: Operand[Any]
    out: Result[Any]

    def verify_invariants(self) -> bool:
        t = shape(self.table)
        if len(t) != 2 or shape(self.out) != shape(self.ids) + [t[1]]:
            return _fail(self, f"table {t} and ids {shape(self.ids)} do not give {shape(self.out)}")
        return True


class LinearOp(Bertc.Operation, name="linear"):
    """out = act(input @ weight^T + bias) + residual; weight is [N, K] as in torch.

    Later passes attach ``bertc.tile`` (pack-weights) and ``bertc.sparsity`` (prune-patterns:
    {pattern, density, format = "sparse" | "dense", gain?}), which the verifier checks too."""

    traits = OpTraits("kernel", "bertc_linear", "gemm", "linear")

    input: Operand[Any]
    weight: Operand[Any]
    activation: ir.StringAttr
    out: Result[Any]
    bias: Operand[Any] | None = None
    residual: Operand[Any] | None = None

    def verify_invariants(self) -> bool:
        x, w, o = shape(self.input), shape(self.weight), shape(self.out)
        if len(w) != 2 or x[-1] != w[1]:
            return _fail(self, f"input {x} does not match weight {w} (expects [..., {w[-1]}])")
        if o != x[:-1] + [w[0]]:
            return _fail(self, f"result {o} should be {x[:-1] + [w[0]]}")
        if self.bias is not None and shape(self.bias) != [w[0]]:
            return _fail(self, f"bias {shape(self.bias)} should be [{w[0]}]")
        if self.residual is not None and shape(self.residual) != o:
            return _fail(self, f"residual {shape(self.residual)} should be {o}")
        if self.activation.value not in ACTIVATIONS:
            return _fail(self, f"unknown activation '{self.activation.value}'")
        if "bertc.sparsity" in self.operation.attributes:
            return self._verify_sparsity(ir.DictAttr(self.operation.attributes["bertc.sparsity"]))
        return True

    def _verify_sparsity(self, d: ir.DictAttr) -> bool:
        missing = [k for k in ("pattern", "density", "format") if k not in d]
        if missing:
            return _fail(self, f"bertc.sparsity lacks {missing} (it holds pattern, density, format and maybe gain)")
        try:
            parse_pattern(ir.StringAttr(d["pattern"]).value)
        except BertcError as e:
            return _fail(self, f"bertc.sparsity: {str(e).split('. SPEC is')[0]}")
        if not 0.0 < ir.FloatAttr(d["density"]).value <= 1.0:
            return _fail(self, f"bertc.sparsity density {ir.FloatAttr(d['density']).value} is not in (0, 1]")
        if ir.StringAttr(d["format"]).value not in ("sparse", "dense"):
            return _fail(self, f"bertc.sparsity format '{ir.StringAttr(d['format']).value}' is not sparse or dense")
        return True


class AttentionOp(Bertc.Operation, name="attention"):
    """Multi-head self-attention on merged Q|K|V rows [B, S, 3H] with a [B, S] padding mask; with ``v`` (optional,
    [B, S, H]: MobileBERT's values, projected from another input than its queries and keys) on Q|K rows [B, S, 2H].

    out[b, s, h*D:(h+1)*D] = softmax(q k^T * scale + rel + bias(mask)) v, per head h, where ``rel_bias``
    (optional, [heads, 2N - 1]: MPNet's relative positions) adds rel_bias[h, j - i + N - 1] to the score
    of query i and key j. A ``window`` > 0 (ModernBERT's local layers) masks key j of query i where
    |i - j| > window / 2, as a padded key is; 0 attends to every key.

    DeBERTa's disentangled attention: ``c2p`` (content to position: Q against the position keys) and ``p2c`` (K
    against the position queries), each [B * heads, S, W] (rows of head h of batch b at b * heads + h) with its
    i64 table of columns [2N - 1] (``c2p_index``, ``p2c_index``), add to the score before it is scaled:
    score[i, j] = (q_i . k_j + c2p[i, c2p_index[j - i + N - 1]] + p2c[j, p2c_index[i - j + N - 1]]) * scale.
    Either pair may be absent (a model with one of the two terms).
    """

    traits = OpTraits("kernel", "bertc_attention", "attention", "attention")

    qkv: Operand[Any]
    mask: Operand[Any]
    num_heads: ir.IntegerAttr
    scale: ir.FloatAttr
    out: Result[Any]
    rel_bias: Operand[Any] | None = None
    v: Operand[Any] | None = None
    c2p: Operand[Any] | None = None
    c2p_index: Operand[Any] | None = None
    p2c: Operand[Any] | None = None
    p2c_index: Operand[Any] | None = None
    window: ir.IntegerAttr = attribute(default_factory=_no_window)

    def verify_invariants(self) -> bool:
        q, m, o = shape(self.qkv), shape(self.mask), shape(self.out)
        if _bad_window(self) or not _disentangled_ok(self, q):
            return False
        heads, parts = self.num_heads.value, 3 if self.v is None else 2
        if len(q) != 3 or q[2] % parts != 0:
            return _fail(self, f"qkv {q} is not [B, S, {parts}*H]" + ("" if self.v is None else " (Q|K, V apart)"))
        hidden = q[2] // parts
        if heads <= 0 or hidden % heads != 0:
            return _fail(self, f"hidden size {hidden} is not divisible by {heads} heads")
        if m != q[:2]:
            return _fail(self, f"mask {m} should be {q[:2]}")
        if o != [q[0], q[1], hidden]:
            return _fail(self, f"result {o} should be {[q[0], q[1], hidden]}")
        if self.v is not None and shape(self.v) != o:
            return _fail(self, f"v {shape(self.v)} should be {o}, the Q|K rows' [B, S, H]")
        if self.rel_bias is not None:
            r = shape(self.rel_bias)
            if len(r) != 2 or r[0] != heads or r[1] % 2 != 1 or (q[1] != DYNAMIC and r[1] < 2 * q[1] - 1):
                return _fail(self, f"rel_bias {r} should be [{heads}, 2N - 1] with N >= the sequence length")
        return True


def _disentangled_ok(op, q: list[int]) -> bool:
    """DeBERTa's c2p / p2c scores [B * heads, S, W] and their i64 column tables [2N - 1], N >= S, in pairs."""
    widths = set()
    for name in ("c2p", "p2c"):
        x, t = getattr(op, name), getattr(op, name + "_index")
        if (x is None) != (t is None):
            return _fail(op, f"{name} and {name}_index come together")
        if x is None:
            continue
        s, n = shape(x), shape(t)
        if len(s) != 3 or len(q) != 3 or (q[0] != DYNAMIC and s[0] != q[0] * op.num_heads.value) or s[1] != q[1]:
            return _fail(op, f"{name} {s} should be [B * heads, S, W] = [{q[0]} * {op.num_heads.value}, {q[1]}, W]")
        if str(ir.RankedTensorType(t.type).element_type) != "i64" or len(n) != 1 or n[0] % 2 != 1 or (
                q[1] != DYNAMIC and n[0] < 2 * q[1] - 1):
            return _fail(op, f"{name}_index {t.type} should be i64 [2N - 1] with N >= the sequence length")
        widths.add(s[2])
    return len(widths) <= 1 or _fail(op, f"c2p and p2c widths {sorted(widths)} differ")


class RelativeBiasOp(Bertc.Operation, name="relative_bias"):
    """out[b, h, i, j] = table[h, j - i + N - 1] for a table [H, 2N - 1]: the attention bias of relative
    positions (MPNet), of a length up to N; fuse-attention folds it into ``bertc.attention``."""

    traits = _elementwise("bertc_relative_bias", "relative_bias")

    table: Operand[Any]
    out: Result[Any]

    def verify_invariants(self) -> bool:
        t, o = shape(self.table), shape(self.out)
        if len(t) != 2 or t[1] % 2 != 1 or len(o) != 4 or o[1] != t[0] or o[2] != o[3]:
            return _fail(self, f"table {t} and result {o} are not [H, 2N - 1] and [B, H, L, L]")
        if o[2] != DYNAMIC and 2 * o[2] - 1 > t[1]:
            return _fail(self, f"table {t} is too short for length {o[2]}")
        return True


class RelativeGatherOp(Bertc.Operation, name="relative_gather"):
    """out[b, i, j] = x[b, i, table[j - i + N - 1]] for x [B, L, W] and an i64 table [2N - 1] of columns of x:
    DeBERTa's content-to-position and position-to-content scores, picked by relative position, for L <= N."""

    traits = _elementwise("bertc_relative_gather", "relative_gather")

    input: Operand[Any]
    table: Operand[Any]
    out: Result[Any]

    def verify_invariants(self) -> bool:
        x, t, o = shape(self.input), shape(self.table), shape(self.out)
        if len(x) != 3 or len(t) != 1 or t[0] % 2 != 1 or o != [x[0], x[1], x[1]]:
            return _fail(self, f"input {x}, table {t} and result {o} are not [B, L, W], [2N - 1] and [B, L, L]")
        if str(ir.RankedTensorType(self.table.type).element_type) != "i64":
            return _fail(self, f"table {self.table.type} should hold i64 column indices")
        if x[1] != DYNAMIC and 2 * x[1] - 1 > t[0]:
            return _fail(self, f"table {t} is too short for length {x[1]}")
        return True


class RotaryOp(Bertc.Operation, name="rotary"):
    """Rotary position embedding of the first ``columns`` features of each row of x [B, S, C], in heads of
    D (the tables' width); the rest are copied. Position s of head block j, features f and its partner g:
    out[f] = x[f] * cos[s, f] + sign(f) * x[g] * sin[s, f], sign -1 for the first of a pair, +1 for the second.
    ``style`` "interleaved": pairs (2i, 2i+1) (RoFormer); "halves": (i, i + D/2) (ESM, GPT-NeoX). The [T, D] tables
    have a row per position, T >= S (a dynamic program's are as long as its bound)."""

    traits = _elementwise("bertc_rotary", "rotary")

    input: Operand[Any]
    cos: Operand[Any]
    sin: Operand[Any]
    style: ir.StringAttr
    columns: ir.IntegerAttr
    out: Result[Any]

    def verify_invariants(self) -> bool:
        x, t, cols = shape(self.input), shape(self.cos), self.columns.value
        if len(x) != 3 or len(t) != 2 or shape(self.sin) != t:
            return _fail(self, f"input {x} and tables {t}, {shape(self.sin)} are not [B, S, C] and two [T, D]")
        if t[1] % 2 or cols <= 0 or cols % t[1] or cols > x[2]:
            return _fail(self, f"columns {cols} is not a multiple of the even head width {t[1]} within {x[2]}")
        if self.style.value not in ROTARY_STYLES:
            return _fail(self, f"style '{self.style.value}' is not one of {ROTARY_STYLES}")
        if x[1] != DYNAMIC and t[0] < x[1]:
            return _fail(self, f"tables of {t[0]} positions are shorter than the sequence ({x[1]})")
        return _same_shape(self, self.input, self.out, "result")


class TrigramOp(Bertc.Operation, name="trigram"):
    """out[b, s] = x[b, s + 1] | x[b, s] | x[b, s - 1] for x [B, S, E] (zeros past the run's length and before
    0): MobileBERT's token embeddings beside their neighbours', the input of its kernel-3 convolution."""

    traits = _elementwise("bertc_trigram", "trigram")

    input: Operand[Any]
    out: Result[Any]

    def verify_invariants(self) -> bool:
        x, o = shape(self.input), shape(self.out)
        if len(x) != 3 or o != [x[0], x[1], 3 * x[2]]:
            return _fail(self, f"result {o} should be [B, S, 3E] for input {x} [B, S, E]")
        return True


def _odd_taps(op, k: int) -> bool:
    return k % 2 == 1 or _fail(op, f"kernel of {k} taps should be odd (k // 2 neighbours each side)")


class DepthwiseConv1dOp(Bertc.Operation, name="depthwise_conv1d"):
    """out[b, s, c] = sum_j weight[c, j] * x[b, s + j - k // 2, c] for x [B, S, C] and weight [C, k], zeros past the
    run's length and before 0: ConvBERT's depthwise convolution over the sequence (its key's first half)."""

    traits = OpTraits("kernel", "bertc_depthwise_conv1d", "seq_conv", "elementwise")

    input: Operand[Any]
    weight: Operand[Any]
    out: Result[Any]

    def verify_invariants(self) -> bool:
        x, w = shape(self.input), shape(self.weight)
        if len(x) != 3 or len(w) != 2 or w[0] != x[2]:
            return _fail(self, f"input {x} and weight {w} are not [B, S, C] and [C, k]")
        return _odd_taps(self, w[1]) and _same_shape(self, self.input, self.out, "result")


class SpanConvOp(Bertc.Operation, name="span_conv"):
    """out[b, s, h*D + d] = sum_j w[b, s, h, j] * x[b, s + j - k // 2, h*D + d] for x [B, S, H*D] and per-position
    kernels w [B, S, H, k], zeros past the run's length and before 0: ConvBERT's span-based dynamic convolution."""

    traits = OpTraits("kernel", "bertc_span_conv", "seq_conv", "elementwise")

    input: Operand[Any]
    kernels: Operand[Any]
    out: Result[Any]

    def verify_invariants(self) -> bool:
        x, w = shape(self.input), shape(self.kernels)
        if len(x) != 3 or len(w) != 4 or w[:2] != x[:2] or w[2] <= 0 or x[2] % w[2]:
            return _fail(self, f"input {x} and kernels {w} are not [B, S, H*D] and [B, S, H, k]")
        return _odd_taps(self, w[3]) and _same_shape(self, self.input, self.out, "result")


class MaskBiasOp(Bertc.Operation, name="mask_bias"):
    """Additive attention bias from a [B, S] padding mask: 0 where kept, `fill` where masked, and with a
    ``window`` > 0 also where |query - key| > window / 2 (a local layer; fuse-attention moves it onto the
    ``bertc.attention``)."""

    traits = _elementwise("bertc_mask_bias", "mask_bias")

    mask: Operand[Any]
    fill: ir.FloatAttr
    out: Result[Any]
    window: ir.IntegerAttr = attribute(default_factory=_no_window)

    def verify_invariants(self) -> bool:
        m, o = shape(self.mask), shape(self.out)
        if _bad_window(self):
            return False
        if len(m) != 2 or len(o) != 4 or o[0] != m[0] or o[3] != m[1] or o[1] != 1:
            return _fail(self, f"result {o} should be [{m[0]}, 1, Q, {m[1]}]")
        return True


class PositionIdsOp(Bertc.Operation, name="position_ids"):
    """RoBERTa position ids: cumsum(ids != pad) * (ids != pad) + pad, per row."""

    traits = _elementwise("bertc_position_ids", "position_ids")

    ids: Operand[Any]
    padding_idx: ir.IntegerAttr
    out: Result[Any]

    def verify_invariants(self) -> bool:
        return _same_shape(self, self.ids, self.out, "result")


class TokenDropoutOp(Bertc.Operation, name="token_dropout"):
    """ESM's token dropout as a factor per token, [B, S, 1] f32 from ids and mask [B, S]: 0 where
    ids[b, s] == token, else keep / (1 - count(ids[b] == token) / sum(mask[b])); the embeddings are multiplied
    by it."""

    traits = _elementwise("bertc_token_dropout", "token_dropout")

    ids: Operand[Any]
    mask: Operand[Any]
    token: ir.IntegerAttr
    keep: ir.FloatAttr
    out: Result[Any]

    def verify_invariants(self) -> bool:
        i, m, o = shape(self.ids), shape(self.mask), shape(self.out)
        if len(i) != 2 or m != i or o != [*i, 1]:
            return _fail(self, f"ids {i}, mask {m} and result {o} are not [B, S], [B, S] and [B, S, 1]")
        return True


class CastOp(Bertc.Operation, name="cast"):
    """An i64 tensor (a padding mask, ids) as f32: torch's promotion of an integer tensor beside a float one
    (ESM multiplies its embeddings by the mask)."""

    traits = _elementwise("bertc_cast", "cast")

    input: Operand[Any]
    out: Result[Any]

    def verify_invariants(self) -> bool:
        types = (str(ir.RankedTensorType(v.type).element_type) for v in (self.input, self.out))
        if tuple(types) != ("i64", "f32"):
            return _fail(self, f"converts i64 to f32, not {self.input.type} to {self.out.type}")
        return _same_shape(self, self.input, self.out, "result")


class LayerNormOp(Bertc.Operation, name="layer_norm"):
    """out = layer_norm(input + residual) over the last dimension."""

    traits = OpTraits("kernel", "bertc_layer_norm", "layer_norm", "layer_norm")

    input: Operand[Any]
    gamma: Operand[Any]
    beta: Operand[Any]
    eps: ir.FloatAttr
    out: Result[Any]
    residual: Operand[Any] | None = None

    def verify_invariants(self) -> bool:
        x = shape(self.input)
        if shape(self.gamma) != x[-1:] or shape(self.beta) != x[-1:]:
            return _fail(self, f"gamma/beta must be [{x[-1]}]")
        if self.residual is not None and not _same_shape(self, self.input, self.residual, "residual"):
            return False
        return _same_shape(self, self.input, self.out, "result")


class RmsNormOp(Bertc.Operation, name="rms_norm"):
    """out = input * rsqrt(mean(input^2) + eps) * gamma over the last dimension (EuroBERT's, Llama's RMSNorm)."""

    traits = OpTraits("kernel", "bertc_rms_norm", "rms_norm", "layer_norm")

    input: Operand[Any]
    gamma: Operand[Any]
    eps: ir.FloatAttr
    out: Result[Any]

    def verify_invariants(self) -> bool:
        x = shape(self.input)
        if shape(self.gamma) != x[-1:]:
            return _fail(self, f"gamma must be [{x[-1]}], the input's last dimension")
        return _same_shape(self, self.input, self.out, "result")


class _Unary(Bertc.Operation):
    input: Operand[Any]
    out: Result[Any]

    def verify_invariants(self) -> bool:
        return _same_shape(self, self.input, self.out, "result")


class GeluOp(_Unary, name="gelu"):
    traits = _elementwise("bertc_unary", "unary")

    approximate: ir.StringAttr


class TanhOp(_Unary, name="tanh"):
    traits = _elementwise("bertc_unary", "unary")


class ReluOp(_Unary, name="relu"):
    traits = _elementwise("bertc_unary", "unary")


class SiluOp(_Unary, name="silu"):
    """x * sigmoid(x): the gate of a SwiGLU FFN (NomicBERT, EuroBERT), whose product with the up projection
    stays a bertc.mul."""

    traits = _elementwise("bertc_unary", "unary")


class SoftmaxOp(_Unary, name="softmax"):
    """Softmax over the last dimension."""

    traits = _elementwise("bertc_softmax", "softmax")


class PowOp(_Unary, name="pow"):
    traits = _elementwise("bertc_pow", "unary")

    exponent: ir.FloatAttr


class _Binary(Bertc.Operation):
    lhs: Operand[Any]
    rhs: Operand[Any]
    out: Result[Any]

    def verify_invariants(self) -> bool:
        b = _broadcastable(shape(self.lhs), shape(self.rhs))
        if b is None or b != shape(self.out):
            return _fail(self, f"{shape(self.lhs)} and {shape(self.rhs)} do not broadcast to {shape(self.out)}")
        types = {str(ir.RankedTensorType(v.type).element_type) for v in (self.lhs, self.rhs, self.out)}
        if len(types) > 1:  # the kernels take one element type: an i64 operand of a float op needs a bertc.cast
            return _fail(self, f"operands and result mix element types {sorted(types)}: cast to one first")
        return True


class AddOp(_Binary, name="add"):
    traits = _elementwise("bertc_binary", "binary")


class SubOp(_Binary, name="sub"):
    traits = _elementwise("bertc_binary", "binary")


class MulOp(_Binary, name="mul"):
    traits = _elementwise("bertc_binary", "binary")


class DivOp(_Binary, name="div"):
    traits = _elementwise("bertc_binary", "binary")


class MatmulOp(Bertc.Operation, name="matmul"):
    """Batched matmul [..., M, K] x [..., K, N] with broadcast batch dimensions."""

    traits = OpTraits("kernel", "bertc_matmul", "gemm", "matmul")

    lhs: Operand[Any]
    rhs: Operand[Any]
    out: Result[Any]

    def verify_invariants(self) -> bool:
        a, b, o = shape(self.lhs), shape(self.rhs), shape(self.out)
        if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
            return _fail(self, f"cannot multiply {a} by {b}")
        batch = _broadcastable(a[:-2], b[:-2])
        if batch is None or o != batch + [a[-2], b[-1]]:
            return _fail(self, f"result {o} does not match {a} x {b}")
        return True


class ReshapeOp(Bertc.Operation, name="reshape"):
    """Same elements, new shape (a view: no data moves)."""

    traits = VIEW

    input: Operand[Any]
    out: Result[Any]

    def verify_invariants(self) -> bool:
        x, o = shape(self.input), shape(self.out)
        # the one unknown length must survive as one ``?``: [1, ?, 32] -> [1, ?, 2, 16] or [?, 32]
        if x.count(DYNAMIC) != o.count(DYNAMIC) or _static_size(x) != _static_size(o):
            return _fail(self, f"cannot reshape {x} to {o}")
        return True


def _static_size(dims: list[int]) -> int:
    return math.prod(d for d in dims if d != DYNAMIC)


class TransposeOp(Bertc.Operation, name="transpose"):
    """out = input.permute(perm)"""

    traits = _elementwise("bertc_transpose", "transpose")

    input: Operand[Any]
    perm: Any  # a DenseI64ArrayAttr
    out: Result[Any]

    def verify_invariants(self) -> bool:
        x, p = shape(self.input), list(ir.DenseI64ArrayAttr(self.perm))
        if sorted(p) != list(range(len(x))) or shape(self.out) != [x[i] for i in p]:
            return _fail(self, f"perm {p} does not map {x} to {shape(self.out)}")
        return True


class SliceOp(Bertc.Operation, name="slice"):
    """out = input[..., start:start+size, ...] along `dim` (size from the result type)."""

    traits = _elementwise("bertc_slice", "slice")

    input: Operand[Any]
    dim: ir.IntegerAttr
    start: ir.IntegerAttr
    out: Result[Any]

    def verify_invariants(self) -> bool:
        x, o, d = shape(self.input), shape(self.out), self.dim.value
        if len(x) != len(o) or not 0 <= d < len(x) or not _slice_fits(x[d], o[d], self.start.value):
            return _fail(self, f"slice of {x} at dim {d} start {self.start.value} cannot give {o}")
        return True


def _slice_fits(size: int, taken: int, start: int) -> bool:
    """Whether ``taken`` elements from ``start`` fit in ``size``. A dynamic result takes the run's length
    (position ids: the first L of a table); a static slice of a dynamic dimension (the [CLS] row) is
    checked against the length at run time; ``?`` from ``?`` is the whole dimension."""
    if size == DYNAMIC and taken == DYNAMIC:
        return start == 0
    if taken == DYNAMIC:
        return 0 <= start < size
    if size == DYNAMIC:
        return start >= 0
    return 0 <= start <= size - taken


def _op_classes() -> dict[str, type]:
    found, todo = {}, [Bertc.Operation]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if getattr(sub, "OPERATION_NAME", None):
                found[sub.OPERATION_NAME] = sub
    return dict(sorted(found.items()))


OPS: dict[str, type] = _op_classes()  # "bertc.linear" -> LinearOp, every op of the dialect


def traits_of(op_or_name) -> OpTraits | None:
    """The OpTraits of a bertc op (an op, an OpView or its name); None for ops of other dialects
    (func.return)."""
    name = op_or_name if isinstance(op_or_name, str) else op_or_name.operation.name
    cls = OPS.get(name)
    return cls.traits if cls is not None else None


def category_of(op_or_name) -> str | None:
    """"constant", "view" or "kernel" for a bertc op (an op, an OpView or its name); None for ops of
    other dialects, so ``category_of(op) == "view"`` reads as a match in a pass."""
    traits = traits_of(op_or_name)
    return traits.category if traits is not None else None


def names_in(category: str) -> tuple[str, ...]:
    """The op names of one category: names_in("constant") == ("bertc.concat", "bertc.constant", "bertc.weight")."""
    return tuple(n for n, cls in OPS.items() if cls.traits.category == category)


def load(context: ir.Context | None = None) -> None:
    """Load the dialect into the current (or given) context, once."""
    with context or ir.Context.current:
        if not ir.Context.current.is_dialect_loaded("bertc"):
            Bertc.load()
