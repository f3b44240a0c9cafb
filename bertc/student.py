"""Students whose layers differ: a BERT classifier with per-layer head counts and FFN widths.

``bertc search`` cuts them out of a teacher (search/inherit.py) and saves them with
``save_pretrained``; their config.json adds, per layer, ``attention_heads`` and
``intermediate_sizes``, and ``attention_head_size``. transformers cannot build such a model itself
(one head count and one FFN width for all layers), so the compiler builds it here, and the search
imports it from here: reading a student is the compiler's business, cutting one is the search's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from .errors import BertcError


def is_student(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved student (its config.json has per-layer ``attention_heads``)."""
    cfg = Path(folder) / "config.json"
    return cfg.is_file() and "attention_heads" in json.loads(cfg.read_text())


def shape_layers(model) -> None:
    """Resize each layer's linears to config.attention_heads / intermediate_sizes (fresh weights)."""
    cfg, lin = model.config, torch.nn.Linear
    d, h = cfg.attention_head_size, cfg.hidden_size
    for layer, a, f in zip(model.bert.encoder.layer, cfg.attention_heads, cfg.intermediate_sizes):
        att = layer.attention.self
        att.query, att.key, att.value = lin(h, a * d), lin(h, a * d), lin(h, a * d)
        att.attention_head_size, att.num_attention_heads, att.all_head_size = d, a, a * d
        att.scaling = d ** -0.5
        layer.attention.output.dense = lin(a * d, h)
        layer.intermediate.dense, layer.output.dense = lin(h, f), lin(f, h)


def load_student(folder: str | Path):
    """A saved student (config.json with attention_heads / intermediate_sizes) as a classifier."""
    from transformers import AutoConfig, BertForSequenceClassification  # seconds to import

    folder = Path(folder)
    cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    model = BertForSequenceClassification(cfg)
    shape_layers(model)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise BertcError(f"'{folder}' has a student's config.json but no model.safetensors beside it")
    missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise BertcError(f"the weights in '{folder}' do not fit its config: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return model.eval()
