"""``bertc calibrate``: measure every kernel on the device, fit the cost model, report its quality.

1. **Grid.** BERT encoders of one layer over a grid of shapes (hidden 128-768, FFN 2x and 4x, sequence
   4-256, since a --max-seq-len artifact runs real text at a few tokens; plus the sparse patterns at
   several densities) are compiled with random weights and run
   with bertc_run on the device at each thread count. Every artifact times each of its ops
   (``bertc_run --bench`` reports each op's median), so one run yields a sample per kernel call, in the
   context the kernel really runs in (caches warmed by the op before, the pool's barriers).
2. **Fit.** Per kind of kernel and thread count, non-negative coefficients over its shape features
   (bertc/cost.py FEATURES) minimising relative error; the per-run overhead is the median over the
   grid of a run's mean time minus the sum of its ops' mean times.
3. **Quality.** Held-out random configurations (seeded; layers 1-12, hidden 128-768, heads, FFN 2-4x,
   sequence 1-256 drawn log-uniformly, threads 1-2, half of them pruned) are compiled and timed end
   to end, and the fitted model predicts each from its config alone (the search's fast path).
   Spearman rank correlation and mean absolute percentage error are printed and kept in the profile,
   over all of them and per band of sequence length (LENGTH_BANDS).

    bertc calibrate --target host                       # ~5 minutes on the 2-core host
    bertc calibrate --target android-arm64 --device adb --threads 1,4 -o pixel7.json
"""

from __future__ import annotations

import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from .api import compile as compile_model
from .cost import FEATURES, Profile, config_ops, estimate, fit_kind, load_profile, quality
from .device import DeviceModel
from .errors import BertcError

PATTERNS = ["16x1", "8x1", "4x1", "1x4", "2:4"]
VOCAB = 4096  # small tables: the gather's cost does not depend on the vocabulary


@dataclass
class Case:
    config: dict[str, Any]
    seq: int
    threads: int
    prune: str | None = None

    @property
    def label(self) -> str:
        c = self.config
        sizes = c.get("intermediate_sizes") or [c["intermediate_size"]]
        return (f"L{c['num_hidden_layers']} H{c['hidden_size']} A{c['num_attention_heads']} F{sizes[0]} S{self.seq} "
                f"T{self.threads}" + (f" {self.prune}" if self.prune else ""))


def bert_config(layers: int, hidden: int, heads: int, ffn: int) -> dict[str, Any]:
    return {"model_type": "bert", "num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": heads,
            "intermediate_size": ffn, "vocab_size": VOCAB, "max_position_embeddings": 512, "type_vocab_size": 2}


def _heads(hidden: int, rng: random.Random | None = None) -> int:
    options = [h for h in (2, 3, 4, 6, 8, 12, 16) if hidden % h == 0 and 16 <= hidden // h <= 128]
    return rng.choice(options) if rng else options[len(options) // 2]


def grid(size: str, threads: list[int]) -> list[Case]:
    """The calibration cases: one-layer encoders that together cover the shapes a search meets."""
    if size == "small":  # for tests: seconds, not minutes
        shapes = [(64, 2, 32), (128, 4, 64)]
        sparse = [(128, 64, "16x1@0.3"), (128, 64, "1x4@0.5")]
        deep = []
    elif size == "full":
        shapes = [(h, m, s) for h in (128, 256, 384, 512, 768) for m in (2, 4) for s in (4, 32, 128, 256)]
        sparse = [(h, 128, f"{p}@{d}" if ":" not in p else p) for h in (256, 512) for p in PATTERNS
                  for d in ((0.15, 0.4) if ":" not in p else (None,))]
        deep = [(6, 768, 4, 8, None), (6, 768, 4, 32, None), (6, 768, 4, 128, None), (12, 512, 3, 64, None), (8, 640, 2, 200, None),
                (12, 768, 4, 96, "8x1@0.4"), (12, 768, 3, 48, "2:4")]
    else:
        raise BertcError(f"unknown grid '{size}': small or full")
    models = [(bert_config(1, h, _heads(h), h * m), s, None) for h, m, s in shapes]
    models += [(bert_config(1, h, _heads(h), h * 4), s, spec) for h, s, spec in sparse]
    # deep enough that the GEMM weights (28-85 MB) outgrow a server's last-level cache, as real models' do
    models += [(bert_config(layers, h, _heads(h), h * m), s, spec) for layers, h, m, s, spec in deep]
    # the thread counts of one model side by side: calibrate compiles it once and times it at each
    return [Case(config, s, t, spec) for config, s, spec in models for t in threads]


def holdout(n: int, threads: list[int], seed: int = 7, max_layers: int = 12, max_hidden: int = 768,
            max_seq: int = 256) -> list[Case]:
    """Random configurations the fit never saw: half dense, half pruned."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        hidden = rng.choice([h for h in range(128, max_hidden + 1, 64)]) if max_hidden >= 128 else max_hidden
        ffn = rng.choice([2, 3, 4]) * hidden
        seq = min(max_seq, round(math.exp(rng.uniform(0.0, math.log(max_seq)))))  # log-uniform: short text too
        prune = None
        if i % 2:
            p = rng.choice(PATTERNS)
            prune = p if ":" in p else f"{p}@{rng.choice([0.1, 0.2, 0.3, 0.5])}"
        cases.append(Case(bert_config(rng.randint(1, max_layers), hidden, _heads(hidden, rng), ffn), seq,
                          rng.choice(threads), prune))
    return cases


def _compile(case: Case, target: str, work: Path, i: int):
    import torch
    import transformers as T

    torch.manual_seed(i)
    model = T.BertModel(T.BertConfig(**case.config)).eval()
    return compile_model(model, target=target, seq_len=case.seq, out=work / f"case{i}.bertc", prune=case.prune)


def _bench(art, case: Case, device: str | None, runs: int) -> dict[str, Any]:
    model = DeviceModel(art.path, device=device, threads=case.threads)
    if model.device.emulated:
        raise BertcError(f"{model.device.name} emulates the CPU: its timings say nothing about speed. Calibrate on "
                         "the host (--device host) or on a phone (--device adb)")
    ids = np.full((1, case.seq), 7, np.int64)
    return model.bench(ids, runs=runs, warmup=3)


def _samples(case: Case, report: dict[str, Any], ops: list) -> list[tuple[str, dict[str, float], float]]:
    """(kind, features, measured ms) per op of the artifact, matched to the cost model's ops by position."""
    measured = report.get("ops")
    if measured is None:
        raise BertcError("bertc_run reported no per-op times (an artifact from an older bertc?); recompile it")
    if len(measured) != len(ops):
        raise BertcError(f"{case.label}: the artifact ran {len(measured)} ops, the cost model sees {len(ops)}")
    out = []
    for o, m in zip(ops, measured):
        if m["name"].split(" ")[0] != o.op.split(" ")[0]:
            raise BertcError(f"{case.label}: op {o.index} is {m['name']} in the artifact, {o.op} in the cost model")
        out.append((o.kind, o.features, float(m.get("p50_ms", m["ms"]))))
    return out


def calibrate(target: str = "host", device: str | None = None, threads: list[int] | None = None, size: str = "full",
              holdout_n: int = 30, out: str | Path | None = None, runs: int = 10, seed: int = 7,
              progress: bool = True, holdout_limits: dict[str, int] | None = None) -> tuple[Profile, dict[str, Any]]:
    """Measure, fit, check; returns the new profile (also written to ``out``) and the quality report."""
    from tqdm import tqdm

    base = load_profile(None, target)
    threads = threads or [1, 2]
    if max(threads) > base.data["cores"] and device in (None, "host"):
        raise BertcError(f"--threads {max(threads)} is more than this machine's {base.data['cores']} cores")
    cases = grid(size, threads)
    checks = holdout(holdout_n, threads, seed, **(holdout_limits or {}))
    bar = tqdm(total=len(cases) + len(checks), desc="bertc calibrate", unit="model", file=sys.stderr,
               disable=not progress)
    t0 = time.perf_counter()
    samples: dict[tuple[int, str], list] = {}
    overhead: dict[int, list[float]] = {}
    runs_seen: list[tuple[Case, list, float]] = []  # (case, its op samples, its end-to-end p50)
    with tempfile.TemporaryDirectory(prefix="bertc-calibrate-") as tmp:
        work = Path(tmp)
        art, key = None, None
        for i, case in enumerate(cases):
            bar.set_postfix_str(f"grid {case.label}")
            if key != (case.config, case.seq, case.prune):  # a new model: the same one at another thread count
                if art is not None:  # is compiled (and lowered by the cost model) once
                    _cleanup(art.path)
                key = (case.config, case.seq, case.prune)
                art = _compile(case, target, work, i)
                priced = config_ops(case.config, target, case.seq, case.prune, base.cache_bytes)
            report = _bench(art, case, device, runs)
            ops = _samples(case, report, priced)
            for kind, feats, ms in ops:
                samples.setdefault((case.threads, kind), []).append((feats, ms))
            # means add up (medians do not): what a run spends outside its ops
            overhead.setdefault(case.threads, []).append(report["mean_ms"] - report["ops_ms"])
            runs_seen.append((case, ops, report["p50_ms"]))
            bar.update(1)
        if art is not None:
            _cleanup(art.path)
        data = json.loads(json.dumps(base.data))
        data["fitted"] = {str(t): {} for t in threads}
        fit_error: dict[str, dict[str, float]] = {}
        for (t, kind), rows in sorted(samples.items()):
            coef = fit_kind(kind, rows)
            data["fitted"][str(t)][kind] = coef
            errs = [abs(sum(c * f.get(n, 0.0) for n, c in zip(FEATURES[kind], coef)) - ms) / ms for f, ms in rows]
            fit_error.setdefault(str(t), {})[kind] = round(statistics.fmean(errs), 4)
        data["run_overhead_ms"] = {str(t): round(max(0.0, statistics.median(v)), 4) for t, v in overhead.items()}
        data["run_scale"] = _run_scale(Profile(data["name"], data), runs_seen)
        profile = Profile(data["name"], data)
        rows = []
        for j, case in enumerate(checks):
            bar.set_postfix_str(f"held out {case.label}")
            art = _compile(case, target, work, 1000 + j)
            measured = _bench(art, case, device, runs)["p50_ms"]
            predicted = estimate(case.config, target, case.threads, case.seq, prune=case.prune, profile=profile).total_ms
            rows.append({"config": case.label, "seq": case.seq, "measured_ms": round(measured, 4),
                         "predicted_ms": round(predicted, 4), "error": round((predicted - measured) / measured, 4)})
            _cleanup(art.path)
            bar.update(1)
    bar.close()
    q = quality([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]) if len(rows) >= 2 else {}
    q["by_length"] = quality_by_length(rows)
    where = device or "host"
    data["sources"] = {**data.get("sources", {}),
                       "fitted": f"bertc calibrate --target {target} --device {where} on {date.today().isoformat()}: "
                                 f"{len(cases)} grid models (one-layer, and deep ones whose weights outgrow the cache), per-op times from bertc_run --bench "
                                 f"({runs} runs), non-negative least squares on relative error",
                       "run_overhead_ms": "median over the grid of a run's mean time minus the sum of its ops' means",
                       "run_scale": "median over the grid's deep models of end-to-end p50 over the sum of fitted ops"}
    data["quality"] = {**{k: round(v, 4) if isinstance(v, float) else v for k, v in q.items()},
                       "holdout_seed": seed, "fit_mape_by_kind": fit_error, "measured": rows,
                       "seconds": round(time.perf_counter() - t0, 1)}
    data["calibrated"] = {"device": where, "date": date.today().isoformat()}
    peak = _best_gflops(samples)
    if peak:
        data["roofline"]["peak_gflops_per_core"] = round(peak, 1)
        data["sources"]["peak_gflops_per_core"] = "measured: the fastest packed GEMM op of the 1-thread grid"
    profile = Profile(data["name"], data)
    if out is not None:
        Path(out).write_text(json.dumps(data, indent=1) + "\n")
        profile.path = Path(out)
    return profile, data["quality"]


def _run_scale(profile: Profile, runs_seen) -> dict[str, float]:
    """Per thread count, the median of a grid model's end-to-end p50 over the sum of its fitted ops: the
    ops' medians, each measured in a hot loop, add up to less than a whole run of a deep model (the
    next layer's weights are not in cache yet, the pool's threads drift apart). Deep grid models only,
    since real models are deep; all of them where the grid has none."""
    out = {}
    for t in sorted({c.threads for c, _, _ in runs_seen}):
        mine = [(c, ops, p50) for c, ops, p50 in runs_seen if c.threads == t]
        deep = [r for r in mine if r[0].config["num_hidden_layers"] > 1] or mine
        ratios = []
        for _, ops, p50 in deep:
            fitted = profile.data["fitted"][str(t)]
            ops_ms = sum(sum(c * f.get(n, 0.0) for n, c in zip(FEATURES[k], fitted[k])) for k, f, _ in ops)
            ratios.append((p50 - profile.overhead_ms(t)) / ops_ms)
        out[str(t)] = round(statistics.median(ratios), 4)
    return out


def _best_gflops(samples) -> float | None:
    rows = samples.get((1, "linear"), [])  # large GEMMs only: a pooler's M = 1 is padded to a whole tile
    return max((f["flops"] / (ms * 1e6) for f, ms in rows if ms > 0 and f["outputs"] >= 128 * 256), default=None)


def _cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


LENGTH_BANDS = ((1, 16), (17, 64), (65, 512))  # real text's few tokens, a paragraph's, the fixed-length benchmark's


def quality_by_length(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``quality`` over the held-out rows whose sequence length falls in each of LENGTH_BANDS (bands with
    fewer than two rows have no rank correlation and are left out)."""
    out = {}
    for lo, hi in LENGTH_BANDS:
        band = [r for r in rows if lo <= r["seq"] <= hi]
        if len(band) >= 2:
            out[f"{lo}-{hi}"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in
                                 quality([r["predicted_ms"] for r in band], [r["measured_ms"] for r in band]).items()}
    return out


def format_quality(q: dict[str, Any]) -> str:
    lines = [f"{'held-out configuration':<44} {'measured ms':>12} {'predicted ms':>13} {'error':>8}"]
    for r in q.get("measured", []):
        lines.append(f"{r['config']:<44} {r['measured_ms']:>12.3f} {r['predicted_ms']:>13.3f} {r['error']:>+8.1%}")
    if "spearman" in q:
        lines.append(f"\nSpearman {q['spearman']:.3f}, MAPE {q['mape']:.1%} (worst {q['max_ape']:.1%}) over "
                     f"{q['configs']} held-out configurations; fit error by kind (MAPE over the grid's ops): "
                     + "; ".join(f"{t} thread(s): " + ", ".join(f"{k} {v:.1%}" for k, v in kinds.items())
                                 for t, kinds in q["fit_mape_by_kind"].items()))
    for band, b in q.get("by_length", {}).items():
        lines.append(f"  sequence length {band:>7}: Spearman {b['spearman']:.3f}, MAPE {b['mape']:.1%} (worst "
                     f"{b['max_ape']:.1%}) over {b['configs']} held-out configurations")
    return "\n".join(lines)
