"""Timing for the search: candidates compiled and timed with bertc_run, the final teacher/student pairs,
and PyTorch eager as the peer.

    ms = compile_and_time(folder, out, "host", seq_len=64, threads=1, prune=None, device=None, runs=30)
    pairs = interleaved_ratio(teacher_art, 1, student_art, 1, seq_len=64, device=None, runs=30)

Every bertc time is the median of ``runs`` runs after warm-up on one sequence of ``seq_len`` tokens.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bertc.api import compile as compile_model
from bertc.device import DeviceModel
from bertc.errors import BertcError

from .teacher import quiet_transformers

INTERLEAVED_ROUNDS = 10  # final check: the teacher and the student timed alternately, this many times each


def time_artifact(path: Path, threads: int, seq_len: int, device: str | None, runs: int) -> float:
    """Median ms of ``runs`` runs of the artifact with bertc_run (after warm-up)."""
    model = DeviceModel(path, device=device, threads=threads)
    if model.device.emulated:
        raise BertcError(f"{model.device.name} emulates the CPU: it cannot time a search's candidates; "
                         "search with --device host or --device adb[:SERIAL]")
    report = model.bench(np.full((1, seq_len), 7, np.int64), runs=runs, warmup=5)
    return float(report["p50_ms"])


def compile_quiet(model_dir: Path, out: Path, target: str, seq_len: int, prune: str | None):
    """bertc.compile, without transformers' report of the unused head (a classifier loads as its encoder)."""
    with quiet_transformers():
        return compile_model(str(model_dir), target=target, seq_len=seq_len, out=out, prune=prune)


def compile_and_time(model_dir: Path, out: Path, target: str, seq_len: int, threads: int, prune: str | None,
                     device: str | None, runs: int) -> float:
    """Compile ``model_dir`` into ``out`` and time it (a Ray task when a phone's node does the timing)."""
    art = compile_quiet(model_dir, out, target, seq_len, prune)
    return time_artifact(art.path, threads, seq_len, device, runs)


def interleaved_ratio(teacher_art: Path, teacher_threads: int, student_art: Path, threads: int, *, seq_len: int,
                      device: str | None, runs: int) -> dict:
    """The teacher and the student timed alternately (INTERLEAVED_ROUNDS pairs of ``runs`` runs each), so that
    both see the same machine: their medians and the median, min and max of teacher / student per pair."""
    pairs = [(time_artifact(teacher_art, teacher_threads, seq_len, device, runs),
              time_artifact(student_art, threads, seq_len, device, runs)) for _ in range(INTERLEAVED_ROUNDS)]
    ratios = [a / b for a, b in pairs]
    return {"teacher_ms": round(statistics.median(a for a, _ in pairs), 4),
            "student_ms": round(statistics.median(b for _, b in pairs), 4),
            "speedup": round(statistics.median(ratios), 3), "min": round(min(ratios), 3), "max": round(max(ratios), 3)}


def torch_ms(model, seq_len: int, threads: int, runs: int = 30) -> float:
    """Median ms of PyTorch eager on one sequence (the peer the teacher would otherwise run on)."""
    torch.set_num_threads(threads)
    ids = torch.full((1, seq_len), 7, dtype=torch.long)
    mask = torch.ones_like(ids)
    times = []
    with torch.inference_mode():
        for i in range(runs + 3):
            t0 = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            if i >= 3:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
