"""Training a sequence classifier on a task: plain fine-tuning, or distillation from a teacher, with an
optional sparsity mask held fixed.

    enc = encode(tokenizer, task.dev, task.max_length)
    acc = accuracy(predict_logits(model, enc), enc.labels)
    history = train(student, tokenizer, task, TrainConfig(epochs=3), teacher=teacher, masks=masks)

Distillation follows Hinton et al.: ``soft_weight x T^2 x KL(teacher/T || student/T) + (1 - soft_weight)
x CE(student, label)``, plus ``hidden_weight x`` the mean squared error between the student's and the
teacher's hidden states (a student cut from the teacher compares each of its hidden states with the
teacher layer it came from, on the hidden channels it kept: a HiddenMap). Unlabelled texts (label -1,
e.g. from ``augment``) add soft-label examples: the teacher's logits are their only target. Without hidden
states the teacher's logits are computed once, before the first epoch (the teacher runs in eval mode,
so they do not change), which makes a distillation epoch cost what a fine-tuning epoch costs.
The model is evaluated on dev after every epoch and the best epoch's weights are kept. With a
``checkpoint`` file, everything the next epoch needs (weights, optimizer, schedule, random state, the
best epoch so far) is saved after each epoch, and a later call continues from the last finished one:
a stopped fine-tuning loses at most the epoch it was in.
"""

from __future__ import annotations

import copy
import os
import pickle
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bertc.errors import BertcError

from .tasks import Example, Task


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    lr: float = 5e-5
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup: float = 0.06  # fraction of the steps with a linearly rising learning rate; then linear decay to 0
    max_train: int | None = None  # train on the first N training examples only (a quick check)
    seed: int = 0
    temperature: float = 2.0  # distillation only
    soft_weight: float = 0.5  # distillation only: weight of the teacher's soft labels against the hard ones
    hidden_weight: float = 0.0  # distillation only: weight of the hidden-state MSE

    def asdict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class HiddenMap:
    """Student hidden state i (0 = embeddings) is compared with teacher hidden state ``layers[i]`` on
    the teacher's hidden channels ``channels``."""

    layers: list[int]
    channels: torch.Tensor


def augment(texts: Sequence[str], copies: int, seed: int = 0) -> list[str]:
    """``copies`` perturbed variants of every text, for distillation on the teacher's soft labels (in the
    spirit of TinyBERT's augmentation, without a masked LM): each drops 15% of the words, replaces 15%
    with words drawn from the corpus, keeps a random 50-90% span, or joins its first half to another
    text's second half."""
    rng = np.random.default_rng(seed)
    words = [t.split() for t in texts]
    pool = [w for ws in words for w in ws]
    out = []
    for i, ws in enumerate(words):
        for _ in range(copies):
            kind, n = rng.integers(4), len(ws)
            if n < 4:
                new = ws + [pool[rng.integers(len(pool))]]
            elif kind == 0:
                new = [w for w in ws if rng.random() > 0.15]
            elif kind == 1:
                new = [pool[rng.integers(len(pool))] if rng.random() < 0.15 else w for w in ws]
            elif kind == 2:
                span = max(2, int(n * rng.uniform(0.5, 0.9)))
                start = rng.integers(0, n - span + 1)
                new = ws[start:start + span]
            else:
                other = words[rng.integers(len(words))]
                new = ws[:n // 2] + other[len(other) // 2:]
            out.append(" ".join(new or ws))
    return out


def use_all_cores() -> int:
    """Give torch every core this process may run on (its default counts physical cores only), unless
    OMP_NUM_THREADS says otherwise: on a machine shared with other jobs, fewer threads waste less time
    waiting at barriers for a thread that is not running."""
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    return torch.get_num_threads()


@dataclass
class Encoded:
    ids: list[np.ndarray]  # token ids per example, unpadded, at most max_length
    labels: np.ndarray  # int64 [examples]
    pad_id: int

    def __len__(self) -> int:
        return len(self.ids)


def encode(tokenizer, examples: Sequence[Example], max_length: int) -> Encoded:
    enc = tokenizer([t for t, _ in examples], truncation=True, max_length=max_length)
    return Encoded([np.asarray(i, np.int64) for i in enc["input_ids"]], np.asarray([y for _, y in examples], np.int64),
                   tokenizer.pad_token_id or 0)


def _batch(enc: Encoded, idx: np.ndarray) -> dict[str, torch.Tensor]:
    seq = max(len(enc.ids[i]) for i in idx)
    ids = np.full((len(idx), seq), enc.pad_id, np.int64)
    mask = np.zeros((len(idx), seq), np.int64)
    for row, i in enumerate(idx):
        ids[row, :len(enc.ids[i])] = enc.ids[i]
        mask[row, :len(enc.ids[i])] = 1
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
            "token_type_ids": torch.zeros_like(torch.from_numpy(ids))}


def batch_order(enc: Encoded, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of example indices. Shuffled (rng given): random pools of 50 batches, each pool sorted by
    length so that a batch pads little, and the batches shuffled again. In order: by length."""
    lengths = np.asarray([len(i) for i in enc.ids])
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    perm, pool, out = rng.permutation(len(enc)), 50 * batch_size, []
    for p0 in range(0, len(perm), pool):
        chunk = perm[p0:p0 + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def _batches(enc: Encoded, batch_size: int, rng=None) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    for idx in batch_order(enc, batch_size, rng):
        yield idx, _batch(enc, idx)


@torch.inference_mode()
def predict_logits(model, enc: Encoded, batch_size: int = 128, progress: bool = False, desc: str = "eval") -> np.ndarray:
    """[examples, labels] logits, in the order of ``enc`` (the model is put in eval mode)."""
    model.eval()
    out = None
    for idx, batch in tqdm(_batches(enc, batch_size), total=-(-len(enc) // batch_size), desc=desc,
                           disable=not progress, leave=False):
        logits = model(**batch).logits.float().numpy()
        if out is None:
            out = np.zeros((len(enc), logits.shape[1]), np.float32)
        out[idx] = logits
    return out if out is not None else np.zeros((0, 2), np.float32)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose largest logit is the label (ties go to the lower label)."""
    labels = np.asarray(labels)
    return float((np.asarray(logits).argmax(axis=1) == labels).mean()) if labels.size else float("nan")


def evaluate(model, tokenizer, examples: Sequence[Example], max_length: int, progress: bool = False) -> float:
    enc = encode(tokenizer, examples, max_length)
    return accuracy(predict_logits(model, enc, progress=progress), enc.labels)


class MaskHold:
    """Keeps pruned weights at exactly zero: ``apply()`` after every optimizer step (AdamW's moments and
    weight decay would otherwise move them). Gradients are zeroed too, so the moments stay zero."""

    def __init__(self, model, masks: dict[str, np.ndarray]):
        params = dict(model.named_parameters())
        self.pairs = [(params[n], torch.from_numpy(~m)) for n, m in masks.items()]

    def zero_grads(self) -> None:
        for p, pruned in self.pairs:
            if p.grad is not None:
                p.grad.masked_fill_(pruned, 0.0)

    @torch.no_grad()
    def apply(self) -> None:
        for p, pruned in self.pairs:
            p.masked_fill_(pruned, 0.0)


def _hard(logits, labels):
    """Cross entropy over the labelled rows (label -1: unlabelled, soft target only)."""
    return F.cross_entropy(logits, labels, ignore_index=-1) if bool((labels >= 0).any()) else logits.sum() * 0.0


def _loss(model, batch, labels, config: TrainConfig, teacher, teacher_logits, hidden_map: HiddenMap | None):
    out = model(**batch, output_hidden_states=config.hidden_weight > 0)
    if teacher is None:
        return _hard(out.logits, labels)
    t_hidden = None
    if teacher_logits is None:
        with torch.no_grad():
            t_out = teacher(**batch, output_hidden_states=config.hidden_weight > 0)
        teacher_logits, t_hidden = t_out.logits, t_out.hidden_states
    temp = config.temperature
    soft = F.kl_div(F.log_softmax(out.logits / temp, -1), F.log_softmax(teacher_logits / temp, -1),
                    log_target=True, reduction="batchmean") * temp * temp
    loss = config.soft_weight * soft + (1 - config.soft_weight) * _hard(out.logits, labels)
    if config.hidden_weight > 0:
        keep = batch["attention_mask"].unsqueeze(-1).float()
        if hidden_map is not None:
            t_hidden = [t_hidden[j][..., hidden_map.channels] for j in hidden_map.layers]
        mse = sum(((s - t) ** 2 * keep).sum() / (keep.sum() * s.shape[-1]) for s, t in zip(out.hidden_states, t_hidden))
        loss = loss + config.hidden_weight * mse / len(t_hidden)
    return loss


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` whole or not at all (a stop while writing leaves the previous one)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path | None, config: TrainConfig, examples: int) -> dict | None:
    """The state saved by an earlier ``train`` with the same config and data, else None (start afresh)."""
    if path is None or not path.is_file():
        return None
    try:  # tensors, numbers and lists only: nothing in it runs code
        state = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):  # damaged: only a head start lost
        return None
    if state.get("config") != config.asdict() or state.get("examples") != examples:
        return None
    return state


def train(model, tokenizer, task: Task, config: TrainConfig, *, teacher=None, masks: dict[str, np.ndarray] | None = None,
          hidden_map: HiddenMap | None = None, unlabelled: Sequence[str] = (), teacher_logits=None,
          progress: bool = True, desc: str = "train", checkpoint: str | Path | None = None) -> dict:
    """Train ``model`` on ``task.train`` (distilling from ``teacher`` when given, holding ``masks`` fixed;
    ``unlabelled`` texts are added with the teacher's logits as their only target); keep the weights of
    the epoch with the best dev accuracy. ``teacher_logits`` ([train (max_train) + unlabelled, labels])
    saves computing them again when many students share one teacher. ``checkpoint``: a file saved after
    every epoch and continued from when it holds an earlier run's state (see the module docstring); the
    caller removes it once the result is kept. Returns the history and time taken."""
    use_all_cores()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    examples = list(task.train[:config.max_train] if config.max_train else task.train)
    examples += [(t, -1) for t in unlabelled]
    if unlabelled and teacher is None:
        raise BertcError("unlabelled texts need a teacher to label them")
    enc, dev = encode(tokenizer, examples, task.max_length), encode(tokenizer, task.dev, task.max_length)
    hold = MaskHold(model, masks or {})
    hold.apply()
    t0 = time.perf_counter()
    if teacher is not None:
        teacher.eval()
        if config.hidden_weight > 0:
            teacher_logits = None  # the teacher runs at every step for its hidden states anyway
        elif teacher_logits is None:
            teacher_logits = predict_logits(teacher, enc, progress=progress, desc="teacher logits")
        if teacher_logits is not None:
            teacher_logits = torch.as_tensor(np.asarray(teacher_logits))
    steps = config.epochs * -(-len(enc) // config.batch_size)
    warm = max(1, int(config.warmup * steps))
    decay = {n for n, p in model.named_parameters() if p.ndim >= 2}  # no decay on biases and LayerNorm
    groups = [{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": config.weight_decay},
              {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm + 1))))
    best, best_state, history, start = -1.0, None, [], 0
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    saved = load_checkpoint(checkpoint, config, len(enc))
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["schedule"])
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        best, best_state, history, start = saved["best"], saved["best_state"], saved["history"], saved["epoch"]
        if progress:
            tqdm.write(f"{desc}: continuing after epoch {start}/{config.epochs} from {checkpoint}")
    for epoch in range(start, config.epochs):
        model.train()
        bar = tqdm(_batches(enc, config.batch_size, rng), total=-(-len(enc) // config.batch_size),
                   desc=f"{desc} epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
        total = 0.0
        for n, (idx, batch) in enumerate(bar, 1):
            labels = torch.from_numpy(enc.labels[idx])
            loss = _loss(model, batch, labels, config, teacher, None if teacher_logits is None else teacher_logits[idx],
                         hidden_map)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            hold.zero_grads()
            opt.step()
            sched.step()
            hold.apply()
            total += loss.detach().item()
            if n % 20 == 0:
                bar.set_postfix(loss=f"{total / n:.4f}")
        dev_acc = accuracy(predict_logits(model, dev), dev.labels)
        history.append({"epoch": epoch + 1, "train_loss": total / max(1, n), "dev_accuracy": dev_acc})
        if progress:
            tqdm.write(f"{desc} epoch {epoch + 1}/{config.epochs}: loss {total / max(1, n):.4f}, dev accuracy {dev_acc:.4f}")
        if dev_acc > best:
            best, best_state = dev_acc, copy.deepcopy(model.state_dict()) if epoch + 1 < config.epochs else None
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "config": config.asdict(), "examples": len(enc), "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "schedule": sched.state_dict(), "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "best": best, "best_state": best_state, "history": history})
    if best_state is not None:  # a better epoch than the last: go back to it
        model.load_state_dict(best_state)
    model.eval()
    out = {"config": config.asdict(), "train_examples": len(enc), "steps": steps, "history": history,
           "best_dev_accuracy": best, "seconds": round(time.perf_counter() - t0, 1)}
    if saved is not None:
        out["resumed_after_epoch"] = start
    return out
