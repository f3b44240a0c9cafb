"""Pass pipelines per target, and the driver that runs them with verification and repro dumps.

``pipeline_for(target, options)`` is the one place a pass list is built; everything else takes a
slice of what it returns (``lowering``: the cost model; ``passes_after``: compile_ir's hand-written IR).
Each pass runs as a Python pass in an MLIR PassManager (``PassManager.add``); the IR is verified
after every pass. When a pass fails, the IR it was given is written to a file and the
``bertc-opt`` command that reproduces the failure is part of the error message.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_mlir import ir
from torch_mlir.passmanager import PassManager

from .errors import BertcError
from .passes import PASSES, PassContext
from .passes.common import parse_options
from .sparsity import check_int8_pattern, parse_spec
from .targets import Target, get_target

# Every CPU target runs the same passes; what differs (the ISA's kernels, the GEMM tile) is
# read from the target named by the module's bertc.target attribute.
PIPELINE: list[str] = [
    "raise-torch",  # torch ops -> bertc ops; unsupported ops are named here
    "fuse-attention",  # one kernel per attention block; Q/K/V become one GEMM
    "fuse-epilogues",  # GELU and residual adds ride on the GEMM that produces them
    # (--prune-patterns=SPEC goes here when asked for: block sparsity, stored sparse where faster)
    "pack-weights",  # the target's GEMM tile; weights laid out as its micro-kernel reads them
    "plan-memory",  # one arena, offsets by liveness; peak bytes into the report
    "emit-c",  # C calling the runtime's kernels
]

# GPU targets (vulkan, android-vulkan): no CPU weight packing; the GEMM shader reads [K, N] weights and
# tiles them itself in shared memory, with workgroup and tile sizes from the target's GpuParams.
VULKAN_PIPELINE: list[str] = [
    "raise-torch",  # torch ops -> bertc ops; unsupported ops are named here
    "fuse-attention",  # one shader per attention block; Q/K/V become one GEMM
    "fuse-epilogues",  # bias, GELU and residual adds ride on the GEMM shader
    "plan-memory",  # one arena in the device buffer, offsets by liveness
    "emit-vulkan",  # the dispatch list and the GLSL shaders it uses
]


AUTO = "auto"  # CompileOptions.max_seq_len: every length up to the model's positions, or one length where the
# model form fixes it (frontend.default_max_seq_len)


@dataclass(frozen=True)
class CompileOptions:
    """What ``bertc compile`` / ``bertc.compile`` take besides the model and the output folder.

    ``check()`` is the one place they are checked against each other and the target, before any slow
    step; ``pipeline_for`` reads the ones that change the pass list (prune, force_sparse).
    """

    target: str = "host"
    seq_len: int = 128  # the one length run (inputs padded to it); with max_seq_len, the length traced at
    # every length 1..N runs at its own cost (issue 17); None: static, seq_len; AUTO: the model's own bound
    # (frontend.default_max_seq_len), resolved when the model is loaded
    max_seq_len: int | str | None = None
    batch: int = 1
    dtype: str = "fp32"  # GEMM weights: fp32, fp16 on ARM64 and GPU targets, int8 (weight-only on GPU targets)
    calibrate: Any = None  # int8: texts to choose static activation scales on (bertc/int8_scales.py); None: per row
    prune: str | None = None  # a --prune-patterns SPEC (bertc/sparsity.py)
    force_sparse: bool = False  # store every pruned matrix sparse, even where dense is faster
    fallback: str | None = None  # "cpu": GPU targets also carry their CPU build in cpu/
    trust_pickle: bool = False  # allow a pickled whole module (runs code from the file)
    config: str | Path | None = None  # config.json for a state dict or .pt2 saved without one
    dump_dir: str | Path | None = None  # the IR before and after every pass
    progress: bool = False  # a progress bar on stderr

    def check(self) -> Target:
        """The target, once every option is known to fit it; each error names the fix."""
        tgt = get_target(self.target)  # names the supported targets when this one is unknown
        if self.max_seq_len not in (None, AUTO) and not 2 <= self.max_seq_len <= 8192:
            raise BertcError(f"--max-seq-len {self.max_seq_len} out of range (2 <= max-seq-len <= 8192; for inputs "
                             "of one token only, compile with --seq-len 1)")
        if self.dtype not in ("fp32", "fp16", "int8"):
            raise BertcError(f"unknown dtype '{self.dtype}': use fp32, fp16 or int8")
        if self.calibrate is not None and self.dtype != "int8":
            raise BertcError(f"--calibrate chooses the int8 GEMMs' activation scales ahead of time; it needs "
                             f"--dtype int8 (this compile is --dtype {self.dtype}): add --dtype int8, or leave out "
                             "--calibrate")
        if self.calibrate is not None and tgt.is_gpu:
            raise BertcError(f"--calibrate: target '{self.target}' is a GPU, whose int8 GEMMs are weight-only (their "
                             "inputs stay fp32, so there are no activation scales to choose): leave out --calibrate")
        if self.dtype == "fp16" and tgt.fp16_tile is None and not tgt.is_gpu:
            raise BertcError(f"--dtype fp16 needs an ARM64 target (ARMv8.2-A FP16 arithmetic) or a GPU target; "
                             f"target '{self.target}' is {tgt.arch} with {tgt.isa} kernels: use --target "
                             "android-arm64 or vulkan, or fp32")
        if self.fallback not in (None, "cpu"):
            raise BertcError(f"--fallback {self.fallback}: the only fallback is cpu")
        if self.fallback and not tgt.is_gpu:
            raise BertcError(f"--fallback cpu is for GPU targets (vulkan, android-vulkan); '{self.target}' already "
                             "runs on the CPU")
        if self.prune is not None:
            parse_spec(self.prune)  # a bad SPEC fails here, before the slow steps
            if tgt.is_gpu:
                raise BertcError(f"--prune-patterns: target '{self.target}' has no sparse GEMM shader; compile for "
                                 "a CPU target, or without --prune-patterns")
            if self.dtype == "fp16":
                raise BertcError("--prune-patterns: the sparse kernels are fp32 and int8; compile with --dtype fp32 "
                                 "or int8 (or leave out --prune-patterns)")
            if self.dtype == "int8":
                check_int8_pattern(parse_spec(self.prune).pattern)
        elif self.force_sparse:
            raise BertcError("--force applies to --prune-patterns; give a SPEC too, e.g. --prune-patterns 16x1@0.25")
        return tgt


def pipeline_for(target: Target, options: CompileOptions | None = None) -> list[str]:
    """The pass list of a bertc.targets.Target: its pipeline, with --prune-patterns after the fusions when
    ``options`` ask for it (it prunes the fused GEMMs; pack-weights then skips the matrices it stored sparse)."""
    passes = list(VULKAN_PIPELINE if target.is_gpu else PIPELINE)
    if options is not None and options.prune is not None:
        force = "{force=1}" if options.force_sparse else ""
        passes.insert(passes.index("fuse-epilogues") + 1, f"prune-patterns{force}={options.prune}")
    return passes


def is_emitter(flag: str) -> bool:
    """Whether a pass flag is a pipeline's last step, the emitter (emit-c, emit-vulkan): it writes code, not IR."""
    return flag.startswith("emit-")


def passes_after(passes: list[str], name: str) -> list[str]:
    """The flags of ``passes`` after the pass called ``name``."""
    names = [split_flag(f)[0] for f in passes]
    return passes[names.index(name) + 1:]


def lowering(passes: list[str]) -> list[str]:
    """The bertc-to-bertc part of a pipeline: after raise-torch, up to (not including) the emitter;
    what the cost model runs on raised IR."""
    return [f for f in passes_after(passes, "raise-torch") if not is_emitter(f)]


def split_flag(flag: str) -> tuple[str, dict[str, str]]:
    """'pack-weights{mr=4 nr=16}' -> ('pack-weights', {'mr': '4', 'nr': '16'});
    'prune-patterns{force=1}=16x1@0.25,L0=0.5' -> ('prune-patterns', {'force': '1', 'spec': '16x1@0.25,L0=0.5'}):
    the text after '=' is the pass's SPEC, taken whole."""
    brace, eq = flag.find("{"), flag.find("=")
    if eq != -1 and (brace == -1 or eq < brace):
        return flag[:eq], {"spec": flag[eq + 1:]}
    if brace != -1:
        name, rest = flag[:brace], flag[brace + 1:]
        opts_text, close, tail = rest.partition("}")
        options = parse_options(opts_text)
        if close and tail.startswith("="):
            options["spec"] = tail[1:]
        elif tail:
            raise BertcError(f"cannot read the pass flag '--{flag}': expected --{name}{{...}} or --{name}{{...}}=SPEC")
        return name, options
    return flag, {}


def run_pass(module: ir.Module, flag: str, ctx: PassContext) -> None:
    name, options = split_flag(flag)
    if name not in PASSES:
        raise BertcError(f"unknown pass '--{name}'; known passes: {', '.join('--' + p for p in PASSES)}")
    ctx.options[name] = options
    fn = PASSES[name]

    def run(op, pass_):
        try:
            fn(op, ctx)
        except BertcError as e:
            ctx.error = e
            pass_.signal_pass_failure()

    pm = PassManager(context=module.context)
    pm.add(run, name=name.replace("-", "_"), argument=name)
    ctx.error = None
    try:
        pm.run(module.operation)
    except Exception as e:  # noqa: BLE001 - MLIR reports a failed pass as a generic error
        raise ctx.error or BertcError(f"--{name} failed: {e}") from None
    if ctx.error:
        raise ctx.error
    if not module.operation.verify():
        raise BertcError(f"IR does not verify after --{name}")


def run_pipeline(module: ir.Module, flags: list[str], ctx: PassContext, dump_dir: Path | None = None,
                 progress=None) -> None:
    if dump_dir:
        dump_dir.mkdir(parents=True, exist_ok=True)
        (dump_dir / "00-torch.mlir").write_text(str(module))
    for i, flag in enumerate(flags, 1):
        before = str(module) if not is_emitter(flag) else None
        if progress:
            progress(flag)
        try:
            run_pass(module, flag, ctx)
        except BertcError as e:
            if before is None:
                raise
            repro = Path(tempfile.mkdtemp(prefix="bertc-repro-")) / f"before-{flag.split('{')[0]}.mlir"
            repro.write_text(before)
            raise BertcError(f"{e}\n  the IR before --{flag} is in {repro}\n"
                             f"  reproduce with: bertc-opt {repro} --{flag}") from None
        if dump_dir:
            (dump_dir / f"{i:02d}-{flag.split('{')[0].replace('-', '_')}.mlir").write_text(str(module))
