"""The CPU a cost profile was fitted on, and the one in front of you: model, the features that pick or
speed up kernels, caches, cores.

    here = read_cpu()                        # this machine: /proc/cpuinfo, /sys/devices/system/cpu/*/cache
    phone = read_cpu(AdbDevice(None).read)   # a phone over adb: the same files through `adb shell cat`
    cpu_differences(profile.data["cpu"], here)  # ["caches: L2 1 MiB here 512 KiB", ...]; [] when alike

A profile fitted on one CPU is no guide to another: one fitted on an AVX-512 EPYC with a 32 MB L3 predicted
this project's 2-core AVX2 EPYC 6.8x too fast at a few tokens, and an AVX-512 Xeon 36% too fast. So bertc
ships a host profile per CPU kind it was calibrated on (``host-avx2``, ``host-avx512``), ``host`` is the one
fitted on the CPU most like this one (bertc/cost.py closest_builtin), and ``bertc estimate`` and
``bertc search`` compare the two records and say when they differ.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Flags that choose a kernel (runtime/kernels: avx2 / avx512 tiles, NEON dot products) or change its speed. And one of
# bertc's own: avx512_split, AVX-512 run as two 256-bit halves (AMD family 25, Zen 4: a 256-bit FMA costs half a
# 512-bit one there, the same elsewhere), which prices the sparse tiles' half registers (cost.sparse_tile).
KERNEL_FEATURES = {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
                   "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "asimdhp", "fphp", "i8mm", "bf16", "sve",
                   "sve2", "avx512_split"}


def split_512(fields: dict[str, list[str]], flags: set[str]) -> bool:
    """Whether /proc/cpuinfo's ``fields`` (lower-case keys, values per processor) and ``flags`` are a CPU that runs
    AVX-512 as two 256-bit halves: AMD's family 25 (Zen 4; Zen 3, the same family, has no AVX-512)."""
    return ("avx512f" in flags and (fields.get("vendor_id") or [""])[0] == "AuthenticAMD"
            and (fields.get("cpu family") or [""])[0] == "25")


def cpuinfo_fields(text: str) -> dict[str, list[str]]:
    """/proc/cpuinfo's ``key: value`` lines, keys lower-case, each key's values in processor order."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), []).append(value.strip())
    return fields


def fields_flags(fields: dict[str, list[str]]) -> set[str]:
    """The first processor's flags (x86) or features (ARM) among cpuinfo_fields, with avx512_split where split_512
    holds."""
    flags = set((fields.get("flags") or fields.get("features") or [""])[0].split())
    return flags | ({"avx512_split"} if split_512(fields, flags) else set())


def cpuinfo_flags(text: str) -> set[str]:
    """fields_flags of /proc/cpuinfo's text."""
    return fields_flags(cpuinfo_fields(text))


CACHE_LEVELS = ("l1d", "l2", "l3")


def _local(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _size(text: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)B?\s*", text or "")
    return int(m[1]) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m[2]] if m else None


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """The model name (x86) or the implementer:part ids of the cores (ARM), the kernel-relevant features and
    the number of processors, from /proc/cpuinfo's text."""
    fields = cpuinfo_fields(text)
    flags = fields_flags(fields)
    if "model name" in fields:
        model = fields["model name"][0]
    else:  # ARM: one implementer:part per core type (big.LITTLE has two or three)
        parts = sorted(set(zip(fields.get("cpu implementer", []), fields.get("cpu part", []))))
        model = ", ".join(f"{i}:{p}" for i, p in parts) or fields.get("hardware", ["unknown"])[0]
    return {"model": model, "features": sorted(flags & KERNEL_FEATURES), "cores": len(fields.get("processor", []))}


def read_cpu(read: Callable[[str], str | None] = _local, cores: int | None = None) -> dict[str, Any]:
    """The CPU record of the machine whose files ``read`` returns (None where a file is missing). Caches are
    the last core's (on a phone, a big core), sizes per instance as sysfs gives them."""
    info = parse_cpuinfo(read("/proc/cpuinfo") or "")
    info["cores"] = cores or info["cores"] or os.cpu_count() or 1
    caches: dict[str, int] = {}
    base = f"/sys/devices/system/cpu/cpu{info['cores'] - 1}/cache"
    for i in range(8):
        level, kind, size = (read(f"{base}/index{i}/{f}") for f in ("level", "type", "size"))
        if level is None:
            break
        name = "l1d" if level.strip() == "1" and kind.strip() == "Data" else f"l{level.strip()}"
        if name in CACHE_LEVELS and kind.strip() != "Instruction" and _size(size):
            caches[f"{name}_bytes"] = _size(size)
    info["caches"] = caches
    info["arch"] = platform.machine() if read is _local else None
    return info


def _mib(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 2**10:g} KiB"


def describe(cpu: dict[str, Any]) -> str:
    c = cpu.get("caches", {})
    return (f"{cpu.get('model', 'unknown CPU')}, {cpu.get('cores', '?')} cores, {' '.join(cpu.get('features', [])) or 'no listed features'}"
            f", " + ", ".join(f"{lvl.upper()} {_mib(c.get(f'{lvl}_bytes'))}" for lvl in CACHE_LEVELS))


def cpu_differences(fitted: dict[str, Any] | None, here: dict[str, Any]) -> list[str]:
    """What differs between the CPU a profile was fitted on and ``here``; [] when they match (a profile
    without a record differs by definition: nobody knows where it was fitted)."""
    if not fitted:
        return ["the profile records no CPU (fitted before bertc recorded one)"]
    out = []
    if fitted.get("model") != here.get("model"):
        out.append(f"model {fitted.get('model')!r}, here {here.get('model')!r}")
    a, b = set(fitted.get("features", [])), set(here.get("features", []))
    if a != b:
        only = [f"{' '.join(sorted(s))} {where}" for s, where in ((a - b, "only there"), (b - a, "only here")) if s]
        out.append("features: " + "; ".join(only))
    for lvl in CACHE_LEVELS:
        x, y = fitted.get("caches", {}).get(f"{lvl}_bytes"), here.get("caches", {}).get(f"{lvl}_bytes")
        if x and y and x != y:
            out.append(f"{lvl.upper()} {_mib(x)}, here {_mib(y)}")
    if fitted.get("cores") and here.get("cores") and fitted["cores"] != here["cores"]:
        out.append(f"{fitted['cores']} cores, here {here['cores']}")
    return out


def mismatch_note(profile_name: str, fitted: dict[str, Any] | None, here: dict[str, Any], target: str) -> str | None:
    """The warning `bertc estimate` and `bertc search` print when the profile comes from another CPU."""
    diff = cpu_differences(fitted, here)
    if not diff:
        return None
    return (f"profile '{profile_name}' was not fitted on this CPU ({'; '.join(diff)}), so its predictions can be "
            f"far off here (one fitted on an AVX-512 EPYC was 6.8x too fast on an AVX2 one). Fit one for this CPU "
            f"in about 10 minutes: `bertc calibrate --target {target} -o my-cpu.json`, then pass --profile my-cpu.json")
