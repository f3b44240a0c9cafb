"""Python API: ``bertc.compile(model, target="host", seq_len=128, out=PATH)`` and ``bertc.load``."""

from __future__ import annotations

import collections
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch_mlir import ir

from . import __version__
from .artifact import Fallback, Golden, Manifest, check_output, read_manifest, staging, write_manifest
from .device import DeviceModel
from .dialects import bertc as B
from .errors import BertcError, DeviceUnavailable
from .frontend import export_model, import_torch
from .heads import text_limit, write_head_bin
from .int8_scales import MIN_SQNR_DB, calibrate_scales, read_texts
from .ir import annotate, make_context
from .passes import PassContext
from .passes.common import func_ops, shape_of, sparsity, weight_dtype, weight_names, x_scale
from .passes.emit_vulkan import gpu_weight_dtype
from .passes.seqlen import bound, dims_of, prod
from .pipeline import AUTO, CompileOptions, passes_after, pipeline_for, run_pipeline
from .runtime import CompiledModel
from .targets import Target, get_target
from .tokenizer import Unsupported, write_tokenizer_bin
from .toolchain import SHADER_DIR, build, compile_shaders, find_glslang, find_toolchain


@dataclass
class Artifact:
    path: Path
    manifest: Manifest

    def load(self, threads: int = 1, device: str | None = None, cores: str | None = None,
             fallback: str | None = None):
        return load(self.path, threads=threads, device=device, cores=cores, fallback=fallback)

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


def _sparsity_report(linears, target) -> dict[str, Any] | None:
    """--prune-patterns' choice per matrix: the pattern, the kept fraction, sparse or dense, the gain."""
    rows = []
    for op in linears:
        sp = sparsity(op)
        if sp is not None:
            rows.append({"weights": weight_names(op.operands[1]), "shape": shape_of(op.operands[1]),
                         "pattern": sp["pattern"], "density": sp["density"], "format": sp["format"],
                         "dtype": {"i8": "int8", "f16": "fp16"}.get(weight_dtype(op), "fp32"),
                         "expected_gain": sp.get("gain")})
    if not rows:
        return None
    total = sum(math.prod(r["shape"]) for r in rows)
    dtype = "i8" if any(r["dtype"] == "int8" for r in rows) else "f32"  # whose rates the choice read
    return {
        "matrices": rows,
        "pruned_fraction": round(1 - sum(r["density"] * math.prod(r["shape"]) for r in rows) / total, 4),
        "sparse_matrices": sum(r["format"] == "sparse" for r in rows),
        "rates": target.sparse_gain_source(dtype),
    }


def _precision_report(ops: collections.Counter, linears, gpu_dtype: str | None = None, calibrated=None) -> dict[str, Any]:
    """What runs in which precision: the linears by weight type (--dtype: packed on a CPU, or the module's
    ``gpu_dtype`` on a GPU), how the int8 GEMMs quantize their inputs (with ``calibrated``, the --calibrate texts:
    each GEMM's static scale by the weights it reads) and the ops that stay fp32."""
    weights = collections.Counter({"f32": "fp32", "f16": "fp16", "i8": "int8"}[
        gpu_weight_dtype(op, gpu_dtype) if gpu_dtype else weight_dtype(op)] for op in linears)
    fp32 = {name: n for name, n in ops.items() if name not in (B.LinearOp.OPERATION_NAME, "func.return")
            and not any(k in name for k in ("weight", "constant", "reshape", "view", "concat"))}
    if weights.get("fp32"):
        fp32[B.LinearOp.OPERATION_NAME] = weights["fp32"]
    static = {"+".join(weight_names(op.operands[1])): x_scale(op) for op in linears if x_scale(op) is not None}
    # kernels.h bertc_linear_packed_i8: each row's range at run time; the GPU's gemm_i8 is weight-only, its input fp32
    mode = "fp32 (weight-only int8)" if gpu_dtype else "dynamic, per row"
    if calibrated is not None and weights.get("int8"):  # (every GEMM may have stayed per row)
        dynamic = weights["int8"] - len(static)
        mode = (f"static, per tensor, calibrated on {calibrated.source} ({len(calibrated.texts)} texts)" +
                (f"; {dynamic} of {weights['int8']} GEMMs dynamic, per row (a static scale's noise was less than "
                 f"{MIN_SQNR_DB:g} dB under their input)" if dynamic else ""))
    return {
        "linears": dict(sorted(weights.items())),
        "int8_activations": mode if weights.get("int8") else None,
        **({"int8_input_scales": static} if static else {}),
        "fp32_ops": dict(sorted(fp32.items())),
    }


def _tokenizer_bin(source: Path, folder: Path, max_length: int) -> dict[str, Any]:
    """tokenizer.bin for the C runtime's text input, texts cut to ``max_length`` tokens, and what report.json
    says of it: its kind, or why the tokenizer is of a kind not compiled yet (then text is tokenized by
    transformers, on the host only)."""
    t = time.perf_counter()
    try:
        built = write_tokenizer_bin(source, folder / "tokenizer.bin", max_length)
    except Unsupported as e:
        return {"compiled": False, "why": str(e)}
    return {"compiled": True, "file": "tokenizer.bin", "kind": built.kind, "vocab_size": built.vocab_size,
            "bytes": built.bytes, "max_length": max_length, "unicode_from_tokenizers": built.overrides,
            "seconds": round(time.perf_counter() - t, 3)}


def _report(module: ir.Module, emitted, timings: dict[str, float], target=None, calibrated=None) -> dict[str, Any]:
    ops = collections.Counter(op.operation.name for op in func_ops(module.operation))
    linears = [op for op in func_ops(module.operation) if isinstance(op, B.LinearOp)]
    attrs = module.operation.attributes
    gpu_dtype = attrs["bertc.dtype"].value if target is not None and target.is_gpu and "bertc.dtype" in attrs else None
    return {
        "ops": dict(sorted(ops.items())),
        "fusion": {
            "attention": ops.get(B.AttentionOp.OPERATION_NAME, 0),
            "linear_with_activation": sum(op.attributes["activation"].value != "none" for op in linears),
            "linear_with_residual": sum(op.residual is not None for op in linears),
            "unfused_matmul": ops.get(B.MatmulOp.OPERATION_NAME, 0),
        },
        # at the bound's length for a dynamic program (a run of L tokens does L rows of it)
        "gemm_flops": sum(2 * math.prod(shape_of(op.operands[1])) * bound(prod(dims_of(op.operands[0])[:-1]),
                                                                          module.operation) for op in linears),
        "memory": {
            "arena_bytes": emitted.arena_bytes,  # the planned values' (bertc.arena_bytes) and int8 work space
            "live_peak_bytes": module.operation.attributes["bertc.live_peak_bytes"].value,
            "weights_bytes": len(emitted.weights),
        },
        "sparsity": _sparsity_report(linears, target) if target is not None else None,
        "precision": _precision_report(ops, linears, gpu_dtype, calibrated),
        "kernels": emitted.kernels,
        "compile_seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def compile(model: Any, target: str = "host", seq_len: int | None = None, out: str | Path | None = None, *,
            batch: int = 1, trust_pickle: bool = False, config: str | Path | None = None,
            dump_dir: str | Path | None = None, progress: bool = False, dtype: str = "fp32", prune: str | None = None,
            force_sparse: bool = False, fallback: str | None = None, max_seq_len: int | None = None,
            calibrate: Any = None) -> Artifact:
    """Compile a model (transformers object or MODEL path) into an artifact folder.

    ``max_seq_len=N``: one artifact runs every length from 1 to N, each at the cost of its own length
    (the GEMMs on the input's rows, attention over its keys; the arena laid out for N); ``seq_len`` is
    then only the length traced at. ``seq_len=S`` alone: the artifact runs S tokens, shorter inputs
    padded to it. Neither: every length up to the model's max_position_embeddings (at most 512), since
    that costs nothing at a given length; a TorchScript archive or a torch.export program, whose shapes
    were fixed when saved, gets one length, 128.

    ``dtype="fp16"`` stores the GEMM weights as half floats and runs the GEMMs on ARMv8.2-A FP16
    arithmetic (ARM64 targets) or on the GPU's shaderFloat16 (GPU targets); activations stay fp32. ``dtype="int8"``
    stores them as int8 with a scale per output feature, and quantizes each GEMM's input per row on a CPU target
    (over the row's range, with a zero point; integer GEMMs); on a GPU target it is weight-only
    (storageBuffer8BitAccess; input and sums fp32).
    ``prune`` is a --prune-patterns SPEC (bertc/sparsity.py): the linears it names are pruned by block
    magnitude and stored sparse where the target's sparse kernel is faster (everywhere with
    ``force_sparse``). GPU targets (vulkan, android-vulkan) also store golden inputs and PyTorch's
    outputs for ``bertc run --verify``; ``fallback="cpu"`` adds the CPU build of the same model in
    ``cpu/``, which ``load(..., fallback="cpu")`` runs when the device cannot.

    ``dtype="int8"`` quantizes each GEMM's input per row at run time; with ``calibrate`` (a text file, one text
    per line, a list of texts, or, through ``bertc.compile``, "task:NAME": that task's first train texts) the
    fp32 model is run over them first and each GEMM's input gets one static scale (bertc/int8_scales.py).
    """
    if max_seq_len is None and seq_len is None:
        max_seq_len = AUTO
    texts = read_texts(calibrate) if calibrate is not None else None
    options = CompileOptions(target=target, seq_len=seq_len or 128, max_seq_len=max_seq_len, batch=batch, dtype=dtype,
                             prune=prune, calibrate=texts,
                             force_sparse=force_sparse, fallback=fallback, trust_pickle=trust_pickle, config=config,
                             dump_dir=dump_dir, progress=progress)
    tgt = options.check()
    passes = pipeline_for(tgt, options)
    if out is None:
        stem = Path(str(model)).stem if isinstance(model, (str, Path)) else type(model).__name__.lower()
        out = Path(f"{stem}.bertc")
    out = Path(out)
    check_output(out)  # an -o bertc may not replace, or cannot write, fails now rather than after the export
    step = _progress(options.progress, len(passes))
    timings: dict[str, float] = {}
    t = time.perf_counter()
    toolchain = find_toolchain(tgt)  # fail before the slow steps if there is no compiler
    if tgt.is_gpu:
        find_glslang()  # ... or no shader compiler
    step("export")
    loaded = export_model(model, batch=options.batch, seq_len=options.seq_len, trust_pickle=options.trust_pickle,
                          config=options.config, max_seq_len=options.max_seq_len)
    timings["export"] = time.perf_counter() - t
    scales = None
    if texts is not None:  # the fp32 program over the texts: each int8 GEMM input's static scale
        t = time.perf_counter()
        scales = calibrate_scales(loaded, texts, loaded.max_seq_len or loaded.seq_len, options.batch)
        timings["calibrate"] = time.perf_counter() - t
    options = replace(options, max_seq_len=loaded.max_seq_len, seq_len=loaded.seq_len)  # AUTO resolved
    # before the import changes it; a dynamic program's at the length it was traced at
    golden = _golden(loaded, options.batch, loaded.seq_len) if tgt.is_gpu else None
    with staging(out) as tmp:
        manifest = _build_into(tmp, loaded, tgt, toolchain, options, passes, timings, step, scales)
        if golden is not None:
            manifest = replace(manifest, golden=_store_golden(tmp, golden, options.dtype, manifest))
        if options.fallback:
            cpu = get_target(tgt.cpu)
            keep = {"fp16": cpu.fp16_tile, "int8": cpu.int8_tile}.get(options.dtype)  # the CPU build's own GEMMs
            cpu_options = replace(options, target=cpu.name, dtype=options.dtype if keep else "fp32",
                                  fallback=None, dump_dir=None)
            cpu_manifest = _build_into(tmp / "cpu", loaded, cpu, find_toolchain(cpu), cpu_options,
                                       pipeline_for(cpu, cpu_options))
            write_manifest(tmp / "cpu", cpu_manifest)  # an artifact of its own
            manifest = replace(manifest, fallback=Fallback(cpu="cpu", target=cpu.name))
        manifest = write_manifest(tmp, manifest)
    step("done")
    return Artifact(out, manifest)


def _build_into(folder: Path, loaded, tgt: Target, toolchain, options: CompileOptions, passes: list[str],
                timings: dict[str, float] | None = None, step=lambda name: None, act_scales=None) -> Manifest:
    """Import, run ``passes`` and build one target's artifact files into ``folder`` (report.json
    included); return its manifest without the file list (write_manifest adds it). ``tgt`` is
    ``options.target`` resolved, or a Target of compile_ir's own (the reference kernels); ``act_scales``:
    --calibrate's static int8 input scales by weight name."""
    timings = {} if timings is None else timings
    dtype, dump_dir = options.dtype, options.dump_dir
    step("import")
    t = time.perf_counter()
    context = make_context()
    if isinstance(loaded, IRProgram):
        module, weights = ir.Module.parse(loaded.text, context), loaded
    else:
        module, weights = import_torch(loaded, context)
    timings["import"] = time.perf_counter() - t
    ctx = PassContext(weights=weights)
    t = time.perf_counter()
    with context, ir.Location.unknown():
        annotate(module, loaded, tgt.name, dtype, act_scales)
        run_pipeline(module, passes, ctx, Path(dump_dir) if dump_dir else None, progress=step)
    timings["passes"] = time.perf_counter() - t
    emitted = ctx.outputs["emit-vulkan" if tgt.is_gpu else "emit-c"]
    if emitted.missing_weights:
        raise BertcError(f"weights missing from the model: {emitted.missing_weights[:5]}")
    step("build")
    t = time.perf_counter()
    folder.mkdir(exist_ok=True)
    (folder / "src").mkdir()
    model_c = folder / "src" / ("model_vulkan.c" if tgt.is_gpu else "model.c")
    model_c.write_text(emitted.source)
    (folder / "src" / "model.mlir").write_text(str(module))
    (folder / "weights.bin").write_bytes(emitted.weights)
    spirv = None
    if tgt.is_gpu:  # SPIR-V into shaders/, the GLSL beside the C for reading
        spirv = compile_shaders(emitted.shaders, folder / "shaders")
        for source in {src for src, _ in emitted.shaders.values()} | {"common.glsl"}:
            shutil.copy(SHADER_DIR / source, folder / "src" / source)
    # a content-derived name (shaders included): ctypes would reuse an already loaded library of the same name
    content = emitted.source + emitted.weights_sha256 + json.dumps(spirv)
    lib_stem = f"libbertc_model.{hashlib.sha256(content.encode()).hexdigest()[:16]}"
    lib, _ = build(toolchain, tgt, model_c, folder, lib_stem, fp16=dtype == "fp16", int8=dtype == "int8", spirv=spirv)
    if loaded.tokenizer_dir is not None:
        tok = folder / "tokenizer"
        tok.mkdir()
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                     "merges.txt", "vocab.json"):
            if (loaded.tokenizer_dir / name).exists():
                shutil.copy(loaded.tokenizer_dir / name, tok / name)
    timings["build"] = time.perf_counter() - t
    report = _report(module, emitted, timings, tgt, options.calibrate)
    if loaded.tokenizer_dir is not None:
        longest = options.max_seq_len or options.seq_len
        limit = text_limit(getattr(loaded, "folder", None))  # a sentence-transformers model's max_seq_length
        report["tokenizer"] = _tokenizer_bin(loaded.tokenizer_dir, folder, min(longest, limit or longest))
    head = write_head_bin(getattr(loaded, "folder", None), loaded.config, folder / "head.bin", loaded.output_names)
    if head is not None:
        report["head"] = head
    if tgt.is_gpu:
        report["dispatches"] = [{"op": d.label, "shader": d.shader, "spec": list(d.spec), "groups": list(d.groups)}
                                for d in emitted.dispatches]
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    b, s = options.batch, options.max_seq_len or options.seq_len
    return Manifest(
        bertc_version=__version__, target=tgt.name, arch=tgt.arch, isa=tgt.isa, dtype=dtype,
        toolchain=toolchain.name, library=lib.name, tool="bertc_run", batch=b, seq_len=s,
        max_seq_len=options.max_seq_len, vocab_size=loaded.vocab_size,
        inputs=[{"name": n, "shape": [b, s], "dtype": "int64"} for n in loaded.input_names],
        outputs=_output_specs(module, loaded.output_names), passes=passes,
        model={"source": loaded.source, "config": loaded.config},
        tokenizer="tokenizer" if loaded.tokenizer_dir is not None else None,
        shaders=sorted(emitted.shaders) if tgt.is_gpu else None,
    )


@dataclass
class IRProgram:
    """Hand-written bertc IR in place of an exported model: one function of int64 inputs (``input_names``)
    whose constants are ``bertc.weight`` ops named in ``arrays``. The kernel tests compile one op per
    shader this way, for a GPU and for the C reference kernels."""

    text: str
    arrays: dict[str, np.ndarray]
    input_names: list[str]
    output_names: list[str]
    vocab_size: int = 1 << 20
    max_token_type: int = 0
    tokenizer_dir: Path | None = None
    source: str = "bertc IR"
    config: dict[str, Any] = field(default_factory=dict)
    max_seq_len: int | None = None  # the bound of the inputs' ? length (then seq_len is ignored)


def compile_ir(program: IRProgram, target, out: str | Path, batch: int, seq_len: int, dtype: str = "fp32") -> Artifact:
    """Compile an IRProgram for ``target`` (a name or a Target: a CPU target with isa="ref" builds the
    reference kernels): the target's pipeline after the fusions (the IR is already the bertc ops to run)."""
    tgt = get_target(target) if isinstance(target, str) else target
    options = CompileOptions(target=tgt.name, seq_len=seq_len, batch=batch, max_seq_len=program.max_seq_len, dtype=dtype)
    passes = passes_after(pipeline_for(tgt, options), "fuse-epilogues")
    with staging(Path(out)) as tmp:
        manifest = write_manifest(tmp, _build_into(tmp, program, tgt, find_toolchain(tgt), options, passes))
    return Artifact(Path(out), manifest)


# Max |error| against the golden outputs that `bertc run --verify` accepts: fp32 shaders agree with
# PyTorch to ~2e-6 on lavapipe, a wrong driver is off by far more; fp16 GEMMs cost ~4e-3 on MiniLM, int8 weights
# 0.073 on its golden inputs and up to 0.16 on real text (outputs up to 5.8; README): an absolute bound, sized on MiniLM.
VERIFY_TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2, "int8": 0.25}


def golden_inputs(loaded, b: int, s: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded token ids in [3, vocab), the last quarter of each row padded and masked, two segments."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, max(4, loaded.vocab_size), size=(b, s)).astype(np.int64)
    mask = np.ones((b, s), np.int64)
    keep = max(1, s - s // 4)
    mask[:, keep:] = 0
    ids[:, keep:] = 0
    types = np.zeros((b, s), np.int64)
    if loaded.max_token_type > 1:
        types[:, keep // 2:keep] = 1
    named = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return {n: named[n] for n in loaded.input_names}


def _golden(loaded, batch: int, seq_len: int) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Golden inputs and PyTorch's outputs for them (the exported program, run before it is imported)."""
    import torch

    inputs = golden_inputs(loaded, batch, seq_len)
    # node by node: the program's generated forward() cannot print the tensor literals the frontend folded in
    with torch.no_grad():
        result = torch.fx.Interpreter(loaded.program.module()).run(*(torch.from_numpy(inputs[n])
                                                                     for n in loaded.input_names))
    if isinstance(result, torch.Tensor):
        result = [result]
    elif isinstance(result, dict):
        result = list(result.values())
    return inputs, [t.detach().to(torch.float32).contiguous().numpy() for t in result]


def _store_golden(folder: Path, golden, dtype: str, manifest: Manifest) -> Golden:
    """golden/: the inputs and PyTorch's outputs, raw little-endian (int64, float32); returns its manifest entry."""
    inputs, outputs = golden
    gold = folder / "golden"
    gold.mkdir()
    for n, arr in inputs.items():
        arr.tofile(gold / f"{n}.bin")
    for spec, arr in zip(manifest.outputs, outputs):
        arr.tofile(gold / f"{spec['name']}.bin")
    return Golden(folder="golden", inputs=list(inputs), outputs=[o["name"] for o in manifest.outputs],
                  tolerance=VERIFY_TOLERANCE[dtype], reference="PyTorch (the exported program)")


def _output_specs(module: ir.Module, names: list[str]) -> list[dict[str, Any]]:
    f = next(op for op in module.body.operations if op.operation.name == "func.func")
    ret = list(f.regions[0].blocks[0].operations)[-1]
    # a dynamic program's at its bound (its outputs have the run's length in that dimension)
    return [{"name": n, "shape": [bound(d, module.operation) for d in dims_of(v)], "dtype": "float32"}
            for n, v in zip(names, ret.operands)]


def load(path: str | Path, threads: int = 1, device: str | None = None, cores: str | None = None,
         fallback: str | None = None):
    """Open an artifact: a callable taking numpy int arrays, returning a dict of arrays.

    A host or vulkan artifact runs in this process (ctypes) unless a device is named; any other runs
    through bertc_run on ``device``: "qemu" (the default for ARM64 artifacts here), "adb" or
    "adb:SERIAL". ``cores`` ("4-7") pins bertc_run's threads. ``fallback="cpu"``: when a GPU
    artifact finds no usable Vulkan device, run the CPU build it carries (compiled with --fallback cpu).
    """
    path = Path(path)
    manifest = read_manifest(path)  # hashed once here; the model is handed the checked manifest
    if fallback not in (None, "cpu"):
        raise BertcError(f"--fallback {fallback}: the only fallback is cpu")
    try:
        if device is None and cores is None and manifest.target in ("host", "vulkan"):
            return CompiledModel(path, threads=threads, manifest=manifest)
        model = DeviceModel(path, device=device, threads=threads, cores=cores, manifest=manifest)
        if fallback and manifest.fallback:  # bertc_run opens the device on each call: try it once now
            model(np.zeros((manifest.batch, 1), np.int64))
        return model
    except DeviceUnavailable as e:
        return load(cpu_fallback(path, manifest, e, fallback), threads=threads, device=device, cores=cores)


def cpu_fallback(path: Path, manifest: Manifest, error: DeviceUnavailable, fallback: str | None) -> Path:
    """The CPU build to run instead of a GPU artifact that found no device, or ``error`` with the way out."""
    if fallback != "cpu":
        raise error
    if manifest.fallback is None:
        raise BertcError(f"{error}\n{path} carries no CPU build to fall back to: recompile it with --fallback cpu") from None
    print(f"bertc: {error}\nbertc: running the CPU build ({manifest.fallback.target}) instead", file=sys.stderr)
    return path / manifest.fallback.cpu


def verify(model, manifest: Manifest, path: Path) -> dict[str, Any]:
    """Run the golden inputs stored at compile time and compare with the stored PyTorch outputs (on
    the unpadded tokens): max |error| per output against the artifact's tolerance. Raises when above."""
    gold = manifest.golden
    if gold is None:
        raise BertcError(f"{path} has no golden inputs/outputs (only GPU artifacts carry them): nothing to verify")
    folder = path / gold.folder
    b = manifest.batch  # the golden length: the compiled one, or the length a dynamic artifact was traced at
    inputs = {n: np.fromfile(folder / f"{n}.bin", dtype=np.int64).reshape(b, -1) for n in gold.inputs}
    s = inputs["input_ids"].shape[1]
    ours = model(inputs["input_ids"], inputs.get("attention_mask"), inputs.get("token_type_ids"))
    keep = inputs.get("attention_mask", np.ones((b, s), np.int64)).astype(bool)
    errors = {}
    for spec in manifest.outputs:
        shape = ours[spec["name"]].shape if manifest.dynamic else spec["shape"]
        ref = np.fromfile(folder / f"{spec['name']}.bin", dtype=np.float32).reshape(shape)
        diff = np.abs(ours[spec["name"]] - ref)
        errors[spec["name"]] = float(diff[keep].max() if diff.shape[:2] == (b, s) else diff.max())
    worst = max(errors.values())
    result = {"max_abs_error": errors, "tolerance": gold.tolerance, "passed": worst <= gold.tolerance,
              "reference": gold.reference}
    if not result["passed"]:
        raise BertcError(f"--verify failed: max |error| {worst:.3g} against the golden outputs is above the tolerance "
                         f"{gold.tolerance:g} ({errors}); this device/driver computes this model wrongly: use the "
                         "CPU build (--fallback cpu) on it")
    return result


def open_artifact(path: str | Path) -> Artifact:
    return Artifact(Path(path), read_manifest(Path(path)))
