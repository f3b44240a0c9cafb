"""Python side of the C runtime: open a host artifact's library with ctypes and run it."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import read_manifest
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
    lib.bertc_timed_runs.argtypes = [ctypes.c_void_p]
    lib.bertc_timed_runs.restype = ctypes.c_int64
    lib.bertc_reset_op_times.argtypes = [ctypes.c_void_p]
    lib.bertc_device.argtypes = [ctypes.c_void_p]
    lib.bertc_device.restype = ctypes.c_char_p


def check_ids(name: str, a, shape=None) -> np.ndarray | None:
    """An input as contiguous int64 [batch, seq] (a 1-D array is one row), or a clear error."""
    if a is None:
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


class CompiledModel:
    """A loaded host artifact: ``model(input_ids, attention_mask=None, token_type_ids=None)``
    returns a dict of numpy arrays (``last_hidden_state``, and ``pooler_output`` when the model
    has a pooler). Inputs shorter than the compiled sequence length are padded and masked."""

    def __init__(self, path: str | Path, threads: int = 1):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        if self.manifest["target"] not in ("host", "vulkan"):
            raise BertcError(f"{self.path} was compiled for {self.manifest['target']}; only host artifacts run in this "
                             "process (and vulkan ones, on this machine's Vulkan device): load it with device='qemu' "
                             "or device='adb'")
        self.lib = ctypes.CDLL(str(self.path / self.manifest["library"]))
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
        self.seq_len = self.lib.bertc_seq_len(handle)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None) -> dict[str, np.ndarray]:
        ids = check_ids("input_ids", input_ids)
        mask = check_ids("attention_mask", attention_mask, ids.shape)
        types = check_ids("token_type_ids", token_type_ids, ids.shape)
        b, s = ids.shape
        p = lambda a: None if a is None else a.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
        status = self.lib.bertc_run(self._h, p(ids), p(mask), p(types), b, s)
        if status != 0:
            raise BertcError(self.lib.bertc_last_error(self._h).decode())
        out = {}
        for i in range(self.lib.bertc_num_outputs(self._h)):
            shape = (ctypes.c_int64 * 4)()
            rank = ctypes.c_int()
            ptr = self.lib.bertc_output(self._h, i, shape, ctypes.byref(rank))
            dims = list(shape)[: rank.value]
            arr = np.ctypeslib.as_array(ptr, shape=tuple(dims)).copy()
            if len(dims) >= 3 and dims[1] == self.seq_len and s < self.seq_len:
                arr = arr[:, :s]  # per-token outputs [B, S, ...]: drop the padding bertc added
            out[self.lib.bertc_output_name(self._h, i).decode()] = arr
        return out

    def op_times(self) -> list[dict[str, Any]]:
        """Each op's time over the runs since loading or ``reset_op_times()``, in execution order, as
        bertc_run --bench reports it: name (op and result shape), kernel, ms (mean per run), plus
        total_ms and runs."""
        runs = self.lib.bertc_timed_runs(self._h)
        ops = []
        for i in range(self.lib.bertc_num_ops(self._h)):
            total = self.lib.bertc_op_seconds(self._h, i) * 1e3
            ops.append({"name": self.lib.bertc_op_name(self._h, i).decode(),
                        "kernel": self.lib.bertc_op_kernel(self._h, i).decode(),
                        "ms": total / runs if runs else 0.0, "total_ms": total, "runs": runs})
        return ops

    def reset_op_times(self) -> None:
        """Zero the per-op timers, e.g. after warm-up runs."""
        self.lib.bertc_reset_op_times(self._h)

    def close(self) -> None:
        if getattr(self, "_h", None):
            self.lib.bertc_close(self._h)
            self._h = None

    def __del__(self):
        self.close()
