"""`make test-sanitize`, the model half: tiny BERTs built with the sanitizers, run on edge inputs and
from many threads. Two steps, because the runs load an ASan library into Python (ASan's runtime must
come first: LD_PRELOAD) and the build step needs torch, which is better left outside ASan:

    BERTC_EXTRA_CFLAGS="-fsanitize=address,undefined ..." python runtime/tests/sanitize_models.py build DIR
    LD_PRELOAD=$(cc -print-file-name=libasan.so) python runtime/tests/sanitize_models.py run DIR

build compiles bert.bertc (batch 1) and bert2.bertc (batch 2), seq 16, and bert2dyn.bertc (batch 2, every
length up to 16: --max-seq-len, run at the input's own length), and writes PyTorch's outputs
for each edge case to DIR/reference.npz; run checks the artifacts against them (the real tokens of
every row; a fully masked row only has to be finite), times bert2dyn with its bertc_run --bench and then runs
threads_check.py's three checks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

SEQ, VOCAB = 16, 120


def edge_cases() -> dict[str, tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """name -> (artifact, ids, mask, token types)."""
    rng = np.random.default_rng(0)

    def ids(b, s):
        return rng.integers(0, VOCAB, size=(b, s), dtype=np.int64)

    def ones(b, s):
        return np.ones((b, s), np.int64)

    padded = ones(1, SEQ)
    padded[:, 9:] = 0
    second_masked = ones(2, SEQ)
    second_masked[1] = 0
    ends = np.array([[0, VOCAB - 1] * (SEQ // 2)], np.int64)
    return {
        "seq 1": ("bert.bertc", ids(1, 1), ones(1, 1), np.zeros((1, 1), np.int64)),
        "padded tail": ("bert.bertc", ids(1, SEQ), padded, np.zeros((1, SEQ), np.int64)),
        "fully masked row": ("bert.bertc", ids(1, SEQ), np.zeros((1, SEQ), np.int64), np.zeros((1, SEQ), np.int64)),
        "ids 0 and vocab-1, token type 1": ("bert.bertc", ends, ones(1, SEQ), ones(1, SEQ)),
        "batch 2": ("bert2.bertc", ids(2, SEQ), ones(2, SEQ), np.zeros((2, SEQ), np.int64)),
        "batch 2, second row fully masked": ("bert2.bertc", ids(2, SEQ), second_masked, np.zeros((2, SEQ), np.int64)),
        "batch 2, seq 1": ("bert2.bertc", ids(2, 1), ones(2, 1), np.zeros((2, 1), np.int64)),
        "dynamic, seq 1": ("bert2dyn.bertc", ids(2, 1), ones(2, 1), np.zeros((2, 1), np.int64)),
        "dynamic, seq 7, second row fully masked": ("bert2dyn.bertc", ids(2, 7), second_masked[:, :7],
                                                    np.zeros((2, 7), np.int64)),
        "dynamic, at the bound": ("bert2dyn.bertc", ids(2, SEQ), ones(2, SEQ), ones(2, SEQ)),
    }


def build(out: Path) -> None:
    import torch
    import transformers

    import bertc

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, attn_implementation="eager")
    model = transformers.BertModel(config).eval()
    bertc.compile(model, seq_len=SEQ, out=out / "bert.bertc")
    bertc.compile(model, seq_len=SEQ, batch=2, out=out / "bert2.bertc")
    bertc.compile(model, seq_len=8, max_seq_len=SEQ, batch=2, out=out / "bert2dyn.bertc")
    refs = {}
    for name, (_, ids, mask, types) in edge_cases().items():
        with torch.no_grad():
            r = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                      token_type_ids=torch.from_numpy(types))
        refs[f"{name}/last_hidden_state"] = r.last_hidden_state.numpy()
        refs[f"{name}/pooler_output"] = r.pooler_output.numpy()
    np.savez(out / "reference.npz", **refs)
    print(f"sanitize_models: built bert.bertc, bert2.bertc and bert2dyn.bertc in {out}")


def run(out: Path) -> int:
    from bertc.runtime import CompiledModel

    refs = np.load(out / "reference.npz")
    problems = []
    models = {name: CompiledModel(out / name, threads=2) for name in ("bert.bertc", "bert2.bertc", "bert2dyn.bertc")}
    for name, (art, ids, mask, types) in edge_cases().items():
        got = models[art](ids, mask, types)
        if not all(np.isfinite(v).all() for v in got.values()):
            problems.append(f"{name}: an output is not finite")
        real = mask.astype(bool)  # tokens that are not padding; a row with none is only checked for finiteness
        hidden_err = np.abs(got["last_hidden_state"] - refs[f"{name}/last_hidden_state"])[real]
        rows = real.any(axis=1)
        pooler_err = np.abs(got["pooler_output"] - refs[f"{name}/pooler_output"])[rows]
        err = max(hidden_err.max(initial=0.0), pooler_err.max(initial=0.0))
        if err > 1e-4:
            problems.append(f"{name}: differs from PyTorch by {err:.2e}")
    for m in models.values():
        m.close()
    # bertc_run --bench, built with the same sanitizers: its quiet window and per-op medians
    art, ids = out / "bert2dyn.bertc", out / "bench_ids.bin"
    np.full(2 * 9, 7, np.int64).tofile(ids)
    r = subprocess.run([str(art / "bertc_run"), str(art), "--input-ids", str(ids), "--seq", "9", "--bench", "40"],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0 or '"quiet_ms"' not in r.stdout:
        problems.append(f"bertc_run --bench: exit {r.returncode}, {r.stderr[-400:]}")
    print(f"sanitize_models: {len(edge_cases())} edge cases, {len(problems)} problems")
    for p in problems:
        print(f"  {p}")

    import threads_check  # this folder's; run with the same sanitizers loaded

    status = 1 if problems else 0
    for check in ("same-outputs", "close-race", "c-api"):
        status |= threads_check.main([str(out / "bert2.bertc"), check, "--threads", "4", "--calls", "40"])
    return status


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("build", "run"):
        sys.exit(__doc__)
    step, folder = sys.argv[1], Path(sys.argv[2])
    sys.exit(build(folder) if step == "build" else run(folder))
