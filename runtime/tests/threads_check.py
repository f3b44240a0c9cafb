"""One loaded model, many threads (bertc.h, "Threads"). Three checks, each a mode of this script, run
as a child process by test/test_runtime_threads.py and under ASan by `make test-sanitize`, so that a
crash is an exit status and not a dead test runner:

    python runtime/tests/threads_check.py ART same-outputs  # Python threads x calls of one CompiledModel:
                                                            # every output equals a single-threaded call
    python runtime/tests/threads_check.py ART close-race    # close() while threads call: each call gives
                                                            # the right output or BertcError, nothing else
    python runtime/tests/threads_check.py ART c-api         # bertc_run itself from threads with no lock of
                                                            # the caller's: every run succeeds (they serialize)

Prints one line per check; exit status 0 when it held, 1 when it did not.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import threading

import numpy as np

from bertc.errors import BertcError
from bertc.runtime import CompiledModel


def distinct_inputs(model: CompiledModel, count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids, mask) pairs of every length 1..seq_len, some with padded tails and fully masked rows."""
    rng = np.random.default_rng(seed)
    vocab = int(model.manifest.vocab_size)
    pairs = []
    for i in range(count):
        seq = 1 + i % int(model.seq_len)
        ids = rng.integers(0, vocab, size=(int(model.batch), seq), dtype=np.int64)
        mask = (rng.random((int(model.batch), seq)) < 0.8).astype(np.int64)
        mask[:, 0] = 1
        if model.batch > 1 and i % 5 == 0:
            mask[-1] = 0  # a fully masked row
        pairs.append((ids, mask))
    return pairs


def run_threads(n: int, work) -> list[str]:
    """work(k) on n threads at once; the first problems each reported."""
    problems: list[str] = []
    start = threading.Barrier(n)

    def body(k: int) -> None:
        start.wait()
        try:
            problems.extend(work(k))
        # any exception is a finding, reported with its type
        except Exception as e:  # noqa: BLE001
            problems.append(f"thread {k}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=body, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return problems


def same_outputs(art: str, threads: int, calls: int) -> list[str]:
    model = CompiledModel(art, threads=2)
    inputs = distinct_inputs(model, 24)
    expected = [model(ids, mask) for ids, mask in inputs]

    def work(k: int) -> list[str]:
        bad = []
        for i in range(calls):
            j = (k * 7 + i) % len(inputs)
            out = model(*inputs[j])
            for name, want in expected[j].items():
                if not np.array_equal(out[name], want):
                    bad.append(f"thread {k} call {i}: {name} of input {j} differs from its single-threaded output")
        return bad[:3]

    problems = run_threads(threads, work)
    model.close()
    print(f"same-outputs: {threads} threads x {calls} calls of one model, {len(problems)} problems")
    return problems


def close_once(art: str, threads: int, calls: int, after: int) -> list[str]:
    """Threads call one model; once each has made `after` calls, another thread closes it."""
    model = CompiledModel(art, threads=2)
    inputs = distinct_inputs(model, 8, seed=after)
    expected = [model(ids, mask) for ids, mask in inputs]
    closed = []
    started = threading.Barrier(threads + 1)

    def work(k: int) -> list[str]:
        bad = []
        for i in range(calls):
            if i == after:
                started.wait()
            j = (k + i) % len(inputs)
            try:
                out = model(*inputs[j])
            except BertcError as e:
                if "is closed; load it again" not in str(e):
                    bad.append(f"thread {k}: BertcError without the fix: {e}")
                closed.append(k)
                continue
            if any(not np.array_equal(out[n], w) for n, w in expected[j].items()):
                bad.append(f"thread {k} call {i}: an output differs from its single-threaded output")
        return bad[:3]

    closer = threading.Thread(target=lambda: (started.wait(), model.close()))
    closer.start()
    problems = run_threads(threads, work)
    closer.join()
    return problems + ([] if closed else [f"closing after {after} calls: no call saw the model closed"])


def close_race(art: str, threads: int, calls: int) -> list[str]:
    problems = [p for after in range(1, 5) for p in close_once(art, threads, calls, after)]
    print(f"close-race: 4 x {threads} threads x {calls} calls with close() among them, {len(problems)} problems")
    return problems


def c_api(art: str, threads: int, calls: int) -> list[str]:
    model = CompiledModel(art, threads=2)
    lib, h = model.lib, model._h
    inputs = distinct_inputs(model, 16)
    i64 = ctypes.POINTER(ctypes.c_int64)

    def work(k: int) -> list[str]:
        bad = []
        for i in range(calls):
            ids, mask = inputs[(k * 5 + i) % len(inputs)]
            status = lib.bertc_run(h, ids.ctypes.data_as(i64), mask.ctypes.data_as(i64), None, ids.shape[0],
                                   ids.shape[1])
            if status != 0:
                bad.append(f"thread {k} call {i}: bertc_run returned {status}")
        return bad[:3]

    problems = run_threads(threads, work)
    ids, mask = inputs[3]
    if not all(np.array_equal(a, b) for a, b in zip(model(ids, mask).values(), model(ids, mask).values())):
        problems.append("after the threads, two runs of one input differ")
    model.close()
    print(f"c-api: {threads} threads x {calls} bertc_run calls on one bertc_model, {len(problems)} problems")
    return problems


CHECKS = {"same-outputs": same_outputs, "close-race": close_race, "c-api": c_api}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact")
    ap.add_argument("check", choices=sorted(CHECKS))
    ap.add_argument("--threads", type=int, default=6)
    ap.add_argument("--calls", type=int, default=100)
    args = ap.parse_args(argv)
    problems = CHECKS[args.check](args.artifact, args.threads, args.calls)
    for p in problems[:10]:
        print(f"  {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
