"""Running an artifact's bertc_run somewhere: on this machine, under qemu-aarch64, or on a phone.

    device "host"          bertc_run natively (an artifact built for this machine)
    device "qemu"          qemu-aarch64 bertc_run (Debian qemu-user): checks function only, the
                           timings of an emulated CPU mean nothing and are reported as such
    device "adb[:SERIAL]"  adb push the artifact to /data/local/tmp/bertc, adb shell bertc_run,
                           adb pull the outputs

``DeviceModel`` has the interface of ``CompiledModel`` (numpy in, dict of numpy out) and
``bench`` returns bertc_run's JSON: p50/p90, first-run latency, peak RSS, the kernels used, and
each op's mean time ("ops": name, kernel, ms, in execution order) with a per-kernel summary.
"""

from __future__ import annotations

import json
import platform
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import Manifest, read_manifest
from .errors import BertcError, DeviceUnavailable
from .runtime import TextTasks, check_ids

REMOTE_ROOT = "/data/local/tmp/bertc"
STATUS_TEXT = {1: "I/O error", 2: "format error", 3: "checksum error", 4: "input error", 5: "out of memory",
               6: "bad argument", 7: "no usable device"}


class Device:
    """Where bertc_run runs. Paths given to ``run`` are device paths."""

    name = "host"
    emulated = False

    def stage(self, art: Path, tool: str) -> str:
        return str(art)

    def put(self, local: Path) -> str:
        return str(local)

    def get(self, remote: str, local: Path) -> None:
        if Path(remote) != local:
            shutil.copy(remote, local)

    def run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        return _call(argv, timeout)

    def read(self, path: str) -> str | None:
        """A system file's text (bertc/cpu.py reads /proc/cpuinfo and the cache sizes), None if missing."""
        try:
            return Path(path).read_text()
        except OSError:
            return None


class QemuDevice(Device):
    name = "qemu"
    emulated = True

    def __init__(self) -> None:
        self.qemu = shutil.which("qemu-aarch64")
        if self.qemu is None:
            raise BertcError("--device qemu needs qemu-aarch64: apt-get install qemu-user")

    def run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        return _call([self.qemu, *argv], timeout)

    def read(self, path: str) -> str | None:
        return None  # the emulated CPU has no caches worth a profile


class AdbDevice(Device):
    """A phone over adb. Each call is one adb command, so a stand-in adb can replay them."""

    def __init__(self, serial: str | None) -> None:
        self.adb = shutil.which("adb")
        if self.adb is None:
            raise BertcError("--device adb needs adb on PATH: install Android platform-tools "
                             "(Debian: apt-get install adb)")
        self.prefix = [self.adb, *(["-s", serial] if serial else [])]
        self.name = f"adb:{serial}" if serial else "adb"
        self._n = 0

    def _adb(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        r = _call([*self.prefix, *args], timeout)
        if r.returncode != 0 and args[0] != "shell":
            raise BertcError(f"adb {args[0]} failed: {(r.stderr or r.stdout).strip()[:2000]}")
        return r

    def stage(self, art: Path, tool: str) -> str:
        remote = f"{REMOTE_ROOT}/{art.name}"
        self._adb("shell", f"rm -rf {shlex.quote(remote)} && mkdir -p {REMOTE_ROOT}")
        self._adb("push", str(art), remote)
        self._adb("shell", f"chmod 755 {shlex.quote(f'{remote}/{tool}')}")
        return remote

    def put(self, local: Path) -> str:
        self._n += 1
        remote = f"{REMOTE_ROOT}/io/{self._n}_{local.name}"
        self._adb("shell", f"mkdir -p {REMOTE_ROOT}/io")
        self._adb("push", str(local), remote)
        return remote

    def get(self, remote: str, local: Path) -> None:
        self._adb("pull", remote, str(local))

    def run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        return self._adb("shell", " ".join(shlex.quote(a) for a in argv), timeout=timeout)

    def read(self, path: str) -> str | None:
        r = self._adb("shell", f"cat {shlex.quote(path)}", timeout=30)
        return r.stdout if r.returncode == 0 else None


def _call(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise BertcError(f"'{' '.join(argv[:3])} ...' did not finish in {timeout:.0f} s") from e
    except OSError as e:
        raise BertcError(f"could not start {argv[0]}: {e}") from e


def make_device(spec: str | None, manifest: Manifest) -> Device:
    """'host' / 'qemu' / 'adb' / 'adb:SERIAL'; None picks host when the artifact's CPU is this one, else qemu."""
    here = {"arm64": "aarch64"}.get(platform.machine(), platform.machine())
    arch = manifest.arch if manifest.arch is not None else here
    if spec is None:
        spec = "host" if arch == here else "qemu"
    if spec == "host":
        if arch != here:
            raise BertcError(f"this artifact is for {arch} ({manifest.target}) and this machine is {here}: "
                             "use --device qemu to emulate it, or --device adb to run it on a phone")
        return Device()
    if spec == "qemu":
        if arch != "aarch64":
            raise BertcError(f"--device qemu runs ARM64 artifacts; this one is for {arch}")
        return QemuDevice()
    if spec == "adb" or spec.startswith("adb:"):
        return AdbDevice(spec.partition(":")[2] or None)
    raise BertcError(f"unknown device '{spec}': use host, qemu, adb or adb:SERIAL")


class DeviceModel(TextTasks):
    """An artifact run through bertc_run on a device; same call interface as CompiledModel."""

    def __init__(self, path: str | Path, device: str | None = None, threads: int = 1, cores: str | None = None,
                 timeout: float = 600, manifest: Manifest | None = None):
        """``manifest``: the folder's, already read (and hashed) by read_manifest; read here when None."""
        self.path = Path(path)
        self.manifest = manifest if manifest is not None else read_manifest(self.path)
        # the program run is the manifest's tool, which read_manifest keeps among the hashed files in the folder
        self.tool = self.manifest.tool
        if self.tool is None:
            raise BertcError(f"{self.path}'s manifest names no tool (bertc_run) among its hashed files; recompile it")
        self.device = make_device(device, self.manifest)
        self.threads, self.cores, self.timeout = threads, cores, timeout
        self.seq_len = self.manifest.seq_len
        self.batch = self.manifest.batch
        self.remote = self.device.stage(self.path, self.tool)

    def _invoke(self, inputs: dict[str, np.ndarray], extra: list[str], out_dir: Path | None) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="bertc-io-") as tmp:
            argv = [f"{self.remote}/{self.tool}", self.remote, "--threads", str(self.threads)]
            if self.cores:
                argv += ["--cores", self.cores]
            for name, arr in inputs.items():
                local = Path(tmp) / f"{name}.bin"
                arr.tofile(local)
                argv += [f"--{name.replace('_', '-')}", self.device.put(local)]
            if inputs:
                argv += ["--seq", str(next(iter(inputs.values())).shape[1])]
            argv += extra
            remote_out = None
            if out_dir is not None:
                remote_out = str(out_dir) if not isinstance(self.device, AdbDevice) else f"{self.remote}/out"
                if isinstance(self.device, AdbDevice):
                    self.device.run(["mkdir", "-p", remote_out], self.timeout)
                argv += ["--out", remote_out]
            r = self.device.run(argv, self.timeout)
            if r.returncode != 0:
                what = STATUS_TEXT.get(r.returncode, f"exit status {r.returncode}")
                raise (DeviceUnavailable if r.returncode == 7 else BertcError)(f"bertc_run on {self.device.name} failed ({what}): {r.stderr.strip()[:2000]}")
            try:
                report = json.loads(r.stdout.strip().splitlines()[-1])
            except (json.JSONDecodeError, IndexError) as e:
                raise BertcError(f"bertc_run on {self.device.name} printed no JSON: {r.stdout[:500]!r}") from e
            if remote_out is not None and remote_out != str(out_dir):
                for o in report["outputs"]:
                    self.device.get(f"{remote_out}/{o['name']}.bin", out_dir / f"{o['name']}.bin")
            report["device"] = self.device.name
            report["emulated"] = self.device.emulated
            return report

    def _inputs(self, input_ids, attention_mask, token_type_ids) -> dict[str, np.ndarray]:
        ids = check_ids("input_ids", input_ids)
        named = {"input_ids": ids, "attention_mask": check_ids("attention_mask", attention_mask, ids.shape),
                 "token_type_ids": check_ids("token_type_ids", token_type_ids, ids.shape)}
        return {k: v for k, v in named.items() if v is not None}

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None) -> dict[str, np.ndarray]:
        inputs = self._inputs(input_ids, attention_mask, token_type_ids)
        seq = inputs["input_ids"].shape[1]
        with tempfile.TemporaryDirectory(prefix="bertc-out-") as out:
            report = self._invoke(inputs, [], Path(out))
            result = {}
            for o in report["outputs"]:
                arr = np.fromfile(Path(out) / f"{o['name']}.bin", dtype=np.float32).reshape(o["shape"])
                if arr.ndim >= 3 and arr.shape[1] == self.manifest.seq_len and seq < arr.shape[1]:
                    arr = arr[:, :seq]  # per-token outputs: drop the padding bertc added
                result[o["name"]] = arr
        self.last_report = report
        return result

    def run_text(self, texts: str | list[str]) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        """bertc_run --text on the device: the text is tokenized there, by the artifact's tokenizer.bin, with
        no Python. Outputs, and per text its ids and whether it was cut to the compiled length."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if any("\0" in t for t in texts):
            raise BertcError("a text holds a NUL character, which a command line cannot carry to the device; remove it "
                             "(the tokenizer drops it anyway) or pass token ids")
        if not (self.path / "tokenizer.bin").exists():
            raise BertcError(f"{self.path} has no tokenizer.bin, so the device cannot tokenize text; see its "
                             "report.json (\"tokenizer\") for why, or pass token ids")
        with tempfile.TemporaryDirectory(prefix="bertc-out-") as out:
            report = self._invoke({}, [a for t in texts for a in ("--text", t)], Path(out))
            result = {o["name"]: np.fromfile(Path(out) / f"{o['name']}.bin", dtype=np.float32).reshape(o["shape"])
                      for o in report["outputs"]}
        self.last_report = report
        return result, report["texts"]

    @property
    def text_max_tokens(self) -> int:
        """As CompiledModel's: the compiled length, or a sentence-transformers model's max_seq_length."""
        path = self.path / "tokenizer.bin"
        return min(self.seq_len, int.from_bytes(path.read_bytes()[48:52], "little")) if path.exists() else self.seq_len

    @property
    def labels(self) -> list[str]:
        """A classifier artifact's label names, as its report.json lists its head's."""
        try:
            head = json.loads((self.path / "report.json").read_text()).get("head") or {}
        except (OSError, ValueError):
            head = {}
        return list(head.get("labels") or [])

    def bench(self, input_ids, attention_mask=None, token_type_ids=None, runs: int = 30,
              warmup: int = 5) -> dict[str, Any]:
        inputs = self._inputs(input_ids, attention_mask, token_type_ids)
        report = self._invoke(inputs, ["--bench", str(runs), "--warmup", str(warmup)], None)
        ops = report.get("ops", [])
        report["ops_ms"] = round(sum(o["ms"] for o in ops), 5)  # compare with mean_ms
        report["ops_p50_ms"] = round(sum(o.get("p50_ms", o["ms"]) for o in ops), 5)  # compare with p50_ms
        report["by_kernel"] = kernel_summary(ops)
        return report


def kernel_summary(ops: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per kernel, most expensive first: calls, the sums of its ops' mean and median ms, and its share of
    the medians (a median is not moved by a run the OS preempted; a mean is)."""
    by: dict[str, dict[str, float]] = {}
    for o in ops:
        k = by.setdefault(o["kernel"], {"calls": 0, "ms": 0.0, "p50_ms": 0.0})
        k["calls"] += 1
        k["ms"] += o["ms"]
        k["p50_ms"] += o.get("p50_ms", o["ms"])
    total = sum(k["p50_ms"] for k in by.values()) or 1.0
    return {name: {"calls": k["calls"], "ms": round(k["ms"], 5), "p50_ms": round(k["p50_ms"], 5),
                   "share": round(k["p50_ms"] / total, 4)}
            for name, k in sorted(by.items(), key=lambda kv: -kv[1]["p50_ms"])}


def format_op_table(report: dict[str, Any], top: int) -> str:
    """The table `bertc bench --top N` prints: the N most expensive ops by median, then time per kernel."""
    ops = [{**o, "p50_ms": o.get("p50_ms", o["ms"])} for o in report.get("ops", [])]
    total = sum(o["p50_ms"] for o in ops) or 1.0
    rows = sorted(enumerate(ops), key=lambda io: -io[1]["p50_ms"])[:top]
    lines = [f"{'#':>3}  {'op':<36} {'kernel':<24} {'p50 ms':>9} {'mean ms':>9} {'share':>6}"]
    lines += [f"{i:>3}  {o['name'][:36]:<36} {o['kernel']:<24} {o['p50_ms']:>9.4f} {o['ms']:>9.4f} "
              f"{o['p50_ms'] / total:>6.1%}" for i, o in rows]
    if len(ops) > len(rows):
        lines.append(f"     ... {len(ops) - len(rows)} more ops, {total - sum(o['p50_ms'] for _, o in rows):.3f} ms")
    lines += ["", f"{'kernel':<24} {'calls':>5} {'p50 ms':>9} {'mean ms':>9} {'share':>6}"]
    lines += [f"{k:<24} {v['calls']:>5} {v['p50_ms']:>9.4f} {v['ms']:>9.4f} {v['share']:>6.1%}"
              for k, v in (report.get("by_kernel") or kernel_summary(ops)).items()]  # bench() summed them already
    if "mean_ms" in report:  # means add up (medians do not): mean run = sum of op means + time outside the ops
        means = sum(o["ms"] for o in ops)
        gpu = str(report.get("device_name", "")).startswith("vulkan")  # ops timed by GPU timestamps
        outside = "input checks and copies, submit and wait" if gpu else "input checks, pool wake-up"
        lines.append(f"\nper run over {report['runs']} runs: mean {report['mean_ms']:.3f} ms = ops {means:.3f} ms + "
                     f"{report['mean_ms'] - means:.3f} ms outside them ({outside}); p50 "
                     f"{report['p50_ms']:.3f} ms" + (f", quietest stretch's median {report['quiet_ms']:.3f} ms"
                                                      if "quiet_ms" in report else ""))
    if report.get("emulated"):
        lines.append("note: emulated CPU: these timings check that it runs, they say nothing about speed")
    return "\n".join(lines)
