"""GEMM throughput per row count M: where bertc's packed GEMM loses its rate on short inputs.

With dynamic sequence length (issue 17) a linear runs on a sentence's real rows: 27 at the median of
rt-sentiment, not a multiple of any tile. This times ``bertc_linear_packed`` (runtime/kernels/kernels.h)
for every M in 1..128 and for 129, 256, 384, 512, on MiniLM's linear shapes (K x N: 384 x 1152 Q|K|V,
384 x 1536 FFN up, 1536 x 384 FFN down), at 1 and 2 threads, and reports GFLOP/s per M and where it
drops below a fraction of the rate at M=128.

The harness (benchmarks/gemm_rows.c) is built as bertc builds a host artifact: the host toolchain's
flags (bertc/toolchain.py: ``-O3 -march=native``), the reference kernels and the ISA file that
bertc.targets picks for this machine, the thread pool with the target's tuning, and the weight packed
in panels of the target tile's nr columns as --pack-weights stores it. Every (threads, shape, M) is
timed in one process, round-robin over ``--rounds`` rounds; a visit times a batch of calls (at least
``--batch-ms``) inside one bertc_pool_begin/end, as the ops of a model run are. The table is the best
round by default (``--stat``): on a machine shared with other work the least-disturbed round is the
kernel's rate, and the median shows the disturbance (both are in the JSON). Each result is checked
against a double-precision loop (max relative error in the JSON).

    .venv/bin/python benchmarks/gemm_rows.py                        # table + benchmarks/gemm_rows.json
    .venv/bin/python benchmarks/gemm_rows.py --threads 1 --rounds 3 --drop 0.8
    .venv/bin/python benchmarks/gemm_rows.py --cold --rows 1-32,64,128 --json /tmp/cold.json

``--cold`` cycles each call through copies of the weight that together outgrow the last-level cache
(COLD_BYTES), so the weights come from DRAM as a model's do (MiniLM's 6 layers hold 42 MB of linear
weights); without it one copy stays in L2/L3 and the table is the micro-kernel's rate alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bertc.targets import Target, host_target
from bertc.toolchain import RUNTIME, WARNINGS, find_toolchain, kernel_sources

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(__file__).resolve().parent / "gemm_rows.c"
SHAPES = {"qkv": (384, 1152), "ffn-up": (384, 1536), "ffn-down": (1536, 384)}  # MiniLM's (K, N)
ROWS = [*range(1, 129), 129, 256, 384, 512]
REFERENCE_M = 128  # the compiled length bertc's benchmarks use today: the rate each M is set against
COLD_BYTES = 64 << 20  # --cold: each shape's copies together, far past a 2-32 MB last-level cache


def build_harness(target: Target, out: Path) -> tuple[Path, list[str]]:
    """gemm_rows.c linked with the pool and the kernels a host artifact links (no loader, no model)."""
    tc = find_toolchain(target)
    kernels = [s for s in kernel_sources(target) if "kernels" in s.parts or s.name == "pool.c"]
    inc = [f"-I{RUNTIME / 'include'}", f"-I{RUNTIME / 'src'}", f"-I{RUNTIME / 'kernels'}"]
    exe = out / "gemm_rows"
    cmd = [*tc.cc, *tc.cflags, *WARNINGS, *inc, "-o", str(exe), str(HARNESS), *map(str, kernels), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"building the GEMM harness failed:\n{' '.join(cmd)}\n{r.stderr[-4000:]}")
    return exe, [str(s.relative_to(ROOT)) for s in kernels]


def run_harness(exe: Path, target: Target, threads: list[int], rows: list[int], rounds: int,
                batch_ms: float, stat: str, cold: bool = False) -> list[dict]:
    t = target.tile
    smallest = min(k * n * 4 for k, n in SHAPES.values())
    copies = -(-COLD_BYTES // smallest) if cold else 1
    cmd = [str(exe), str(t.mr), str(t.nr), str(t.kc), str(target.chunks_per_thread), str(target.gemm_row_block),
           str(rounds), str(batch_ms), str(copies), "-t", ",".join(map(str, threads)),
           "-s", ",".join(f"{k}x{n}" for k, n in SHAPES.values()), "-m", ",".join(map(str, rows))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    name = {v: k for k, v in SHAPES.items()}
    results = []
    for line in out.splitlines():
        th, k, n, m, med, best, err = line.split()
        k, n, m = int(k), int(n), int(m)
        flop = 2 * m * k * n
        results.append({"threads": int(th), "shape": name[(k, n)], "K": k, "N": n, "M": m,
                        "median_ms": float(med), "min_ms": float(best),
                        "gflops_median": flop / (float(med) * 1e-3) / 1e9,
                        "gflops_best": flop / (float(best) * 1e-3) / 1e9,
                        "max_rel_err": float(err)})
        results[-1]["gflops"] = results[-1][f"gflops_{stat}"]
    return results


def drops(results: list[dict], fraction: float) -> dict[str, dict]:
    """Per (shape, threads): the rate at REFERENCE_M, the M (<= 128) whose rate is below ``fraction`` of it,
    the M from which on (up to 128) it stays at or above that, and the worst M."""
    out = {}
    for key in sorted({(r["shape"], r["threads"]) for r in results}):
        by_m = {r["M"]: r["gflops"] for r in results if (r["shape"], r["threads"]) == key}
        ref = by_m[REFERENCE_M]
        low = [m for m in sorted(by_m) if m <= REFERENCE_M and by_m[m] < fraction * ref]
        holds = max(low) + 1 if low else 1
        out[f"{key[0]}, {key[1]} thread{'s' * (key[1] > 1)}"] = {
            "gflops_at_128": round(ref, 2), "below_fraction_at_M": low, "holds_fraction_from_M": holds,
            "worst_M": min(by_m, key=by_m.get), "worst_gflops": round(min(by_m.values()), 2)}
    return out


def markdown(results: list[dict], show: list[int]) -> str:
    cols = sorted({(r["shape"], r["threads"]) for r in results}, key=lambda c: (c[1], list(SHAPES).index(c[0])))
    rate = {(r["shape"], r["threads"], r["M"]): r["gflops"] for r in results}
    head = "| M | " + " | ".join(f"{s} {t}T" for s, t in cols) + " |"
    lines = [head, "| ---: |" + " ---: |" * len(cols)]
    for m in show:
        cells = [f"{rate[(s, t, m)]:.1f} ({rate[(s, t, m)] / rate[(s, t, REFERENCE_M)]:.0%})" for s, t in cols]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/gemm_rows.py", description=__doc__.split("\n\n    ")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma list of thread counts (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=15,
                   help="round-robin rounds; --stat picks one per M (default: %(default)s)")
    p.add_argument("--batch-ms", type=float, default=2.0,
                   help="least time of one visit's batch of calls, ms (default: %(default)s)")
    p.add_argument("--cold", action="store_true",
                   help="read the weights from DRAM: cycle through copies that outgrow the last-level cache")
    p.add_argument("--rows", default=None, metavar="A-B,M,..",
                   help="row counts to time (default: 1-128,129,256,384,512; must include 128)")
    p.add_argument("--stat", choices=("best", "median"), default="best",
                   help="which round per M the table shows (default: %(default)s)")
    p.add_argument("--drop", type=float, default=0.9,
                   help="report the M whose GFLOP/s is below this fraction of M=128's (default: %(default)s)")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "gemm_rows.json",
                   help="write every number here (default: benchmarks/gemm_rows.json)")
    args = p.parse_args(argv)
    try:
        args.threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--threads takes a comma list of integers, like 1,2 (got {args.threads!r})")
    if any(t < 1 for t in args.threads) or args.rounds < 1 or args.batch_ms <= 0:
        p.error("--threads and --rounds must be at least 1 and --batch-ms positive")
    try:
        args.rows = parse_rows(args.rows) if args.rows else ROWS
    except ValueError:
        p.error(f"--rows takes row counts and ranges, like 1-32,64,128 (got {args.rows!r})")
    if REFERENCE_M not in args.rows or min(args.rows) < 1:
        p.error(f"--rows must be positive and include {REFERENCE_M}, the rate each M is set against")
    return args


def parse_rows(text: str) -> list[int]:
    """'1-4,64,128' -> [1, 2, 3, 4, 64, 128]."""
    rows: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        rows.update(range(int(lo), int(hi or lo) + 1))
    return sorted(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    target = host_target()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        exe, sources = build_harness(target, Path(tmp))
        results = run_harness(exe, target, args.threads, args.rows, args.rounds, args.batch_ms, args.stat, args.cold)
    wall = time.perf_counter() - started
    t = target.tile
    print(f"# bertc_linear_packed GFLOP/s per row count M: {target.description}, tile {t.mr}x{t.nr} kc={t.kc}, "
          f"{platform.processor() or platform.machine()}\n")
    print(f"{args.stat} of {args.rounds} interleaved rounds, weights {'from DRAM (--cold)' if args.cold else 'in cache'}; "
          f"in brackets: the rate over the rate at M={REFERENCE_M}\n")
    shown = [*range(1, 17), 20, 24, 27, 28, 32, 48, 64, 96, 100, 127, 128, 129, 256, 384, 512]
    print(markdown(results, [m for m in shown if m in args.rows]))
    summary = drops(results, args.drop)
    print(f"\nbelow {args.drop:.0%} of the rate at M={REFERENCE_M} (M <= {REFERENCE_M}):")
    for key, d in summary.items():
        low = d["below_fraction_at_M"]
        span = f"{len(low)} of {REFERENCE_M} row counts, {low[:6]}{' ...' if len(low) > 6 else ''}" if low else "none"
        print(f"- {key}: {d['gflops_at_128']} GFLOP/s at 128; {span}; at or above it from M="
              f"{d['holds_fraction_from_M']} on; worst M={d['worst_M']} ({d['worst_gflops']} GFLOP/s)")
    worst_err = max(r["max_rel_err"] for r in results)
    print(f"\nworst relative error against a double-precision loop: {worst_err:.1e}; whole run {wall:.0f} s")
    report = {"target": {"isa": target.isa, "tile": {"mr": t.mr, "nr": t.nr, "kc": t.kc},
                         "chunks_per_thread": target.chunks_per_thread, "gemm_row_block": target.gemm_row_block,
                         "description": target.description},
              "sources": sources, "cpu": platform.processor() or platform.machine(),
              "settings": {"stat": args.stat, "rounds": args.rounds, "batch_ms": args.batch_ms, "threads": args.threads,
                           "shapes_kn": SHAPES, "reference_m": REFERENCE_M, "drop_fraction": args.drop,
                           "weights": "dram" if args.cold else "cache"},
              "drops": summary, "median_over_m_1_to_128_gflops": {
                  k: round(statistics.median(r["gflops"] for r in results
                                             if f"{r['shape']}, {r['threads']} thread{'s' * (r['threads'] > 1)}" == k
                                             and r["M"] <= REFERENCE_M), 2) for k in summary},
              "results": results, "wall_seconds": round(wall, 1)}
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
