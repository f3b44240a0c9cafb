"""Timing for the search: candidates compiled and timed with bertc_run, the final teacher/student pairs,
and PyTorch eager as the peer.

    ms = compile_and_time(folder, out, "host", lengths, threads=1, prune=None, device=None, runs=30, dtype="int8")
    pairs = interleaved_ratio(teacher_art, 1, student_art, 1, lengths=lengths, device=None, runs=30)

``lengths`` (search/lengths.py) says what a latency is: a time at each of its points, combined (the mean
over the dev lengths, or one percentile length, or one fixed length). Every time at a point is of ``runs``
runs after warm-up on one sequence of that many tokens, the median of their quietest stretch (bertc_run's
quiet_ms; PyTorch's by quiet_ms here), as `bertc calibrate` fits the cost model and judges it: the screen's
predictions and the timings that re-fit it are then of one statistic.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bertc.api import compile as compile_model
from bertc.calibrate import point_ms
from bertc.device import DeviceModel
from bertc.errors import BertcError

from .lengths import Lengths
from .teacher import quiet_transformers

INTERLEAVED_ROUNDS = 10  # final check: the teacher and the student timed alternately, this many times each
# runtime/tools/bertc_run.c's quiet_window: windows of this many ms of runs, this many runs at least
QUIET_WINDOW_MS, QUIET_MIN_RUNS = 10.0, 3


def quiet_ms(times: list[float]) -> float:
    """The median of the quietest stretch of ``times`` (ms, in run order), as bertc_run counts its quiet_ms: the
    runs cut, in order, into windows of QUIET_WINDOW_MS (QUIET_MIN_RUNS runs at least), the lowest of their
    medians; the median of all where fewer than two windows fit. (A shared VM's host slows every run by 20-70% in
    stretches of 10-100 ms: bertc/calibrate.py point_ms.)"""
    n = len(times)
    median = sorted(times)[n // 2]
    size = max(int(QUIET_WINDOW_MS / max(median, 1e-6)) + 1, QUIET_MIN_RUNS)
    if size > n // 2:
        return median
    return min(sorted(times[s:s + size])[size // 2] for s in range(0, n - size + 1, size))


def time_artifact(path: Path, threads: int, lengths: Lengths, device: str | None, runs: int) -> float:
    """The artifact's latency with bertc_run: the ms of ``runs`` runs (after warm-up) at each of the lengths'
    points, the median of their quietest stretch (point_ms), combined."""
    model = DeviceModel(path, device=device, threads=threads)
    if model.device.emulated:
        raise BertcError(f"{model.device.name} emulates the CPU: it cannot time a search's candidates; "
                         "search with --device host or --device adb[:SERIAL]")
    return lengths.combine([float(point_ms(model.bench(np.full((1, n), 7, np.int64), runs=runs, warmup=5)))
                            for n in lengths.points])


def compile_quiet(model_dir: Path, out: Path, target: str, lengths: Lengths, prune: str | None, dtype: str = "fp32"):
    """bertc.compile for the lengths (every length up to their bound, or exactly a fixed one) with ``dtype``
    GEMM weights, without transformers' report of the unused head (a classifier loads as its encoder)."""
    size = {"max_seq_len": lengths.bound} if lengths.dynamic else {"seq_len": lengths.bound}
    with quiet_transformers():
        return compile_model(str(model_dir), target=target, out=out, prune=prune, dtype=dtype, **size)


def compile_and_time(model_dir: Path, out: Path, target: str, lengths: Lengths, threads: int, prune: str | None,
                     device: str | None, runs: int, dtype: str = "fp32") -> float:
    """Compile ``model_dir`` into ``out`` and time it (a Ray task when a phone's node does the timing)."""
    art = compile_quiet(model_dir, out, target, lengths, prune, dtype)
    return time_artifact(art.path, threads, lengths, device, runs)


def interleaved_ratio(teacher_art: Path, teacher_threads: int, student_art: Path, threads: int, *,
                      lengths: Lengths, device: str | None, runs: int) -> dict:
    """The teacher and the student timed alternately (INTERLEAVED_ROUNDS pairs of ``runs`` runs each), so that
    both see the same machine: their medians and the median, min and max of teacher / student per pair."""
    pairs = [(time_artifact(teacher_art, teacher_threads, lengths, device, runs),
              time_artifact(student_art, threads, lengths, device, runs)) for _ in range(INTERLEAVED_ROUNDS)]
    ratios = [a / b for a, b in pairs]
    return {"teacher_ms": round(statistics.median(a for a, _ in pairs), 4),
            "student_ms": round(statistics.median(b for _, b in pairs), 4),
            "speedup": round(statistics.median(ratios), 3), "min": round(min(ratios), 3), "max": round(max(ratios), 3)}


def torch_ms(model, lengths: Lengths, threads: int, runs: int = 30) -> float:
    """PyTorch eager's latency in the same terms (the peer the teacher would otherwise run on): at each point (a
    sequence of exactly that length, as eager runs it) the median of the quietest stretch of its runs (quiet_ms),
    combined."""
    torch.set_num_threads(threads)
    at = []
    for n in lengths.points:
        ids = torch.full((1, n), 7, dtype=torch.long)
        mask = torch.ones_like(ids)
        times = []
        with torch.inference_mode():
            for i in range(runs + 3):
                t0 = time.perf_counter()
                model(input_ids=ids, attention_mask=mask)
                if i >= 3:
                    times.append((time.perf_counter() - t0) * 1e3)
        at.append(quiet_ms(times))
    return lengths.combine(at)
