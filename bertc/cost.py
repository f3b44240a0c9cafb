"""The cost model: latency per op and in total, from the compiler's own IR and a target profile.

``estimate`` runs the pipeline up to --plan-memory (no code generation), so what it prices is what
bertc would ship: fused attention, epilogues riding on GEMMs, packed tiles, sparse matrices where
--prune-patterns keeps them, and the arena plan's peak memory. A transformers config goes through
bertc/synth.py (the raised IR written from the config, no weights: ~0.2 s for BERT-base); a model
folder / .pt2 / module goes through torch.export and the importer like ``bertc compile``.

Each op that runs a kernel has a *kind* and a vector of shape features (FLOPs, output elements,
weight elements, ...). A profile (bertc/data/profiles/*.json, or a file ``bertc calibrate`` wrote)
prices a kind at a thread count in one of two ways:

- fitted: ``ms = coef . features``, coefficients fitted by ``bertc calibrate`` (non-negative least
  squares on relative error) from per-op times measured inside real compiled models on the device;
  ``flops / (coef . features)`` against the peak is the kernel's efficiency at that shape;
- roofline: ``ms = dispatch + max(flops / (peak x efficiency), bytes / bandwidth)`` from the
  profile's hardware numbers, for devices nobody has calibrated yet (the built-in phone profiles).

A whole run adds the profile's per-run overhead (pool wake-up, input copy) to the sum over ops.
"""

from __future__ import annotations

import collections
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from torch_mlir import ir

from .cpu import mismatch_note, read_cpu
from .dialects import bertc as B
from .errors import BertcError
from .ir import annotate, make_context, set_weight_dtype
from .passes import PassContext
from .passes.common import func_ops, shape_of, sparsity, weight_dtype
from .passes.emit_c import SERIAL_POOL
from .pipeline import PIPELINE, CompileOptions, is_emitter, lowering, pipeline_for, run_pass
from .sparsity import int8_block_group, kept_blocks, parse_pattern, parse_spec
from .synth import bert_ir
from .targets import AVX512_I8_TILE, AVX512_TILE, get_target

PROFILES_DIR = Path(__file__).parent / "data" / "profiles"
BUILTIN = {"host": "host", "android-arm64": "cortex-a76", "linux-arm64": "cortex-a76"}
# The passes a CPU target runs on raised IR (after raise-torch, before emit-c): what ``estimate`` prices
PASSES = lowering(PIPELINE)
# Rows at which the visible cost of a GEMM's weight stream has faded out, one feature each (below).
WEIGHT_HINGES = (2, 4, 8, 16, 32)


def _weight_features(prefix: str) -> list[str]:
    return [prefix, *(f"{prefix}_h{h}" for h in WEIGHT_HINGES)]


# The fp32 block-sparse kernels by block height (runtime/kernels/sparse_gemm.h's sparse_tile_for): 16 rows and
# more by columns, 8 (8x1 and 2:4's 8-row groups) and 4 by rows in lanes, 1 and 2 by rows with 1x4's chains or
# scalar FMAs. The grid has blocks of each height (calibrate.grid), so each has its own coefficients.
SPARSE_FAMILIES = ("r16", "r8", "r4", "r1")


def sparse_family(r: int) -> str:
    """The family of an r-row block's kernel (SPARSE_FAMILIES): the nearest height the grid fits."""
    return "r16" if r >= 16 else "r8" if r >= 8 else "r4" if r >= 3 else "r1"


# The int8 block kernel's heights (bertc_linear_sparse_i8: 4, 8 and 16 x 1) fitted apart as the fp32 ones are: one set
# of coefficients for both heights the grid has priced its 16x1 GEMMs 5-9% over and its 8x1 ones 4-12% under on the
# Zen 5 EPYC's grid, and a 6-layer 8x1 model at 207 tokens 8-11% under in three calibrations
INT8_FAMILIES = ("r16", "r8")


def int8_family(r: int) -> str:
    """The family of an r x 1 int8 block's kernel (INT8_FAMILIES): 4-row blocks as 8-row ones, the nearest fitted."""
    return "r16" if r >= 16 else "r8"


# Epilogues that evaluate an exp, erf or tanh per output, which the "gelu_outputs" feature prices (named for the first
# of them, as fitted profiles know it); ReLU's max is free beside the FMAs.
TRANSCENDENTAL = ("gelu", "gelu_tanh", "tanh", "silu")

# The features of each kind, in the order of a fitted profile's coefficients (cost model version COST_MODEL).
FEATURES = {
    # weights: the weight stream's time where compute does not hide it. At a few rows a GEMM streams its
    # weights faster than it does FMAs on them, and as the rows grow the prefetch hides the stream behind the
    # FMAs (benchmarks/gemm_rows.py): weights x max(0, 1 - m / h) for each hinge h (m: the rows the FMAs run, the
    # tile's for dense fp32) lets the fit find where it fades, a piecewise-linear max(compute, stream).
    # weights_dram instead of weights for the share streamed from memory (WeightCache).
    # weights_l2 instead of weights for the share a run's L2 caches hold, where calibrate found them faster
    # (WeightCache.l2)
    "linear": ["dispatch", "flops", "outputs", "gelu_outputs", "inputs", *_weight_features("weights"),
               *_weight_features("weights_dram"), *_weight_features("weights_l2")],
    # int8 weights (--dtype int8): macs counts the kernel's whole tiles and K groups of 4; inputs, the pass that
    # quantizes each row of x before the GEMM reads it; the weight stream is a byte a weight
    "linear_i8": ["dispatch", "macs", "outputs", "gelu_outputs", "inputs", *_weight_features("weights"),
                  *_weight_features("weights_dram"), *_weight_features("weights_l2")],
    # fp32 blocks: each block height's kernel fitted apart (sparse_family), its own copy of these features:
    # flops: the tile's FMAs (the kernels vectorise 16-, 8- and 4-row blocks over N, 1-row ones over M); blocks:
    # reading a block's index, whatever the rows, by each row tile that sweeps the blocks (a tail tile of 16 rows of
    # 1x4 blocks took 62-70% of a full 32-row one's time on the Zen 5 EPYC, not half; counted once, the fit put it in
    # blocks_x_m, and 9-16 tokens were priced 18-25% under); blocks_x_m: a block's loads of x, per row of the tile
    # (the tile's rows, as the FLOPs: a 9-row GEMM of 4x1 blocks on AVX2 does 16 rows' work, 5.9 ms as at 16, and m
    # there priced it 23% under); few_fmas: the FMA instructions of the few-rows tile (1-8 tokens, blocks narrower than a
    # register), r lanes wide or scalar, one row's accumulator a chain; row_tiles: a block row's start and stores,
    # per tile of rows; few_rows: the same, per block row of the few-rows tile, apart (a 1x4 block row's end there
    # costs about 15 ns at one thread on the Zen 5 EPYC, so a 1-token GEMM of 768 outputs and 3072 inputs takes 30%
    # less than one of 3072 and 768, while at 8-128 tokens the long rows' x, 12 KiB a token, makes it the slower one;
    # fitted as one row_tiles the two cancelled and 1-token 1x4 models at 2 threads were priced 16-35% over). One set
    # of coefficients for every height priced the heights' short inputs 15-37% off on the Zen 5 EPYC's grid (1x4
    # blocks at 1 token at 0.1 density 37% under, 0.3 density 1% over)
    "linear_sparse": [f"{family}:{n}" for family in SPARSE_FAMILIES for n in (
        "dispatch", "flops", "outputs", "gelu_outputs", "blocks_x_m", "blocks", *_weight_features("weights"),
        *_weight_features("weights_dram"), "few_fmas", "row_tiles", "few_rows")],
    # int8 blocks (--dtype int8 --prune-patterns: bertc_linear_sparse_i8, r x 1 blocks): tiles of 4 rows (16 above
    # 4 with AVX-512 VNNI: int8_block_tile) whatever m leaves of them, the blocks of a block row taken two at a time
    # (four on x86, a block row padded to a multiple of 4: sparsity.int8_block_group). x_gathers: the x bytes of such
    # a group gathered, per row of the tile, the kernel's main cost on x86 (whatever r); macs: the tile's
    # multiply-adds, padding included; inputs: the row pass. Each height its own copy (int8_family)
    "linear_sparse_i8": [f"{family}:{n}" for family in INT8_FAMILIES for n in (
        "dispatch", "x_gathers", "macs", "outputs", "gelu_outputs", "inputs",
        *_weight_features("weights"), *_weight_features("weights_dram"))],
    # heads and head_rows: a head's setup, and each query row's softmax pass, apart from the FLOPs; values: the outputs,
    # and the K and V a head packs (as many), with those a parallel call's chunks pack again (priced_as, head_packs)
    "attention": ["dispatch", "flops", "scores", "values", "heads", "head_rows"],
    # serial_*: an op's features where it runs on one thread in a run of more (priced_as)
    "layer_norm": ["dispatch", "elements", "serial_dispatch", "serial_elements"],
    "embedding": ["dispatch", "elements", "serial_dispatch", "serial_elements"],
    "elementwise": ["dispatch", "elements", "serial_dispatch", "serial_elements"],
    "matmul": ["dispatch", "flops"],
}
# A kind a profile has neither fitted nor a roofline efficiency for is priced as another kind, this many times
# faster: int8 GEMMs at twice the fp32 ones' rate (VNNI and AVX2's maddubs multiply-add twice the lanes, SDOT
# four times; bertc int8 measured 2.5-2.9x its fp32 on MiniLM, README), until `bertc calibrate` fits them; int8
# blocks at the fp32 blocks' rate, the cautious side (their groups of 4 at 128 tokens: on the AVX2 EPYC 16x1 blocks
# 1.3-1.4x faster than fp32's and 8x1 0.9-1.0x; on the Zen 5 VNNI EPYC 1.2x and 0.76x; NEON's pairs unmeasured).
ROOFLINE_AS = {"linear_i8": ("linear", 2.0), "linear_sparse_i8": ("linear_sparse", 1.0)}
# 2: tile rows, weight hinges, sparse blocks, attention heads (issue 21); 3: the few-rows sparse tile's FMAs; 4: fp32
# blocks fitted per block height, with row tiles; 5: a dense fp32 GEMM's weight hinges over its tile's rows; 6: ops too
# small to split run on one thread (op_threads), norms and elementwise ops there at a rate of their own; 7: the
# few-rows sparse tile's block rows apart (few_rows), int8 blocks fitted per block height (int8_family); 8: a fp32 block's
# index read once per row tile that sweeps it (blocks), so a tail tile costs its blocks as a full one does; 9: a dense
# GEMM's weights in the run's L2 caches apart (weights_l2), where calibrate finds them faster (WeightCache.l2); 10: the
# heads x86's attention packs again in a parallel call's chunks (priced_as: values); 11: a fp32 block-sparse GEMM's
# split over threads by the busiest one's share of its row tiles; 12: that split even again, the runtime's items being
# equal shares of the tiles' work (runtime/kernels/sparse_gemm.h sparse_items), and 11's pricing of it gone; 13: the
# L2s' share of the weights at more than one thread falling from 0.8 to 1.5 of their bytes (L2_LINES); 14: an int8
# GEMM's quantizing of x in a parallel call of its own only from QUANTIZE_SPLIT elements (parallel_calls). A profile
# fitted for another version has coefficients for other features: bertc calibrate --refit fits it again from its
# measurements.
COST_MODEL = 14


# runtime/src/pool.h's lines (test_cost checks them against it): a call of less work runs on the calling thread
# alone, whatever the run's threads. Output elements, or a GEMM's multiply-adds (of the kept blocks where sparse)
SERIAL_LINES = {"BERTC_SERIAL_ELEMENTS": 8192, "BERTC_SERIAL_COPY_ELEMENTS": 32768, "BERTC_SERIAL_MACS": 32768,
                "BERTC_SERIAL_MACS_I8": 65536}
# Each kernel's line, by the macro the generated code sizes its pool with (passes/emit_c.py SERIAL_POOL)
SERIAL_BELOW = {kernel: SERIAL_LINES[macro] for kernel, macro in SERIAL_POOL.items()}


def op_threads(op: OpCost, threads: int) -> int:
    """The threads ``op`` runs on in a run of ``threads``: one where it is too small to split (SERIAL_BELOW)."""
    below = SERIAL_BELOW.get(op.kernel)
    if below is None:
        return threads
    work = op.flops / 2 if op.kind.startswith("linear") else op.features.get("elements", below)
    return 1 if work < below else threads


# Kinds whose ops, run on one thread in a run of more, read what the other threads wrote: a layer norm after a
# 2-thread GEMM ran 1.7x its 1-thread runs' time on the Zen 5 EPYC, adds and lookups 1.1-1.2x. Their features count
# as serial_dispatch and serial_elements there, rates of the run's own fit. A GEMM on one thread reads its weights and
# a few rows of x, and runs as in a 1-thread run (0.93-1.02x its time there): the 1-thread fit prices it.
SERIAL_RATE_KINDS = ("layer_norm", "elementwise", "embedding")


@cache  # pure; priced_as asks again for each op of each run a fit or a search prices
def head_packs(units: int, blocks: int, threads: int, chunks_per_thread: int) -> int:
    """The packs of a head's K and V that x86's blocked attention does over ``units`` (batch x heads) of ``blocks``
    query blocks each in a run of ``threads``: one at each head's first block and one at each chunk's start
    (runtime/kernels/avx2 attn_blocks; runtime/src/pool.c's chunks, chunks_per_thread a thread). On the Xeon 2 heads of
    128 at 117 tokens split 1.35x faster on 2 threads than on 1, priced 1.88x: 5 packs, not 2."""
    rows = units * blocks
    if threads == 1 or rows < 2:
        return units
    chunks = threads * chunks_per_thread
    chunk = -(-rows // chunks)
    return len({c * chunk for c in range(chunks) if c * chunk < rows} | {u * blocks for u in range(units)})


def priced_as(op: OpCost, threads: int) -> tuple[int, dict[str, float]]:
    """The fit (by threads) and the features that price ``op`` in a run of ``threads`` (op_threads)."""
    if op_threads(op, threads) == threads:
        if op.packs is not None and threads > 1:  # (units, blocks, chunks a thread, a head's values)
            units, blocks, cpt, size = op.packs
            again = head_packs(units, blocks, threads, cpt) - units
            return threads, {**op.features, "values": op.features["values"] + again * size} if again else op.features
        return threads, op.features
    if op.kind in SERIAL_RATE_KINDS:
        return threads, {f"serial_{k}": v for k, v in op.features.items()}
    return 1, op.features


# The thread pool's calls an op makes where it runs split: one, and an int8 GEMM's quantizing of its rows of x a call
# of its own before it from QUANTIZE_SPLIT elements of x (runtime/kernels/int8_gemm.h q8_quantize_pool: below, on the
# calling thread); the kernels that take no pool (kernels.h: copies, casts, masks, index tables) none
QUANTIZES = ("linear_i8", "linear_sparse_i8")
QUANTIZE_SPLIT = SERIAL_LINES["BERTC_SERIAL_ELEMENTS"]
UNPOOLED = {"bertc_cast", "bertc_mask_bias", "bertc_position_ids", "bertc_pow", "bertc_relative_bias",
            "bertc_relative_gather", "bertc_slice", "bertc_token_dropout", "bertc_transpose", "bertc_trigram"}


def parallel_calls(op: OpCost, threads: int) -> int:
    """The parallel calls ``op`` makes in a run of ``threads``, each paying the machine's hand-off
    (bertc_handoff_us: waking the spinning workers, the barrier, the next op reading what another core wrote): none
    on one thread, where it is too small to split (op_threads), or where its kernel takes no pool."""
    if threads == 1 or op.kernel in UNPOOLED or op_threads(op, threads) == 1:
        return 0
    return 2 if op.kind in QUANTIZES and op.x_elements >= QUANTIZE_SPLIT else 1


def fitted_cost(coef: list[float], kind: str, features: dict[str, float]) -> float:
    """The ms a profile's fitted coefficients for ``kind`` give an op with these features (before scales)."""
    return float(sum(c * features.get(n, 0.0) for n, c in zip(FEATURES[kind], coef)))


def weight_stream(key: str, weights: float, m: int) -> dict[str, float]:
    """The weight features of a GEMM of ``m`` rows (see FEATURES)."""
    return {key: weights, **{f"{key}_h{h}": weights * max(0.0, 1.0 - m / h) for h in WEIGHT_HINGES}}


_CACHED = _weight_features("weights")


def spill(features: dict[str, float], share: float, to: str = "weights_dram") -> dict[str, float]:
    """A GEMM's features with ``share`` of its weight stream moved from the cached features to the weights_dram
    ones (WeightCache.dram_share), or to the weights_l2 ones (``to``; WeightCache.l2_share)."""
    if share <= 0.0:
        return features
    out = dict(features)
    # a sparse family's features are "family:name": each family's stream moves to its own weights_dram ones
    prefixes = {k[:k.index(":") + 1] for k in features if ":" in k} or {""}
    for key in (p + k for p in prefixes for k in _CACHED):
        v = features.get(key, 0.0)
        out[key] = v * (1.0 - share)
        out[key.replace("weights", to)] = out.get(key.replace("weights", to), 0.0) + v * share
    return out


@dataclass(frozen=True)
class WeightCache:
    """How much of a model's GEMM weights stays cached from one run to the next. ``all_or_nothing``: all of it
    up to ``bytes`` (the last-level cache), none beyond; else the share of the weights beyond ``bytes`` streams
    from memory and the rest stays cached, so a 28 MiB model pays part of what a 60 MiB one does. On a 2-vCPU
    cloud EPYC (32 MiB L3 shared with other guests) 1-token GEMMs stream their weights at 40-46 GB/s a core up to
    20 MiB of weights, 22 GB/s at 28 MiB and 15-20 GB/s from 50 MiB: no one size splits them in two.
    ``bertc calibrate`` chooses the split that predicts the grid best (calibrate.choose_weight_cache)."""

    bytes: int
    all_or_nothing: bool = False
    # A core's L2 where the weights it holds stream faster than the rest of the cache's (calibrate.choose_l2_tier),
    # else 0. An Intel Xeon of 2 MiB L2s and a 480 MiB L3 shared over a mesh streamed a 1-token GEMM's weights from
    # its L2 3.3-3.4x faster than from the L3 (0.6 MB of weights: 24 G weights/s, 9-80 MB: 7.2-7.7); the Zen 4 and
    # Zen 5 EPYCs' L3s are 1.2x and 1.3x slower than their L2s, which the cached stream's one set of coefficients prices
    l2: int = 0

    def l2_share(self, weight_bytes: float, threads: int = 1) -> float:
        """The share of the weights that stays in the L2s of a run's ``threads`` cores (each holds the part of a GEMM
        it computes): all of them up to L2_LINES[0] times the L2s' bytes, none from L2_LINES[1] times, in between a
        straight line (on the Xeon 2.2 MB of weights at 1 thread ran a 1-token GEMM at 12.4 G weights/s, halfway)."""
        if not self.l2 or weight_bytes <= 0:
            return 0.0
        lo, hi = L2_LINES[threads > 1]
        x = weight_bytes / (self.l2 * threads)
        return 1.0 if x <= lo else max(0.0, (hi - x) / (hi - lo))

    def dram_share(self, weight_bytes: float) -> float:
        """The share of the weights that each run streams from memory."""
        if weight_bytes <= 0:
            return 0.0
        if self.all_or_nothing:
            return 1.0 if weight_bytes > self.bytes else 0.0
        return max(0.0, 1.0 - self.bytes / weight_bytes)

    def label(self) -> str:
        mib = self.bytes / 2**20
        return f"all or none at {mib:g} MiB" if self.all_or_nothing else f"the share beyond {mib:g} MiB"

    def describe(self) -> str:
        mib = self.bytes / 2**20
        return (f"all of them cached up to {mib:g} MiB, none beyond" if self.all_or_nothing else
                f"the share beyond {mib:g} MiB streamed from memory")


# Where the L2s' share of a model's weights (WeightCache.l2_share) starts to fall and where it is gone, in the run's
# cores' L2 bytes: on one core from 1 to 2, on more from 0.8 to 1.5 (cost model 13). On the Xeon 2 layers of 512 in
# int8 (5 MB, 1.2 of the 2 cores' L2s) ran each 1-token GEMM at 2 threads in half its 1-thread time, as GEMMs whose
# weights stream from the L3, where the line from 1 to 2 held 81% of them in the L2s: it was priced 10-19% under in
# every Xeon calibration. The line, scored by refitting the eight Xeon calibrations' measurements and predicting
# their held-out sets: 79.6% within 10% on average from 1 to 2, 82.3% from 1 to 1.5, 82.5% from 0.6 to 1.5, 83.0%
# from 0.8 to 1.5 (no set lower than from 1 to 2), 82.1% from 0.8 to 1.8; on one core too from 0.8 to 2, 82.1%.
L2_LINES = {False: (1.0, 2.0), True: (0.8, 1.5)}


@dataclass
class OpCost:
    index: int  # position among the ops that run a kernel (bertc_run's per-op order)
    op: str  # e.g. "bertc.linear [1, 128, 1536]"
    kernel: str
    kind: str
    features: dict[str, float]
    flops: float
    bytes: float
    ms: float = 0.0
    detail: str = ""  # "gelu", "16x1 sparse 25%", ...
    weight_bytes: int = 0  # the GEMM weights it reads, as stored (all of them cached: see module_ops)
    tile: tuple | None = None  # a dense fp32 GEMM's tile_features arguments (m, mr, isa, panel weights, weights)
    packs: tuple | None = None  # x86 blocked attention's (batch x heads, query blocks, chunks a thread, a head's values)
    x_elements: int = 0  # a GEMM's x, M x K (an int8 one quantizes it: parallel_calls)

    @property
    def gflops(self) -> float:
        return self.flops / (self.ms * 1e6) if self.ms > 0 else 0.0


@dataclass
class Estimate:
    target: str
    profile: str
    threads: int
    seq_len: int
    batch: int
    ops: list[OpCost]
    overhead_ms: float
    arena_bytes: int
    weights_bytes: int
    seconds: float = 0.0  # time the estimate itself took
    notes: list[str] = field(default_factory=list)
    handoff_us: float = 0.0  # the hand-off each parallel call was priced at (Profile.op_ms); 0 where none

    @property
    def total_ms(self) -> float:
        return self.overhead_ms + sum(o.ms for o in self.ops)

    @property
    def peak_memory_bytes(self) -> int:
        return self.arena_bytes + self.weights_bytes

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for o in self.ops:
            out[o.kind] = out.get(o.kind, 0.0) + o.ms
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "profile": self.profile, "threads": self.threads, "seq_len": self.seq_len,
                "batch": self.batch, "total_ms": round(self.total_ms, 4), "overhead_ms": round(self.overhead_ms, 4),
                "by_kind_ms": {k: round(v, 4) for k, v in self.by_kind().items()},
                "memory": {"arena_bytes": self.arena_bytes, "weights_bytes": self.weights_bytes,
                           "peak_bytes": self.peak_memory_bytes},
                "estimate_seconds": round(self.seconds, 3), "notes": self.notes, "handoff_us": self.handoff_us,
                "ops": [{**{k: v for k, v in asdict(o).items() if k != "features"}, "ms": round(o.ms, 5),
                         "features": o.features} for o in self.ops]}


# --------------------------------------------------------------------------- features from the IR


_shape = shape_of


def op_features(op, index: int, target) -> OpCost | None:
    """The kind, kernel, features, FLOPs and bytes of one op after --plan-memory; None for ops that
    run no kernel (the dialect's constant and view ops, func.return). A GEMM's weights are priced as cached
    here; module_ops moves the share that streams from memory. The kind and kernel are the op's OpTraits
    (dialects/bertc.py); a linear runs the packed or the sparse variant of its kernel (runtime/kernels/kernels.h)."""
    name = op.operation.name
    traits = B.traits_of(name)
    if traits is None and name != "func.return":
        raise BertcError(f"the cost model has no cost function for '{name}'")
    if traits is None or traits.category != "kernel":
        return None
    out = _shape(op.results[0])
    label = f"{name} {out}"
    kind = traits.cost
    if kind == "linear":
        n, k = _shape(op.operands[1])
        m = math.prod(_shape(op.operands[0])[:-1])
        act = op.attributes["activation"].value
        gelu = m * n if act in TRANSCENDENTAL else 0
        sp = sparsity(op)
        stored = n * k * WEIGHT_BYTES[weight_dtype(op)]  # as gemm_weight_bytes counts them
        if sp is not None and sp["format"] == "sparse":
            p = parse_pattern(sp["pattern"])
            rows = -(-n // p.r)
            blocks = kept_blocks(sp["density"], p, n, k)
            kept = blocks * p.r * p.c
            i8 = weight_dtype(op) == "i8"
            if i8:  # tiles of 4 or 16 rows (int8_block_tile), the blocks of a block row two or four at a time
                # (as emit-c lays them out; the plain layout runs blocks in pairs)
                group = max(2, int8_block_group(target.isa, p.c))
                mr = int8_block_tile(m, group, target)
                tile_rows = -(-m // mr) * mr
                groups = rows * math.ceil(blocks / rows / group)
                f = {"dispatch": 1, "x_gathers": float(tile_rows * groups), "macs": float(tile_rows * groups * group * p.r),
                     "outputs": m * n, "gelu_outputs": gelu, "inputs": m * k, **weight_stream("weights", kept, m)}
                f = {f"{int8_family(p.r)}:{name}": v for name, v in f.items()}
            else:
                work, few, tiles = sparse_tile(m, p.r, p.c, target)
                f = {"dispatch": 1, "outputs": m * n, "gelu_outputs": gelu, "blocks_x_m": work * blocks,
                     "blocks": blocks * tiles, "row_tiles": float(rows * tiles), **weight_stream("weights", kept, m)}
                if few:  # a 4-lane FMA a 1x4 block, an r-lane one an r x 1 block (r = 4, 8), else r x c scalar ones
                    f["few_fmas"] = float(m * blocks * (1 if p.r == 1 and p.c == 4 else p.c * (1 if p.r >= 4 else p.r)))
                    f["few_rows"] = f.pop("row_tiles")
                else:
                    f["flops"] = 2.0 * work * kept
                family = sparse_family(p.r)
                f = {f"{family}:{name}": v for name, v in f.items()}
            return OpCost(index, label, f"{traits.kernel}_sparse" + ("_i8" if i8 else ""),
                          "linear_sparse" + ("_i8" if i8 else ""), f,
                          2.0 * m * kept, 4.0 * (m * k + m * n + blocks) + kept * (1 if i8 else 4), detail=f"{act}, {sp['pattern']} "
                          f"sparse{' int8' if i8 else ''} {sp['density']:.0%}", weight_bytes=int(stored * sp["density"]),
                          x_elements=m * k)
        if weight_dtype(op) == "i8":
            # x86's int8 tile has an instance per row count (q8_tile_any) and spends its instructions per row, so a
            # 1-row GEMM costs a quarter of a 4-row one there (the grid: MiniLM-like 4 x 384 at 1 thread, 0.24 ms at
            # 1 token, 0.56 at 4), not the whole tile the fp32 kernel's loads cost; NEON's SDOT tile is whole
            tile = target.int8_tile
            mp = m if target.isa == "avx2" else gemm_rows(m, tile.mr, "int8")
            np_, kq = -(-n // tile.nr) * tile.nr, -(-k // 4) * 4
            f = {"dispatch": 1, "macs": float(mp * np_ * kq), "outputs": m * n, "gelu_outputs": gelu, "inputs": m * k,
                 **weight_stream("weights", n * k, m)}
            return OpCost(index, label, f"{traits.kernel}_packed_i8", "linear_i8", f, 2.0 * m * n * k,
                          4.0 * (m * k + m * n) + n * k, detail=f"{act}, int8", weight_bytes=stored,
                          x_elements=m * k)
        tile = target.tile
        np_ = -(-n // tile.nr) * tile.nr  # whole panels of nr columns
        f = {"dispatch": 1, "outputs": m * n, "gelu_outputs": gelu, "inputs": m * k,
             **tile_features(m, tile.mr, target.isa, np_ * k, n * k, MIN_TILE_ROWS)}
        detail = act + (f", pruned dense {sp['density']:.0%}" if sp else "")
        return OpCost(index, label, f"{traits.kernel}_packed", kind, f, 2.0 * m * n * k, 4.0 * (m * k + n * k + m * n),
                      detail=detail, weight_bytes=stored, tile=(m, tile.mr, target.isa, np_ * k, n * k),
                      x_elements=m * k)
    if kind == "attention":
        # Q|K|V rows [B,S,3H], or Q|K rows and V's apart (MobileBERT): the same reads, FLOPs and features
        b, s, h = _shape(op.results[0])
        heads, window = op.attributes["num_heads"].value, op.window.value
        keys = min(s, window + 1) if window else s  # a local layer's query reaches window + 1 keys at most (ModernBERT)
        # DeBERTa's c2p and p2c terms: each a table lookup and a load per score (p2c's a column of its [S, W] rows,
        # away from the cache line of the last), about what a score's own exp and bookkeeping cost, so each counts
        # as one more score; their [B*heads, S, W] inputs are read once
        terms = [x for x in (op.c2p, op.p2c) if x is not None]
        rows, cols, packs = s, keys, None
        if target.isa == "avx2" and not window:  # x86 blocks of queries (a short one recomputes spare rows) by keys
            qb = target.attention_block  # in whole vectors: AVX-512 32 keys a step, AVX2 64 / qb (8 at qb = 8)
            step = 32 if target.tile == AVX512_TILE else 64 // qb
            rows, cols = -(-s // qb) * qb, -(-keys // step) * step
            packs = (b * heads, -(-s // qb), target.chunks_per_thread, s * (h // heads))
        f = {"dispatch": 1, "flops": 4.0 * b * rows * cols * h, "scores": b * heads * rows * cols * (1 + len(terms)),
             "values": b * s * h, "heads": b * heads, "head_rows": b * heads * rows}
        # MPNet's relative-position bias is one load and add per score, beside its D multiply-adds and its exp: the
        # scores feature prices it with them
        rel = ", rel-pos bias" if op.rel_bias is not None else ""
        rel += f", window {window}" if window else ""
        rel += ", " + "+".join(k for k in ("c2p", "p2c") if getattr(op, k) is not None) if terms else ""
        moved = 4.0 * (b * s * 3 * h + b * s * h + sum(math.prod(_shape(x)) for x in terms))
        return OpCost(index, label, traits.kernel, kind, f, 4.0 * b * s * keys * h, moved, detail=f"{heads} heads{rel}",
                      packs=packs)
    if kind == "layer_norm":
        e = math.prod(out)
        return OpCost(index, label, traits.kernel, kind, {"dispatch": 1, "elements": e}, 8.0 * e,
                      4.0 * (3 if getattr(op, "residual", None) is not None else 2) * e)  # rms_norm has none
    if kind == "embedding":
        e = math.prod(out)
        return OpCost(index, label, traits.kernel, kind, {"dispatch": 1, "elements": e}, 0.0, 8.0 * e)
    if kind == "matmul":
        a, bm = _shape(op.operands[0]), _shape(op.operands[1])
        fl = 2.0 * math.prod(out) * a[-1]
        return OpCost(index, label, traits.kernel, kind, {"dispatch": 1, "flops": fl}, fl,
                      4.0 * (math.prod(a) + math.prod(bm) + math.prod(out)))
    if kind != "elementwise":
        raise BertcError(f"the cost model has no cost function for '{name}' (cost kind '{kind}')")
    # ConvBERT's convolutions over the sequence read k rows per output row: k elementwise passes
    e = math.prod(out) * (_shape(op.operands[1])[-1] if isinstance(op, (B.DepthwiseConv1dOp, B.SpanConvOp)) else 1)
    return OpCost(index, label, traits.kernel, kind, {"dispatch": 1, "elements": e}, float(e), 12.0 * e)


# A row tile of fewer rows than this costs as much time per k step as one of this many: its accumulators
# (rows x 2 vectors on the x86 tiles) are too few chains to hide the FMA latency (4 cycles on 2 pipes:
# 8 chains). benchmarks/gemm_rows.py: MiniLM's linears at M = 4 and M = 1 differ by DRAM time, not FMAs.
MIN_TILE_ROWS = 4
Q8S_MR = 4  # the rows of the int8 sparse kernel's tile (runtime/kernels/int8_gemm.h)
Q8S_MR_WIDE = 16  # ... with AVX-512 VNNI, in groups of 4, above Q8S_MR rows (avx2/kernels.c bertc_linear_sparse_i8)


def int8_block_tile(m: int, group: int, target) -> int:
    """The rows of the int8 sparse kernel's tile for an m-row GEMM of blocks in ``group``s on ``target``."""
    return Q8S_MR_WIDE if group == 4 and m > Q8S_MR and target.int8_tile == AVX512_I8_TILE else Q8S_MR


def gemm_rows(m: int, mr: int, isa: str, floor: int = MIN_TILE_ROWS) -> int:
    """The rows of an m-row GEMM's FMA work, as the micro-kernel's tiles cost them. The x86 kernel
    (runtime/kernels/avx2, gemm_tile_rows) merges a short remainder with the last full tile and splits
    the two evenly (7 rows at mr = 6: 4 + 3); the others take whole tiles of mr and one remainder. Each
    tile counts at least ``floor`` rows (MIN_TILE_ROWS, or the profile's: Profile.row_floor). Padding every
    input to whole tiles instead put a step of mr rows into the price of a length (7 tokens priced as 12),
    which no kernel has."""
    rows, left = 0, m
    while left > 0:
        t = (left + 1) // 2 if isa == "avx2" and mr < left < 2 * mr else min(mr, left)
        rows += max(t, min(floor, mr))
        left -= t
    return rows


# The floors calibrate weighs (calibrate.choose_row_floor): the 4 rows of MIN_TILE_ROWS (8 FMA chains, two FMAs a
# cycle), or 2 where a core issues one 512-bit FMA a cycle (Zen 4 runs each as two 256-bit halves: 4 chains, two
# rows of the 12 x 32 tile's two accumulators, hide the latency). On the 2-core Zen 4 EPYC a cached 384 x 128 GEMM
# took 2.9, 3.1, 4.0, 4.9 us at 1-4 rows (bertc_run quiet_ms), where the 4-row floor prices 1-3 rows as 4.
ROW_FLOORS = (MIN_TILE_ROWS, 2)


def tile_features(m: int, mr: int, isa: str, panel_weights: int, weights: int, floor: int) -> dict[str, float]:
    """A dense fp32 GEMM's FLOPs and weight stream at its tile's rows (gemm_rows with ``floor``): the FLOPs over
    ``panel_weights``, its ``weights`` padded to whole panels (n rounded up to nr, times k). The stream fades behind
    the tile's FMAs, so by its rows: below the floor neither moves (m fading it priced DRAM-bound GEMMs at 4
    tokens 10-19% under their 1-token time, which they match on the Zen 5 EPYC)."""
    mp = gemm_rows(m, mr, isa, floor)
    return {"flops": 2.0 * mp * panel_weights, **weight_stream("weights", weights, mp)}


SPARSE_GENERIC_MR = 16  # rows of sparse_gemm.h's generic tile (sparse_tile_for's default)


def sparse_tile(m: int, r: int, c: int, target) -> tuple[int, bool, int]:
    """The rows of an m-row block-sparse GEMM's FMA work, as runtime/kernels/sparse_gemm.h's tiles do it (its
    sparse_tile_for and sparse_few_for, mirrored): a tile computes all its rows whatever m leaves of them, so 17
    tokens cost 32 rows of 1x4 blocks on AVX-512 (9 cost 16: the tail tile, below; a by-columns tile's last one is 4
    or 8 rows where that holds what is left: 17 tokens of 16x1 blocks cost 20 rows); at a few rows a few-rows tile does
    m. The grid times 1-8 and multiples of 32 tokens, where the two agree; held-out lengths between them missed by
    up to -63%. Other kernels (the portable C, the generic tile of any other r): m. Then whether it is the few-rows
    tile, whose FMAs are narrower than a register: r lanes (4 for 1x4 blocks) or scalar; and the tiles of rows it
    runs over every block row (the portable C's: one a row; the generic tile's: one per SPARSE_GENERIC_MR rows). A
    by-rows tile's last tile takes a quarter, half, three quarters or all of its registers, the fewest that hold what
    is left (AVX2: 17 tokens of 1x4 blocks cost 24 rows; AVX-512 on 256-bit halves too).
    (int8 blocks: op_features.)"""
    if target.isa not in ("avx2", "neon"):
        return m, False, m  # runtime/kernels/ref: each row of x runs over every block row
    lanes, vregs = (16, 32) if target.tile == AVX512_TILE else (8, 16) if target.isa == "avx2" else (4, 32)
    if r in (lanes, 2 * lanes) or (r == 4 * lanes and r <= 16):  # by columns: rows in registers
        nv = r // lanes
        mr, shorter = min((vregs - nv - 3) // nv, 16), (4, 8)  # and tiles of 4 and 8 rows (sparse_tile_cols)
    elif r in (1, 2, 4, 8) and r < lanes:  # by rows: V registers of `lanes` rows
        v = min((vregs - 4) // (r + 1), 32 // lanes)
        mr, tail = v * lanes, v // 2 * lanes
        # a quarter, half (the tail tile) and three quarters of the v registers, whole ones (sparse_tile_rows); AVX-512's
        # 2 take one and a half for 17-24 rows, priced as 24 where the half costs half (avx512_split), else as 32
        shorter = tuple(k * v // 4 * lanes for k in (1, 2, 3) if k * v % 4 == 0)
        shorter += (24,) if lanes == 16 and v == 2 and target.avx512_split else ()
        chains, avx2_rx1 = r == 1 and c == 4, r >= 4 and lanes == 8  # 1x4's four chains; AVX2's r x 1 blocks
        tail_rx1 = r >= 4 and lanes == 16 and 0 < m <= tail  # AVX-512's r x 1 blocks against the tail tile
        halved = avx2_rx1 or tail_rx1 or (r < 4 and not chains)  # and r = 1, 2's scalar FMAs: half the break-even
        few, by_rows = (2 if halved else 1) * m * lanes, (tail if tail_rx1 else mr) * (4 if chains else r)
        if 1 <= m <= 8 and (few < by_rows if avx2_rx1 else few <= by_rows):
            return m, True, 1  # the few-rows tile
    else:
        return m, False, -(-m // SPARSE_GENERIC_MR)  # the generic tile: a scalar loop over the rows
    full, left = divmod(m, mr)
    last = min([t for t in shorter if left <= t < mr] or [mr]) if left else 0  # the fewest rows holding what is left
    return full * mr + last, False, -(-m // mr)


WEIGHT_BYTES = {"f32": 4, "f16": 2, "i8": 1}  # a packed weight's bytes by its --dtype


def gemm_weight_bytes(module, as_stored: bool = True) -> int:
    """Bytes of GEMM weights one run reads: dense matrices whole, sparse ones by their kept blocks
    (``as_stored=False``: every matrix whole, as the weights ops hold them)."""
    total = 0
    for op in func_ops(module.operation):
        if isinstance(op, B.LinearOp):
            sp = sparsity(op)
            dense = math.prod(_shape(op.operands[1])) * (WEIGHT_BYTES[weight_dtype(op)] if as_stored else 4)
            sparse = as_stored and sp is not None and sp["format"] == "sparse"
            total += int(dense * sp["density"]) if sparse else dense
    return total


def module_ops(module, target, cache: WeightCache | None = None, floor: int = MIN_TILE_ROWS,
               threads: int = 1) -> list[OpCost]:
    """The priced ops of a module after --plan-memory; ``cache``: how much of its GEMM weights the device keeps
    cached between runs (None: all of them); ``floor``: the fewest rows a dense fp32 GEMM's tile costs; ``threads``:
    the run's, whose cores' L2s hold the weights (WeightCache.l2_share)."""
    ops, i = [], 0
    for op in func_ops(module.operation):
        c = op_features(op, i, target)
        if c is not None:
            ops.append(c)
            i += 1
    return with_cache(with_row_floor(ops, floor), cache, threads)


def with_row_floor(ops: list[OpCost], floor: int) -> list[OpCost]:
    """``ops`` (priced at MIN_TILE_ROWS) with each dense fp32 GEMM's FLOPs and weight stream at ``floor`` rows
    a tile at least (gemm_rows); before with_cache, which splits the stream."""
    if floor != MIN_TILE_ROWS:
        for o in ops:
            if o.tile is not None:
                o.features = {**o.features, **tile_features(*o.tile, floor)}
    return ops


def with_cache(ops: list[OpCost], cache: WeightCache | None, threads: int = 1) -> list[OpCost]:
    """``ops`` (priced with all weights cached) with the share of each GEMM's weight stream that ``cache`` sends
    to memory moved to its weights_dram features, and of a dense GEMM's the share the L2s of the run's ``threads``
    cores keep to its weights_l2 ones (none where ``cache`` has no L2 tier)."""
    total = sum(o.weight_bytes for o in ops)
    share = cache.dram_share(total) if cache else 0.0
    l2 = cache.l2_share(total, threads) if cache else 0.0
    for o in ops:
        if o.weight_bytes:
            o.features = spill(o.features, share)
            if l2 and o.kind in L2_KINDS:
                o.features = spill(o.features, l2, "weights_l2")
    return ops


L2_KINDS = ("linear", "linear_i8")  # the kinds with weights_l2 features (block-sparse ones have none: no grid model fits an L2)


def _weights_bytes(module) -> int:
    """Bytes of weights.bin-to-be: constant tensors, sparse matrices by their kept blocks."""
    total = sum(math.prod(_shape(op.results[0])) * (8 if "i64" in str(op.results[0].type) else 4)
                for op in func_ops(module.operation) if isinstance(op, (B.WeightOp, B.ConstantOp)))
    return total - gemm_weight_bytes(module, as_stored=False) + gemm_weight_bytes(module)


# --------------------------------------------------------------------------- profiles


@dataclass
class Profile:
    name: str
    data: dict[str, Any]
    path: Path | None = None

    @property
    def threads(self) -> list[int]:
        return sorted(int(t) for t in self.data.get("fitted", {})) or list(range(1, self.data["cores"] + 1))

    def handoff_us(self, threads: int) -> float:
        """The hand-off a parallel call paid while the profile's grid was timed (the median of its runs'
        bertc_handoff_us at ``threads``), which its fit took out of each op's time; 0 where it has none (a profile
        fitted before bertc measured the hand-off, whose fitted costs hold their grid's)."""
        return float(self.data.get("handoff_us", {}).get(str(threads), 0.0))

    def op_ms(self, op: OpCost, threads: int, handoff_us: float | None = None) -> float:
        """``op``'s ms in a run of ``threads``: from the fit and features priced_as gives (the 1-thread fit for a
        GEMM too small to split, where the profile has one), times the run's scale and kind scale, and the hand-off
        of each parallel call it makes: ``handoff_us`` a call (one measured now), else the grid's."""
        calls = parallel_calls(op, threads) if self.handoff_us(threads) else 0
        handoff = calls * (self.handoff_us(threads) if handoff_us is None else handoff_us) / 1e3
        fits, (runs_on, features) = self.data.get("fitted", {}), priced_as(op, threads)
        fitted = fits.get(str(runs_on), {}).get(op.kind) or fits.get(str(threads), {}).get(op.kind)
        # kind_scale: a per-kind correction on top, e.g. bertc search's re-fit of sparse GEMMs from timed candidates
        kind = self.data.get("kind_scale", {}).get(str(threads), {}).get(op.kind, 1.0)
        if fitted is not None:
            scale = self.data.get("run_scale", {}).get(str(threads), 1.0)  # bertc/calibrate.py _run_scale
            return kind * scale * fitted_cost(fitted, op.kind, features) + handoff
        roof = self.data["roofline"]
        peak = roof["peak_gflops_per_core"] * runs_on * roof.get("parallel_efficiency", {}).get(str(runs_on), 1.0)
        like, speedup = ROOFLINE_AS.get(op.kind, (op.kind, 1.0))
        eff = roof["efficiency"].get(op.kind, roof["efficiency"].get(like, roof["efficiency"]["elementwise"]) * speedup)
        compute = op.flops / (peak * eff * 1e6) if op.flops else 0.0
        memory = op.bytes / (roof["bandwidth_gbs"] * 1e6)
        return kind * (roof["dispatch_us"] / 1e3 + max(compute, memory))

    @property
    def weight_cache(self) -> WeightCache | None:
        """How much of a model's GEMM weights stays cached between runs: the split ``bertc calibrate`` chose
        (its "weight_cache"), else all of them up to the last-level cache and none beyond."""
        chosen = self.data.get("weight_cache")
        if chosen is not None:
            return WeightCache(int(chosen["bytes"]), bool(chosen.get("all_or_nothing", False)),
                               int(chosen.get("l2_bytes", 0)))
        llc = max(self.data.get("caches", {}).values(), default=None)
        return None if llc is None else WeightCache(int(llc), all_or_nothing=True)

    @property
    def row_floor(self) -> int:
        """The fewest rows a dense fp32 GEMM's tile costs (gemm_rows): the floor ``bertc calibrate`` chose (its
        "row_floor"), else MIN_TILE_ROWS."""
        return int(self.data.get("row_floor", {}).get("rows", MIN_TILE_ROWS))

    def overhead_ms(self, threads: int) -> float:
        return float(self.data.get("run_overhead_ms", {}).get(str(threads), self.data["roofline"].get("run_overhead_ms", 0.0)))


def builtin_profiles() -> list[str]:
    """The built-in profiles' names (beside a calibrated one lie its measurements, which are not a profile),
    and ``host``: the one of the ``host-*`` profiles fitted on the CPU most like this one."""
    files = {p.stem for p in PROFILES_DIR.glob("*.json") if not p.name.endswith(".measurements.json")}
    return sorted(files | {"host"})


def closest_builtin(family: str, here: dict[str, Any] | None) -> str:
    """Of the built-in profiles named FAMILY-*, the one fitted on the CPU most like ``here`` (bertc/cpu.py's
    record): fewest kernel features differing (they pick the kernels), then the nearest caches (the sum of
    |log2 size ratio|); the first by name when ``here`` is unknown."""
    names = sorted(p.stem for p in PROFILES_DIR.glob(f"{family}-*.json") if not p.name.endswith(".measurements.json"))
    if not names:
        raise BertcError(f"no built-in '{family}-*' profile in {PROFILES_DIR}")

    def distance(name: str) -> tuple[int, float]:
        there = json.loads((PROFILES_DIR / f"{name}.json").read_text()).get("cpu") or {}
        features = len(set(there.get("features", [])) ^ set((here or {}).get("features", [])))
        a, b = there.get("caches", {}), (here or {}).get("caches", {})
        caches = sum(abs(math.log2(a[k] / b[k])) for k in a.keys() & b.keys() if a[k] and b[k])
        return features, caches

    return min(names, key=distance) if here else names[0]


def _check_profile(data: Any, where: str) -> None:
    def bad(what: str) -> BertcError:
        return BertcError(f"bad profile {where}: {what}. A profile is the JSON `bertc calibrate` writes (or one of "
                          f"{builtin_profiles()}); re-run `bertc calibrate` to "
                          "make a fresh one")

    if not isinstance(data, dict):
        raise bad("not a JSON object")
    for key in ("name", "target", "isa", "cores", "roofline", "sources"):
        if key not in data:
            raise bad(f"no '{key}'")
    roof = data["roofline"]
    for key in ("peak_gflops_per_core", "bandwidth_gbs", "dispatch_us", "efficiency"):
        if not isinstance(roof, dict) or key not in roof:
            raise bad(f"roofline has no '{key}'")
    for key in ("peak_gflops_per_core", "bandwidth_gbs"):
        if not isinstance(roof[key], (int, float)) or roof[key] <= 0:
            raise bad(f"roofline.{key} must be a positive number, got {roof[key]!r}")
    if "elementwise" not in roof["efficiency"]:
        raise bad("roofline.efficiency needs an 'elementwise' entry (the default for kinds it does not list)")
    if data.get("fitted") and data.get("cost_model", 1) != COST_MODEL:
        raise bad(f"its costs were fitted for cost model version {data.get('cost_model', 1)}, this bertc's is "
                  f"{COST_MODEL} (other features). Fit it again: `bertc calibrate --refit "
                  f"{Path(where).stem}.measurements.json` from its measurements, or `bertc calibrate` afresh")
    for threads, kinds in data.get("fitted", {}).items():
        if not str(threads).isdigit():
            raise bad(f"fitted thread count '{threads}' is not an integer")
        for kind, coef in kinds.items():
            if kind not in FEATURES:
                raise bad(f"fitted kind '{kind}' is not one of {sorted(FEATURES)}")
            if not isinstance(coef, list) or len(coef) != len(FEATURES[kind]):
                raise bad(f"fitted[{threads}][{kind}] needs {len(FEATURES[kind])} coefficients "
                          f"({', '.join(FEATURES[kind])})")
    cache = data.get("weight_cache")
    if cache is not None and not (isinstance(cache, dict) and isinstance(cache.get("bytes"), int) and cache["bytes"] > 0):
        raise bad(f"weight_cache needs a positive integer 'bytes' (the weights that stay cached), got {cache!r}")
    for threads, kinds in data.get("kind_scale", {}).items():
        for kind, scale in kinds.items():
            if kind not in FEATURES or not isinstance(scale, (int, float)) or scale <= 0:
                raise bad(f"kind_scale[{threads}][{kind}] must be a positive number for one of {sorted(FEATURES)}")


def load_profile(spec: str | Path | None, target: str = "host", as_base: bool = False) -> Profile:
    """A profile by file path, by built-in name (host, cortex-a76, vulkan-mobile), or the target's default.
    ``as_base``: the base of a new fit (bertc calibrate), which replaces its fitted costs, so they may be of
    another cost model version."""
    get_target(target)  # an unknown target is named here
    if spec is None:
        spec = BUILTIN.get(target)
        if spec is None:
            raise BertcError(f"no built-in profile for target '{target}'; pass --profile FILE (from bertc calibrate)")
    path = Path(spec)
    if not path.suffix and not path.exists():
        if spec == "host":  # the built-in host profile fitted on the CPU most like this one
            spec = closest_builtin("host", device_cpu("host"))
        path = PROFILES_DIR / f"{spec}.json"
        if not path.exists():
            raise BertcError(f"unknown profile '{spec}': give a profile file, or one of "
                             f"{builtin_profiles()}")
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise BertcError(f"cannot read profile {path}: {e.strerror}") from None
    except ValueError as e:
        raise BertcError(f"bad profile {path}: not JSON ({e}); re-run `bertc calibrate` to make a fresh one") from None
    if as_base and isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in ("fitted", "kind_scale")}
    _check_profile(data, str(path))
    return Profile(data["name"], data, path)


def device_cpu(target: str, device: str | None = None) -> dict[str, Any] | None:
    """The CPU record (bertc/cpu.py) of what runs ``target``'s artifacts: this machine for the host target,
    the phone for --device adb; None where it cannot be read (a phone target without its phone, qemu)."""
    if device is not None and device.startswith("adb"):
        from .device import AdbDevice  # adb only when asked

        return read_cpu(AdbDevice(device.partition(":")[2] or None).read)
    if get_target(target).name == "host" and device in (None, "host"):
        if not _HOST_CPU:
            _HOST_CPU.update(read_cpu())
        return _HOST_CPU
    return None


_HOST_CPU: dict[str, Any] = {}


def profile_cpu_note(prof: Profile, target: str, device: str | None = None) -> str | None:
    """The warning for a profile fitted on another CPU than the one that will run the model, else None."""
    here = device_cpu(target, device)
    return None if here is None else mismatch_note(prof.name, prof.data.get("cpu"), here, target)


# --------------------------------------------------------------------------- estimate


def _is_config(model: Any) -> bool:
    if isinstance(model, dict) or hasattr(model, "to_dict") and not hasattr(model, "forward"):
        return True
    return isinstance(model, (str, Path)) and str(model).endswith(".json") and Path(model).is_file()


def _config_module(model: Any, target: str, seq_len: int, batch: int):
    if isinstance(model, (str, Path)):
        try:
            model = json.loads(Path(model).read_text())
        except ValueError as e:
            raise BertcError(f"{model} is not a JSON config: {e}") from None
    return ir.Module.parse(bert_ir(model, seq_len=seq_len, batch=batch, target=target)), None


def _pipeline(target: str, prune: str | None, dtype: str = "fp32", force: bool = False) -> list[str]:
    """What ``bertc compile --target TARGET [--prune-patterns SPEC [--force]] [--dtype D]`` runs, up to (not
    including) its emitter."""
    options = CompileOptions(target=target, prune=prune, dtype=dtype, force_sparse=force)
    return [f for f in pipeline_for(get_target(target), options) if not is_emitter(f)]


def config_ops(config: Any, target: str, seq_len: int, prune: str | None = None,
               cache: WeightCache | None = None, dtype: str = "fp32", force: bool = False,
               floor: int = MIN_TILE_ROWS, threads: int = 1) -> list[OpCost]:
    """The priced ops of a BERT config compiled for ``target`` (unpriced: ms = 0), via bertc/synth.py; ``force``:
    every pruned matrix stored sparse, as --force compiles it; ``cache``, ``floor`` and ``threads`` as module_ops
    takes them."""
    with make_context(), ir.Location.unknown():
        module, _ = _config_module(config, target, seq_len, 1)
        set_weight_dtype(module, dtype)
        ctx = PassContext()
        for flag in lowering(_pipeline(target, prune, dtype, force)):
            run_pass(module, flag, ctx)
        return module_ops(module, get_target(target), cache, floor, threads)


def estimate(model: Any, target: str = "host", threads: int = 1, seq_len: int = 128, batch: int = 1, *,
             prune: str | None = None, profile: str | Path | Profile | None = None, dtype: str = "fp32",
             handoff_us: float | None = None) -> Estimate:
    """Estimate the latency of ``model`` (a transformers config or its dict or config.json: fast path; or
    any MODEL ``bertc compile`` takes) compiled for ``target`` with ``dtype`` GEMM weights and run with
    ``threads``; ``handoff_us``: the hand-off of a parallel call now (bertc_handoff_us), else the profile's grid's."""
    t0 = time.perf_counter()
    tgt = get_target(target)
    prof = profile if isinstance(profile, Profile) else load_profile(profile, target)
    if threads < 1:
        raise BertcError(f"--threads {threads}: must be at least 1")
    if handoff_us is not None and not 0 <= handoff_us < 1e4:
        raise BertcError(f"--handoff-us {handoff_us:g}: must be the microseconds of a parallel call, 0 or more "
                         "(bertc_run --bench prints it as \"handoff_us\")")
    if prune is not None:
        parse_spec(prune)
    passes = _pipeline(target, prune, dtype)
    context = make_context()
    with context, ir.Location.unknown():
        if _is_config(model):
            module, weights = _config_module(model, target, seq_len, batch)
            set_weight_dtype(module, dtype)
            passes = lowering(passes)  # synth.py writes the raised IR
        else:
            from .frontend import export_model, import_torch  # torch: only for a model, not a config

            loaded = export_model(model, batch=batch, seq_len=seq_len)
            module, weights = import_torch(loaded, context)
            annotate(module, loaded, target, dtype)
        ctx = PassContext(weights=weights)
        for flag in passes:
            run_pass(module, flag, ctx)
        ops = module_ops(module, tgt, prof.weight_cache, prof.row_floor, threads)
        for o in ops:
            o.ms = prof.op_ms(o, threads, handoff_us)
        arena = module.operation.attributes["bertc.arena_bytes"].value
        weights_bytes = _weights_bytes(module)
    notes = [n for n in [profile_cpu_note(prof, target)] if n]
    apart = threads > 1 and prof.handoff_us(threads) > 0  # as Profile.op_ms prices it
    if handoff_us is not None and threads > 1 and not apart:
        notes.append(f"--handoff-us: profile '{prof.name}' holds no hand-off at {threads} threads to price apart (it "
                     "was fitted before bertc measured one: its costs hold their grid's); `bertc calibrate` again")
    fitted = prof.data.get("fitted", {}).get(str(threads))
    if fitted is None:
        notes.append(f"profile '{prof.name}' has no calibrated costs at {threads} thread(s): roofline estimate")
    elif unfitted := sorted({o.kind for o in ops} - set(fitted)):
        notes.append(f"profile '{prof.name}' has no fitted costs for {', '.join(unfitted)}: priced by its roofline "
                     f"({', '.join(f'{k} as {ROOFLINE_AS[k][0]} x{ROOFLINE_AS[k][1]:g}' for k in unfitted if k in ROOFLINE_AS)}"
                     f"); `bertc calibrate --int8` fits them on this machine")
    return Estimate(target, prof.name, threads, seq_len, batch, ops, prof.overhead_ms(threads), arena, weights_bytes,
                    time.perf_counter() - t0, notes,
                    (prof.handoff_us(threads) if handoff_us is None else handoff_us) if apart else 0.0)


@dataclass
class LengthsEstimate:
    """The cost model over a distribution of input lengths: what each input costs an artifact compiled with
    --max-seq-len, which runs every input at its own length. Each distinct length is priced once."""
    source: str  # where the lengths came from
    counts: dict[int, int]  # inputs per length, ascending
    estimates: dict[int, Estimate]  # the estimate at each of those lengths

    def per_input_ms(self) -> np.ndarray:
        return np.repeat([self.estimates[n].total_ms for n in self.counts], list(self.counts.values()))

    @property
    def mean_ms(self) -> float:
        return float(self.per_input_ms().mean())

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.per_input_ms(), q))

    def to_json(self) -> dict[str, Any]:
        first = next(iter(self.estimates.values()))
        return {"target": first.target, "profile": first.profile, "threads": first.threads, "batch": first.batch,
                "source": self.source, "inputs": int(sum(self.counts.values())),
                "mean_ms": round(self.mean_ms, 4), "p50_ms": round(self.percentile_ms(50), 4),
                "p90_ms": round(self.percentile_ms(90), 4),
                "lengths": [{"length": n, "inputs": c, "total_ms": round(self.estimates[n].total_ms, 4),
                             "by_kind_ms": {k: round(v, 4) for k, v in self.estimates[n].by_kind().items()},
                             "arena_bytes": self.estimates[n].arena_bytes} for n, c in self.counts.items()],
                "notes": first.notes}


def estimate_lengths(model: Any, lengths: list[int], source: str, target: str = "host", threads: int = 1,
                     batch: int = 1, *, prune: str | None = None, profile: str | Path | Profile | None = None,
                     progress: bool = False, dtype: str = "fp32", handoff_us: float | None = None) -> LengthsEstimate:
    """``estimate`` at each distinct length of ``lengths`` (one entry per input, e.g. a task's sentences
    tokenized), weighted by how many inputs have it. A config takes the fast path (~0.2 s a length); any
    other MODEL is exported once per distinct length."""
    if not lengths or min(lengths) < 1:
        raise BertcError(f"lengths from {source}: need at least one input, each at least 1 token long")
    prof = profile if isinstance(profile, Profile) else load_profile(profile, target)
    counts = dict(sorted(collections.Counter(int(n) for n in lengths).items()))
    from tqdm import tqdm  # only a distribution of lengths shows a bar

    estimates = {n: estimate(model, target, threads, n, batch, prune=prune, profile=prof, dtype=dtype,
                             handoff_us=handoff_us)
                 for n in tqdm(counts, desc="pricing lengths", unit="length", disable=not progress, leave=False)}
    return LengthsEstimate(source, counts, estimates)


def format_lengths(le: LengthsEstimate) -> str:
    """The per-length table `bertc estimate --lengths/--lengths-from` prints, then the distribution."""
    first = next(iter(le.estimates.values()))
    n_inputs = sum(le.counts.values())
    lines = [(f"{first.target}, {first.threads} thread(s), batch {first.batch}, profile {first.profile}: "
              f"{n_inputs} input(s) at {len(le.counts)} distinct length(s), from {le.source}"),
             f"{'length':>7} {'inputs':>7} {'est ms':>9}  {'GEMM ms':>8} {'attention ms':>12}"]
    for n, c in le.counts.items():
        e = le.estimates[n]
        kinds = e.by_kind()
        gemm = sum(v for k, v in kinds.items() if k.startswith("linear"))
        lines.append(f"{n:>7} {c:>7} {e.total_ms:>9.3f}  {gemm:>8.3f} {kinds.get('attention', 0.0):>12.3f}")
    longest = max(le.counts)
    lines.append(f"per input, each at its own length (--max-seq-len): mean {le.mean_ms:.3f} ms, p50 "
                 f"{le.percentile_ms(50):.3f}, p90 {le.percentile_ms(90):.3f}; padded to the longest ({longest}, "
                 f"a --seq-len {longest} artifact) every input would cost {le.estimates[longest].total_ms:.3f} ms")
    lines += [f"note: {n}" for n in first.notes]
    return "\n".join(lines)


def format_table(est: Estimate, top: int | None = None) -> str:
    """The per-op table `bertc estimate` prints."""
    rows = sorted(est.ops, key=lambda o: -o.ms)[:top] if top else est.ops
    lines = [(f"{'#':>3}  {'op':<36} {'kernel':<20} {'detail':<26} {'GFLOP':>7} {'est ms':>8} {'share':>6} "
             f"{'GFLOP/s':>8}")]
    for o in rows:
        lines.append(f"{o.index:>3}  {o.op[:36]:<36} {o.kernel:<20} {o.detail[:26]:<26} {o.flops / 1e9:>7.3f} "
                     f"{o.ms:>8.4f} {o.ms / est.total_ms:>6.1%} {o.gflops:>8.1f}")
    if top and len(est.ops) > top:
        lines.append(f"     ... {len(est.ops) - top} more ops, {sum(o.ms for o in est.ops) - sum(o.ms for o in rows):.3f} ms")
    lines.append("")
    lines.append("by kind: " + ", ".join(f"{k} {v:.3f} ms ({v / est.total_ms:.0%})" for k, v in est.by_kind().items()))
    lines.append(f"total: {est.total_ms:.3f} ms on {est.target} with {est.threads} thread(s) (profile "
                 f"{est.profile}; {est.overhead_ms:.3f} ms per-run overhead included); peak memory "
                 f"{est.peak_memory_bytes / 2**20:.1f} MiB (weights {est.weights_bytes / 2**20:.1f} MiB, arena "
                 f"{est.arena_bytes / 2**20:.2f} MiB); estimated in {est.seconds:.2f} s")
    if est.handoff_us:
        calls = sum(parallel_calls(o, est.threads) for o in est.ops)
        lines.append(f"thread hand-off: {calls} parallel calls at {est.handoff_us:.2f} us each, "
                     f"{calls * est.handoff_us / 1e3:.3f} ms of the total (--handoff-us prices another)")
    lines += [f"note: {n}" for n in est.notes]
    return "\n".join(lines)


# --------------------------------------------------------------------------- fitting and quality


def fit_kind(kind: str, samples: list[tuple[dict[str, float], float]]) -> list[float]:
    """Non-negative coefficients for FEATURES[kind] over (features, ms) samples. Each residual is weighted by
    1 / sqrt(ms), between absolute and relative error: relative error let the thousands of microsecond ops
    (the noisiest timings) outvote the GEMMs a run is made of, absolute error would ignore short inputs
    (held-out configurations on a 2-core EPYC: 57% within 10% against 53% for relative error)."""
    from scipy.optimize import nnls

    names = FEATURES[kind]
    a = np.array([[f.get(n, 0.0) for n in names] for f, _ in samples], np.float64)
    y = np.array([ms for _, ms in samples], np.float64)
    w = 1.0 / np.sqrt(np.maximum(y, 1e-6))
    scale = np.maximum(np.abs(a).max(axis=0), 1e-30)  # columns to O(1) so nnls is well conditioned
    coef, _ = nnls(a / scale * w[:, None], y * w, maxiter=50 * len(names))
    return [float(c) for c in coef / scale]


def quality(predicted: list[float], measured: list[float]) -> dict[str, float]:
    """Spearman rank correlation (NaN below two configurations), mean and worst absolute percentage error,
    and the share predicted within +-10% of the measurement."""
    from scipy.stats import spearmanr

    p, m = np.asarray(predicted), np.asarray(measured)
    err = (p - m) / m
    rho = float(spearmanr(p, m).statistic) if len(m) >= 2 and np.ptp(m) > 0 and np.ptp(p) > 0 else float("nan")
    shares = error_shares(err.tolist())
    return {"spearman": rho, "mape": shares["mape"], "max_ape": float(np.abs(err).max()),
            "within_10pct": shares["within_10pct"], "configs": len(m)}


def error_shares(errors: list[float]) -> dict[str, float]:
    """The share of relative ``errors`` within 10% and their mean absolute value: quality's two, also for errors
    that come without their predictions (calibrate's cross-hour and own-hand-off reports)."""
    e = [abs(x) for x in errors]
    return {"within_10pct": sum(x <= 0.1 for x in e) / len(e), "mape": statistics.fmean(e)}
