"""Students cut out of the teacher: the layers, heads, FFN neurons and hidden channels that matter most.

    task = load_task("rt-sentiment")                           # search/tasks.py
    teacher, tokenizer = load_classifier(teacher_dir, task)    # search/teacher.py
    imp = importance(teacher, tokenizer, task)                 # once per study
    student, cut = build_student(teacher, imp, 2, 48, [3, 3], [96, 96])  # layers, hidden, heads and FFN per layer
    student.save_pretrained("out/")                            # `bertc compile out/` takes it
    model = load_student("out/")                               # bertc/student.py reads it back

Importance is the first-order Taylor estimate of how much the teacher's loss changes when a unit is
removed (Michel et al. 2019 for heads, Molchanov et al. 2019 for neurons): per example,
``|sum over tokens of activation x gradient|``, summed over examples of the train split. A head's
activation is its slice of the context vector that enters attention.output.dense; an FFN neuron's is
its GELU output; a hidden channel's is that channel of the embeddings' and every layer's output.

Layers are selected evenly and always include the last (``select_layers(6, 3) == [1, 3, 5]``): the
last layer feeds the pooler and classifier the student keeps. Heads keep the teacher's head size, so a
layer of 8 heads in a 384-wide model has 256-wide Q, K and V (transformers' attention reshapes with
-1 heads); config.json then records ``attention_heads``, ``intermediate_sizes`` and
``attention_head_size`` per layer, which bertc/synth.py (the cost model) and bertc/student.py (the
frontend's reader of students) read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bertc.errors import BertcError

# reading a student is the compiler's (bertc/student.py); the search's callers find it here too
from bertc.student import is_student, load_student, shape_layers  # noqa: F401

from .distill import _batches, encode


@dataclass
class Importance:
    heads: np.ndarray  # [teacher layers, heads]
    neurons: list[np.ndarray]  # per teacher layer: [ffn]
    hidden: np.ndarray  # [hidden]
    examples: int

    def save(self, path: Path) -> None:
        np.savez(path, heads=self.heads, hidden=self.hidden, examples=self.examples,
                 **{f"neurons{i}": n for i, n in enumerate(self.neurons)})

    @classmethod
    def load(cls, path: Path) -> Importance:
        z = np.load(path)
        return cls(z["heads"], [z[f"neurons{i}"] for i in range(len(z["heads"]))], z["hidden"], int(z["examples"]))


def importance(teacher, tokenizer, task, max_examples: int = 2048, batch_size: int = 32) -> Importance:
    """Taylor importance of every head, FFN neuron and hidden channel of ``teacher`` on ``task.train``."""
    layers = teacher.bert.encoder.layer
    d = teacher.config.hidden_size // teacher.config.num_attention_heads
    heads = np.zeros((len(layers), teacher.config.num_attention_heads))
    neurons = [np.zeros(layer.intermediate.dense.out_features) for layer in layers]
    hidden = np.zeros(teacher.config.hidden_size)
    grabbed: list[tuple[str, int, torch.Tensor]] = []

    def grab(kind: str, i: int):
        def hook(module, args, out=None):
            x = args[0] if out is None else (out[0] if isinstance(out, tuple) else out)
            x.retain_grad()
            grabbed.append((kind, i, x))
        return hook

    handles = [teacher.bert.embeddings.register_forward_hook(grab("hidden", -1))]
    for i, layer in enumerate(layers):
        handles += [layer.attention.output.dense.register_forward_pre_hook(grab("heads", i)),
                    layer.output.dense.register_forward_pre_hook(grab("neurons", i)),
                    layer.register_forward_hook(grab("hidden", i))]
    enc = encode(tokenizer, task.train[:max_examples], task.max_length)
    teacher.eval()  # no dropout: the estimate is of the model that is sliced
    try:
        for idx, batch in _batches(enc, batch_size):
            grabbed.clear()
            out = teacher(**batch)
            torch.nn.functional.cross_entropy(out.logits, torch.from_numpy(enc.labels[idx]), reduction="sum").backward()
            keep = batch["attention_mask"].unsqueeze(-1).float()
            for kind, i, x in grabbed:
                per = ((x * x.grad * keep).sum(1)).detach()  # [batch, width]
                if kind == "heads":
                    heads[i] += per.reshape(per.shape[0], -1, d).sum(-1).abs().sum(0).numpy()
                elif kind == "neurons":
                    neurons[i] += per.abs().sum(0).numpy()
                else:
                    hidden += per.abs().sum(0).numpy()
            teacher.zero_grad(set_to_none=True)
    finally:
        for h in handles:
            h.remove()
    return Importance(heads, neurons, hidden, len(enc))


def select_layers(teacher_layers: int, layers: int) -> list[int]:
    """Evenly spaced teacher layers, the last always among them.

    >>> select_layers(6, 3)
    [1, 3, 5]
    """
    if not 1 <= layers <= teacher_layers:
        raise BertcError(f"a student of {layers} layers cannot be cut from a teacher of {teacher_layers}")
    return [round((i + 1) * teacher_layers / layers) - 1 for i in range(layers)]


@dataclass(frozen=True)
class Cut:
    """Which teacher units a student keeps (sorted indices, so the kept units keep their order)."""

    layers: list[int]
    hidden: np.ndarray
    heads: list[np.ndarray]  # per student layer: the teacher heads kept
    neurons: list[np.ndarray]  # per student layer: the teacher FFN neurons kept


def plan_cut(imp: Importance, layers: int, hidden: int, heads: list[int], ffn: list[int]) -> Cut:
    top = lambda scores, k: np.sort(np.argsort(-scores, kind="stable")[:k])
    chosen = select_layers(len(imp.heads), layers)
    if hidden > len(imp.hidden):
        raise BertcError(f"hidden size {hidden} is wider than the teacher's {len(imp.hidden)}")
    for t, a, f in zip(chosen, heads, ffn):
        if a > imp.heads.shape[1] or f > len(imp.neurons[t]):
            raise BertcError(f"{a} heads / FFN {f} is more than teacher layer {t} has "
                             f"({imp.heads.shape[1]} heads, FFN {len(imp.neurons[t])})")
    return Cut(chosen, top(imp.hidden, hidden), [top(imp.heads[t], a) for t, a in zip(chosen, heads)],
               [top(imp.neurons[t], f) for t, f in zip(chosen, ffn)])


def student_config(teacher_config, layers: int, hidden: int, heads: list[int], ffn: list[int]):
    d = teacher_config.hidden_size // teacher_config.num_attention_heads
    if hidden % d:
        raise BertcError(f"hidden size {hidden} is not a multiple of the teacher's head size {d}")
    cfg = teacher_config.__class__.from_dict(teacher_config.to_dict())
    cfg.update({"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": hidden // d,
                "intermediate_size": max(ffn), "attention_heads": list(heads), "intermediate_sizes": list(ffn),
                "attention_head_size": d})
    return cfg


def _sliced_state(teacher, cut: Cut, d: int) -> dict[str, torch.Tensor]:
    hc = torch.from_numpy(cut.hidden)
    sd, out = teacher.state_dict(), {}
    for name, t in sd.items():
        if name.startswith("bert.embeddings."):
            out[name] = t[:, hc] if t.ndim == 2 and "position_ids" not in name else (t if "position_ids" in name else t[hc])
    for s, (t_layer, hk, nk) in enumerate(zip(cut.layers, cut.heads, cut.neurons)):
        src, dst = f"bert.encoder.layer.{t_layer}.", f"bert.encoder.layer.{s}."
        rows = torch.from_numpy((hk[:, None] * d + np.arange(d)).reshape(-1))
        nk = torch.from_numpy(nk)
        for m in ("query", "key", "value"):
            out[f"{dst}attention.self.{m}.weight"] = sd[f"{src}attention.self.{m}.weight"][rows][:, hc]
            out[f"{dst}attention.self.{m}.bias"] = sd[f"{src}attention.self.{m}.bias"][rows]
        out[f"{dst}attention.output.dense.weight"] = sd[f"{src}attention.output.dense.weight"][hc][:, rows]
        out[f"{dst}intermediate.dense.weight"] = sd[f"{src}intermediate.dense.weight"][nk][:, hc]
        out[f"{dst}intermediate.dense.bias"] = sd[f"{src}intermediate.dense.bias"][nk]
        out[f"{dst}output.dense.weight"] = sd[f"{src}output.dense.weight"][hc][:, nk]
        for m in ("attention.output.dense.bias", "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
                  "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"):
            out[dst + m] = sd[src + m][hc]
    out["bert.pooler.dense.weight"] = sd["bert.pooler.dense.weight"][hc][:, hc]
    out["bert.pooler.dense.bias"] = sd["bert.pooler.dense.bias"][hc]
    out["classifier.weight"] = sd["classifier.weight"][:, hc]
    out["classifier.bias"] = sd["classifier.bias"]
    return {k: v.clone().contiguous() for k, v in out.items()}


def build_student(teacher, imp: Importance, layers: int, hidden: int, heads: list[int], ffn: list[int]):
    """(student, cut): a classifier of the given shape holding the teacher's most important units."""
    from transformers import BertForSequenceClassification

    cut = plan_cut(imp, layers, hidden, heads, ffn)
    cfg = student_config(teacher.config, layers, hidden, heads, ffn)
    student = BertForSequenceClassification(cfg)
    shape_layers(student)
    student.load_state_dict(_sliced_state(teacher, cut, cfg.attention_head_size))
    return student.eval(), cut
