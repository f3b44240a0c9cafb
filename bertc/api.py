"""Python API: ``bertc.compile(model, target="host", seq_len=128, out=PATH)`` and ``bertc.load``."""

from __future__ import annotations

import collections
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_mlir import ir

from . import __version__
from .artifact import read_manifest, staging, write_manifest
from .errors import BertcError
from .frontend import export_model, import_torch
from .ir import make_context
from .passes import PassContext
from .pipeline import PIPELINE, run_pipeline
from .runtime import CompiledModel
from .sparsity import parse_spec
from .targets import get_target
from .toolchain import build, find_toolchain


@dataclass
class Artifact:
    path: Path
    manifest: dict[str, Any]

    def load(self, threads: int = 1, device: str | None = None, cores: str | None = None):
        return load(self.path, threads=threads, device=device, cores=cores)

    @property
    def report(self) -> dict[str, Any]:
        return json.loads((self.path / "report.json").read_text())


def _progress(enabled: bool, passes: int):
    if not enabled:
        return lambda step: None
    from tqdm import tqdm

    bar = tqdm(total=4 + passes, desc="bertc compile", unit="step", file=sys.stderr,
               bar_format="{desc}: {n_fmt}/{total_fmt} {postfix} [{elapsed}]")

    def step(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)
        if name == "done":
            bar.close()

    return step


def _annotate(module: ir.Module, loaded) -> None:
    f = next(op for op in module.body.operations if op.operation.name == "func.func")
    strs = lambda xs: ir.ArrayAttr.get([ir.StringAttr.get(x) for x in xs])
    i64 = ir.IntegerType.get_signless(64)
    f.attributes["bertc.input_names"] = strs(loaded.input_names)
    f.attributes["bertc.output_names"] = strs(loaded.output_names)
    f.attributes["bertc.vocab_size"] = ir.IntegerAttr.get(i64, loaded.vocab_size)
    f.attributes["bertc.type_vocab_size"] = ir.IntegerAttr.get(i64, max(loaded.max_token_type, 1))


def _weight_names(value) -> list[str]:
    from .passes.common import producer

    op = producer(value)
    if op is None:
        return []
    if op.operation.name == "bertc.weight":
        return [op.attributes["name"].value]
    return [n for v in op.operands for n in _weight_names(v)] if op.operation.name == "bertc.concat" else []


def _sparsity_report(linears, target) -> dict[str, Any] | None:
    """--prune-patterns' choice per matrix: the pattern, the kept fraction, sparse or dense, the gain."""
    from .passes.common import shape_of, sparsity

    rows = []
    for op in linears:
        sp = sparsity(op)
        if sp is not None:
            rows.append({"weights": _weight_names(op.operands[1]), "shape": shape_of(op.operands[1]),
                         "pattern": sp["pattern"], "density": sp["density"], "format": sp["format"],
                         "expected_gain": sp.get("gain")})
    if not rows:
        return None
    total = sum(math.prod(r["shape"]) for r in rows)
    return {
        "matrices": rows,
        "pruned_fraction": round(1 - sum(r["density"] * math.prod(r["shape"]) for r in rows) / total, 4),
        "sparse_matrices": sum(r["format"] == "sparse" for r in rows),
        "rates": target.sparse_gain_source,
    }


def _report(module: ir.Module, emitted, timings: dict[str, float], target=None) -> dict[str, Any]:
    from .passes.common import func_ops, shape_of

    ops = collections.Counter(op.operation.name for op in func_ops(module.operation))
    linears = [op for op in func_ops(module.operation) if op.operation.name == "bertc.linear"]
    return {
        "ops": dict(sorted(ops.items())),
        "fusion": {
            "attention": ops.get("bertc.attention", 0),
            "linear_with_activation": sum(op.attributes["activation"].value != "none" for op in linears),
            "linear_with_residual": sum(op.residual is not None for op in linears),
            "unfused_matmul": ops.get("bertc.matmul", 0),
        },
        "gemm_flops": sum(2 * math.prod(shape_of(op.operands[1])) * math.prod(shape_of(op.operands[0])[:-1])
                          for op in linears),
        "memory": {
            "arena_bytes": module.operation.attributes["bertc.arena_bytes"].value,
            "live_peak_bytes": module.operation.attributes["bertc.live_peak_bytes"].value,
            "weights_bytes": len(emitted.weights),
        },
        "sparsity": _sparsity_report(linears, target) if target is not None else None,
        "kernels": emitted.kernels,
        "compile_seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def compile(model: Any, target: str = "host", seq_len: int = 128, out: str | Path | None = None, *, batch: int = 1,
            trust_pickle: bool = False, config: str | Path | None = None, dump_dir: str | Path | None = None,
            progress: bool = False, dtype: str = "fp32", prune: str | None = None,
            force_sparse: bool = False) -> Artifact:
    """Compile a model (transformers object or MODEL path) into an artifact folder.

    ``dtype="fp16"`` stores the GEMM weights as half floats and runs the GEMMs on ARMv8.2-A FP16
    arithmetic (ARM64 targets); activations stay fp32. ``prune`` is a --prune-patterns SPEC
    (bertc/sparsity.py): the linears it names are pruned by block magnitude and stored sparse where
    the target's sparse kernel is faster (everywhere with ``force_sparse``).
    """
    tgt = get_target(target)  # names the supported targets when this one is unknown
    if dtype not in ("fp32", "fp16"):
        raise BertcError(f"unknown dtype '{dtype}': use fp32 or fp16")
    if dtype == "fp16" and tgt.fp16_tile is None:
        raise BertcError(f"--dtype fp16 needs an ARM64 target (ARMv8.2-A FP16 arithmetic); target '{target}' "
                         f"is {tgt.arch} with {tgt.isa} kernels: use --target android-arm64, or fp32")
    passes = list(PIPELINE)
    if prune is not None:
        parse_spec(prune)  # a bad SPEC fails here, before the slow steps
        if dtype != "fp32":
            raise BertcError("--prune-patterns: the sparse kernels are fp32; compile with --dtype fp32 "
                             "(or leave out --prune-patterns)")
        flag = f"prune-patterns{{force=1}}={prune}" if force_sparse else f"prune-patterns={prune}"
        passes.insert(passes.index("fuse-epilogues") + 1, flag)
    elif force_sparse:
        raise BertcError("--force applies to --prune-patterns; give a SPEC too, e.g. --prune-patterns 16x1@0.25")
    if out is None:
        stem = Path(str(model)).stem if isinstance(model, (str, Path)) else type(model).__name__.lower()
        out = Path(f"{stem}.bertc")
    out = Path(out)
    step = _progress(progress, len(passes))
    timings: dict[str, float] = {}
    t = time.perf_counter()
    toolchain = find_toolchain(tgt)  # fail before the slow steps if there is no compiler
    step("export")
    loaded = export_model(model, batch=batch, seq_len=seq_len, trust_pickle=trust_pickle, config=config)
    timings["export"] = time.perf_counter() - t
    step("import")
    t = time.perf_counter()
    context = make_context()
    module, weights = import_torch(loaded, context)
    timings["import"] = time.perf_counter() - t
    ctx = PassContext(weights=weights)
    t = time.perf_counter()
    with context, ir.Location.unknown():
        _annotate(module, loaded)
        module.operation.attributes["bertc.target"] = ir.StringAttr.get(target)
        module.operation.attributes["bertc.dtype"] = ir.StringAttr.get("f16" if dtype == "fp16" else "f32")
        run_pipeline(module, passes, ctx, Path(dump_dir) if dump_dir else None, progress=step)
    timings["passes"] = time.perf_counter() - t
    emitted = ctx.outputs["emit-c"]
    if emitted.missing_weights:
        raise BertcError(f"weights missing from the model: {emitted.missing_weights[:5]}")
    step("build")
    t = time.perf_counter()
    with staging(out) as tmp:
        (tmp / "src").mkdir()
        (tmp / "src" / "model.c").write_text(emitted.source)
        (tmp / "src" / "model.mlir").write_text(str(module))
        (tmp / "weights.bin").write_bytes(emitted.weights)
        # a content-derived name: ctypes would reuse an already loaded library of the same name
        lib_stem = f"libbertc_model.{hashlib.sha256(emitted.source.encode() + emitted.weights_sha256.encode()).hexdigest()[:16]}"
        lib, _ = build(toolchain, tgt, tmp / "src" / "model.c", tmp, lib_stem, fp16=dtype == "fp16")
        if loaded.tokenizer_dir is not None:
            tok = tmp / "tokenizer"
            tok.mkdir()
            for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                         "merges.txt", "vocab.json"):
                if (loaded.tokenizer_dir / name).exists():
                    shutil.copy(loaded.tokenizer_dir / name, tok / name)
        timings["build"] = time.perf_counter() - t
        (tmp / "report.json").write_text(json.dumps(_report(module, emitted, timings, tgt), indent=2) + "\n")
        b, s = batch, seq_len
        manifest = write_manifest(tmp, {
            "bertc_version": __version__,
            "target": target,
            "arch": tgt.arch,
            "isa": tgt.isa,
            "dtype": dtype,
            "toolchain": toolchain.name,
            "library": lib.name,
            "tool": "bertc_run",
            "batch": b,
            "seq_len": s,
            "vocab_size": loaded.vocab_size,
            "inputs": [{"name": n, "shape": [b, s], "dtype": "int64"} for n in loaded.input_names],
            "outputs": _output_specs(module, loaded.output_names),
            "passes": passes,
            "model": {"source": loaded.source, "config": loaded.config},
            "tokenizer": "tokenizer" if loaded.tokenizer_dir is not None else None,
        })
    step("done")
    return Artifact(out, manifest)


def _output_specs(module: ir.Module, names: list[str]) -> list[dict[str, Any]]:
    from .passes.common import shape_of

    f = next(op for op in module.body.operations if op.operation.name == "func.func")
    ret = list(f.regions[0].blocks[0].operations)[-1]
    return [{"name": n, "shape": shape_of(v), "dtype": "float32"} for n, v in zip(names, ret.operands)]


def load(path: str | Path, threads: int = 1, device: str | None = None, cores: str | None = None):
    """Open an artifact: a callable taking numpy int arrays, returning a dict of arrays.

    A host artifact runs in this process (ctypes) unless a device is named; any other runs
    through bertc_run on ``device``: "qemu" (the default for ARM64 artifacts here), "adb" or
    "adb:SERIAL". ``cores`` ("4-7") pins bertc_run's threads.
    """
    manifest = read_manifest(Path(path))
    if device is None and cores is None and manifest["target"] == "host":
        return CompiledModel(path, threads=threads)
    from .device import DeviceModel

    return DeviceModel(path, device=device, threads=threads, cores=cores)


def open_artifact(path: str | Path) -> Artifact:
    return Artifact(Path(path), read_manifest(Path(path)))
