"""Task heads compiled into the artifact as head.bin, which the C runtime applies after the encoder
(runtime/src/head.h), so that an artifact answers with a label or an embedding on a device with no Python.

    a *ForSequenceClassification folder (or a `bertc search` student)
        -> "classify": the model's own head on [CLS] or the pooler, then softmax (or sigmoid for
           multi-label) -> outputs "logits" and "probabilities", and id2label's names
    a *ForTokenClassification folder
        -> "classify tokens": its classifier on every token -> "logits" and "probabilities" [batch, seq, labels]
    a sentence-transformers folder (modules.json: Transformer, Pooling, Dense..., Normalize)
        -> "embed": mean / CLS / max pooling over the attention mask, its Dense layers, and L2
           normalization when it has a Normalize module -> output "sentence_embedding"

A head is a source (the pooler output, the first token, or a masked mean / max / mean over the square
root of the length), dense layers each with an activation, and a last step. Any other head is named in
``Unsupported`` and the artifact is built without one (report.json says why).

File layout (little-endian): "BHED", u32 version, u8[32] sha256 of bytes 40..end; u32 task (1 classify,
2 embed, 3 classify tokens), source (0 pooler, 1 first token, 2 mean, 3 max, 4 mean / sqrt(length), 5 each), last,
layers, labels, width (of the source); per layer u32 in, out, activation, then f32 weight [out][in] and
bias [out]; per label u32 length and its UTF-8 bytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import BertcError
from .student import is_student, load_student

MAGIC, VERSION = b"BHED", 1
CLASSIFY, EMBED, TOKENS = 1, 2, 3  # TOKENS: a label per token (named entities, parts of speech)
POOLER, FIRST, MEAN, MAX, MEAN_SQRT, EACH = 0, 1, 2, 3, 4, 5  # EACH: every token's hidden state on its own
NO_LAST, SOFTMAX, SIGMOID, NORMALIZE = 0, 1, 2, 3
ACTIVATIONS = {"none": 0, "relu": 1, "tanh": 2, "gelu": 3}  # gelu: the erf form, transformers' "gelu"


class Unsupported(BertcError):
    """A head of a kind not compiled yet; the message names it."""


@dataclass
class Head:
    task: int
    source: int
    last: int
    width: int
    layers: list[tuple[np.ndarray, np.ndarray, int]] = field(default_factory=list)  # weight [out, in], bias, act
    labels: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return {CLASSIFY: "classify", EMBED: "embed", TOKENS: "classify tokens"}[self.task]

    def outputs(self) -> list[str]:
        return ["sentence_embedding"] if self.task == EMBED else ["logits", "probabilities"]


def encode(head: Head) -> bytes:
    body = bytearray(struct.pack("<6I", head.task, head.source, head.last, len(head.layers), len(head.labels),
                                 head.width))
    for w, b, act in head.layers:
        body += struct.pack("<3I", w.shape[1], w.shape[0], act)
        body += np.ascontiguousarray(w, "<f4").tobytes() + np.ascontiguousarray(b, "<f4").tobytes()
    for label in head.labels:
        data = label.encode()
        body += struct.pack("<I", len(data)) + data
    return MAGIC + struct.pack("<I", VERSION) + hashlib.sha256(body).digest() + bytes(body)


# --------------------------------------------------------------------------- reading a model folder


def _linear(lin, act: str = "none") -> tuple[np.ndarray, np.ndarray, int]:
    w = lin.weight.detach().float().numpy()
    b = lin.bias.detach().float().numpy() if lin.bias is not None else np.zeros(w.shape[0], np.float32)
    return w, b, ACTIVATIONS[act]


def _activation_name(fn) -> str:
    name = type(fn).__name__.lower() if not isinstance(fn, str) else fn.lower()
    for key in ("relu", "tanh", "gelu"):
        if key in name:
            return key
    if name in ("identity", "none", "linear"):
        return "none"
    raise Unsupported(f"its activation {name!r} is not one the C head computes (relu, tanh, gelu)")


def classification_head(path: Path, config: dict, per_token: bool = False) -> Head:
    """The head of a *ForSequenceClassification (or, ``per_token``, *ForTokenClassification) folder or a bertc
    search student, from its own weights."""
    import transformers  # seconds to import: only for a classifier

    auto = transformers.AutoModelForTokenClassification if per_token else transformers.AutoModelForSequenceClassification
    try:
        model = load_student(path) if is_student(path) else auto.from_pretrained(str(path), local_files_only=True)
    except BertcError:
        raise
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds
        raise Unsupported(f"transformers cannot load it as a {'token' if per_token else 'sequence'} classifier: "
                          f"{e}") from None
    kind = type(model).__name__
    c = model.classifier if hasattr(model, "classifier") else None
    if per_token:
        if not isinstance(c, torch.nn.Linear):
            raise Unsupported(f"its token classifier ({kind}) is not one linear layer")
        source, layers = EACH, [_linear(c)]
    elif kind in ("BertForSequenceClassification", "AlbertForSequenceClassification"):
        source, layers = POOLER, [_linear(c)]
    elif kind == "DistilBertForSequenceClassification":
        source, layers = FIRST, [_linear(model.pre_classifier, "relu"), _linear(c)]
    elif hasattr(c, "dense") and hasattr(c, "out_proj"):  # RoBERTa, XLM-R, CamemBERT, Data2Vec, ELECTRA, ...
        act = "tanh" if "Electra" not in kind else _activation_name(getattr(c, "activation", "gelu"))
        source, layers = FIRST, [_linear(c.dense, act), _linear(c.out_proj)]
    else:
        raise Unsupported(f"its head ({kind}) is not one bertc compiles yet (BERT, ALBERT, DistilBERT, RoBERTa-style)")
    problem = model.config.problem_type
    labels = [str(model.config.id2label.get(i, f"LABEL_{i}")) for i in range(model.config.num_labels)]
    if len(labels) > 4096:
        raise Unsupported(f"it has {len(labels)} labels; the C head takes at most 4096")
    last = SIGMOID if problem == "multi_label_classification" else NO_LAST if len(labels) == 1 else SOFTMAX
    return Head(TOKENS if per_token else CLASSIFY, source, last, layers[0][0].shape[1], layers, labels)


def embedding_head(path: Path, hidden: int) -> Head:
    """sentence-transformers' modules after the Transformer: Pooling, Dense, Normalize."""
    modules = json.loads((path / "modules.json").read_text())
    source, layers, last, width = None, [], NO_LAST, hidden
    for m in sorted(modules, key=lambda m: m.get("idx", 0)):
        kind = m.get("type", "").rsplit(".", 1)[-1]
        folder = path / m.get("path", "")
        if kind == "Transformer":
            continue
        if kind == "Pooling":
            cfg = json.loads((folder / "config.json").read_text())
            # sentence-transformers 6 writes "pooling_mode": "mean" (or a list); earlier ones a flag per mode
            modes = cfg["pooling_mode"] if "pooling_mode" in cfg else [
                k.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens").replace(
                    "mean_sqrt_len", "mean_sqrt_len_tokens") for k, v in cfg.items() if k.startswith("pooling_mode_") and v]
            modes = [modes] if isinstance(modes, str) else list(modes)
            named = {"cls": FIRST, "mean": MEAN, "max": MAX, "mean_sqrt_len_tokens": MEAN_SQRT}
            if len(modes) != 1 or modes[0] not in named:
                raise Unsupported(f"its pooling {modes} is not one mode of cls, mean, max or mean_sqrt_len_tokens")
            source = named[modes[0]]
        elif kind == "Dense":
            cfg = json.loads((folder / "config.json").read_text())
            from safetensors.numpy import load_file

            weights = folder / "model.safetensors"
            if not weights.exists():
                raise Unsupported(f"its Dense module in {folder} has no model.safetensors")
            state = load_file(str(weights))
            w = state["linear.weight"].astype(np.float32)
            b = state.get("linear.bias", np.zeros(w.shape[0], np.float32)).astype(np.float32)
            layers.append((w, b, ACTIVATIONS[_activation_name(cfg.get("activation_function", "tanh"))]))
        elif kind == "Normalize":
            last = NORMALIZE
        else:
            raise Unsupported(f"its module {kind} is not one bertc compiles yet (Pooling, Dense, Normalize)")
        if source is None and kind != "Pooling":
            raise Unsupported(f"its module {kind} comes before a Pooling module")
    if source is None:
        raise Unsupported("its modules.json has no Pooling module")
    return Head(EMBED, source, last, width, layers)


def text_limit(path: Path | None) -> int | None:
    """The longest input a sentence-transformers folder embeds (its max_seq_length: texts are cut to it), or
    None for any other folder."""
    if path is None or not (path / "modules.json").exists():
        return None
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        try:
            value = json.loads((path / name).read_text()).get(key)
        except (OSError, ValueError):
            continue
        if isinstance(value, int) and 2 <= value < 1 << 20:
            return value
    return None


def head_of(path: Path | None, config: dict) -> Head | None:
    """The head a model folder asks for: None for a plain encoder (no modules.json, not a classifier)."""
    if path is None or not path.is_dir():
        return None
    if (path / "modules.json").exists():
        return embedding_head(path, int(config.get("hidden_size") or config.get("dim") or 0))
    archs = config.get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs) or "attention_heads" in config:
        return classification_head(path, config)
    if any(a.endswith("ForTokenClassification") for a in archs):
        return classification_head(path, config, per_token=True)
    return None


def write_head_bin(path: Path | None, config: dict, out: Path, outputs: list[str]) -> dict | None:
    """head.bin for a model folder with a task head, and what report.json says of it (None: no head)."""
    try:
        head = head_of(path, config)
        if head is not None and head.source == POOLER and "pooler_output" not in outputs:
            raise Unsupported("its classifier reads the pooler output, which this encoder does not have")
        if head is not None and head.source != POOLER and "last_hidden_state" not in outputs:
            raise Unsupported("its head reads the hidden states, which this encoder does not output")
    except Unsupported as e:
        return {"compiled": False, "why": str(e)}
    if head is None:
        return None
    out.write_bytes(encode(head))
    return {"compiled": True, "file": "head.bin", "kind": head.kind, "outputs": head.outputs(),
            "source": ["pooler_output", "first token", "mean", "max", "mean / sqrt(length)", "every token"][head.source],
            "layers": [list(w.shape[::-1]) for w, _, _ in head.layers], "labels": head.labels,
            "last": ["none", "softmax", "sigmoid", "L2 normalize"][head.last]}
