"""Before and after a runtime change, on this machine: one model compiled by two checkouts, timed in turn.

A kernel change's speed-up is the ratio of two builds' timings, and on a shared machine two runs an hour apart
differ by more than most changes move (a neighbour's load moves a run by 10-20%). Here ``--before`` (a git
revision) is checked out in a temporary worktree, the encoder of sparse.py's short part (6 layers, hidden 768,
FFN 3072, random weights: 170 MB streamed from memory, as on a phone; ``--layers``, ``--hidden`` to change it) is
compiled by both checkouts, dense or with each ``--patterns`` SPEC (a bare block shape keeps 50%), and bertc_run
times the two artifacts in a rotating order, ``--rounds`` rounds per length and thread count. The table gives the
median p50 before and after, at 1 / 2 threads, and the speed-up.

    .venv/bin/python benchmarks/ab.py --before HEAD~1 --patterns 16x1,1x4 --lengths 16,24,32,64
    .venv/bin/python benchmarks/ab.py --before main --patterns dense --hidden 384 --layers 4
    .venv/bin/python benchmarks/ab.py --before HEAD~1 --dtype int8 --patterns 16x1@0.2,8x1@0.1 --lengths 1,40,161
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compile_encoder(spec: str, layers: int, hidden: int, max_seq: int, out: Path, dtype: str = "fp32") -> None:
    """The encoder with ``spec`` (or "dense"), compiled by the bertc on sys.path (the checkout that runs this) at
    ``dtype``."""
    import torch
    import transformers as T

    import bertc

    config = T.BertConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=hidden // 64,
                          intermediate_size=4 * hidden, vocab_size=4096)
    torch.manual_seed(0)
    prune = None if spec == "dense" else spec
    bertc.compile(T.BertModel(config).eval(), max_seq_len=max_seq, prune=prune, force_sparse=prune is not None,
                  out=out, dtype=dtype)


def spec_of(pattern: str) -> str:
    return pattern if pattern == "dense" or "@" in pattern or ":" in pattern else f"{pattern}@0.5"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="the git revision to compare the working tree with (HEAD~1, main)")
    p.add_argument("--patterns", default="16x1", help="comma-separated: dense, a block shape (50%% kept) or a SPEC")
    p.add_argument("--lengths", default="16,24,32,48,64", help="comma-separated token counts")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=768, help="a multiple of 64 (heads of 64, FFN 4x)")
    p.add_argument("--dtype", choices=("fp32", "int8"), default="fp32", help="the GEMMs' weights (int8: --dtype int8)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=10, help="bertc_run's runs per timing")
    p.add_argument("--save", type=Path, help="write the timings here as JSON")
    p.add_argument("--compile", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)  # a checkout's compile
    args = p.parse_args(argv)
    lengths = [int(n) for n in args.lengths.split(",")]
    if args.hidden % 64:
        p.error(f"--hidden {args.hidden} is not a multiple of 64: the encoder's heads are 64 wide")
    if args.compile:
        compile_encoder(args.compile[0], args.layers, args.hidden, max(lengths), Path(args.compile[1]), args.dtype)
        return 0

    from sparse import timed_round_robin  # benchmarks/sparse.py

    from bertc.device import DeviceModel

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tree = work / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), args.before], check=True)
        try:
            arts = {}
            for pattern in args.patterns.split(","):
                for name, root in (("before", tree), ("after", ROOT)):
                    out = work / f"{pattern.replace(':', 'of').replace('@', '_')}-{name}.bertc"
                    print(f"compiling {spec_of(pattern)} with the {name} checkout", file=sys.stderr)
                    subprocess.run([sys.executable, __file__, "--before", args.before, "--lengths", args.lengths,
                                    "--layers", str(args.layers), "--hidden", str(args.hidden), "--dtype", args.dtype,
                                    "--compile", spec_of(pattern), str(out)],
                                   check=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
                    arts[pattern, name] = out
            res = {}
            for pattern in args.patterns.split(","):
                for seq in lengths:
                    for t in map(int, args.threads.split(",")):
                        models = {k: DeviceModel(arts[pattern, k], device="host", threads=t) for k in ("before", "after")}
                        res[f"{pattern} {seq} {t}"] = timed_round_robin(models, args.rounds, args.runs,
                                                                        f"{pattern} {seq} tokens {t}t", seq)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    threads = args.threads.split(",")
    dtype = " (int8)" if args.dtype == "int8" else ""
    print(f"\n### {args.layers} layers of {args.hidden}{dtype}, before ({args.before}) and after, ms at "
          f"{' / '.join(threads)} threads ({platform.processor() or platform.machine()})\n")
    print("| pattern | tokens | before | after | speed-up |\n|---|---:|---:|---:|---:|")
    for pattern in args.patterns.split(","):
        for seq in lengths:
            cells = [res[f"{pattern} {seq} {t}"] for t in threads]
            print(f"| {spec_of(pattern)} | {seq} | " + " | ".join(" / ".join(f"{c[k]:.2f}" for c in cells)
                                                             for k in ("before", "after"))
                  + " | " + " / ".join(f"{c['before'] / c['after']:.2f}x" for c in cells) + " |")
    if args.save:
        args.save.write_text(json.dumps({"before": args.before, "dtype": args.dtype, "machine": platform.processor(),
                                         "timings": res}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
