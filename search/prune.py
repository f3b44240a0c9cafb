"""``bertc prune``: prune a model to a sparsity pattern, then recover its accuracy by distillation.

    report = prune("my-classifier/", "rt-sentiment", "16x1@0.25", "minilm-16x1.prune")
    bertc prune MODEL --task rt-sentiment 16x1@0.25 -o minilm-16x1.prune      # the same from the CLI
    bertc compile minilm-16x1.prune --target host -o minilm-16x1.bertc

What happens, step by step, and what ``prune_report.json`` holds: ``bertc prune --help`` (search/cli.py's
PRUNE_HELP). The teacher is search/teacher.py's, the masks bertc/sparsity.py's, the recovery search/distill.py's
``train`` with the masks held fixed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bertc.api import compile as compile_model
from bertc.artifact import give_umask_mode, publish, staging_folder
from bertc.errors import BertcError
from bertc.sparsity import apply_masks, model_masks, parse_spec

from .distill import TrainConfig, train
from .tasks import load_task
from .teacher import (
    TEACHER_CONFIG,
    compiled_accuracy,
    finetuned_teacher,
    is_classifier,
    load_classifier,
    quiet_transformers,
    split_accuracy,
)

RECOVERY_LR = 1e-4


def _accuracies(model, tokenizer, task, progress: bool) -> dict[str, float]:
    return {s: round(split_accuracy(model, tokenizer, task, s, progress), 4) for s in ("dev", "test")}


def _compiled_accuracies(folder: Path, task) -> dict[str, float]:
    """Test accuracy of the model in ``folder`` through its host artifact compiled fp32 and --dtype int8, side by
    side; both dense (no --prune-patterns): the zeros stay zeros in int8."""
    with tempfile.TemporaryDirectory() as tmp, quiet_transformers():
        return {d: round(compiled_accuracy(compile_model(str(folder), out=Path(tmp) / d, dtype=d,
                                                         max_seq_len=task.max_length).path, task.test, 1), 4)
                for d in ("fp32", "int8")}


def _check_output(out: Path) -> None:
    if out.exists() and not (out / "prune_report.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise BertcError(f"'{out}' exists and is not an earlier `bertc prune` output; choose another -o or remove it")


def _staging(out: Path) -> Path:
    _check_output(out)  # again: something may have appeared there during training
    return staging_folder(out)  # named for its owner: a killed prune's folder is removed by the next one


def prune(model: str | Path, task: str, spec: str, out: str | Path, *, epochs: int = 3, max_train: int | None = None,
          seed: int = 0, hidden_weight: float = 0.0, lr: float = RECOVERY_LR, teacher_config=None,
          progress: bool = True, int8: bool = False) -> dict:
    """Prune ``model`` to ``spec``, recover on ``task`` and write ``out``; returns prune_report.json's content.
    ``int8``: also the recovered model's compiled test accuracy, fp32 and int8 (``compiled_test_accuracy``)."""
    parsed = parse_spec(spec)  # a bad SPEC fails before any training
    if epochs < 1:
        raise BertcError(f"--epochs must be at least 1 (got {epochs})")
    if max_train is not None and max_train < 1:
        raise BertcError(f"--max-train must be at least 1 (got {max_train})")
    the_task = load_task(task)
    model, out = Path(model), Path(out)
    if not model.exists():
        raise BertcError(f"model folder '{model}' does not exist")
    _check_output(out)
    teacher_dir = model if is_classifier(model) else finetuned_teacher(model, task, teacher_config or TEACHER_CONFIG,
                                                                       progress)
    teacher, tokenizer = load_classifier(teacher_dir, the_task)
    student, _ = load_classifier(teacher_dir, the_task)
    masks = model_masks(student, parsed)
    if not masks:
        raise BertcError(f"SPEC '{spec}' prunes no weight of '{model}': its default density applies to the linear "
                         "layers of the encoder (names with layer.N), and no rule names another weight")
    apply_masks(student, masks)
    params = dict(student.named_parameters())
    report = {"model": str(model), "teacher": str(teacher_dir), "task": task, "spec": parsed.text,
              "pattern": str(parsed.pattern), "density": parsed.density,
              "split_sizes": {s: len(the_task.split(s)) for s in ("train", "dev", "test")},
              "densities": {n: round(float(m.mean()), 4) for n, m in masks.items()},
              "pruned_density": round(sum(int(m.sum()) for m in masks.values()) / sum(m.size for m in masks.values()), 4)}
    report["teacher_accuracy"] = _accuracies(teacher, tokenizer, the_task, progress)
    report["before_recovery"] = _accuracies(student, tokenizer, the_task, progress)
    if progress:
        print(f"teacher {teacher_dir}: dev {report['teacher_accuracy']['dev']:.4f}, "
              f"test {report['teacher_accuracy']['test']:.4f}; "
              f"pruned to {parsed.text} (density {report['pruned_density']:.3f} over {len(masks)} matrices): "
              f"dev {report['before_recovery']['dev']:.4f}, test {report['before_recovery']['test']:.4f}", flush=True)
    t0 = time.perf_counter()
    config = TrainConfig(epochs=epochs, lr=lr, max_train=max_train, seed=seed, hidden_weight=hidden_weight)
    report["recovery"] = train(student, tokenizer, the_task, config, teacher=teacher, masks=masks, progress=progress,
                               desc="recover")
    stray = sum(int(np.count_nonzero(params[n].detach().numpy()[~m])) for n, m in masks.items())
    if stray:  # MaskHold makes this impossible; a report that claims sparsity must not lie
        raise BertcError(f"internal error: {stray} pruned weights became nonzero during recovery")
    report["after_recovery"] = _accuracies(student, tokenizer, the_task, progress)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    staging = _staging(out)
    try:
        with quiet_transformers():
            student.save_pretrained(str(staging))
            tokenizer.save_pretrained(str(staging))
        if int8:
            report["compiled_test_accuracy"] = _compiled_accuracies(staging, the_task)
        (staging / "prune_report.json").write_text(json.dumps(report, indent=2) + "\n")
        give_umask_mode(staging)  # mkdtemp made it private
        publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if progress:
        print(f"after recovery: dev {report['after_recovery']['dev']:.4f}, test {report['after_recovery']['test']:.4f} "
              f"({report['seconds']:.0f} s)" + "".join(f"; compiled {d} test {a:.4f}" for d, a in
                                                     report.get("compiled_test_accuracy", {}).items())
              + f"; wrote {out} (compile it with `bertc compile {out} --target host`)")
    return report
