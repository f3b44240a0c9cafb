"""The ``bertc`` command line.

    bertc compile MODEL --target host -o NAME.bertc [--seq-len 128 | --max-seq-len 512] [--batch 1]
    bertc run NAME.bertc --text "a gripping, funny film"
    bertc run NAME.bertc --input-ids ids.npy [--attention-mask m.npy] [--token-type-ids t.npy] --output out.npz
    bertc run|bench NAME.bertc --device qemu|adb[:SERIAL] [--threads N] [--cores 4-7]
    bertc toolchains
    bertc prune MODEL --task rt-sentiment SPEC -o OUT
    bertc search -o OUT [--teacher MODEL] [--latency-budget 1/3] [--resume]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .argtypes import at_least
from .errors import BertcError, DeviceUnavailable
from .sparsity import SPEC_HELP

MODEL_HELP = """MODEL is one of:
  a Hugging Face model folder   (config.json + model.safetensors / pytorch_model.bin; its
                                 tokenizer is kept in the artifact for `bertc run --text`)
  a torch.export program        (.pt2, from torch.export.save)
  a TorchScript archive         (torch.jit.trace(model, (ids, mask), strict=False) of a
                                 transformers model, saved with torch.jit.save; its
                                 inputs in the order input_ids,
                                 attention_mask, token_type_ids; converted with torch.export)
  a .pt state dict with config  (torch.save({'config': cfg.to_dict(), 'state_dict': sd}, PATH),
                                 or a plain state dict with config.json beside it / --config)
A pickled whole module runs code when loaded and is refused unless --trust-pickle is given.

Families (transformers' configs as the checkpoints ship them; the README's "Model families" table says what
each fuses): BERT, RoBERTa (XLM-R, CamemBERT, Data2VecText), DistilBERT, ALBERT, ELECTRA, ERNIE, MegatronBERT,
BigBird (full attention), MPNet, MobileBERT, DeBERTa v1 / v2 / v3, ModernBERT, RoFormer, ESM, NomicBERT, EuroBERT,
ConvBERT. Another op is one error naming it, its module and source line."""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error printed as one `bertc: error:` line like every other error."""

    def error(self, message: str):
        self.exit(2, f"bertc: error: {message}; see `{self.prog} --help`\n")


def _compile(args: argparse.Namespace) -> int:
    from . import compile as compile_model  # the facade: it reads --calibrate task:NAME

    if args.seq_len is not None and args.max_seq_len is not None:
        raise BertcError(f"give --seq-len (one length, shorter inputs padded to it) or --max-seq-len (every length "
                         f"up to it, each at its own cost), not both: --max-seq-len {args.max_seq_len} alone")
    t = time.perf_counter()
    art = compile_model(args.model, target=args.target, seq_len=args.seq_len, max_seq_len=args.max_seq_len,
                        batch=args.batch, out=args.output,
                        trust_pickle=args.trust_pickle, config=args.config, dump_dir=args.dump_dir,
                        progress=not args.quiet, dtype=args.dtype, prune=args.prune_patterns,
                        force_sparse=args.force, fallback=args.fallback, calibrate=args.calibrate)
    rep = art.report
    mem = rep["memory"]
    print(f"wrote {art.path} in {time.perf_counter() - t:.1f} s: target {args.target}, batch {args.batch}, "
          f"{f'lengths 1..{art.manifest.max_seq_len}' if art.manifest.dynamic else f'seq {art.manifest.seq_len}'}; weights {mem['weights_bytes'] / 2**20:.1f} MiB, arena {mem['arena_bytes'] / 2**20:.2f} MiB; "
          f"{rep['fusion']['attention']} fused attention blocks")
    tok, head = rep.get("tokenizer"), rep.get("head")
    if tok is not None:  # what the artifact does with text, so that nobody has to open report.json to learn it
        text = (f"text in: {tok['kind']} tokenizer.bin ({tok['vocab_size']} tokens, texts cut to {tok['max_length']})"
                if tok["compiled"] else f"text in on the host only (transformers): {tok['why']}")
        answer = "" if head is None else (
            f"; head: {head['kind']} -> {', '.join(head['outputs'])}" + (f" ({len(head['labels'])} labels)"
                                                                        if head["labels"] else "")
            if head["compiled"] else f"; no head: {head['why']}")
        print(text + answer)
    sp = rep.get("sparsity")
    if sp:
        print(f"pruned {sp['pruned_fraction']:.0%} of the pruned linears' weights; "
              f"{sp['sparse_matrices']} of {len(sp['matrices'])} matrices stored sparse (rates: {sp['rates']}):")
        for row in sp["matrices"]:
            gain = f"expected {row['expected_gain']:.2f}x" if row["expected_gain"] else "no measured rate"
            print(f"  {'+'.join(row['weights']) or 'constant'} {row['shape']}: {row['pattern']} keeps "
                  f"{row['density']:.0%}, {row['format']} {row['dtype']} ({gain})")
    return 0


def _load_ids(path: str | None, name: str) -> np.ndarray | None:
    if path is None:
        return None
    try:
        return np.load(path)
    except (OSError, ValueError, EOFError) as e:
        raise BertcError(f"cannot read {name} from '{path}': {e} (expected a .npy of integers)") from None


def _utf8_text(text: str) -> str:
    """--text as the user typed it; argv bytes that are not UTF-8 arrive as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        byte = ord(text[e.start]) - 0xDC00 if 0xDC80 <= ord(text[e.start]) <= 0xDCFF else None
        what = f"byte 0x{byte:02x}" if byte is not None else f"character U+{ord(text[e.start]):04X}"
        raise BertcError(f"--text is not valid UTF-8 ({what} at position {e.start}); pass the text in UTF-8 "
                         "(e.g. convert it with `iconv -t UTF-8`), or token ids with --input-ids") from None
    return text


def _texts(args: argparse.Namespace, batch: int) -> list[str]:
    texts = [_utf8_text(t) for t in args.text]
    if len(texts) != batch:
        raise BertcError(f"--text was given {len(texts)} time(s), but {args.artifact} was compiled for a batch of "
                         f"{batch}: give --text once per sentence ({batch}), or recompile with --batch {len(texts)}")
    return texts


def _warn_cut(args: argparse.Namespace, counts: list[int | None], seq_len: int, flag: str, why: str = "") -> None:
    """A warning per text longer than the compiled length; a count of None: longer, by how much not known (the
    device said only that it cut the text)."""
    for i, n in enumerate(counts):
        if n is None or n > seq_len:
            which = f"--text #{i + 1}" if len(counts) > 1 else "--text"
            print(f"bertc: warning: {which} is {n if n is not None else f'more than {seq_len}'} tokens, cut to the "
                  f"first {seq_len} " + (why or f"({args.artifact} was compiled with {flag} {seq_len}); compile with "
                                               f"a larger {flag} to use more of it"), file=sys.stderr)


def _run_text(model, args: argparse.Namespace, flag: str):
    """--text through the artifact's own C tokenizer (tokenizer.bin): in this process for a host artifact, on
    the device (bertc_run --text) for one run there. (outputs, ids of the batch as run, ms)."""
    texts = _texts(args, model.manifest.batch)
    t = time.perf_counter()
    out, info = model.run_text(texts)
    ms = (time.perf_counter() - t) * 1e3
    cap = model.text_max_tokens
    why = "" if cap == model.seq_len else "(its sentence-transformers max_seq_length, as sentence-transformers cuts it)"
    count = getattr(model, "count_tokens", None)  # a device says only that it cut a text, not by how much
    _warn_cut(args, [len(row["ids"]) if not row["cut"] else count(text) if count else None
                     for text, row in zip(texts, info)], cap, flag, why)
    longest = max(len(row["ids"]) for row in info)
    return out, np.array([row["ids"] + [0] * (longest - len(row["ids"])) for row in info]), ms, \
        [len(row["ids"]) for row in info]


def _tokenize(args: argparse.Namespace, seq_len: int, flag: str = "--seq-len", batch: int = 1):
    """--text (once per sentence of the batch) with the artifact's tokenizer folder and transformers, for an
    artifact whose tokenizer is of a kind not compiled into tokenizer.bin yet: each cut to the compiled length
    (``flag``'s) with a warning when longer; padded only to the longest of them (a --seq-len artifact pads
    that to its length, a --max-seq-len one runs it at that length)."""
    texts = _texts(args, batch)
    tok_dir = Path(args.artifact) / "tokenizer"
    if not tok_dir.is_dir():
        raise BertcError(f"{args.artifact} has no tokenizer (the model was not compiled from a folder with one); "
                         "pass --input-ids instead")
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # its "longer than the maximum" note: ours below says what happens
    try:
        counts = [len(ids) for ids in tok(texts)["input_ids"]]
    finally:
        transformers.logging.set_verbosity(level)
    _warn_cut(args, counts, seq_len, flag)
    enc = tok(texts, padding="longest", truncation=True, max_length=int(seq_len), return_tensors="np")
    return enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")


def _check_text_flags(args: argparse.Namespace) -> None:
    if args.input_ids is not None:
        raise BertcError("give either --text or --input-ids, not both (--text is tokenized with the artifact's "
                         "tokenizer; --input-ids are ids tokenized already)")
    extra = [f for f, v in (("--attention-mask", args.attention_mask), ("--token-type-ids", args.token_type_ids))
             if v is not None]
    if extra:
        raise BertcError(f"{' and '.join(extra)} {'go' if len(extra) > 1 else 'goes'} with --input-ids; --text makes "
                         f"its own from the tokenizer: leave out {' and '.join(extra)}")


def _inputs(args: argparse.Namespace, seq_len: int, flag: str = "--seq-len", batch: int = 1):
    """(ids, mask, types) from --text (the artifact's tokenizer) or from .npy files."""
    if args.text is not None:
        _check_text_flags(args)
        return _tokenize(args, seq_len, flag, batch)
    if args.input_ids is not None:
        return (_load_ids(args.input_ids, "--input-ids"), _load_ids(args.attention_mask, "--attention-mask"),
                _load_ids(args.token_type_ids, "--token-type-ids"))
    raise BertcError("give the input: --text \"...\" or --input-ids ids.npy")


def _output_path(name: str) -> Path:
    """The .npz that --output NAME will write (np.savez adds .npz), checked before anything runs."""
    path = Path(name if name.endswith(".npz") else name + ".npz")
    folder = path.parent
    if Path(name).is_dir() or path.is_dir():
        raise BertcError(f"--output {name}: '{name}' is a folder; give a file name such as {Path(name) / 'out.npz'}")
    if not folder.is_dir():
        raise BertcError(f"--output {name}: the folder '{folder}' does not exist; create it first or write elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise BertcError(f"--output {name}: cannot write '{path}' (permission denied); choose a folder you can "
                         "write to")
    return path


def _run(args: argparse.Namespace) -> int:
    from .api import load

    output = _output_path(args.output) if args.output else None
    model = load(args.artifact, threads=args.threads, device=args.device, cores=args.cores, fallback=args.fallback)
    if args.verify:
        import json

        from .api import open_artifact, verify

        art = open_artifact(args.artifact)  # its golden files, whether the device or the CPU build ran them
        result = verify(model, art.manifest, art.path)
        where = getattr(model, "device_name", None) or getattr(getattr(model, "device", None), "name", "")
        print(json.dumps({"artifact": str(art.path), "device": where, **result}, indent=2))
        return 0
    flag = "--max-seq-len" if model.manifest.dynamic else "--seq-len"
    if args.text is not None and (Path(args.artifact) / "tokenizer.bin").exists():
        _check_text_flags(args)
        out, ids, ms, lengths = _run_text(model, args, flag)
    else:
        ids, mask, types = _inputs(args, model.seq_len, flag, model.manifest.batch)
        t = time.perf_counter()
        out = model(ids, mask, types)
        ms = (time.perf_counter() - t) * 1e3
        rows = np.asarray(ids).reshape(-1, np.asarray(ids).shape[-1])
        lengths = list(np.asarray(mask).reshape(rows.shape).sum(1)) if mask is not None else [rows.shape[1]] * len(rows)
    if output is not None:
        try:
            np.savez(output, **out)
        except OSError as e:
            raise BertcError(f"--output {args.output}: cannot write '{output}': {e.strerror or e}") from None
    where = getattr(model, "device", None)
    how = f" on {where.name}" if where is not None else ""
    note = " (emulated: the time means nothing)" if where is not None and where.emulated else ""
    tokens = f"{ids.shape[0]} sentences of {ids.shape[-1]} tokens" if ids.ndim == 2 and ids.shape[0] > 1 \
        else f"{ids.shape[-1]} tokens"
    print(f"ran {args.artifact}{how} on {tokens} with {args.threads} thread(s) in {ms:.2f} ms{note}")
    for name, arr in out.items():
        print(f"  {name}: shape {list(arr.shape)}, first values {np.array2string(arr.reshape(-1)[:4], precision=4)}")
    labels = getattr(model, "labels", [])
    for i, row in enumerate(out.get("probabilities", []) if labels else []):  # a classifier's answer
        which = f" (--text #{i + 1})" if len(out["probabilities"]) > 1 else ""
        if row.ndim == 1:
            print(f"  label{which}: {labels[int(np.argmax(row))]} with probability {float(np.max(row)):.4f}")
        else:  # a token classifier: the label of each real token
            print(f"  token labels{which}: " + " ".join(labels[int(np.argmax(q))] for q in row[: int(lengths[i])]))
    if output is not None:
        print(f"  saved to {output}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from .device import DeviceModel, format_op_table

    model = DeviceModel(args.artifact, device=args.device, threads=args.threads, cores=args.cores)
    if args.seq is not None and (args.text is not None or args.input_ids is not None):
        raise BertcError("--seq sets the length of the synthetic input; with --text or --input-ids the input has "
                         "its own length: leave out --seq")
    if args.lengths is not None:
        return _bench_lengths(model, args)
    if args.text is None and args.input_ids is None:
        seq = args.seq or (min(128, model.seq_len) if model.manifest.dynamic else model.seq_len)
        ids = np.full((model.manifest.batch, seq), 101, np.int64)  # any valid id
        mask = types = None
    else:
        ids, mask, types = _inputs(args, model.seq_len, batch=model.manifest.batch)
    try:
        report = model.bench(ids, mask, types, runs=args.runs, warmup=args.warmup)
    except DeviceUnavailable as e:  # a GPU artifact on a machine without the device: its CPU build, if asked
        from .api import cpu_fallback

        cpu = cpu_fallback(Path(args.artifact), model.manifest, e, args.fallback)
        model = DeviceModel(cpu, device=args.device, threads=args.threads, cores=args.cores)
        report = model.bench(ids, mask, types, runs=args.runs, warmup=args.warmup)
    report.pop("outputs", None)
    if report["emulated"]:
        report["note"] = "emulated CPU: these timings check that it runs, they say nothing about speed"
    print(json.dumps(report, indent=2))
    if args.top:
        print(format_op_table(report, args.top), file=sys.stderr)
    return 0


def _bench_lengths(model, args: argparse.Namespace) -> int:
    """bertc bench --lengths: the latency of a synthetic input at each length, JSON on stdout, a table on
    stderr. A --max-seq-len artifact runs each at its own cost; a --seq-len one pads each to its length."""
    import json

    if args.seq is not None or args.text is not None or args.input_ids is not None:
        raise BertcError("--lengths times synthetic inputs of each length: leave out --seq, --text and --input-ids")
    lengths = _length_list(args.lengths, "--lengths")
    longest = model.manifest.seq_len
    if max(lengths) > longest:
        raise BertcError(f"--lengths {args.lengths}: every length must be in 1..{longest}, the longest "
                         f"{args.artifact} takes; recompile with a larger --max-seq-len for longer ones")
    rows = []
    for n in lengths:
        r = model.bench(np.full((model.manifest.batch, n), 101, np.int64), runs=args.runs, warmup=args.warmup)
        rows.append({"length": n, **{k: r[k] for k in ("p50_ms", "p90_ms", "min_ms", "mean_ms", "quiet_ms") if k in r}})
    print(json.dumps({"artifact": args.artifact, "dynamic": model.manifest.dynamic, "threads": args.threads,
                      "device": r["device"], "lengths": rows}, indent=2))
    how = "each at its own length" if model.manifest.dynamic else f"each padded to the compiled {longest}"
    quiet = all("quiet_ms" in row for row in rows)  # the median of the quietest 10 ms of runs (bertc_run.c)
    print(f"{'length':>8} {'p50 ms':>9}" + (f" {'quiet ms':>9}" if quiet else "") + f"   ({how})", file=sys.stderr)
    for row in rows:
        print(f"{row['length']:>8} {row['p50_ms']:>9.3f}" + (f" {row['quiet_ms']:>9.3f}" if quiet else ""),
              file=sys.stderr)
    return 0


def _estimate(args: argparse.Namespace) -> int:
    import json

    from .cost import estimate, estimate_lengths, format_lengths, format_table

    given = [f for f, v in (("--seq-len", args.seq_len), ("--lengths", args.lengths),
                            ("--lengths-from", args.lengths_from)) if v is not None]
    if len(given) > 1:
        raise BertcError(f"{' and '.join(given)}: give one (--seq-len prices one length, --lengths a list of them, "
                         "--lengths-from the lengths of real sentences)")
    if args.tokenizer is not None and args.lengths_from is None:
        raise BertcError("--tokenizer tokenizes the sentences of --lengths-from; without it leave --tokenizer out")
    if args.lengths is None and args.lengths_from is None:
        est = estimate(args.model, target=args.target, threads=args.threads, seq_len=args.seq_len or 128,
                       batch=args.batch, prune=args.prune_patterns, profile=args.profile, dtype=args.dtype,
                       handoff_us=args.handoff_us)
        print(json.dumps(est.to_json(), indent=2) if args.json else format_table(est, top=args.top))
        return 0
    if args.lengths is not None:
        lengths, source = _length_list(args.lengths, "--lengths"), "--lengths"
    else:
        lengths, source = _lengths_from(args)
    le = estimate_lengths(args.model, lengths, source, target=args.target, threads=args.threads, batch=args.batch,
                          prune=args.prune_patterns, profile=args.profile, progress=sys.stderr.isatty(),
                          dtype=args.dtype, handoff_us=args.handoff_us)
    print(json.dumps(le.to_json(), indent=2) if args.json else format_lengths(le))
    return 0


def _length_list(text: str, flag: str) -> list[int]:
    """N,N,... as whole numbers of at least 1, or a clear error."""
    try:
        lengths = [int(x) for x in text.split(",")]
    except ValueError:
        raise BertcError(f"{flag} {text}: expected whole numbers separated by commas, e.g. 8,16,27,64") from None
    if min(lengths) < 1:
        raise BertcError(f"{flag} {text}: every length must be at least 1 token")
    return lengths


def _tokenizer_of(model: str) -> Path | None:
    """MODEL's folder (or a config.json's) when it holds a tokenizer."""
    folder = Path(model) if Path(model).is_dir() else Path(model).parent
    files = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
    return folder if any((folder / f).is_file() for f in files) else None


def _lengths_from(args: argparse.Namespace) -> tuple[list[int], str]:
    """The token count of each sentence of --lengths-from (task:NAME's dev split, or a UTF-8 text file with one
    input per line), tokenized with --tokenizer or the tokenizer beside MODEL."""
    spec = args.lengths_from
    tok_dir = Path(args.tokenizer) if args.tokenizer else _tokenizer_of(args.model)
    if tok_dir is None:
        raise BertcError(f"--lengths-from tokenizes its sentences, and {args.model} has no tokenizer beside it: pass "
                         "--tokenizer FOLDER (a model folder with tokenizer files)")
    if spec.startswith("task:"):
        from .search.tasks import load_task

        task = load_task(spec[len("task:"):])
        texts, source = [text for text, _ in task.dev], f"the {task.name} dev split"
    else:
        path = Path(spec)
        if not path.is_file():
            raise BertcError(f"--lengths-from {spec}: no such file; give task:rt-sentiment (a task's dev split) or "
                             "a UTF-8 text file with one input per line")
        try:
            texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as e:
            raise BertcError(f"--lengths-from {spec}: not UTF-8 text (byte {e.start}); convert it, e.g. with "
                             "`iconv -t UTF-8`") from None
        if not texts:
            raise BertcError(f"--lengths-from {spec}: the file has no non-empty line; put one input per line")
        source = str(path)
    import transformers

    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    except (OSError, ValueError) as e:
        raise BertcError(f"--tokenizer {tok_dir}: cannot load a tokenizer from it ({e})") from None
    from .search.lengths import token_counts

    lengths = token_counts(tok, texts)
    return lengths, f"{source} ({len(texts)} inputs, tokenized with {tok_dir})"


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate, check_profile, cross, format_cross, format_quality, measurements_path, write_json

    try:
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        raise BertcError(f"--threads {args.threads}: expected a comma-separated list of thread counts of at least 1, "
                         "such as 1,2")
    if args.cross:
        print(format_cross(cross(args.cross, args.target, progress=not args.quiet)))
        return 0
    if args.check:
        if args.output and not Path(args.output).resolve().parent.is_dir():  # before minutes of timing
            raise BertcError(f"-o {args.output}: its folder does not exist")
        q = check_profile(args.check, args.target, args.device, threads, args.holdout, args.runs, args.seed,
                          progress=not args.quiet, int8=args.int8 or None)
        print(format_quality(q))
        if args.output:  # its timings kept, for --cross
            write_json(Path(args.output), {"checked": args.check, "quality": q})
            print(f"\nwrote {args.output}: this hour's held-out timings, for `bertc calibrate --cross`")
        return 0 if not q["goal_misses"] else 1
    out = args.output or f"bertc-profile-{args.target}-{(args.device or 'host').replace(':', '-')}.json"
    _profile, q = calibrate(args.target, args.device, threads, args.grid, args.holdout, out, runs=args.runs,
                            seed=args.seed, progress=not args.quiet, refit=args.refit, int8=args.int8,
                            retime=not args.no_retime)
    print(format_quality(q))
    kept = "" if args.refit else f" (and its measurements, {measurements_path(out)}, for --refit)"
    print(f"\nwrote {out}{kept}: use it with `bertc estimate ... --profile {out}` and "
          f"`bertc search ... --profile {out}`")
    return 0


def _toolchains(args: argparse.Namespace) -> int:
    from .toolchain import describe_toolchains

    print(describe_toolchains())
    return 0


DEVICE_HELP = ("where bertc_run runs: host (this machine), qemu (qemu-aarch64, for ARM64 artifacts: checks "
               "function only), adb or adb:SERIAL (a phone). Default: host for host artifacts, qemu for ARM64 ones")


def _add_io(r: argparse.ArgumentParser) -> None:
    r.add_argument("artifact", help="artifact folder from `bertc compile`")
    r.add_argument("--text", action="append", help="a sentence (UTF-8), tokenized with the tokenizer saved in the "
                   "artifact (tokenizer.bin; transformers on the host for a kind not compiled yet); a longer one is "
                   "cut to the compiled length, with a warning. An artifact compiled with "
                   "--batch B takes it B times: the sentences are padded to the longest of them (masked), and a "
                   "--max-seq-len artifact runs them at that length")
    r.add_argument("--input-ids", help=".npy of int token ids, [batch, seq] or [seq] (instead of --text)")
    r.add_argument("--attention-mask", help=".npy of 0/1, same shape as the ids (default: all ones)")
    r.add_argument("--token-type-ids", help=".npy of token types (default: zeros)")
    r.add_argument("--threads", type=at_least(1), default=1, help="worker threads (default: 1)")
    r.add_argument("--device", help=DEVICE_HELP)
    r.add_argument("--cores", help="pin bertc_run to these cores, e.g. 4-7 (a phone's big cores) or 0,2")
    r.add_argument("--fallback", choices=["cpu"], help="GPU artifacts: when there is no usable Vulkan device, run "
                   "the CPU build the artifact carries (compiled with --fallback cpu)")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="bertc", description="Compile BERT-family models into small C artifacts "
                                "and run them.", formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Run `bertc COMMAND --help` for each command's options.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile a model into an artifact folder", description=
                       "Compile MODEL: torch.export, torch-mlir import, bertc passes, C build. The artifact folder "
                       "holds manifest.json, weights.bin, the library, bertc_run, src/ and report.json.",
                       epilog=MODEL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("model", help="model folder, .pt2, TorchScript archive or .pt state dict (see below)")
    c.add_argument("--target", default="host", help="where it will run: host (this machine), android-arm64 "
                   "(a phone's CPU, NEON), linux-arm64, vulkan (a Linux Vulkan device, e.g. a GPU or lavapipe), "
                   "android-vulkan (a phone's GPU) (default: host; `bertc toolchains` shows the compilers)")
    c.add_argument("-o", "--output", help="artifact folder to write (default: MODEL_NAME.bertc)")
    c.add_argument("--seq-len", type=at_least(1), help="one compiled sequence length: every input runs at "
                   "this cost, shorter ones padded and masked. Default: neither flag compiles every length up to "
                   "the model's max_position_embeddings (at most 512), as --max-seq-len does; a TorchScript archive "
                   "or a .pt2, whose shapes were fixed when saved, gets --seq-len 128")
    c.add_argument("--max-seq-len", type=at_least(2), metavar="N", help="compile for every length from 1 to N "
                   "instead of one: each input runs at the cost of its own length (the GEMMs on its rows, attention "
                   "over its tokens; no padding to N), and its outputs have its length. N only bounds the input and "
                   "sizes the memory. Not with --seq-len. Default (neither flag): N = the model's max_position_embeddings, "
                   "at most 512")
    c.add_argument("--batch", type=at_least(1), default=1, help="compiled batch size (default: 1)")
    c.add_argument("--dtype", choices=["fp32", "fp16", "int8"], default="fp32", help="GEMM precision: fp16 stores "
                   "the weights as half floats and multiplies on ARMv8.2-A FP16 arithmetic (ARM64 targets) or on the "
                   "GPU's shaderFloat16 (GPU targets); int8 stores them as int8 with a scale per output feature: on "
                   "CPU targets each GEMM's input is quantized per row at run time, over the row's range with a zero "
                   "point (VNNI or AVX2 integer kernels on x86, where AVX2 without VNNI keeps the weights to 7 bits; "
                   "SDOT on ARM64, which needs the ARMv8.2-A dot product: Cortex-A55/A75 and later; SMMLA where "
                   "the phone's CPU has ARMv8.6-A i8mm, chosen at run time); on GPU targets int8 is weight-only "
                   "(the shader widens the weights to fp32, input and sums fp32; the device needs "
                   "storageBuffer8BitAccess); "
                   "embeddings, layer norm and attention stay fp32 (report.json's precision). Default: fp32")
    c.add_argument("--calibrate", metavar="SOURCE", help="with --dtype int8: one static scale per GEMM input, "
                   "chosen ahead of time, instead of each row's range at run time: the fp32 model is run over "
                   "SOURCE's texts (tokenized with the model's own tokenizer) and each GEMM input's largest |value| "
                   "becomes its scale; larger values saturate at run time. A GEMM whose static scale leaves less "
                   "than 28 dB between its input and the rounding noise (on MiniLM: the FFN's) stays per row. "
                   "SOURCE: task:NAME (the task's first 256 train texts, e.g. task:rt-sentiment) or a UTF-8 text "
                   "file, one text per line. report.json's precision says which GEMMs are static, with their scales")
    c.add_argument("--prune-patterns", metavar="SPEC", help="prune the encoder's linear weights in blocks by "
                   "magnitude and store them sparse where the target's sparse kernel beats dense at that density "
                   "(report.json lists each matrix's choice and expected gain). " + SPEC_HELP.replace("%", "%%")
                   + ". `bertc prune` recovers the accuracy first")
    c.add_argument("--fallback", choices=["cpu"], help="GPU targets: also build the CPU code (host for vulkan, "
                   "android-arm64 for android-vulkan) into cpu/, for `bertc run --fallback cpu` on a machine "
                   "without a usable Vulkan device")
    c.add_argument("--force", action="store_true", help="with --prune-patterns: store every pruned matrix "
                   "sparse, even where dense is faster")
    c.add_argument("--config", help="config.json for a state dict or .pt2 saved without one")
    c.add_argument("--trust-pickle", action="store_true", help="allow loading a pickled whole module "
                   "(runs code from the file)")
    c.add_argument("--dump-dir", help="write the IR before and after every pass (00-torch.mlir, 01-raise_torch.mlir, ...)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_compile)

    r = sub.add_parser("run", help="run an artifact on text or token ids", description=
                       "Run an artifact: a host one in this process, an ARM64 one under qemu-aarch64 or on a "
                       "phone over adb. Inputs shorter than the compiled sequence length are padded and "
                       "masked by bertc. --text is tokenized by the artifact's own C tokenizer (tokenizer.bin: "
                       "WordPiece and byte-level BPE), on the device itself for a device run; an artifact compiled "
                       "from a classifier prints its label and probability (or each token's label), one from a "
                       "sentence-transformers folder outputs its sentence_embedding.",
                       epilog="examples:\n  bertc run minilm.bertc --text \"a gripping, funny film\"\n"
                              "  bertc run my-classifier.bertc --text \"dull\"          # label: rotten with ...\n"
                              "  bertc run minilm.bertc --input-ids ids.npy --attention-mask mask.npy "
                              "--output out.npz\n  bertc run minilm-arm64.bertc --device adb --threads 4 "
                              "--cores 4-7 --text \"...\"", formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_io(r)
    r.add_argument("--output", metavar="FILE.npz", help="write every output to this .npz (.npz is added to a name "
                   "without it, as numpy does; the folder must exist); checked before the run")
    r.add_argument("--verify", action="store_true", help="GPU artifacts: run the golden inputs stored at compile "
                   "time on this device and compare with PyTorch's outputs; fails when the max error is above the "
                   "artifact's tolerance (mobile GPU drivers do compute wrong results)")
    r.set_defaults(func=_run)

    b = sub.add_parser("bench", help="time an artifact with bertc_run: p50/p90, first run, peak RSS (JSON)",
                       description="Benchmark an artifact with its bertc_run tool on a device and print JSON: "
                       "p50/p90/min latency, first-run and open time, peak RSS, the implementation of "
                       "each kernel (ref, neon, avx2), and per-op times: \"ops\" lists every op in execution "
                       "order (name and result shape, kernel, ms and p50_ms: mean and median over the timed runs), "
                       "\"by_kernel\" sums them per kernel. Without --text / --input-ids it runs a full-length sequence.",
                       epilog="examples:\n  bertc bench minilm.bertc --threads 2\n"
                       "  bertc bench minilm.bertc --top 10 2>ops.txt    # JSON on stdout, op table on stderr\n"
                       "  bertc bench minilm-arm64.bertc --device adb:R58M123 --threads 4 --cores 4-7",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_io(b)
    b.add_argument("--runs", type=at_least(1), default=30, help="timed runs (default: 30)")
    b.add_argument("--warmup", type=at_least(0), default=5, help="untimed runs first (default: 5)")
    b.add_argument("--seq", type=at_least(1), help="sequence length of the synthetic input (default: a --seq-len "
                   "artifact's length; for one that runs every length up to N, 128, or N if smaller)")
    b.add_argument("--lengths", metavar="L1,L2,..", help="time a synthetic input at each of these lengths, e.g. "
                   "8,16,27,64,128, and print the latency per length (an artifact compiled with --max-seq-len runs "
                   "each at its own cost; one compiled with --seq-len pads each to its length)")
    b.add_argument("--top", type=at_least(1), metavar="N", help="also print a table of the N most expensive ops and the "
                   "time per kernel on stderr (stdout stays JSON)")
    b.set_defaults(func=_bench)

    t = sub.add_parser("toolchains", help="list the C toolchains found and what each target uses",
                       description="List the C toolchains bertc looks for (host cc, Android NDK, zig, "
                       "aarch64-linux-gnu-gcc), whether each was found, and which one each target will use.")
    t.set_defaults(func=_toolchains)

    e = sub.add_parser("estimate", help="the cost model: latency per op and in total, peak memory (no build)",
                       description="Estimate MODEL's latency on a target without generating code: the compiler "
                       "runs up to memory planning (fusion, packing, sparsity included) and a target profile prices "
                       "every op. CONFIG (a config.json of a BERT model) takes the fast path: no weights, about "
                       "0.2 s for a BERT-base-sized candidate.",
                       epilog="examples:\n  bertc estimate config.json --target host --threads 2\n"
                              "  bertc estimate minilm/ --target android-arm64 --threads 4 --prune-patterns 16x1@0.25\n"
                              "  bertc estimate config.json --profile my-phone.json --json\n"
                              "  bertc estimate config.json --dtype int8 --threads 2\n"
                              "  bertc estimate minilm/config.json --lengths 1,8,27,64,128\n"
                              "  bertc estimate minilm/config.json --lengths-from task:rt-sentiment --threads 2\n"
                              "\nprofiles: host "
                              "(calibrated on the development host), cortex-a76 (an ARM64 phone big core, from "
                              "public specs), vulkan-mobile (an Adreno 640-class GPU, from public specs); "
                              "`bertc calibrate` measures your own",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("model", metavar="MODEL|CONFIG", help="a config.json, or any MODEL `bertc compile` takes")
    e.add_argument("--target", default="host", help="host, android-arm64 or linux-arm64 (default: host)")
    e.add_argument("--threads", type=at_least(1), default=1, help="threads the artifact will run with (default: 1)")
    e.add_argument("--seq-len", type=at_least(1), help="sequence length (default: 128)")
    e.add_argument("--lengths", metavar="N,N", help="price each of these lengths (what a --max-seq-len artifact "
                   "costs at each), e.g. 8,27,128")
    e.add_argument("--lengths-from", metavar="task:NAME|FILE", help="price real inputs, each at its own length: "
                   "task:rt-sentiment (its dev split) or a UTF-8 text file with one input per line; prints the "
                   "cost per length and the mean, p50 and p90 per input")
    e.add_argument("--tokenizer", metavar="FOLDER", help="tokenizer for --lengths-from (default: the one in MODEL's "
                   "folder, or beside its config.json)")
    e.add_argument("--batch", type=at_least(1), default=1, help="batch size (default: 1)")
    e.add_argument("--prune-patterns", metavar="SPEC", help="price the model pruned with this SPEC (see "
                   "`bertc compile --help`)")
    e.add_argument("--dtype", choices=["fp32", "fp16", "int8"], default="fp32", help="GEMM weights as `bertc "
                   "compile --dtype` stores them; int8 GEMMs are priced from a profile's int8 fit, or at twice the "
                   "fp32 GEMMs' rate where it has none (default: fp32)")
    e.add_argument("--profile", help="a profile file from `bertc calibrate`, or a built-in name (default: the "
                   "target's built-in profile; for host, the one of host-avx2 / host-avx512 fitted on the CPU most "
                   "like this one)")
    e.add_argument("--handoff-us", type=float, metavar="US", help="price each op split across --threads at this "
                   "hand-off a call (microseconds: what waking the other threads and the barrier cost now, which "
                   "moves by the hour on a shared VM; `bertc_run --bench` prints it as \"handoff_us\"). Default: "
                   "the hand-off measured while the profile's grid was timed")
    e.add_argument("--top", type=at_least(1), help="show only the N most expensive ops")
    e.add_argument("--json", action="store_true", help="print the estimate as JSON instead of a table")
    e.set_defaults(func=_estimate)

    k = sub.add_parser("calibrate", help="measure the kernels on a device and fit the cost model's profile",
                       description="Compile a grid of BERT encoders (1-10 layers, dense and pruned), time every op "
                       "with bertc_run on the device at lengths 1-256 and each thread count, fit the cost of each "
                       "kind of kernel per thread count, then check the fit on random held-out configurations "
                       "(layers 1-12, hidden 128-768, sequence 1-256 log-uniform, so short text is as present as "
                       "long, half of them pruned), each compiled and timed end to end. Grid and held-out set are "
                       "each timed in two passes, minutes apart, and each point counts at its faster pass: a busy "
                       "minute on a shared machine does not become the model; how often the passes agree is "
                       "printed as the machine's own noise, and the first grid model, timed again after the check, shows "
                       "whether the machine changed speed between the two. How much of a model's weights stays cached between runs "
                       "is chosen per machine, by how well each choice predicts the grid's models left out of the "
                       "fit. Prints the share predicted "
                       "within 10%, Spearman rank correlation and the mean absolute percentage error, per thread "
                       "count, dense and sparse, and per length band, and says whether the goal (90% within 10%, "
                       "Spearman 0.97) was met. The profile records this CPU (model, features, caches): `bertc "
                       "estimate` and `bertc search` warn when a profile is used on another.",
                       epilog="examples:\n  bertc calibrate --target host -o here.json          # 5-12 min on 2 cores\n"
                              "  bertc estimate config.json --profile here.json\n"
                              "  bertc calibrate --check here.json                   # does it still hold? (~4 min)\n"
                              "  bertc calibrate --check here.json -o later.json     # ... and keep its timings\n"
                              "  bertc calibrate --cross here.json there.json later.json   # which fit holds across hours\n"
                              "  bertc calibrate --refit here.measurements.json -o again.json   # fit again, no grid\n"
                              "  bertc calibrate --refit here.measurements.json -o here.json --no-retime  # time nothing\n"
                              "  bertc calibrate --target android-arm64 --device adb --threads 1,4 -o phone.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("--target", default="host", help="host, android-arm64 or linux-arm64 (default: host)")
    k.add_argument("--device", help="host (default) or adb / adb:SERIAL; qemu is refused: it emulates")
    k.add_argument("--threads", default="1,2", help="thread counts to calibrate, comma-separated (default: 1,2)")
    k.add_argument("--grid", choices=["small", "full"], default="full", help="the measured grid (default: full; "
                   "small is for tests: it fits nothing you should trust)")
    k.add_argument("--int8", action="store_true", help="also fit the int8 GEMMs (--dtype int8): five of the grid's "
                   "dense models again in int8 and two with int8 blocks (16x1, 8x1), and a third of the held-out set "
                   "(reported as its own group); about a fifth more time. --check follows the profile: int8 configurations where "
                   "it fitted the int8 GEMMs")
    k.add_argument("--holdout", type=at_least(1), default=30, help="held-out random configurations (default: 30)")
    k.add_argument("--runs", type=at_least(1), default=5, help="timed runs per measurement, more for a short model "
                   "(default: 5)")
    k.add_argument("--seed", type=int, default=7, help="seed of the held-out configurations (default: 7)")
    k.add_argument("--check", metavar="PROFILE", help="measure nothing but the held-out set, and report how "
                   "PROFILE (a file or a built-in name) predicts it here; exit status 1 if it misses the goal")
    k.add_argument("--refit", metavar="MEASUREMENTS", help="fit from the measurements an earlier calibration kept "
                   "(PROFILE.measurements.json) instead of timing the grid again; the held-out set is timed")
    k.add_argument("--no-retime", action="store_true", help="with --refit: time nothing, and predict the held-out "
                   "timings kept in the -o profile again (how a changed cost model does on the same timings, on a "
                   "machine too busy to time them fairly now)")
    k.add_argument("--cross", nargs="+", metavar="FILE", help="time nothing: fit each calibration's measurements "
                   "again (PROFILE.measurements.json or .gz beside each profile) and print how each fit predicts "
                   "every held-out set among FILEs (profiles, and checks kept with --check PROFILE -o FILE), timed in "
                   "other hours; names the fit that predicts the other hours best, the one to keep")
    k.add_argument("-o", "--output", help="profile file to write (default: bertc-profile-TARGET-DEVICE.json); with "
                   "--check, a file that keeps the check's held-out timings (for --cross)")
    k.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    k.set_defaults(func=_calibrate)

    from .search.cli import add_prune, add_search  # bertc prune and bertc search: the search side's commands
    add_prune(sub)
    add_search(sub)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C: every ``finally`` and staging
    folder is cleaned up, and a search is left for ``--resume``."""


def _terminate(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once; the next run cleans up
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        return args.func(args)
    except BertcError as e:
        print(f"bertc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        how = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"bertc: {how}; nothing was left half-written", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
