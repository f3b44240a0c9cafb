"""Every op of the dialect is whole: the pieces its OpTraits name exist wherever bertc needs them.

Adding an op touches many files (the dialect, a pass that creates it, both emitter tables, a shader, a C
kernel with its check, the cost model). ``missing_pieces`` lists what an op lacks, so a half-added op
fails here with the file to edit, and an op of the "constant" or "view" category (folded into
weights.bin, or an alias of its input) must have no emitter. bertc/synth.py is not a piece: it writes
the graph of a BERT, so an op BERT does not use (pow, position_ids) has no place there.
Only imports and file reads: nothing is compiled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import pytest
from bertc.dialects import bertc as B
from bertc.passes.emit_c import EMITTERS as C_EMITTERS
from bertc.passes.emit_vulkan import EMITTERS as VULKAN_EMITTERS
from bertc.passes.emit_vulkan import SHADERS

from bertc import cost

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "runtime" / "kernels"


@dataclass(frozen=True)
class Sources:
    """The texts the checks grep: read once per session."""

    raise_torch: str  # passes/raise_torch.py: it only builds bertc ops, so any B.XxxOp there creates one
    passes: str  # the other passes/*.py except the emitters: B.XxxOp(...) creates one (a fusion's result)
    kernels_h: str
    ref: str  # runtime/kernels/ref/kernels.c
    isa: dict[str, str]  # ISA folder -> its kernels' source (they override some ref kernels)
    kernel_check: str


@cache
def sources() -> Sources:
    skip = {"raise_torch.py", "emit_c.py", "emit_vulkan.py", "codegen.py"}
    return Sources(
        raise_torch=(ROOT / "passes" / "raise_torch.py").read_text(),
        passes="\n".join(p.read_text() for p in sorted((ROOT / "passes").glob("*.py")) if p.name not in skip),
        kernels_h=(KERNELS / "kernels.h").read_text(),
        ref=(KERNELS / "ref" / "kernels.c").read_text(),
        isa={d.name: "\n".join(p.read_text() for p in sorted(d.glob("*.c")))
             for d in sorted(KERNELS.iterdir()) if d.is_dir() and d.name != "ref"},
        kernel_check=(ROOT / "runtime" / "tests" / "kernel_check.c").read_text(),
    )


def _names(table: dict) -> set[str]:
    """An emitter table's op names, whether it is keyed by name or by op class."""
    return {k if isinstance(k, str) else k.OPERATION_NAME for k in table}


def _defines(c_source: str, function: str) -> bool:
    return re.search(rf"\b{function}\([^;{{]*\)\s*\{{", c_source) is not None


def missing_pieces(name: str, src: Sources | None = None) -> list[str]:
    """What the dialect op ``name`` lacks, each with the place to add it; [] for a whole op."""
    src = src or sources()
    cls = B.OPS[name]
    t = cls.traits
    missing = []
    created = re.search(rf"\bB\.{cls.__name__}\b", src.raise_torch) or re.search(rf"\bB\.{cls.__name__}\(", src.passes)
    if not created:
        missing.append(f"no pass creates {name}: build B.{cls.__name__}(...) in passes/raise_torch.py "
                       "(a torch op's handler) or in the fusion pass that produces it")
    in_c, in_vk = name in _names(C_EMITTERS), name in _names(VULKAN_EMITTERS)
    if t.category != "kernel":
        for has, where in ((in_c, "emit_c"), (in_vk, "emit_vulkan")):
            if has:
                missing.append(f"{name} is a {t.category} op but passes/{where}.py's EMITTERS has an entry for it: "
                               f"a {t.category} op runs no kernel, remove the entry")
        return missing
    for has, where in ((in_c, "emit_c"), (in_vk, "emit_vulkan")):
        if not has:
            missing.append(f"passes/{where}.py's EMITTERS has no entry for {name}: add its emitter")
    if t.shader not in SHADERS:
        missing.append(f"passes/emit_vulkan.py's SHADERS has no '{t.shader}' (the shader {name}'s traits name)")
    shader_file = SHADERS.get(t.shader, (f"{t.shader}.comp",))[0]
    if not (ROOT / "runtime" / "vulkan" / "shaders" / shader_file).exists():
        missing.append(f"runtime/vulkan/shaders/{shader_file} does not exist: write {name}'s compute shader")
    if not re.search(rf"\b{t.kernel}\s*\(", src.kernels_h):
        missing.append(f"runtime/kernels/kernels.h does not declare {t.kernel}: add its signature")
    if not _defines(src.ref, t.kernel):
        missing.append(f"runtime/kernels/ref/kernels.c does not define {t.kernel}: add its reference version")
    for isa, text in src.isa.items():
        if _defines(text, t.kernel) and not re.search(rf"\b{t.kernel}\b", src.kernel_check):
            missing.append(f"runtime/kernels/{isa} overrides {t.kernel} but runtime/tests/kernel_check.c does not "
                           "check it against the reference: add a check")
    if t.cost not in cost.FEATURES:
        missing.append(f"bertc/cost.py's FEATURES has no kind '{t.cost}' ({name}'s cost kind): add its features")
    return missing


@pytest.mark.parametrize("name", sorted(B.OPS))
def test_op_is_whole(name):
    assert missing_pieces(name) == []


def test_categories_cover_the_dialect():
    assert sorted(B.names_in("constant") + B.names_in("view") + B.names_in("kernel")) == sorted(B.OPS)
    assert B.category_of("bertc.reshape") == "view" and B.category_of("func.return") is None


class FrobnicateOp:
    """A kernel op that exists only in the dialect's table: everything else is missing."""

    OPERATION_NAME = "bertc.frobnicate"
    traits = B.OpTraits("kernel", "bertc_frobnicate", "frobnicate", "elementwise")


def test_a_half_added_op_is_reported(monkeypatch):
    name = FrobnicateOp.OPERATION_NAME
    monkeypatch.setitem(B.OPS, name, FrobnicateOp)
    found = missing_pieces(name)
    for piece in ("no pass creates", "emit_c.py's EMITTERS", "emit_vulkan.py's EMITTERS", "SHADERS has no",
                  "shaders/frobnicate.comp", "kernels.h does not declare", "ref/kernels.c does not define"):
        assert sum(piece in m for m in found) == 1, (piece, found)
    assert len(found) == 7, found
    # an ISA override with no check, and a cost kind the model does not know, are reported too
    isa = replace(sources(), isa={"avx2": "void bertc_frobnicate(const float *x) {\n}\n"})
    monkeypatch.setattr(FrobnicateOp, "traits", B.OpTraits("kernel", "bertc_frobnicate", "frobnicate", "frobnication"))
    found = missing_pieces(name, isa)
    assert any("kernel_check.c" in m for m in found) and any("FEATURES has no kind" in m for m in found), found
    assert len(found) == 9, found


def test_a_constant_or_view_op_has_no_emitter(monkeypatch):
    monkeypatch.setitem(C_EMITTERS, "bertc.reshape", lambda e, op: "")
    monkeypatch.setitem(VULKAN_EMITTERS, "bertc.weight", lambda e, op: None)
    assert ["emit_c.py's EMITTERS has an entry" in m for m in missing_pieces("bertc.reshape")] == [True]
    assert ["emit_vulkan.py's EMITTERS has an entry" in m for m in missing_pieces("bertc.weight")] == [True]
