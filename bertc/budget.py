"""Will a compile fit in this machine's memory? Answered from the config, before a model is built.

An absurd config (10,000 layers) or batch (--batch 1000000) would otherwise build a model for
minutes and then take the machine's memory until the kernel kills something. The cost model
(bertc/cost.py) already prices what an artifact needs, weights.bin and the arena plan's peak, from the
config alone through bertc/synth.py; this module asks it for a one- and a two-layer encoder at batch 1,
which takes milliseconds whatever the size, and scales: weights grow by one layer's per layer, the
arena (reused from layer to layer) by the batch. A compile holds more than the artifact:

    need = weights x WEIGHT_COPIES + arena x batch x ACTIVATION_FACTOR

and it is refused when that is above what the machine has available (MemAvailable).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cost import estimate
from .errors import BertcError

# The compile holds the weights several times at once: the PyTorch model's parameters, the packed copy
# --pack-weights makes, and weights.bin's bytes that --emit-c builds before writing them. Measured: compiling
# MiniLM (85 MiB of weights) peaks 470 MiB above the process it started in, about 5.5 times.
WEIGHT_COPIES = 5
# PyTorch runs the model eagerly at the compiled shape (the export's probe, the frontend's evaluation of
# the mask sub-graphs): unfused attention scores and masks the arena plan shares or never makes. Measured:
# a hidden-256 BERT's compile grows by about 4 times the arena's growth from batch 32 to 128; 6 keeps a margin.
ACTIVATION_FACTOR = 6
# Config names of the other encoders, as a BERT config (what bertc/synth.py writes IR for) spells them.
BERT_NAMES = {"dim": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
              "hidden_dim": "intermediate_size"}
GIB = 2**30


@dataclass(frozen=True)
class CompileNeed:
    """Bytes one compile and its artifact need, from the cost model."""

    weights_bytes: int  # weights.bin
    arena_bytes: int  # the artifact's activation arena at the compiled batch and sequence length

    @property
    def artifact_bytes(self) -> int:
        return self.weights_bytes + self.arena_bytes

    @property
    def compile_bytes(self) -> int:
        return self.weights_bytes * WEIGHT_COPIES + self.arena_bytes * ACTIVATION_FACTOR


def available_bytes() -> int | None:
    """Memory this machine can give a new allocation without swapping: MemAvailable (Linux), else free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _as_bert(config: dict[str, Any], layers: int) -> dict[str, Any]:
    cfg = {BERT_NAMES.get(k, k): v for k, v in config.items()}
    # synth writes BERT's IR; the other encoders' sizes are what matters here, not their details
    return {**cfg, "model_type": "bert", "hidden_act": "gelu", "num_hidden_layers": layers,
            "type_vocab_size": max(int(cfg.get("type_vocab_size") or 1), 1),
            "attention_heads": (cfg.get("attention_heads") or [])[:layers] or None,
            "intermediate_sizes": (cfg.get("intermediate_sizes") or [])[:layers] or None}


def compile_need(config: dict[str, Any], batch: int, seq_len: int) -> CompileNeed | None:
    """What compiling ``config`` at ``batch`` x ``seq_len`` needs; None for a config the cost model does not
    read (not a BERT-family encoder), which then goes unchecked."""
    layers = config.get("num_hidden_layers", config.get("n_layers"))
    if not isinstance(layers, int) or layers < 1:
        return None
    seq = min(seq_len, int(config.get("max_position_embeddings") or seq_len))
    try:
        first, per_layer, arena = _priced(json.dumps(_as_bert(config, 1), sort_keys=True, default=str),
                                          json.dumps(_as_bert(config, 2), sort_keys=True, default=str), seq)
    except BertcError:
        return None
    return CompileNeed(weights_bytes=first + per_layer * (layers - 1), arena_bytes=arena * batch)


@functools.lru_cache(maxsize=64)
def _priced(one_layer: str, two_layers: str, seq_len: int) -> tuple[int, int, int]:
    """(weights of one layer's encoder, weights each further layer adds, arena at batch 1) from the cost model;
    remembered, since the tests compile the same few configs many times."""
    one, two = (estimate(json.loads(c), seq_len=seq_len) for c in (one_layer, two_layers))
    return one.weights_bytes, two.weights_bytes - one.weights_bytes, max(one.arena_bytes, two.arena_bytes)


def _size(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / 2**20:.1f} MiB"


def check_compile_fits(config: dict[str, Any], batch: int, seq_len: int, where: str) -> None:
    """Refuse a compile that cannot fit in this machine's available memory, naming the figures and the way out."""
    need = compile_need(config, batch, seq_len)
    free = available_bytes()
    if need is None or free is None or need.compile_bytes <= free:
        return
    layers = config.get("num_hidden_layers", config.get("n_layers"))
    weights, activations = need.weights_bytes * WEIGHT_COPIES, need.arena_bytes * ACTIVATION_FACTOR
    fix = ("a smaller model (fewer layers, a narrower hidden size)" if weights >= activations else
           f"a smaller --batch or --seq-len (memory grows with batch x seq-len; --batch {batch} --seq-len {seq_len} "
           "now)")
    raise BertcError(
        f"{where}: compiling this model at --batch {batch} --seq-len {seq_len} needs about {_size(need.compile_bytes)} "
        f"(weights {_size(need.weights_bytes)} for {layers} layers, held about {WEIGHT_COPIES} times; activations "
        f"{_size(need.arena_bytes)} in the artifact, about {ACTIVATION_FACTOR} times that while PyTorch runs the "
        f"model; the artifact needs {_size(need.artifact_bytes)} to run), and this machine has {_size(free)} "
        f"available. Use {fix}")
