"""Pass pipelines per target, and the driver that runs them with verification and repro dumps.

Each pass runs as a Python pass in an MLIR PassManager (``PassManager.add``); the IR is verified
after every pass. When a pass fails, the IR it was given is written to a file and the
``bertc-opt`` command that reproduces the failure is part of the error message.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch_mlir import ir
from torch_mlir.passmanager import PassManager

from .errors import BertcError
from .passes import PASSES, PassContext

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


def pipeline_for(target) -> list[str]:
    """The pass list of a bertc.targets.Target."""
    return list(VULKAN_PIPELINE if target.is_gpu else PIPELINE)


def split_flag(flag: str) -> tuple[str, dict[str, str]]:
    """'pack-weights{mr=4 nr=16}' -> ('pack-weights', {'mr': '4', 'nr': '16'});
    'prune-patterns{force=1}=16x1@0.25,L0=0.5' -> ('prune-patterns', {'force': '1', 'spec': '16x1@0.25,L0=0.5'}):
    the text after '=' is the pass's SPEC, taken whole."""
    from .passes.common import parse_options

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
        before = str(module) if not flag.startswith("emit-") else None
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
