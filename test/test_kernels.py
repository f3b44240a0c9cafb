"""The ISA kernels against the reference kernels, op by op (runtime/tests/kernel_check.c): random
shapes that are not multiples of the tiles, masks with fully masked rows, block-sparse weights of
every block shape and density (and the sparse reference against the dense product), int8 weights (bit for
bit before the activation, and the reference against the formula in kernels.h), 1 and 3 threads."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from bertc.targets import AVX2_I8_TILE, AVX2_TILE, get_target, host_target
from bertc.toolchain import RUNTIME, WARNINGS, find_toolchain

SOURCES = ["tests/kernel_check.c", "tests/ref_renamed.c", "kernels/ref/kernels.c", "src/pool.c"]
# neon-fp16: the NEON file built with ARMv8.2-A FP16 arithmetic, which adds the half-float-weight GEMM;
# neon-dotprod: built with the dot product instructions (--dtype int8), which add the int8 GEMM;
# avx2-256: the x86 file without its AVX-512 paths, as an AVX2-only host builds it
HOST_ISA = host_target().isa
ISAS = ["neon", "neon-fp16", "neon-dotprod"] + ([HOST_ISA] if HOST_ISA not in ("ref", "neon") else [])
ISAS += ["avx2-256"] if HOST_ISA == "avx2" and host_target().tile.nr == 32 else []


@pytest.mark.parametrize("variant", ISAS)
def test_isa_kernels_match_reference(variant, tmp_path):
    isa, fp16, ymm_only = variant.split("-")[0], variant.endswith("-fp16"), variant.endswith("-256")
    dotprod = variant.endswith("-dotprod")
    target = get_target("android-arm64" if isa == "neon" else "host")
    tc = find_toolchain(target)
    isa_file = RUNTIME / "kernels" / isa / "kernels.c"
    if not isa_file.exists():
        pytest.skip(f"no {isa} kernels in this checkout")
    exe = tmp_path / "kernel_check"
    inc = [f"-I{RUNTIME / d}" for d in ("include", "src", "kernels")]
    flags = [*tc.cflags, *(tc.fp16_cflags if fp16 else ()), *(tc.int8_cflags if dotprod else ()),
             *(["-mno-avx512f"] if ymm_only else [])]
    cmd = [*tc.cc, *flags, *WARNINGS, *inc, "-o", str(exe), *(str(RUNTIME / s) for s in SOURCES),
           str(isa_file), "-lm"]
    build = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr
    run = [shutil.which("qemu-aarch64"), str(exe)] if target.cross else [str(exe)]
    tiles = [target.fp16_tile if fp16 else AVX2_TILE if ymm_only else target.tile,
             AVX2_I8_TILE if ymm_only else target.int8_tile]
    # the tiles this target compiles with (fp32 or fp16, and int8), on top of the harness's list
    r = subprocess.run(run + ["-t", "2", *dict.fromkeys(f"{t.mr}x{t.nr}" for t in tiles)], capture_output=True,
                       text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    # neon-fp16 adds the fp16 GEMM: its micro tiles (8x8, 8x12, 8x16, 8x24) and its generic path (3x5, 1x1);
    # the fp32 kernels of that build are the neon variant's, which checks them on every default tile;
    # neon-dotprod likewise adds the int8 GEMM: its 8x12 and the generic path (4x16, 3x5, 1x1)
    tiles = ["8x8", "8x12", "8x16", "8x24", "3x5", "1x1"] if fp16 else ["8x12", "4x16", "3x5", "1x1"] if dotprod else []
    r = subprocess.run(run + tiles, capture_output=True, text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    kernels = ["bertc_linear_packed", "bertc_linear_sparse", "bertc_attention", "bertc_layer_norm", "bertc_rms_norm",
               "bertc_softmax", "bertc_matmul"]
    for kernel in kernels + (["bertc_linear_packed_f16"] if fp16 else []):
        assert any(f"{kernel} " in line and f"impl {isa}" in line for line in r.stdout.splitlines()), r.stdout
    # the int8 GEMM: the ISA file's where it has one (NEON only with SDOT: SMMLA where the CPU has i8mm, as
    # qemu-aarch64's default CPU does), else the reference
    i8_impl = isa if isa == "avx2" else "neon-i8mm" if dotprod else "ref"
    i8_lines = [line for line in r.stdout.splitlines() if "bertc_linear_packed_i8 " in line]
    assert i8_lines and all(f"impl {i8_impl} " in line for line in i8_lines), r.stdout
    if dotprod:  # the same binary on a CPU with SDOT and no i8mm (a Cortex-A76) takes the SDOT micro-kernel
        r = subprocess.run(run + ["-i8", *tiles], capture_output=True, text=True, check=False, timeout=600,
                           env={**os.environ, "QEMU_CPU": "cortex-a76"})
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
        i8_lines = [line for line in r.stdout.splitlines() if "bertc_linear_packed_i8 " in line]
        assert i8_lines and all("impl neon " in line for line in i8_lines), r.stdout
