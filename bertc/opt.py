"""bertc-opt: run bertc passes on an .mlir file, like mlir-opt (the wheel's torch-mlir-opt
cannot see Python-defined ops or passes).

    bertc-opt in.mlir --raise-torch --fuse-attention
    bertc-opt in.mlir --split-input-file --fuse-epilogues | FileCheck in.mlir
    bertc-opt in.mlir --plan-memory --emit-c             # prints the C source
    bertc-opt in.mlir --plan-memory --emit-vulkan        # prints the Vulkan dispatch list (C)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch_mlir import ir

from .errors import BertcError
from .ir import make_context
from .passes import PASSES, PassContext
from .pipeline import run_pass, split_flag


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bertc-opt",
        description="Run bertc passes on MLIR and print the result (IR, or C after --emit-c).",
        epilog="passes, applied in the order given:\n" + "\n".join(
            f"  --{name:<16} {(fn.__module__ and sys.modules[fn.__module__].__doc__ or '').splitlines()[0]}"
            for name, fn in PASSES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="an .mlir file, or - for standard input")
    p.add_argument("-o", dest="output", default="-", help="where to write the result (default: standard output)")
    p.add_argument("--split-input-file", action="store_true", help="treat '// -----' separated chunks as files")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass to stderr")
    return p


def process(text: str, flags: list[str], print_after_all: bool = False) -> str:
    ctx_mlir = make_context()
    with ctx_mlir, ir.Location.unknown():
        try:
            module = ir.Module.parse(text)
        except ir.MLIRError as e:
            raise BertcError(f"parse error: {e}") from None
        except Exception as e:  # noqa: BLE001 - a Python verifier met a malformed op (e.g. no operandSegmentSizes)
            raise BertcError(f"invalid op in the input ({type(e).__name__}: {e}); an op with a variadic operand "
                             "needs operandSegmentSizes") from None
        ctx = PassContext()
        for flag in flags:
            run_pass(module, flag, ctx)
            if print_after_all:
                print(f"// -----// IR Dump After {flag} //----- //\n{module}", file=sys.stderr)
        for emitter in ("emit-c", "emit-vulkan"):
            if emitter in ctx.outputs:
                return ctx.outputs[emitter].source
        return str(module)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = []
    rest = []
    for a in argv:
        name = a[2:] if a.startswith("--") else None
        if name and split_flag(name)[0] in PASSES:
            flags.append(name)
        else:
            rest.append(a)
    args = _parser().parse_args(rest)
    text = sys.stdin.read() if args.input == "-" else Path(args.input).read_text()
    chunks = text.split("// -----") if args.split_input_file else [text]
    outputs, failed = [], False
    for chunk in chunks:
        try:
            outputs.append(process(chunk, flags, args.print_ir_after_all))
        except BertcError as e:
            print(f"bertc-opt: error: {e}", file=sys.stderr)
            failed = True
    result = "\n// -----\n".join(outputs)
    if args.output == "-":
        sys.stdout.write(result + "\n")
    else:
        Path(args.output).write_text(result + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
