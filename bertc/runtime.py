"""Python side of the C runtime: open a host artifact's library with ctypes and run it."""

from __future__ import annotations

import ctypes
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import Manifest, read_manifest
from .errors import BertcError, DeviceUnavailable

_STATUS = {1: "I/O error", 2: "format error", 3: "checksum error", 4: "input error", 5: "out of memory",
           6: "bad argument", 7: "no usable device"}
DEVICE_STATUS = 7  # BERTC_ERR_DEVICE


def _bind(lib: ctypes.CDLL) -> None:
    i64p = ctypes.POINTER(ctypes.c_int64)
    lib.bertc_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    lib.bertc_open_error.restype = ctypes.c_char_p
    lib.bertc_run.argtypes = [ctypes.c_void_p, i64p, i64p, i64p, ctypes.c_int64, ctypes.c_int64]
    lib.bertc_num_outputs.argtypes = [ctypes.c_void_p]
    lib.bertc_output_name.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.bertc_output_name.restype = ctypes.c_char_p
    lib.bertc_output.argtypes = [ctypes.c_void_p, ctypes.c_int, i64p, ctypes.POINTER(ctypes.c_int)]
    lib.bertc_output.restype = ctypes.POINTER(ctypes.c_float)
    lib.bertc_last_error.argtypes = [ctypes.c_void_p]
    lib.bertc_last_error.restype = ctypes.c_char_p
    lib.bertc_close.argtypes = [ctypes.c_void_p]
    lib.bertc_batch.argtypes = [ctypes.c_void_p]
    lib.bertc_batch.restype = ctypes.c_int64
    lib.bertc_seq_len.argtypes = [ctypes.c_void_p]
    lib.bertc_seq_len.restype = ctypes.c_int64
    lib.bertc_num_ops.argtypes = [ctypes.c_void_p]
    for fn, restype in [("bertc_op_name", ctypes.c_char_p), ("bertc_op_kernel", ctypes.c_char_p),
                        ("bertc_op_seconds", ctypes.c_double)]:
        getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_int]
        getattr(lib, fn).restype = restype
    lib.bertc_kernel.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    lib.bertc_kernel.restype = ctypes.c_char_p
    lib.bertc_timed_runs.argtypes = [ctypes.c_void_p]
    lib.bertc_timed_runs.restype = ctypes.c_int64
    lib.bertc_reset_op_times.argtypes = [ctypes.c_void_p]
    lib.bertc_handoff_us.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.bertc_handoff_us.restype = ctypes.c_double
    lib.bertc_has_tokenizer.argtypes = [ctypes.c_void_p]
    lib.bertc_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64, ctypes.c_int64, i64p, i64p, i64p]
    lib.bertc_text_error.restype = ctypes.c_char_p
    lib.bertc_text_max_tokens.argtypes = [ctypes.c_void_p]
    lib.bertc_text_max_tokens.restype = ctypes.c_int64
    lib.bertc_label.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.bertc_label.restype = ctypes.c_char_p
    lib.bertc_device.argtypes = [ctypes.c_void_p]
    lib.bertc_device.restype = ctypes.c_char_p


def check_ids(name: str, a, shape=None) -> np.ndarray | None:
    """An input as contiguous int64 [batch, seq] (a 1-D array is one row), or a clear error. Only the
    optional inputs (attention_mask, token_type_ids) may be None."""
    if a is None:
        if name == "input_ids":
            raise BertcError("input_ids is None; pass the token ids as an int array [batch, seq] (a tokenizer's "
                             "input_ids, e.g. tok(text, return_tensors='np')['input_ids'])")
        return None
    arr = np.asarray(a)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise BertcError(f"{name} must be [batch, seq] (got shape {list(arr.shape)})")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise BertcError(f"{name} must hold integers (got {arr.dtype})")
    if shape is not None and arr.shape != shape:
        raise BertcError(f"{name} has shape {list(arr.shape)} but input_ids has {list(shape)}")
    return np.ascontiguousarray(arr, dtype=np.int64)


class TextTasks:
    """encode() and classify() over run_text(), for a model in this process and one on a device alike."""

    path: Path
    batch: int

    def run_text(self, texts: list[str]) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        raise NotImplementedError

    @property
    def labels(self) -> list[str]:
        raise NotImplementedError

    def encode(self, texts: str | list[str]) -> np.ndarray:
        """Sentence embeddings [len(texts), width] as sentence-transformers computes them (the artifact's
        head.bin: its pooling, Dense layers and normalization), each text at its own length."""
        return np.concatenate([out["sentence_embedding"] for out, _ in self._head_runs(texts, "sentence_embedding")])

    def classify(self, texts: str | list[str]) -> list[dict[str, Any]]:
        """Per text: its label (the most probable), that probability, and every label's. A token classifier's
        artifact gives per text the list of its tokens instead, each with its id, label and probability."""
        labels, answers = self.labels, []
        for out, info in self._head_runs(texts, "probabilities"):
            for p, row in zip(out["probabilities"], info):
                if p.ndim == 1:
                    answers.append({"label": labels[int(np.argmax(p))], "probability": float(np.max(p)),
                                    "probabilities": dict(zip(labels, map(float, p)))})
                else:
                    answers.append([{"id": i, "label": labels[int(np.argmax(q))], "probability": float(np.max(q))}
                                    for i, q in zip(row["ids"], p)])
        return answers

    def _head_runs(self, texts: str | list[str], output: str):
        texts = [texts] if isinstance(texts, str) else list(texts)
        for start in range(0, len(texts), self.batch):
            chunk = texts[start:start + self.batch]
            out, info = self.run_text(chunk + [""] * (self.batch - len(chunk)))  # a batch artifact takes full batches
            if output not in out:
                raise BertcError(f"{self.path} has no {output!r} output: {self._why_no_head()}")
            yield {k: v[: len(chunk)] for k, v in out.items()}, info[: len(chunk)]

    def _why_no_head(self) -> str:
        try:
            head = json.loads((self.path / "report.json").read_text()).get("head")
        except (OSError, ValueError):
            head = None
        if head and not head.get("compiled"):
            return head.get("why", "")
        if head:
            return f"its head is a {head['kind']} head (outputs {', '.join(head['outputs'])})"
        return ("it was compiled from a plain encoder; compile a *ForSequenceClassification folder for classify(), a "
                "sentence-transformers folder (modules.json) for encode()")



class CompiledModel(TextTasks):
    """A loaded host artifact: ``model(input_ids, attention_mask=None, token_type_ids=None)``
    returns a dict of numpy arrays (``last_hidden_state``, and ``pooler_output`` when the model
    has a pooler). An artifact compiled with --max-seq-len runs an input of any length up to its bound
    at that length (a batch of sentences: padded to the longest of them, with the mask), and its
    per-token outputs have the input's length; one compiled with --seq-len pads shorter inputs to its
    length and cuts the padding off the outputs.

    Safe from any number of threads: the C model runs one call at a time and its outputs live in its
    arena until the next run (bertc.h), so one lock covers bertc_run and the copy of the outputs, and
    ``close()`` takes it too: it waits for a call in progress, and a call after it is a BertcError."""

    def __init__(self, path: str | Path, threads: int = 1, manifest: Manifest | None = None):
        """``manifest``: the folder's, already read (and hashed) by read_manifest; read here when None."""
        self._h: ctypes.c_void_p | None = None
        self._lock = threading.Lock()
        self._text_max: int | None = None
        self._pad_id: int | None = None
        self.path = Path(path)
        self.manifest = manifest if manifest is not None else read_manifest(self.path)
        if self.manifest.target not in ("host", "vulkan"):
            raise BertcError(f"{self.path} was compiled for {self.manifest.target}; only host artifacts run in this "
                             "process (and vulkan ones, on this machine's Vulkan device): load it with device='qemu' "
                             "or device='adb'")
        self.lib = ctypes.CDLL(str(self.path / self.manifest.library))
        _bind(self.lib)
        handle = ctypes.c_void_p()
        status = self.lib.bertc_open(str(self.path).encode(), int(threads), ctypes.byref(handle))
        if status != 0:
            error = DeviceUnavailable if status == DEVICE_STATUS else BertcError
            raise error(f"{_STATUS.get(status, status)}: {self.lib.bertc_open_error().decode()}")
        self._h = handle
        self.device_name = self.lib.bertc_device(handle).decode()  # "cpu", or "vulkan: DEVICE NAME"
        self.threads = threads
        self.batch = self.lib.bertc_batch(handle)
        self.seq_len = self.lib.bertc_seq_len(handle)  # the compiled length, or a dynamic artifact's bound
        self.dynamic = self.manifest.dynamic

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None) -> dict[str, np.ndarray]:
        ids = check_ids("input_ids", input_ids)
        mask = check_ids("attention_mask", attention_mask, ids.shape)
        types = check_ids("token_type_ids", token_type_ids, ids.shape)
        with self._lock:
            return self._run(self._handle(), ids, mask, types)

    def _handle(self) -> ctypes.c_void_p:
        """The open C model; call with the lock held."""
        if self._h is None:
            raise BertcError(f"the model loaded from {self.path} is closed; load it again (bertc.load)")
        return self._h

    def _run(self, h: ctypes.c_void_p, ids: np.ndarray, mask, types) -> dict[str, np.ndarray]:
        b, s = ids.shape
        p = lambda a: None if a is None else a.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
        status = self.lib.bertc_run(h, p(ids), p(mask), p(types), b, s)
        if status != 0:
            raise BertcError(self.lib.bertc_last_error(h).decode())
        out = {}
        for i in range(self.lib.bertc_num_outputs(h)):
            shape = (ctypes.c_int64 * 4)()
            rank = ctypes.c_int()
            ptr = self.lib.bertc_output(h, i, shape, ctypes.byref(rank))
            dims = list(shape)[: rank.value]
            arr = np.ctypeslib.as_array(ptr, shape=tuple(dims)).copy()
            if not self.dynamic and len(dims) >= 3 and dims[1] == self.seq_len and s < self.seq_len:
                arr = arr[:, :s]  # per-token outputs [B, S, ...]: drop the padding bertc added (a dynamic
                # artifact's already have the run's length)
            out[self.lib.bertc_output_name(h, i).decode()] = arr
        return out

    @property
    def has_tokenizer(self) -> bool:
        """Whether the artifact carries tokenizer.bin (then ``tokenize`` and text input work without Python's
        tokenizers)."""
        with self._lock:
            return bool(self.lib.bertc_has_tokenizer(self._handle()))

    def tokenize(self, texts: str | list[str], max_tokens: int | None = None) -> dict[str, np.ndarray]:
        """Texts to ``input_ids``, ``attention_mask`` and ``token_type_ids`` [len(texts), longest] by the C
        tokenizer in the artifact (the ids of the Hugging Face tokenizer it was compiled from), each text cut
        to ``max_tokens`` (default: the compiled length) and padded to the longest. Takes no lock: the
        tokenizer is read-only, so other threads may run the model meanwhile."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        cap = self.text_max_tokens if max_tokens is None else int(max_tokens)
        h = self._handle()
        if not self.lib.bertc_has_tokenizer(h):
            raise BertcError(f"{self.path} has no tokenizer.bin: {self._why_no_tokenizer()}")
        rows = []
        ids, types, count = (ctypes.c_int64 * cap)(), (ctypes.c_int64 * cap)(), ctypes.c_int64()
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise BertcError(f"text {i} is {type(text).__name__}, not str")
            data = text.encode("utf-8", "surrogatepass")
            status = self.lib.bertc_tokenize(h, data, len(data), cap, ids, types, ctypes.byref(count))
            if status != 0:
                which = f"text {i}: " if len(texts) > 1 else ""
                raise BertcError(which + self.lib.bertc_text_error().decode())
            rows.append((list(ids[: count.value]), list(types[: count.value])))
        longest = max(len(r[0]) for r in rows)
        pad = self.tokenizer_pad_id
        out = {"input_ids": np.full((len(rows), longest), pad, np.int64),
               "attention_mask": np.zeros((len(rows), longest), np.int64),
               "token_type_ids": np.zeros((len(rows), longest), np.int64)}
        for r, (i, t) in enumerate(rows):
            out["input_ids"][r, : len(i)] = i
            out["attention_mask"][r, : len(i)] = 1
            out["token_type_ids"][r, : len(t)] = t
        return out

    def run_text(self, texts: str | list[str]) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        """Outputs for texts tokenized by the C tokenizer (a batch padded to its longest), and per text its
        ids and whether it was cut to the most tokens a text keeps (``text_max_tokens``)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        cap = self.text_max_tokens
        enc = self.tokenize(texts, max_tokens=cap + 1)  # one more than fits: a row that fills it was cut
        n = enc["attention_mask"].sum(1)
        for r in np.flatnonzero(n > cap):  # cut as bertc_run_text cuts: the first tokens, then the row's [SEP]
            for v in enc.values():
                v[r, cap - 1] = v[r, n[r] - 1]
        enc = {k: v[:, :cap] for k, v in enc.items()}
        out = self(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        return out, [{"cut": bool(n[i] > cap), "ids": enc["input_ids"][i, : min(int(n[i]), cap)].tolist()}
                     for i in range(len(texts))]

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` makes, uncut (every token takes at least one byte of text, so its bytes
        + 2 are room for all of them and [CLS] and [SEP])."""
        return int(self.tokenize(text, max_tokens=len(text.encode("utf-8", "surrogatepass")) + 2)
                   ["attention_mask"].sum())

    @property
    def labels(self) -> list[str]:
        """A classifier artifact's label names (its id2label), index by index; [] without a classifier head."""
        with self._lock:
            h, out = self._handle(), []
            while (name := self.lib.bertc_label(h, len(out))) is not None:
                out.append(name.decode())
        return out

    @property
    def tokenizer_pad_id(self) -> int:
        """The tokenizer's padding id (from tokenizer.bin's header, read once)."""
        if self._pad_id is None:
            with open(self.path / "tokenizer.bin", "rb") as f:
                self._pad_id = int.from_bytes(f.read(68)[64:68], "little", signed=True)
        return self._pad_id

    @property
    def text_max_tokens(self) -> int:
        """The most tokens a text keeps: the compiled length, or a sentence-transformers model's max_seq_length
        when shorter."""
        if self._text_max is None:
            with self._lock:
                self._text_max = int(self.lib.bertc_text_max_tokens(self._handle())) or self.seq_len
        return self._text_max

    def _why_no_tokenizer(self) -> str:
        try:
            why = json.loads((self.path / "report.json").read_text()).get("tokenizer", {}).get("why")
        except (OSError, ValueError):
            why = None
        return why or "its model folder had no tokenizer; pass token ids instead"

    def op_times(self) -> list[dict[str, Any]]:
        """Each op's time over the runs since loading or ``reset_op_times()``, in execution order, as
        bertc_run --bench reports it: name (op and result shape), kernel, ms (mean per run), plus
        total_ms and runs."""
        with self._lock:
            h = self._handle()
            runs = self.lib.bertc_timed_runs(h)
            ops = []
            for i in range(self.lib.bertc_num_ops(h)):
                total = self.lib.bertc_op_seconds(h, i) * 1e3
                ops.append({"name": self.lib.bertc_op_name(h, i).decode(),
                            "kernel": self.lib.bertc_op_kernel(h, i).decode(),
                            "ms": total / runs if runs else 0.0, "total_ms": total, "runs": runs})
        return ops

    def kernels(self) -> dict[str, str]:
        """The program's kernels and the implementation each was linked to ("avx2", "neon", "ref"), as
        bertc_run --bench's "kernels" reports them."""
        with self._lock:
            h, out, i = self._handle(), {}, 0
            impl = ctypes.c_char_p()
            while (name := self.lib.bertc_kernel(h, i, ctypes.byref(impl))) is not None:
                out[name.decode()] = impl.value.decode()
                i += 1
        return out

    def handoff_us(self, calls: int = 2000) -> float:
        """What one op split across this model's threads costs now beyond its share of the work, in microseconds
        (bertc_handoff_us): 0 on one thread. It moves with the machine's load and the hour on a shared VM."""
        with self._lock:
            return float(self.lib.bertc_handoff_us(self._handle(), calls))

    def reset_op_times(self) -> None:
        """Zero the per-op timers, e.g. after warm-up runs."""
        with self._lock:
            self.lib.bertc_reset_op_times(self._handle())

    def close(self) -> None:
        """Free the C model. A call in progress on another thread finishes first; a call afterwards
        raises BertcError."""
        lock = getattr(self, "_lock", None)
        if lock is None:  # __init__ failed before there was anything to free
            return
        with lock:
            if self._h is not None:
                self.lib.bertc_close(self._h)
                self._h = None

    def __del__(self):
        self.close()
