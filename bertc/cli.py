"""The ``bertc`` command line.

    bertc compile MODEL --target host -o NAME.bertc [--seq-len 128] [--batch 1]
    bertc run NAME.bertc --text "a gripping, funny film"
    bertc run NAME.bertc --input-ids ids.npy [--attention-mask m.npy] [--token-type-ids t.npy] --output out.npz
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .errors import BertcError

MODEL_HELP = """MODEL is one of:
  a Hugging Face model folder   (config.json + model.safetensors / pytorch_model.bin; its
                                 tokenizer is kept in the artifact for `bertc run --text`)
  a torch.export program        (.pt2, from torch.export.save)
  a TorchScript archive         (torch.jit.trace of a transformers model, saved with
                                 torch.jit.save; its inputs in the order input_ids,
                                 attention_mask, token_type_ids; converted with torch.export)
  a .pt state dict with config  (torch.save({'config': cfg.to_dict(), 'state_dict': sd}, PATH),
                                 or a plain state dict with config.json beside it / --config)
A pickled whole module runs code when loaded and is refused unless --trust-pickle is given."""


def _compile(args: argparse.Namespace) -> int:
    from .api import compile as compile_model

    t = time.perf_counter()
    art = compile_model(args.model, target=args.target, seq_len=args.seq_len, batch=args.batch, out=args.output,
                        trust_pickle=args.trust_pickle, config=args.config, dump_dir=args.dump_dir,
                        progress=not args.quiet)
    rep = art.report
    mem = rep["memory"]
    print(f"wrote {art.path} in {time.perf_counter() - t:.1f} s: target {args.target}, batch {args.batch}, "
          f"seq {args.seq_len}; weights {mem['weights_bytes'] / 2**20:.1f} MiB, arena {mem['arena_bytes'] / 2**20:.2f} MiB; "
          f"{rep['fusion']['attention']} fused attention blocks")
    return 0


def _load_ids(path: str | None, name: str) -> np.ndarray | None:
    if path is None:
        return None
    try:
        return np.load(path)
    except (OSError, ValueError) as e:
        raise BertcError(f"cannot read {name} from '{path}': {e} (expected a .npy of integers)") from None


def _run(args: argparse.Namespace) -> int:
    from .api import load

    model = load(args.artifact, threads=args.threads)
    if args.text is not None:
        tok_dir = Path(args.artifact) / "tokenizer"
        if not tok_dir.is_dir():
            raise BertcError(f"{args.artifact} has no tokenizer (the model was not compiled from a folder with one); "
                             "pass --input-ids instead")
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
        enc = tok(args.text, truncation=True, max_length=int(model.seq_len), return_tensors="np")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        types = enc.get("token_type_ids")
    elif args.input_ids is not None:
        ids = _load_ids(args.input_ids, "--input-ids")
        mask = _load_ids(args.attention_mask, "--attention-mask")
        types = _load_ids(args.token_type_ids, "--token-type-ids")
    else:
        raise BertcError("give the input: --text \"...\" or --input-ids ids.npy")
    t = time.perf_counter()
    out = model(ids, mask, types)
    ms = (time.perf_counter() - t) * 1e3
    if args.output:
        np.savez(args.output, **out)
    print(f"ran {args.artifact} on {ids.shape[-1]} tokens with {args.threads} thread(s) in {ms:.2f} ms")
    for name, arr in out.items():
        print(f"  {name}: shape {list(arr.shape)}, first values {np.array2string(arr.reshape(-1)[:4], precision=4)}")
    if args.output:
        print(f"  saved to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bertc", description="Compile BERT-family models into small C artifacts "
                                "and run them.", formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Run `bertc COMMAND --help` for each command's options.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile a model into an artifact folder", description=
                       "Compile MODEL: torch.export, torch-mlir import, bertc passes, C build. The artifact folder "
                       "holds manifest.json, weights.bin, the library, bertc_run, src/ and report.json.",
                       epilog=MODEL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("model", help="model folder, .pt2, TorchScript archive or .pt state dict (see below)")
    c.add_argument("--target", default="host", help="where it will run (default: host; supported: host)")
    c.add_argument("-o", "--output", help="artifact folder to write (default: MODEL_NAME.bertc)")
    c.add_argument("--seq-len", type=int, default=128, help="compiled sequence length; shorter inputs are "
                   "padded and masked at run time (default: 128)")
    c.add_argument("--batch", type=int, default=1, help="compiled batch size (default: 1)")
    c.add_argument("--config", help="config.json for a state dict or .pt2 saved without one")
    c.add_argument("--trust-pickle", action="store_true", help="allow loading a pickled whole module "
                   "(runs code from the file)")
    c.add_argument("--dump-dir", help="write the IR before and after every pass (00-torch.mlir, 01-raise_torch.mlir, ...)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_compile)

    r = sub.add_parser("run", help="run an artifact on text or token ids", description=
                       "Run a host artifact. Inputs shorter than the compiled sequence length are padded and "
                       "masked by bertc.",
                       epilog="examples:\n  bertc run minilm.bertc --text \"a gripping, funny film\"\n"
                              "  bertc run minilm.bertc --input-ids ids.npy --attention-mask mask.npy "
                              "--output out.npz", formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("artifact", help="artifact folder from `bertc compile`")
    r.add_argument("--text", help="a sentence, tokenized with the tokenizer saved in the artifact")
    r.add_argument("--input-ids", help=".npy of int token ids, [batch, seq] or [seq]")
    r.add_argument("--attention-mask", help=".npy of 0/1, same shape as the ids (default: all ones)")
    r.add_argument("--token-type-ids", help=".npy of token types (default: zeros)")
    r.add_argument("--output", help="write every output to this .npz")
    r.add_argument("--threads", type=int, default=1, help="worker threads (default: 1)")
    r.set_defaults(func=_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BertcError as e:
        print(f"bertc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bertc: interrupted; nothing was left half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
