"""Scoring a round's candidates: each is cut from the teacher, distilled briefly and scored on dev accuracy,
in this process or as Ray tasks (``--workers N`` on a local Ray, ``--ray ADDRESS`` on a cluster).

    pool = Pool(teacher_dir, study_dir, settings, lengths, workers=2, address=None)
    results = pool.score([(trial_number, candidate), ...])   # dev_accuracy, train_seconds, state, config
    ms = pool.time(trial_folder, candidate)                  # compiled and timed (on the phone's node with adb)

A worker loads what every trial needs (the teacher, its importance and logits, the dev split) once and
keeps it between tasks (``Scorer``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer

from bertc.sparsity import apply_masks, model_masks, parse_spec

from .distill import TrainConfig, accuracy, encode, predict_logits, train
from .inherit import Importance, build_student
from .lengths import Lengths
from .settings import Settings
from .space import Candidate
from .tasks import load_task, train_examples
from .teacher import load_classifier
from .timing import compile_and_time


class Scorer:
    """Everything a trial needs, loaded once per process (the search, or a Ray worker)."""

    def __init__(self, teacher_dir: str, task: str, study_dir: str, settings: dict):
        self.task = load_task(task)
        self.teacher, self.tokenizer = load_classifier(teacher_dir, self.task)
        self.importance = Importance.load(Path(study_dir) / "importance.npz")
        self.logits = np.load(Path(study_dir) / "teacher_logits.npy")
        self.settings = settings
        self.dev = encode(self.tokenizer, self.task.dev, self.task.max_length)  # scored after every candidate

    def score(self, cand: dict, number: int, threads: int | None = None) -> dict:
        """Cut, distill briefly, score on dev. Returns the accuracy, time and the student's weights."""
        if threads:
            torch.set_num_threads(threads)
        c = Candidate.from_dict(cand)
        t0 = time.perf_counter()
        student, _ = build_student(self.teacher, self.importance, c.layers, c.hidden, [c.heads] * c.layers, list(c.ffn))
        masks = None
        if c.sparsity:
            masks = model_masks(student, parse_spec(c.sparsity))
            apply_masks(student, masks)
        s = self.settings
        epochs = max(1, math.ceil(s["epochs"]))
        n_train = len(train_examples(self.task, s["max_train"]))
        # a fraction of an epoch: train on that share of the examples (the teacher's logits come along)
        max_train = n_train if s["epochs"] >= 1 else max(1, int(n_train * s["epochs"]))
        config = TrainConfig(epochs=epochs, lr=1e-4, max_train=max_train, seed=s["seed"] + number)
        train(student, self.tokenizer, self.task, config, teacher=self.teacher, masks=masks,
              teacher_logits=self.logits[:max_train], progress=False)
        acc = accuracy(predict_logits(student, self.dev), self.dev.labels)
        state = {k: v.detach().numpy().copy() for k, v in student.state_dict().items()}
        return {"dev_accuracy": acc, "train_seconds": round(time.perf_counter() - t0, 1), "state": state,
                "config": student.config.to_dict()}


_SCORERS: dict[tuple, Scorer] = {}


def _score(args: tuple, cand: dict, number: int, threads: int | None) -> dict:
    if args not in _SCORERS:  # a Ray worker process keeps its Scorer between tasks
        _SCORERS.clear()
        _SCORERS[args] = Scorer(*args[:3], json.loads(args[3]))
    return _SCORERS[args].score(cand, number, threads)


def save_student(folder: Path, result: dict, tokenizer_dir: str | Path) -> None:
    """A scored student's weights and config as a model folder ``bertc compile`` takes."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(v) for k, v in result["state"].items() if not k.endswith("position_ids")},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(result["config"], indent=2) + "\n")
    AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True).save_pretrained(str(folder))


class Pool:
    """Scores candidates in this process, or as tasks on a local (``workers`` > 1) or remote Ray."""

    def __init__(self, teacher_dir: str, study_dir: Path, settings: Settings, lengths: Lengths, workers: int,
                 address: str | None):
        self.settings, self.lengths, self.ray = settings, lengths, None
        s = settings
        # a Scorer's key: plain values, so that a Ray task carries them and a worker keeps one Scorer per study
        self.args = (teacher_dir, s.task, str(study_dir),
                     json.dumps({"epochs": s.epochs, "max_train": s.max_train, "seed": s.seed}))
        self.workers = workers
        if workers > 1 or address:
            import ray  # heavy, and only for parallel searches

            if address:
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
            self.ray = ray
            cores = len(os.sched_getaffinity(0))
            self.threads = max(1, cores // workers) if not address else None
            self.remote_score = ray.remote(num_cpus=1)(_score)
            # a trial that needs a phone is timed on the node that has it (`ray start --resources '{"phone": 1}'`)
            phone = (s.device or "").startswith("adb") and address
            self.remote_time = ray.remote(num_cpus=1, **({"resources": {"phone": 1}} if phone else {}))(compile_and_time)

    def score(self, jobs: list[tuple[int, Candidate]]) -> list[dict]:
        if self.ray is None:
            return [_score(self.args, c.asdict(), n, None) for n, c in jobs]
        return self.ray.get([self.remote_score.remote(self.args, c.asdict(), n, self.threads) for n, c in jobs])

    def time(self, folder: Path, cand: Candidate) -> float:
        """Compile and time the student saved in ``folder/student``; only the student folder is kept."""
        s = self.settings
        args = (folder / "student", folder / "student.bertc", s.target, self.lengths, cand.threads, cand.sparsity,
                s.device, s.runs, cand.precision)
        try:
            if self.ray is not None and s.device and s.device.startswith("adb"):
                return self.ray.get(self.remote_time.remote(*args))
            return compile_and_time(*args)
        finally:
            shutil.rmtree(folder / "student.bertc", ignore_errors=True)  # the student folder is what is kept

    def close(self) -> None:
        if self.ray is not None:
            self.ray.shutdown()
