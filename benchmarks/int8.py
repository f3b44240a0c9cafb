"""int8 beside fp32 and beside ONNX Runtime's int8, in one process, interleaved (issue 19).

Runtimes (--peers):
  bertc       bertc.compile(folder, target='host'), fp32 (compare.py's)
  bertc-int8  the same with dtype='int8': int8 weights per output feature, inputs quantized per row at run time
  bertc-int8-static  the same with calibrate='task:rt-sentiment': static input scales where they keep 28 dB SQNR
                     (real-weight models only: a random one from a config has no tokenizer)
  ort-opt     ONNX Runtime after its transformer optimizer, fp32 (compare.py's)
  ort-int8    that model after onnxruntime.quantization.quantize_dynamic(weight_type=QInt8), ORT's documented
              recipe for BERT (default per_channel=False, reduce_range=False; DefaultTensorType float, which its
              shape inference asks for after the optimizer); the same session settings
  ort-int8-pc the same with per_channel=True: a scale per output feature, as bertc's weights have
  ov-int8     OpenVINO (compare.py's conversion and session settings) after nncf.quantize(model_type=TRANSFORMER),
              its documented post-training int8 for transformers: static activation scales, calibrated on the
              first 300 rt-sentiment train snippets (each padded to 128 for the fixed-length model)
  litert-int8 LiteRT (compare.py's litert_torch conversion and XNNPACK interpreter) after ai_edge_quantizer's
              dynamic_wi8_afp32 recipe: int8 weights per channel, activations quantized at run time; like
              compare.py's LiteRT, every input padded to 128 (no dynamic export works)

Accuracy (real weights only: MiniLM): each runtime's sentence embedding (the mean over the sentence's tokens,
all-MiniLM-L6-v2's pooling) against PyTorch fp32's, as a cosine, on the first --sentences rt-sentiment test
snippets, each at its own length (bertc compiled for every length, ONNX Runtime with a dynamic axis).

Task accuracy: the fine-tuned rt-sentiment teacher's test accuracy through each runtime's encoder (task_accuracy).

Speed, per --threads: compare.py's fixed workload (sequence 128, mask all ones; static artifacts), round-robin with
idle waits, the median of --runs after-idle calls; and its real-text workload (the first --timed-sentences snippets,
each at its own length: bertc dynamic, ORT with its dynamic axis), the median over sentences. Each runtime's median
is also given over bertc-int8's.

    .venv/bin/python benchmarks/int8.py                       # MiniLM, 1 and 2 threads, all 1275 test snippets
    .venv/bin/python benchmarks/int8.py --models minilm,bert-base --sentences 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import compare as C  # the peers, bundles and round-robin timing of benchmarks/compare.py
import numpy as np
import torch
import transformers as T

import bertc

PEERS = ("bertc", "bertc-int8", "bertc-int8-static", "ort-opt", "ort-int8", "ort-int8-pc", "ov-int8", "litert-int8")
CALIBRATION = 300  # rt-sentiment train snippets for OpenVINO's calibration


def convert_bertc(b: C.Bundle, rebuild: bool, dynamic: bool, dtype: str, calibrate: str | None = None) -> Path:
    suffix = ("dyn" if dynamic else f"s{C.SEQ_LEN}") + ("-static" if calibrate else "")
    path = b.cache / f"bertc-{dtype}-{suffix}-{C.bertc_sources_digest()}.bertc"
    if C._fresh(path, rebuild):
        bertc.compile(b.folder, target="host", out=path, dtype=dtype, calibrate=calibrate,
                      **({} if dynamic else {"seq_len": C.SEQ_LEN}))
    return path


def convert_ort_int8(b: C.Bundle, rebuild: bool, per_channel: bool = False) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = C.convert_ort_opt(b, rebuild, True)
    path = source.with_name(f"{source.stem}-int8{'-pc' * per_channel}.onnx")
    if C._fresh(path, rebuild):
        # shape inference stops at the optimizer's contrib ops; the fp32 default is the error's own advice
        quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, per_channel=per_channel,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return path


def convert_openvino_int8(b: C.Bundle, rebuild: bool, dynamic: bool) -> Path:
    import nncf
    import openvino as ov
    from bertc.search.tasks import load_task

    source = C.convert_openvino(b, rebuild, dynamic)
    path = source.with_name(f"{source.stem}-int8.xml")
    if C._fresh(path, rebuild):
        model = ov.Core().read_model(str(source))
        names = [p.get_any_name() for p in model.inputs]
        order = C._feed(names, b.inputs)
        tok = T.AutoTokenizer.from_pretrained(b.folder)
        data = []
        for text, _ in load_task("rt-sentiment").train[:CALIBRATION]:
            enc = tok(text, return_tensors="np", truncation=True, max_length=C.SEQ_LEN)
            x = {k: np.ascontiguousarray(enc[k], np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
            x = x if dynamic else C.pad_to(x, C.SEQ_LEN)
            data.append({n: x[k] for n, k in zip(names, order)})
        quantized = nncf.quantize(model, nncf.Dataset(data), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(data))
        ov.save_model(quantized, str(path), compress_to_fp16=False)
    return path


def convert_litert_int8(b: C.Bundle, rebuild: bool) -> Path:
    from ai_edge_quantizer import quantizer, recipe

    source = C.convert_litert(b, rebuild, False)
    path = source.with_name(f"{source.stem}-int8.tflite")
    if C._fresh(path, rebuild):
        quantizer.Quantizer(str(source), recipe.dynamic_wi8_afp32()).quantize().export_model(path, overwrite=True)
    return path


def open_all(b: C.Bundle, peers: list[str], threads: int, rebuild: bool, dynamic: bool) -> dict[str, C.Bind]:
    binds = {}
    for name in peers:
        if name.startswith("bertc"):
            path = convert_bertc(b, rebuild, dynamic, "int8" if "int8" in name else "fp32",
                                 "task:rt-sentiment" if name.endswith("-static") else None)
            binds[name] = C.open_bertc(b, path, threads)[0]
        elif name == "litert-int8":
            binds[name] = C.open_litert(b, convert_litert_int8(b, rebuild), threads)[0]
        elif name == "ov-int8":
            binds[name] = C.open_openvino(b, convert_openvino_int8(b, rebuild, dynamic), threads)[0]
        else:
            path = (convert_ort_int8(b, rebuild, name.endswith("-pc")) if name.startswith("ort-int8")
                    else C.convert_ort_opt(b, rebuild, True))
            binds[name] = C.open_ort(b, path, threads)[0]
    return binds


def accuracy(b: C.Bundle, peers: list[str], sentences: int, rebuild: bool) -> dict[str, dict[str, float]]:
    binds = open_all(b, peers, 2, rebuild, dynamic=True)
    cos: dict[str, list[float]] = {n: [] for n in peers}
    for x in C.load_sentences(sentences, b):
        with torch.inference_mode():
            ref = b.model(**{k: torch.from_numpy(v) for k, v in x.items()}).last_hidden_state.numpy()[0].mean(0)
        for name, bind in binds.items():
            e = np.asarray(bind(x)(), np.float32)[0, :x["input_ids"].shape[1]].mean(0)  # LiteRT's is padded
            cos[name].append(float(e @ ref / np.linalg.norm(e) / np.linalg.norm(ref)))
    return {n: {"mean": float(np.mean(c)), "min": float(np.min(c)), "p1": float(np.percentile(c, 1))}
            for n, c in cos.items()}


def task_accuracy(peers: list[str], sentences: int, args) -> dict[str, float]:
    """rt-sentiment test accuracy of the fine-tuned teacher (search/teacher.py; fine-tuned once, ~8 min, then
    cached) through each runtime's encoder: its [CLS] state, then the teacher's pooler and classifier in fp32
    numpy, the same head for every runtime, so that the differences are the encoders' precision alone."""
    from bertc.search.tasks import load_task
    from bertc.search.teacher import finetuned_teacher, load_classifier

    task = load_task("rt-sentiment")
    folder = finetuned_teacher(task=task.name)
    clf = load_classifier(folder, task)[0]
    pw, pb = (t.detach().numpy() for t in (clf.bert.pooler.dense.weight, clf.bert.pooler.dense.bias))
    cw, cb = (t.detach().numpy() for t in (clf.classifier.weight, clf.classifier.bias))
    b = C.load_bundle(C.ModelSpec("teacher", "the fine-tuned MiniLM teacher", folder=str(folder)), args.cache,
                      args.rebuild)
    binds = open_all(b, peers, 2, args.rebuild, dynamic=True)
    right = dict.fromkeys(["pytorch", *peers], 0)
    labels = [label for _, label in task.test[:sentences]]
    for x, label in zip(C.load_sentences(sentences, b), labels):
        with torch.inference_mode():
            cls = {"pytorch": b.model(**{k: torch.from_numpy(v) for k, v in x.items()}).last_hidden_state.numpy()}
        cls.update({name: np.asarray(bind(x)(), np.float32) for name, bind in binds.items()})
        for name, h in cls.items():
            right[name] += int(np.argmax(np.tanh(h[0, 0] @ pw.T + pb) @ cw.T + cb) == label)
    return {name: n / len(labels) for name, n in right.items()}


def speed(b: C.Bundle, peers: list[str], threads: int, args, idle: C.IdleWaiter) -> dict[str, dict[str, float]]:
    """Median ms per runtime on the fixed workload (static artifacts, sequence 128) and on real text (the first
    --timed-sentences snippets, each at its own length: dynamic artifacts, compare.py's time_per_sentence)."""
    label = f"{b.spec.name}, {C._threads(threads)}"
    runs = {n: bind(b.inputs) for n, bind in open_all(b, peers, threads, args.rebuild, dynamic=False).items()}
    torch.set_num_threads(threads)
    fixed = C.time_round_robin(runs, args.warmup, args.runs, idle, label).ms["after-idle"]
    del runs
    sentences = C.load_sentences(args.timed_sentences, b)
    refs = [np.zeros((1, x["input_ids"].shape[1], b.config.hidden_size), np.float32) for x in sentences]
    binds = open_all(b, peers, threads, args.rebuild, dynamic=True)
    torch.set_num_threads(threads)
    text = C.time_per_sentence(binds, sentences, refs, args.warmup, idle, label + ", real text").ms["after-idle"]
    return {"fixed": {n: statistics.median(ms) for n, ms in fixed.items() if ms},
            "real-text": {n: statistics.median(ms) for n, ms in text.items() if ms}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/int8.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="minilm", help="comma list of compare.py's models (default: %(default)s)")
    p.add_argument("--peers", default=",".join(PEERS), help="default: %(default)s")
    p.add_argument("--threads", default="1,2", help="comma list (default: %(default)s)")
    p.add_argument("--sentences", type=int, default=1275, help="rt-sentiment test snippets (default: all 1275)")
    p.add_argument("--no-task", dest="task", action="store_false",
                   help="skip the fine-tuned teacher's rt-sentiment accuracy (fine-tuning it the first time takes ~8 min)")
    p.add_argument("--timed-sentences", type=int, default=200, help="real-text timing: the first N snippets "
                   "(default: %(default)s)")
    p.add_argument("--no-speed", dest="speed", action="store_false", help="accuracy only, no timing")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--cache", type=Path, default=C.ROOT / "benchmarks" / ".cache")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--json", type=Path, default=C.ROOT / "benchmarks" / "int8_results.json")
    args = p.parse_args(argv)
    peers = [x for x in args.peers.split(",") if x]
    unknown = set(peers) - set(PEERS)
    if unknown or not args.models or min(args.sentences, args.timed_sentences) < 1:
        p.error(f"unknown peers {sorted(unknown)}" if unknown else "--models and --sentences must not be empty")
    T.logging.disable_progress_bar()
    idle, results, started = C.IdleWaiter(), [], time.perf_counter()
    task = task_accuracy(peers, args.sentences, args) if args.task else {}
    if task:
        print(f"\n### rt-sentiment test accuracy of the fine-tuned teacher, {args.sentences} snippets\n")
        print("| runtime | accuracy | vs PyTorch fp32 |\n|---|---|---|")
        for name, acc in task.items():
            print(f"| {name} | {acc:.4f} | {100 * (acc - task['pytorch']):+.2f} points |")
    for model in args.models.split(","):
        b = C.load_bundle(C.MODELS[model], args.cache, args.rebuild)
        real = C.MODELS[model].config is None  # random weights from a config have no tokenizer to calibrate with
        mine = [n for n in peers if real or n != "bertc-int8-static"]
        acc = accuracy(b, mine, args.sentences, args.rebuild) if real else {}
        rows = {t: speed(b, mine, t, args, idle) for t in (int(x) for x in args.threads.split(","))} if args.speed else {}
        print(f"\n### {model}: median ms of after-idle calls (fixed: sequence 128, {args.runs} rounds; real text: "
              f"{args.timed_sentences} rt-sentiment snippets at their own lengths) and the ratio to bertc-int8; "
              f"sentence cosine vs PyTorch fp32 over {args.sentences} snippets\n")
        cols = [(t, w) for t in rows for w in ("fixed", "real-text")]
        print("| runtime | " + "".join(f"{w}, {t} thr | x | " for t, w in cols) + "cosine mean | cosine min |")
        print("|---" * (len(cols) * 2 + 3) + "|")
        for name in peers:
            cells = []
            for t, w in cols:
                ms, base = rows[t][w].get(name), rows[t][w].get("bertc-int8")
                cells.append(f"{ms:.2f} | {ms / base:.2f}" if ms and base else "- | -")
            a = acc.get(name)
            tail = f"{a['mean']:.5f} | {a['min']:.5f}" if a else "- | -"
            print(f"| {name} | " + "".join(f"{c} | " for c in cells) + f"{tail} |")
        results.append({"model": model, "seq_len": C.SEQ_LEN, "median_ms": rows, "cosine": acc})
        out: dict[str, Any] = {"results": results, "teacher_test_accuracy": task, "environment": C.environment(),
                               "idle_wait": idle.summary(), "seconds": round(time.perf_counter() - started, 1),
                               "command": "benchmarks/int8.py " + " ".join(argv if argv is not None else sys.argv[1:])}
        args.json.write_text(json.dumps(out, indent=2) + "\n")  # after each model: a later one's failure keeps it
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
