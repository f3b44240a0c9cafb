"""Toolchains: find a C compiler for a target and build the runtime with the emitted model."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import BertcError

RUNTIME = Path(__file__).resolve().parent.parent / "runtime"
RUNTIME_SOURCES = ["src/runtime.c", "src/pool.c", "src/sha256.c", "kernels/ref/kernels.c"]
WARNINGS = ["-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"]


@dataclass(frozen=True)
class Toolchain:
    name: str
    cc: list[str]
    cflags: list[str]


def find_toolchain(target: str) -> Toolchain:
    if target != "host":
        raise BertcError(f"no toolchain for target '{target}' yet; supported targets: host")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise BertcError("no C compiler found for the host target: install one (Debian: apt-get install gcc) "
                         "or set CC")
    return Toolchain("host-cc", [cc], ["-std=gnu11", "-O3", "-march=native", "-fPIC", "-pthread"])


def build(tc: Toolchain, model_c: Path, out_dir: Path, lib_name: str) -> tuple[Path, Path]:
    """Compile runtime + model into a shared library (for ctypes) and the bertc_run tool."""
    inc = [f"-I{RUNTIME / 'include'}", f"-I{RUNTIME / 'src'}", f"-I{RUNTIME / 'kernels'}"]
    objs = []
    obj_dir = out_dir / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    for src in [model_c] + [RUNTIME / s for s in RUNTIME_SOURCES]:
        obj = obj_dir / (src.stem + ".o")
        _run(tc.cc + tc.cflags + WARNINGS + inc + ["-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    lib = out_dir / lib_name
    _run(tc.cc + tc.cflags + ["-shared", "-Wl,-Bsymbolic", "-o", str(lib)] + objs + ["-lm"])
    tool = out_dir / "bertc_run"
    _run(tc.cc + tc.cflags + WARNINGS + inc + ["-o", str(tool), str(RUNTIME / "tools/bertc_run.c")] + objs + ["-lm"])
    shutil.rmtree(obj_dir)
    return lib, tool


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise BertcError(f"C compilation failed ({' '.join(cmd[:2])} ...):\n{r.stderr.strip()[:4000]}")
