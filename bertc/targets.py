"""Targets: what the compiler knows about the machine an artifact runs on.

A target fixes the ISA whose kernels are linked (``runtime/kernels/<isa>/``), the GEMM tile that
``--pack-weights`` lays the weights out for, and how bertc runs the result here (natively through
ctypes, or ``bertc_run`` under qemu-aarch64 / on a phone over adb). The tile lives here, not in
the C, so that a tuner and the cost model can read and change it per target.
"""

from __future__ import annotations

import itertools
import json
import platform
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .cpu import cpuinfo_flags
from .errors import BertcError


@dataclass(frozen=True)
class Tile:
    """mr rows x nr columns per micro-kernel call; kc is the K block kept in L1/L2."""

    mr: int
    nr: int
    kc: int
    qmax: int = 127  # int8 tiles: the weights' bound, |q| <= qmax (kernels.h's bertc_qweight.qmax)


@dataclass(frozen=True)
class GpuParams:
    """What --emit-vulkan chooses per GPU target: workgroup and tile sizes, sent to the shaders as
    specialization constants (runtime/vulkan/shaders/common.glsl), and the limits it plans within."""

    gemm_wg: tuple[int, int]  # invocations (x over N, y over M) of a GEMM workgroup
    gemm_tm: int  # rows of y per invocation: a workgroup's tile is (wg_y * tm) x (wg_x * tn)
    gemm_tn: int  # columns of y per invocation
    gemm_bk: int  # the K slice staged in shared memory (and, in fp16, summed in fp16)
    row_wg: int  # invocations per row of layer norm / softmax / per attention query (a power of 2)
    elementwise_wg: int  # invocations per workgroup of the elementwise shaders
    max_shared_bytes: int  # shared memory per workgroup the shaders may use (Vulkan guarantees 16 KiB)
    max_invocations: int  # invocations per workgroup (Vulkan guarantees 128)


@dataclass(frozen=True)
class Target:
    name: str
    arch: str  # "x86_64" or "aarch64", as ELF and uname name it
    isa: str  # kernels folder: "avx2", "neon" or "ref"
    tile: Tile
    cross: bool  # built for another machine: run with bertc_run under qemu or over adb, not ctypes
    description: str
    # The threading split: each parallel op gives every thread this many consecutive chunks of its
    # rows, and a thread done with its own takes others' unstarted ones (runtime/src/pool.c). More
    # chunks balance better when a core is slow to wake or shared; fewer keep more rows on the core
    # that wrote them. On the 2-core host (bert-tiny4, MiniLM; 1, 2, 4, 8 tried, 2 threads, hot and
    # after 30 ms idle) the spread was within 4% and 2 was best or next to best in every case.
    chunks_per_thread: int = 2
    # Queries per fused-attention block (x86; 4 or 8): 8 shares each K/V load over 8 FMAs. On the AVX2 EPYC
    # (MiniLM, 32 and 128 tokens) 8 x 8 tiles were 15-40% faster than 4 x 16.
    attention_block: int = 8
    # Rows of x per GEMM work item on x86: bounds the x block kept in L2 (192 x 3072 floats = 2.3 MB).
    gemm_row_block: int = 192
    # AVX-512 run as two 256-bit halves (bertc/cpu.py split_512): the sparse tiles' half registers cost half there
    avx512_split: bool = False
    gpu: GpuParams | None = None  # GPU targets (isa "vulkan"): the shaders' workgroup and tile sizes
    cpu: str | None = None  # GPU targets: the CPU target of the fallback build (--fallback cpu)

    def sparse_gain(self, pattern, density: float, dtype: str = "f32") -> float | None:
        """Dense time over sparse time for a linear of this pattern and density (kept fraction) on this
        target, interpolated in density from RATES_FILE; None where bertc has no rate for the
        pattern (the pattern stays dense unless forced). The rates were measured on MiniLM's shapes
        and are used as they are for every GEMM shape. ``dtype="i8"``: sparse int8 against dense int8."""
        table = _gains(self.isa, self.rates_key(dtype)).get(str(pattern))
        if not table:
            return None
        points = sorted(table.items())
        if density <= points[0][0]:
            return points[0][1]
        for (d0, g0), (d1, g1) in itertools.pairwise(points):
            if density <= d1:
                return g0 + (g1 - g0) * (density - d0) / (d1 - d0)
        return points[-1][1]

    def sparse_gain_source(self, dtype: str = "f32") -> str:
        missing = f"no {'int8 ' if dtype == 'i8' else ''}sparse kernel rates for {self.isa}"
        return _rates_entry(self.isa, self.rates_key(dtype)).get("source", missing)

    def rates_key(self, dtype: str = "f32") -> str:
        """RATES_FILE's entry, within the ISA's, for this target's sparse kernels against its dense ones: "f32" (the
        ISA's own), or for int8 "int8", and "int8_vnni" on x86 with AVX-512 VNNI, whose dense int8 (and blocks: 8-bit,
        VPDPBUSD) differ from AVX2's (7-bit, VPMADDUBSW)."""
        if dtype != "i8":
            return "f32"
        return "int8_vnni" if self.int8_tile == AVX512_I8_TILE else "int8"

    @property
    def fp16_tile(self) -> Tile | None:
        """The tile for half-float weights (--dtype fp16), or None where bertc has no fp16 kernels."""
        return NEON_F16_TILE if self.isa == "neon" else None

    @property
    def int8_tile(self) -> Tile | None:
        """The tile for int8 weights (--dtype int8), or None where bertc has no int8 kernels (GPU targets: gemm_i8).
        The x86 kernels are built for the host's CPU (-march=native), so its features pick the tile."""
        if self.is_gpu:
            return None
        if self.isa == "avx2":
            return AVX512_I8_TILE if {"avx512_vnni", "avx512bw"} <= _host_flags() else AVX2_I8_TILE
        if self.isa == "neon":
            return NEON_I8_TILE
        return REF_I8_TILE

    @property
    def is_gpu(self) -> bool:
        return self.gpu is not None


# Register budgets: NEON has 32 q-registers (8x12 -> 24 accumulators of 4 lanes, 3 for B, 2
# for A); AVX2 has 16 ymm (6x16 -> 12 accumulators of 8 lanes, 2 for B, 1 broadcast).
NEON_TILE = Tile(mr=8, nr=12, kc=256)
# fp16 (ARMv8.2-A): 8 lanes per q-register, 8x24 -> 24 accumulators; kc = 128 is also the span the
# kernel sums in fp16 before adding into the fp32 tile (runtime/kernels/neon/kernels.c, F16_SPAN).
NEON_F16_TILE = Tile(mr=8, nr=24, kc=128)
AVX2_TILE = Tile(mr=6, nr=16, kc=256)
# AVX-512 (same kernels file, 512-bit path under -march=native): 32 zmm, 12x32 -> 24 accumulators of
# 16 lanes; nr=32 divides every BERT width (256 ... 3072), so no panel is padded. kc=128: a 16 KB
# weight slice leaves L1 room for the 12 rows of x, and the GEMM's prefetch of the next slice from
# DRAM keeps up (bert-base 1 thread, interleaved bertc_run: 91-94 ms against 96-98 at kc=256).
AVX512_TILE = Tile(mr=12, nr=32, kc=128)
REF_TILE = Tile(mr=4, nr=16, kc=256)
# int8 (runtime/kernels/avx2/kernels.c, Q8_MR x Q8_NR): the int32 sums run over all of K in registers, so kc
# is unused. AVX-512 VNNI: 12 x 32 -> 24 accumulators of 16 lanes; AVX2 (VPMADDUBSW): 4 x 16 -> 8 of 8 lanes.
# AVX2's VPMADDUBSW multiplies x's unsigned bytes by w and sums pairs in int16, which 7-bit weights keep from
# saturating (2 * 255 * 63 < 32768): qmax 63 there (and for int8 blocks, which then go in groups of 4 on the same
# instruction: kernels.h bertc_block_sparse_i8.group). It saves 3 of the 10 instructions per row and K group that
# full-range weights need (|x| by w carrying x's sign). MiniLM's sentence embeddings against PyTorch, cosine mean / min
# over the rt-sentiment test snippets: 0.99726 / 0.98981 through bertc (PyTorch-simulated, 8-bit weights:
# 0.99870 / 0.99586); the fine-tuned teacher's accuracy -0.16 points.
# ARM64 (neon/kernels.c, SDOT, built with the toolchain's int8_cflags): 8 x 12 -> 24 accumulators of 4 lanes,
# 3 registers of weights and 2 of x (4 rows' K groups each, read by vdotq_laneq_s32): 29 of 32 q-registers.
AVX512_I8_TILE = Tile(mr=12, nr=32, kc=256)
AVX2_I8_TILE = Tile(mr=4, nr=16, kc=256, qmax=63)
NEON_I8_TILE = Tile(mr=8, nr=12, kc=256)
REF_I8_TILE = Tile(mr=4, nr=16, kc=256)

# Sparse kernels against dense (bertc_linear_sparse over bertc_linear_packed): dense time / sparse time
# by ISA, pattern and kept fraction, with where each number came from. --prune-patterns keeps a matrix
# sparse where this is above 1. `python benchmarks/sparse.py --part kernels --save` measures this host's.
RATES_FILE = Path(__file__).parent / "data" / "sparse_rates.json"


@cache
def _sparse_rates() -> dict:
    try:
        return json.loads(RATES_FILE.read_text())
    except (OSError, ValueError) as e:
        raise BertcError(f"cannot read the sparse kernel rates {RATES_FILE}: {e}; restore it from git, or "
                         "re-measure with benchmarks/sparse.py --part kernels --save") from None


def _rates_entry(isa: str, key: str) -> dict:
    """RATES_FILE's entry for the ISA's sparse kernels: the fp32 ones (``key="f32"``), or its int8 entry ``key``
    (Target.rates_key)."""
    entry = _sparse_rates().get(isa, {})
    return entry if key == "f32" else entry.get(key, {})


def _gains(isa: str, key: str = "f32") -> dict[str, dict[float, float]]:
    return {p: {float(d): float(g) for d, g in t.items()} for p, t in _rates_entry(isa, key).get("gains", {}).items()}

# Desktop GPUs and Mesa's lavapipe: 64 x 64 GEMM tiles from 8 x 8 invocations of 8 x 8 sums, K slices of
# 32 (16 KiB shared). On lavapipe (MiniLM's 128 x 384 x 1536 GEMM) 16x16 invocations of 4x4 with K slices
# of 16 ran at 1.3 GFLOP/s, this at 4.0: fewer barriers per FLOP; rows of 64 invocations beat 128 by 7%.
VULKAN_GPU = GpuParams(gemm_wg=(8, 8), gemm_tm=8, gemm_tn=8, gemm_bk=32, row_wg=64, elementwise_wg=256,
                       max_shared_bytes=32768, max_invocations=1024)
# Phone GPUs (Adreno 6xx/7xx, Mali-G7x): 64-invocation workgroups (one Adreno wave, four Mali quads x
# 4), 32 x 32 tiles, and no more than the 16 KiB of shared memory and 128 invocations Vulkan guarantees.
ANDROID_GPU = GpuParams(gemm_wg=(8, 8), gemm_tm=4, gemm_tn=4, gemm_bk=16, row_wg=64, elementwise_wg=128,
                        max_shared_bytes=16384, max_invocations=128)
GPU_TARGETS = {
    "vulkan": "a Linux Vulkan device (a GPU, or Mesa's CPU device lavapipe); CPU fallback: host",
    "android-vulkan": "an Android phone's GPU through Vulkan; CPU fallback: android-arm64",
}

CROSS = {
    "android-arm64": "ARM64 Android phone (static bertc_run for adb shell, or a bionic .so with the NDK)",
    "linux-arm64": "ARM64 Linux (static, musl or glibc)",
}


# host_cpu_as's stack: the CPU features the host target is built for, where not this machine's
_FLAGS_AS: list[frozenset[str]] = []


@contextmanager
def host_cpu_as(features: Iterable[str]) -> Iterator[None]:
    """Within it, the host target is that of a CPU with these kernel features (bertc/cpu.py's record): `bertc
    calibrate --refit` prices another CPU's measurements with the kernels and tiles that CPU ran. Not for use
    from several threads at once: the host target is process-wide."""
    _FLAGS_AS.append(frozenset(features))
    try:
        yield
    finally:
        _FLAGS_AS.pop()


def _host_flags() -> frozenset[str]:
    return _FLAGS_AS[-1] if _FLAGS_AS else _cpuinfo_flags()


@cache
def _cpuinfo_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(cpuinfo_flags(text))


def host_target() -> Target:
    arch = platform.machine()
    if arch in ("aarch64", "arm64"):
        return Target("host", "aarch64", "neon", NEON_TILE, False, "this machine (ARM64, NEON)")
    if arch == "x86_64" and {"avx512f", "avx2", "fma"} <= _host_flags():
        return Target("host", "x86_64", "avx2", AVX512_TILE, False, "this machine (x86-64, AVX-512 path of avx2/)",
                      avx512_split="avx512_split" in _host_flags())
    if arch == "x86_64" and {"avx2", "fma"} <= _host_flags():
        return Target("host", "x86_64", "avx2", AVX2_TILE, False, "this machine (x86-64, AVX2/FMA)")
    return Target("host", arch, "ref", REF_TILE, False, f"this machine ({arch}, portable kernels)")


def get_target(name: str) -> Target:
    if name == "host":
        return host_target()
    if name in CROSS:
        return Target(name, "aarch64", "neon", NEON_TILE, True, CROSS[name])
    if name == "vulkan":
        return Target(name, host_target().arch, "vulkan", REF_TILE, False, GPU_TARGETS[name], gpu=VULKAN_GPU,
                      cpu="host")
    if name == "android-vulkan":
        return Target(name, "aarch64", "vulkan", REF_TILE, True, GPU_TARGETS[name], gpu=ANDROID_GPU,
                      cpu="android-arm64")
    raise BertcError(f"unknown target '{name}'; supported targets: {', '.join(target_names())}")


def target_names() -> list[str]:
    return ["host", *CROSS, *GPU_TARGETS]
