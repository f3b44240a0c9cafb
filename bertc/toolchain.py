"""Toolchains: find a C compiler for a target and build the runtime with the emitted model.

Preference per target (DESIGN.md, "Targets and toolchains"):

    host            cc (or $CC): a shared library for ctypes, and bertc_run
    android-arm64   the NDK's clang when ANDROID_NDK_HOME / ANDROID_NDK_ROOT is set (a bionic
                    libbertc_model.so for apps, API 24+), else zig cc from the ziglang package
                    (static musl: runs from `adb shell` on any ARM64 Android), else
                    aarch64-linux-gnu-gcc -static
    linux-arm64     zig cc (static musl), else aarch64-linux-gnu-gcc -static

A static toolchain produces libbertc_model.a (runtime + model, to link into an app) and a static
bertc_run; a shared one produces libbertc_model.so and bertc_run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .artifact import sha256_file
from .errors import BertcError
from .targets import Target

RUNTIME = Path(__file__).resolve().parent.parent / "runtime"
RUNTIME_SOURCES = ["src/api.c", "src/runtime.c", "src/pool.c", "src/sha256.c", "kernels/ref/kernels.c"]
WARNINGS = ["-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"]
NDK_API = 24
EXTRA_CFLAGS = "BERTC_EXTRA_CFLAGS"  # the environment variable build() appends to the toolchain's flags


@dataclass(frozen=True)
class Toolchain:
    name: str
    cc: list[str]
    ar: list[str] | None  # set for static toolchains
    cflags: list[str]
    detail: str  # where it was found, for `bertc toolchains`
    fp16_cflags: tuple[str, ...] = ("-march=armv8.2-a+fp16",)  # ARMv8.2-A FP16 arithmetic (--dtype fp16)
    int8_cflags: tuple[str, ...] = ("-march=armv8.2-a+dotprod",)  # ARMv8.2-A SDOT (--dtype int8 on ARM64)

    @property
    def static(self) -> bool:
        return self.ar is not None


def _host() -> Toolchain | None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None
    return Toolchain("cc", [cc], None, ["-std=gnu11", "-O3", "-march=native", "-fPIC", "-pthread"], cc)


def _ndk() -> Toolchain | None:
    root = os.environ.get("ANDROID_NDK_HOME") or os.environ.get("ANDROID_NDK_ROOT")
    if not root:
        return None
    tag = f"{platform.system().lower()}-x86_64"  # the NDK ships x86-64 host binaries (Rosetta on macOS)
    clang = Path(root) / "toolchains" / "llvm" / "prebuilt" / tag / "bin" / f"aarch64-linux-android{NDK_API}-clang"
    if not clang.exists():
        return None
    return Toolchain("ndk", [str(clang)], None, ["-std=gnu11", "-O3", "-fPIC", "-pthread"], str(clang))


def _zig() -> Toolchain | None:
    if importlib.util.find_spec("ziglang") is None:
        return None
    zig = [sys.executable, "-m", "ziglang"]
    return Toolchain("zig", [*zig, "cc", "-target", "aarch64-linux-musl"], [*zig, "ar"],
                     ["-std=gnu11", "-O3", "-static", "-pthread"], "python -m ziglang (PyPI ziglang)",
                     ("-mcpu=generic+v8_2a+fullfp16",),  # zig cc refuses -march=armv8.2-a+fp16
                     ("-mcpu=generic+v8_2a+dotprod",))  # and -march=armv8.2-a+dotprod


def _gcc_cross() -> Toolchain | None:
    gcc = shutil.which("aarch64-linux-gnu-gcc")
    ar = shutil.which("aarch64-linux-gnu-ar")
    if not gcc or not ar:
        return None
    return Toolchain("aarch64-linux-gnu-gcc", [gcc], [ar], ["-std=gnu11", "-O3", "-static", "-pthread"], gcc)


FINDERS = {"cc": _host, "ndk": _ndk, "zig": _zig, "aarch64-linux-gnu-gcc": _gcc_cross}
PREFERENCE = {
    "host": ["cc"],
    "android-arm64": ["ndk", "zig", "aarch64-linux-gnu-gcc"],
    "linux-arm64": ["zig", "aarch64-linux-gnu-gcc"],
    "vulkan": ["cc"],  # the Vulkan executor and the dispatch list; libvulkan is loaded at run time
    "android-vulkan": ["ndk", "zig", "aarch64-linux-gnu-gcc"],  # only the NDK's (dynamic) one can dlopen it
}
HOW_TO_GET = {
    "cc": "apt-get install gcc (or set CC)",
    "ndk": "install the Android NDK and set ANDROID_NDK_HOME",
    "zig": "pip install ziglang==0.15.2",
    "aarch64-linux-gnu-gcc": "apt-get install gcc-aarch64-linux-gnu",
}


def find_toolchain(target: Target) -> Toolchain:
    for name in PREFERENCE[target.name]:
        tc = FINDERS[name]()
        if tc is not None:
            return tc
    ways = "; or ".join(HOW_TO_GET[n] for n in PREFERENCE[target.name])
    raise BertcError(f"no C toolchain found for target '{target.name}': {ways}")


def describe_toolchains() -> str:
    """The text of `bertc toolchains`: what was found, and what each target will use."""
    lines = ["toolchain               found  where / how to get it"]
    for name, finder in FINDERS.items():
        tc = finder()
        lines.append(f"{name:<23} {'yes' if tc else 'no':<6} {tc.detail if tc else HOW_TO_GET[name]}")
    glslang = shutil.which(os.environ.get("GLSLANG_VALIDATOR") or "glslangValidator")
    lines.append(f"{'glslangValidator':<23} {'yes' if glslang else 'no':<6} {glslang or GLSLANG_HOW} (GPU targets' shaders)")
    lines += ["", "target          uses"]
    for target, names in PREFERENCE.items():
        used = next((n for n in names if FINDERS[n]() is not None), None)
        lines.append(f"{target:<15} {used or 'NONE (install one of: ' + ', '.join(names) + ')'}")
    return "\n".join(lines)


def kernel_sources(target: Target) -> list[Path]:
    sources = [RUNTIME / s for s in RUNTIME_SOURCES]
    isa = RUNTIME / "kernels" / target.isa / "kernels.c"
    return sources + [isa] if target.isa != "ref" and isa.exists() else sources


def build(tc: Toolchain, target: Target, model_c: Path, out_dir: Path, lib_stem: str,
          fp16: bool = False, int8: bool = False, spirv: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Compile runtime + model into the library (shared, or static for static toolchains) and bertc_run.

    ``fp16`` builds with FP16 arithmetic, which the half-float-weight kernels need; ``int8``, on ARM64, with
    the dot product instructions (SDOT), which the NEON int8 kernel needs (x86 builds use -march=native). For
    a GPU target the runtime is the Vulkan executor, and ``spirv`` (shader name -> sha256 of its .spv) is
    compiled in.
    $BERTC_EXTRA_CFLAGS adds flags to every compile and link (sanitizers, -g)."""
    inc = [f"-I{RUNTIME / 'include'}", f"-I{RUNTIME / 'src'}", f"-I{RUNTIME / 'kernels'}"]
    if os.environ.get(EXTRA_CFLAGS):  # e.g. `make test-sanitize`'s -fsanitize=address,undefined
        tc = dataclasses.replace(tc, cflags=tc.cflags + os.environ[EXTRA_CFLAGS].split())
    if fp16 and not target.is_gpu:
        tc = dataclasses.replace(tc, cflags=tc.cflags + list(tc.fp16_cflags))
    if int8 and not target.is_gpu and target.arch == "aarch64":
        tc = dataclasses.replace(tc, cflags=tc.cflags + list(tc.int8_cflags))
    obj_dir = out_dir / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    sources, libs = kernel_sources(target), ["-lm"]
    if target.is_gpu:
        sources = [RUNTIME / s for s in VULKAN_SOURCES]
        inc += [f"-I{RUNTIME / 'vulkan'}", f"-I{_vulkan_headers(obj_dir)}"]
        inc += [f'-DBERTC_SPV_SHA256_{name}="{sha}"' for name, sha in (spirv or {}).items()]
        libs += [] if tc.static else ["-ldl"]  # dlopen: in libc since glibc 2.34 and in musl
    srcs = [model_c, *sources]
    objs = [str(obj_dir / f"{src.parent.name}_{src.stem}.o") for src in srcs]
    cache = _ccache(tc)  # the runtime's sources are the same in every artifact: compiled once per machine
    compiles = [(cache if src != model_c else []) + tc.cc + tc.cflags + WARNINGS + inc + ["-c", str(src), "-o", obj]
                for src, obj in zip(srcs, objs)]
    # One compiler per core, the ISA kernels (last, most of a build's time) started first: the rest fits
    # beside them. The objects, and so the library, are the same as one at a time.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_run, compiles[::-1]))
    if tc.static:
        lib = out_dir / f"{lib_stem}.a"
        _run(tc.ar + ["rcs", str(lib), *objs])
    else:
        lib = out_dir / f"{lib_stem}.so"
        _run(tc.cc + tc.cflags + ["-shared", "-Wl,-Bsymbolic", "-o", str(lib), *objs, *libs])
    tool = out_dir / "bertc_run"
    _run(tc.cc + tc.cflags + WARNINGS + inc + ["-o", str(tool), str(RUNTIME / "tools/bertc_run.c"), *objs, *libs])
    shutil.rmtree(obj_dir)
    return lib, tool


VULKAN_SOURCES = ["src/api.c", "vulkan/vulkan.c", "src/sha256.c"]
SHADER_DIR = RUNTIME / "vulkan" / "shaders"
GLSLANG_HOW = "apt-get install glslang-tools (or set GLSLANG_VALIDATOR to its path)"


def _vulkan_headers(scratch: Path) -> Path:
    """A folder holding only vulkan/ and vk_video/ (from $VULKAN_SDK/include or /usr/include), so that
    a cross compiler sees the Vulkan headers and none of this machine's libc headers."""
    sdk = [Path(os.environ["VULKAN_SDK"]) / "include"] if "VULKAN_SDK" in os.environ else []
    for root in [*sdk, Path("/usr/include")]:
        if (root / "vulkan" / "vulkan_core.h").exists():
            inc = scratch / "vulkan-headers"
            inc.mkdir(exist_ok=True)
            for sub in ("vulkan", "vk_video"):
                if (root / sub).is_dir() and not (inc / sub).exists():
                    (inc / sub).symlink_to(root / sub)
            return inc
    raise BertcError("the Vulkan headers (vulkan/vulkan_core.h) were not found: apt-get install libvulkan-dev, "
                     "or set VULKAN_SDK")


def find_glslang() -> str:
    exe = shutil.which(os.environ.get("GLSLANG_VALIDATOR") or "glslangValidator")
    if not exe:
        raise BertcError(f"GPU targets compile their shaders with glslangValidator, which was not found: {GLSLANG_HOW}")
    return exe


def compile_shaders(shaders: dict[str, tuple[str, tuple[str, ...]]], out_dir: Path) -> dict[str, str]:
    """GLSL (runtime/vulkan/shaders/FILE with -D defines) -> out_dir/NAME.spv for each shader; returns
    name -> sha256 of the SPIR-V."""
    glslang = find_glslang()
    out_dir.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for name, (source, defines) in sorted(shaders.items()):
        spv = out_dir / f"{name}.spv"
        cmd = [glslang, "-V", "--target-env", "vulkan1.1", *(f"-D{d}" for d in defines), "-o", str(spv),
               str(SHADER_DIR / source)]
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise BertcError(f"glslangValidator could not compile {source} ({name}):\n{(r.stdout + r.stderr).strip()[:4000]}")
        hashes[name] = sha256_file(spv)
    return hashes


CCACHE = "BERTC_CCACHE"  # 0: compile the runtime afresh in every artifact, as before ccache was used


def _ccache(tc: Toolchain) -> list[str]:
    """ccache before the compiler, when it is installed and the compiler is a plain binary (zig has a cache of
    its own). Its objects are kept per CPU: -march=native builds for the CPU it runs on, and ccache's direct
    mode hashes the command line, not what -march=native means here."""
    ccache = shutil.which("ccache")
    if ccache is None or os.environ.get(CCACHE) == "0" or not Path(tc.cc[0]).is_absolute() or len(tc.cc) > 1:
        return []
    cpu = hashlib.sha256(" ".join(sorted(_cpu_flags())).encode()).hexdigest()[:12]
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bertc" / "ccache" / cpu
    return ["env", f"CCACHE_DIR={cache_dir}", ccache]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {line.strip() for line in text.splitlines() if line.startswith(("flags", "Features", "model name", "CPU part"))}


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise BertcError(f"C compilation failed ({' '.join(cmd[:2])} ...):\n{r.stderr.strip()[:4000]}")
