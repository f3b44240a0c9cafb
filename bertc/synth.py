"""A BERT encoder's IR straight from its config: what --raise-torch makes of the exported model,
written without PyTorch, weights, torch.export or the importer.

The cost model (bertc/cost.py) runs the compiler's own passes from here (fuse-attention onwards) on
candidates the search has not built, in milliseconds; test/test_cost.py holds the text this makes to
the IR the real pipeline gives for the same config, op by op.

    text = bert_ir({"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                    "intermediate_size": 1536}, seq_len=128)

A config is a transformers BertConfig (or its dict). Beyond BertConfig, three fields describe search
students whose layers differ (bertc/search/inherit.py makes them): ``intermediate_sizes`` (the FFN
width of each layer), ``attention_heads`` (the heads each layer keeps) and ``attention_head_size``
(the width of one head, kept from the teacher, so heads x head size need not be hidden_size).
"""

from __future__ import annotations

import math
import struct
from typing import Any

from .errors import BertcError

DEFAULTS = {"vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
            "hidden_act": "gelu", "intermediate_size": None}
ACTS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}


def _f32(x: float) -> str:
    """An f32 attribute exactly as MLIR prints it back (hex for non-finite values)."""
    if math.isinf(x):
        return "0xFF800000" if x < 0 else "0x7F800000"
    return repr(struct.unpack("f", struct.pack("f", x))[0])


def normalize(config: Any) -> dict[str, Any]:
    """A config (BertConfig, dict) -> the fields the IR needs, checked; errors say which field is wrong."""
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    if cfg.get("model_type", "bert") != "bert":
        raise BertcError(f"the cost model's config path builds BERT encoders; model_type '{cfg['model_type']}' "
                         "is not one (give a model folder or .pt2 to `bertc estimate` instead)")
    out = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
        if not isinstance(out.get(key), int) or out[key] < 1:
            raise BertcError(f"config field '{key}' must be a positive integer, got {out.get(key)!r}")
    h, heads, layers = out["hidden_size"], out["num_attention_heads"], out["num_hidden_layers"]
    if h % heads and not out.get("attention_head_size"):
        raise BertcError(f"hidden_size {h} is not divisible by num_attention_heads {heads}")
    out["attention_head_size"] = out.get("attention_head_size") or h // heads
    per_layer = out.get("attention_heads") or [heads] * layers
    if len(per_layer) != layers or not all(isinstance(a, int) and a >= 1 for a in per_layer):
        raise BertcError(f"attention_heads must hold {layers} positive integers (one per layer), got {per_layer}")
    out["attention_heads"] = list(per_layer)
    sizes = out.get("intermediate_sizes") or [out["intermediate_size"] or 4 * h] * layers
    if len(sizes) != layers or not all(isinstance(s, int) and s >= 1 for s in sizes):
        raise BertcError(f"intermediate_sizes must hold {layers} positive integers (one per layer), got {sizes}")
    out["intermediate_sizes"] = list(sizes)
    if out["hidden_act"] not in ACTS:
        raise BertcError(f"hidden_act '{out['hidden_act']}' is not one of {sorted(ACTS)}")
    return out


def bert_ir(config: Any, seq_len: int = 128, batch: int = 1, target: str = "host", pooler: bool = True) -> str:
    """The bertc-dialect module --raise-torch produces for a BertModel of this config (sdpa or eager)."""
    c = normalize(config)
    if not 1 <= seq_len <= c["max_position_embeddings"]:
        raise BertcError(f"seq_len {seq_len} is outside 1..max_position_embeddings ({c['max_position_embeddings']})")
    b, s, h, d = batch, seq_len, c["hidden_size"], c["attention_head_size"]
    f32 = lambda *dims: "tensor<" + "x".join(str(x) for x in dims) + "xf32>"
    i64 = f"tensor<{b}x{s}xi64>"
    act = f32(b, s, h)
    lines: list[str] = []
    n = 0

    def op(text: str) -> str:
        nonlocal n
        lines.append(f"    %{n} = {text}")
        n += 1
        return f"%{n - 1}"

    def weight(name: str, ty: str) -> str:
        return op(f'"bertc.weight"() {{name = "{name}"}} : () -> {ty}')

    def linear(x: str, x_ty: str, name: str, n_out: int, k: int, out_ty: str) -> str:
        w, bias = weight(f"{name}.weight", f32(n_out, k)), weight(f"{name}.bias", f32(n_out))
        return op(f'"bertc.linear"({x}, {w}, {bias}) {{activation = "none", operandSegmentSizes = array<i32: 1, 1, '
                  f'1, 0>}} : ({x_ty}, {f32(n_out, k)}, {f32(n_out)}) -> {out_ty}')

    def layer_norm(x: str, name: str) -> str:
        g, beta = weight(f"{name}.weight", f32(h)), weight(f"{name}.bias", f32(h))
        return op(f'"bertc.layer_norm"({x}, {g}, {beta}) {{eps = {_f32(c["layer_norm_eps"])} : f32, '
                  f"operandSegmentSizes = array<i32: 1, 1, 1, 0>}} : ({act}, {f32(h)}, {f32(h)}) -> {act}")

    def binary(kind: str, a: str, a_ty: str, b_: str, b_ty: str, out_ty: str) -> str:
        return op(f'"bertc.{kind}"({a}, {b_}) : ({a_ty}, {b_ty}) -> {out_ty}')

    def heads_view(x: str, heads: int) -> str:
        r = op(f'"bertc.reshape"({x}) : ({f32(b, s, heads * d)}) -> {f32(b, s, heads, d)}')
        return op(f'"bertc.transpose"({r}) {{perm = array<i64: 0, 2, 1, 3>}} : ({f32(b, s, heads, d)}) -> '
                  f"{f32(b, heads, s, d)}")

    mask = op(f'"bertc.mask_bias"(%arg1) {{fill = {_f32(-math.inf)} : f32, window = 0 : i64}} : ({i64}) -> {f32(b, 1, s, s)}')
    words = weight("embeddings.word_embeddings.weight", f32(c["vocab_size"], h))
    x = op(f'"bertc.embedding"({words}, %arg0) : ({f32(c["vocab_size"], h)}, {i64}) -> {act}')
    types = weight("embeddings.token_type_embeddings.weight", f32(c["type_vocab_size"], h))
    t = op(f'"bertc.embedding"({types}, %arg2) : ({f32(c["type_vocab_size"], h)}, {i64}) -> {act}')
    x = binary("add", x, act, t, act, act)
    pos_table = weight("embeddings.position_embeddings.weight", f32(c["max_position_embeddings"], h))
    pos_ids = op(f'"bertc.weight"() {{name = "embeddings.position_ids"}} : () -> tensor<1x{s}xi64>')
    # one row of positions for the whole batch, broadcast by the add (as transformers' position_ids buffer is)
    p = op(f'"bertc.embedding"({pos_table}, {pos_ids}) : ({f32(c["max_position_embeddings"], h)}, '
           f"tensor<1x{s}xi64>) -> {f32(1, s, h)}")
    x = layer_norm(binary("add", x, act, p, f32(1, s, h), act), "embeddings.LayerNorm")
    for i, (ffn, heads) in enumerate(zip(c["intermediate_sizes"], c["attention_heads"])):
        pre, scores, hd = f"encoder.layer.{i}", f32(b, heads, s, s), f32(b, s, heads * d)
        q, k, v = (heads_view(linear(x, act, f"{pre}.attention.self.{m}", heads * d, h, hd), heads)
                   for m in ("query", "key", "value"))
        kt = op(f'"bertc.transpose"({k}) {{perm = array<i64: 0, 1, 3, 2>}} : ({f32(b, heads, s, d)}) -> '
                f"{f32(b, heads, d, s)}")
        qk = op(f'"bertc.matmul"({q}, {kt}) : ({f32(b, heads, s, d)}, {f32(b, heads, d, s)}) -> {scores}')
        scale = op(f'"bertc.constant"() {{value = dense<{_f32(1 / math.sqrt(d))}> : tensor<f32>}} : () -> tensor<f32>')
        sc = binary("mul", qk, scores, scale, "tensor<f32>", scores)
        sc = binary("add", sc, scores, mask, f32(b, 1, s, s), scores)
        probs = op(f'"bertc.softmax"({sc}) : ({scores}) -> {scores}')
        ctx = op(f'"bertc.matmul"({probs}, {v}) : ({scores}, {f32(b, heads, s, d)}) -> {f32(b, heads, s, d)}')
        ctx = op(f'"bertc.transpose"({ctx}) {{perm = array<i64: 0, 2, 1, 3>}} : ({f32(b, heads, s, d)}) -> '
                 f"{f32(b, s, heads, d)}")
        ctx = op(f'"bertc.reshape"({ctx}) : ({f32(b, s, heads, d)}) -> {hd}')
        o = linear(ctx, hd, f"{pre}.attention.output.dense", h, heads * d, act)
        x = layer_norm(binary("add", o, act, x, act, act), f"{pre}.attention.output.LayerNorm")
        up = linear(x, act, f"{pre}.intermediate.dense", ffn, h, f32(b, s, ffn))
        if c["hidden_act"] == "gelu":
            up = op(f'"bertc.gelu"({up}) {{approximate = "none"}} : ({f32(b, s, ffn)}) -> {f32(b, s, ffn)}')
        else:
            up = op(f'"bertc.gelu"({up}) {{approximate = "tanh"}} : ({f32(b, s, ffn)}) -> {f32(b, s, ffn)}')
        down = linear(up, f32(b, s, ffn), f"{pre}.output.dense", h, ffn, act)
        x = layer_norm(binary("add", down, act, x, act, act), f"{pre}.output.LayerNorm")
    results, types_out, names = [x], [act], ["last_hidden_state"]
    if pooler:
        first = op(f'"bertc.slice"({x}) {{dim = 1 : i64, start = 0 : i64}} : ({act}) -> {f32(b, 1, h)}')
        first = op(f'"bertc.reshape"({first}) : ({f32(b, 1, h)}) -> {f32(b, h)}')
        pooled = linear(first, f32(b, h), "pooler.dense", h, h, f32(b, h))
        results.append(op(f'"bertc.tanh"({pooled}) : ({f32(b, h)}) -> {f32(b, h)}'))
        types_out.append(f32(b, h))
        names.append("pooler_output")
    attrs = (f'bertc.input_names = ["input_ids", "attention_mask", "token_type_ids"], bertc.output_names = '
             f'[{", ".join(repr(x).replace(chr(39), chr(34)) for x in names)}], '
             f"bertc.type_vocab_size = {c['type_vocab_size']} : i64, bertc.vocab_size = {c['vocab_size']} : i64")
    return "\n".join([
        f'module attributes {{bertc.dtype = "f32", bertc.target = "{target}"}} {{',
        (f"  func.func @main(%arg0: {i64}, %arg1: {i64}, %arg2: {i64}) -> ({', '.join(types_out)}) "
        f"attributes {{{attrs}}} {{"),
        *lines,
        f"    return {', '.join(results)} : {', '.join(types_out)}",
        "  }",
        "}",
    ])
