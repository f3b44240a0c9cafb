"""The artifact folder: manifest.json, weights.bin, library, bertc_run, src/, report.json.

Written into a temporary sibling folder and renamed into place at the end, so a failed
compile never leaves something that looks complete and never destroys the previous artifact.
``-o`` replaces only a folder bertc provably wrote (``check_output``), and a compile killed half
way leaves a staging folder named for its owner process, which the next compile beside it removes
(``remove_stale_staging``).

``Manifest`` is manifest.json as a record, read and written only here (the C loader,
runtime/src/loader.h, reads the same JSON). A manifest is data from a file someone may have edited:
``read_manifest`` checks its shape and that every name in it (the files, the library, the tool, the
tokenizer, golden and fallback folders) stays inside the artifact folder, before anything opens,
hashes or dlopens what it names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import BertcError

FORMAT_VERSION = 2  # 2: the program lists its ops and times each one (per-op timing)
MANIFEST = "manifest.json"
# Staging (.NAME.partial-OWNER-XXXX) and replaced (.NAME.old-OWNER) folders beside an artifact carry
# their owner: "PID.START.HOST", START the process's start time in clock ticks after boot (/proc/PID/stat),
# so that a PID the kernel has reused since does not keep a dead compile's folder alive, and HOST a hash of
# the machine's name, so that a compile on another machine sharing the folder (NFS) is never judged here.
_OWNED = re.compile(r"^\..+\.(?:partial|old)-(\d+)\.(\d+)\.([0-9a-f]{8})(?:-.*)?$")
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class Fallback:
    """A GPU artifact's CPU build (--fallback cpu): its folder inside the artifact and its target."""

    cpu: str
    target: str


@dataclass(frozen=True)
class Golden:
    """GPU artifacts: golden inputs and PyTorch's outputs for them (raw little-endian int64 / float32
    files NAME.bin in ``folder``), and the max |error| ``bertc run --verify`` accepts."""

    folder: str
    inputs: list[str]
    outputs: list[str]
    tolerance: float
    reference: str = ""


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """manifest.json. The fields are in the file's key order; ``to_dict`` writes them all, but leaves out
    shaders, golden and fallback when an artifact has none. ``inputs`` and ``outputs`` list each tensor
    as {"name", "shape", "dtype"}, the form the C loader reads; ``files`` maps each file's path to its
    sha256 and bytes (``write_manifest`` fills it in)."""

    format_version: int = FORMAT_VERSION
    bertc_version: str | None = None
    target: str
    arch: str | None = None  # "x86_64", "aarch64": where bertc_run runs natively
    isa: str | None = None  # the kernels linked: avx2, neon, ref, vulkan
    dtype: str | None = None  # GEMM weights: fp32, fp16 or int8
    toolchain: str | None = None
    library: str
    tool: str | None = None  # bertc_run, the program run on a device
    batch: int
    seq_len: int  # the compiled length: the one run (shorter inputs padded), or a dynamic artifact's bound
    max_seq_len: int | None = None  # present (= seq_len) when every length 1..seq_len runs at its own cost
    vocab_size: int | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    passes: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)  # {"source", "config"}
    tokenizer: str | None = None  # the tokenizer's folder, for bertc run --text
    shaders: list[str] | None = None  # GPU artifacts: shaders/NAME.spv
    golden: Golden | None = None
    fallback: Fallback | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    _OPTIONAL = ("max_seq_len", "shaders", "golden", "fallback")  # keys a manifest holds only when it has them

    def to_dict(self) -> dict[str, Any]:
        return {f.name: asdict(v) if isinstance(v := getattr(self, f.name), (Golden, Fallback)) else v
                for f in fields(self) if not (f.name in self._OPTIONAL and getattr(self, f.name) is None)}

    @property
    def dynamic(self) -> bool:
        """Compiled with --max-seq-len: an input of any length up to seq_len runs at that length."""
        return self.max_seq_len is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """The record of a manifest ``_check_manifest`` accepted; keys this bertc does not know are dropped."""
        known = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for key, record in (("golden", Golden), ("fallback", Fallback)):
            if known.get(key) is not None:
                known[key] = record(**{f.name: known[key][f.name] for f in fields(record) if f.name in known[key]})
        return cls(**known)


# --------------------------------------------------------------------------- writing


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot), or None when there is no such process.
    0 where /proc is missing: then the PID alone says who owns a folder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if not Path("/proc/self/stat").exists():  # no procfs: ask the kernel whether the PID is in use
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            except PermissionError:
                pass
            return 0
        return None
    except OSError:
        return 0
    # the command name (field 2) is in parentheses and may hold spaces; starttime is field 22
    return int(stat.rsplit(")", 1)[1].split()[19])


def owner_token(pid: int, start: int) -> str:
    """The owner part of a staging folder's name, for process ``pid`` of this machine started at ``start``."""
    return f"{pid}.{start}.{_HOST}"


def _owner() -> str:
    return owner_token(os.getpid(), _start_ticks(os.getpid()) or 0)


def _owner_gone(name: str) -> bool:
    m = _OWNED.match(name)
    if m is None or m.group(3) != _HOST:
        return False  # not named by this bertc, or by a process on another machine: not ours to judge
    started, now = int(m.group(2)), _start_ticks(int(m.group(1)))
    if now is None:
        return True  # no such process
    return 0 not in (started, now) and started != now  # the PID belongs to a newer process now


def remove_stale_staging(parent: Path) -> list[Path]:
    """Remove the staging and replaced folders in ``parent`` whose owner process is gone (a compile that was
    killed); a live compile's folders stay. Returns what was removed."""
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        if p.is_dir() and not p.is_symlink() and _owner_gone(p.name):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no procfs: the only portable way to read it is to set it
    os.umask(mask)
    return mask


def give_umask_mode(folder: Path) -> None:
    """Give a folder from mkdtemp (always 0700) the mode mkdir would have: 0777 less the umask."""
    folder.chmod(0o777 & ~_umask())


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output(final: Path) -> Path:
    """The resolved ``final``, or an error if bertc may not write it there: it is the current folder or one
    above it, it exists and is not a bertc artifact (or holds files its manifest does not list), or its
    folder is not writable. Writes nothing; ``compile`` calls it before the slow steps."""
    final = Path(final).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if final == cwd or final in cwd.parents:
        raise BertcError(f"-o {final} is the current folder{'' if final == cwd else ' or one above it'}; an artifact "
                         "replaces its whole folder: give a new folder name, e.g. -o model.bertc")
    if final.exists() or final.is_symlink():
        why = _not_replaceable(final)
        if why:
            raise BertcError(f"{final} exists and {why}; bertc replaces only an artifact it wrote: choose another -o, "
                             "or move that folder away yourself")
    base = _nearest_existing(final.parent)
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise BertcError(f"cannot write {final}: {base} is not a writable folder; choose an -o where you can write")
    return final


def _not_replaceable(folder: Path) -> str | None:
    """Why ``folder`` is not an artifact bertc wrote (None when it is one): its manifest must be bertc's
    and the folder must hold nothing but the files that manifest lists."""
    if folder.is_symlink() or not folder.is_dir():
        return "is not a folder"
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return f"has no {MANIFEST}"
    except (OSError, ValueError) as e:
        return f"its {MANIFEST} cannot be read ({e})"
    if not (isinstance(manifest, dict) and isinstance(manifest.get("format_version"), int)
            and "bertc_version" in manifest and isinstance(manifest.get("files"), dict)):
        return f"its {MANIFEST} is not a bertc manifest (no format_version, bertc_version and files)"
    listed = {str(PurePosixPath(n)) for n in manifest["files"]} | {MANIFEST}
    fallback = manifest.get("fallback")
    if isinstance(fallback, dict) and isinstance(fallback.get("cpu"), str):
        listed.add(str(PurePosixPath(fallback["cpu"]) / MANIFEST))  # the CPU build's own manifest
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink():
                return f"holds a symbolic link, {rel}, which bertc never writes"
            if name in files and rel not in listed:
                return f"holds {rel}, which its {MANIFEST} does not list (not written by bertc)"
    return None


def staging_folder(final: Path) -> Path:
    """A new private folder beside ``final`` (.NAME.partial-OWNER-XXXX) to build it in, once the stale ones
    a killed process left there are removed. Anything written then renamed into place can use it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final.parent)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{_owner()}-", dir=final.parent))


@contextmanager
def staging(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it replaces ``final`` atomically."""
    final = check_output(final)
    tmp = staging_folder(final)
    try:
        yield tmp
        give_umask_mode(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, final)


def publish(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final``; an earlier ``final`` is moved aside first and
    removed only once the new one is in place, so there is never a moment with neither."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{_owner()}"
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def write_manifest(folder: Path, manifest: Manifest) -> Manifest:
    """Write ``folder``'s manifest.json: ``manifest`` with every file now in the folder hashed into ``files``."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[p.relative_to(folder).as_posix()] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest = replace(manifest, format_version=FORMAT_VERSION, files=files)
    (folder / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return manifest


# --------------------------------------------------------------------------- reading


def _kind(value: Any) -> str:
    return "null" if value is None else {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
                                                            int: "a number", float: "a number"}.get(
        type(value), f"a {type(value).__name__}")


def _inside(folder: Path, name: Any, what: str, where: Path) -> Path:
    """``folder / name`` for a relative name that stays inside ``folder`` (symbolic links resolved), or an error."""
    bad = lambda why: BertcError(f"{where} names {what} {name!r}, which {why}; the artifact was altered: recompile it")
    if not isinstance(name, str) or not name:
        raise bad("is not a file name")
    pure = PurePosixPath(name)
    if pure.is_absolute() or "\\" in name or "\0" in name:
        raise bad("is not a path inside the artifact")
    if ".." in pure.parts:
        raise bad("leaves the artifact folder (..)")
    p = folder / pure
    root = folder.resolve()
    if p.resolve() != root and root not in p.resolve().parents:
        raise bad("leads out of the artifact folder (a symbolic link)")
    return p


def _check_manifest(folder: Path, manifest: Any) -> dict[str, Any]:
    """The manifest's shape, then its names, checked before anything uses them; errors say what is wrong."""
    where = folder / MANIFEST
    if not isinstance(manifest, dict):
        raise BertcError(f"{where} holds {_kind(manifest)}, not a bertc manifest (an object); recompile the artifact")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION or type(version) is not int:
        shown = f"format_version {version}" if type(version) is int else \
            f"format_version {version!r} ({_kind(version)}, not a number)" if "format_version" in manifest else \
            "no format_version"
        raise BertcError(f"{folder} has {shown}, this bertc reads {FORMAT_VERSION}; recompile it with this bertc")
    for key, kind, expected in (("target", str, "a string"), ("library", str, "a file name"),
                                ("files", dict, "an object"), ("batch", int, "a positive integer"),
                                ("seq_len", int, "a positive integer")):
        if key not in manifest:
            raise BertcError(f"{where} has no '{key}'; it was not written by this bertc, or was altered: recompile it")
        value = manifest[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 1):
            raise BertcError(f"{where}: '{key}' is {_kind(value)}, not {expected}; it was altered: recompile it")
    if "max_seq_len" in manifest and manifest["max_seq_len"] != manifest["seq_len"]:
        raise BertcError(f"{where}: 'max_seq_len' is {manifest['max_seq_len']!r}, not the seq_len "
                         f"{manifest['seq_len']} it must equal; it was altered: recompile it")
    for rel, meta in manifest["files"].items():
        if not (isinstance(meta, dict) and isinstance(meta.get("sha256"), str) and type(meta.get("bytes")) is int):
            raise BertcError(f"{where}: the entry for {rel} needs a sha256 (string) and bytes (number); recompile it")
    for key, needs in (("golden", {"folder": str, "inputs": list, "outputs": list, "tolerance": (int, float)}),
                       ("fallback", {"cpu": str, "target": str})):
        value = manifest.get(key)
        if value is not None and not (isinstance(value, dict)
                                      and all(isinstance(value.get(f), t) for f, t in needs.items())):
            raise BertcError(f"{where}: '{key}' needs {', '.join(needs)}; it was altered: recompile it")
    outputs = manifest.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("shape"), list) and
                                                all(type(d) is int and d >= 0 for d in o["shape"]) for o in outputs):
        raise BertcError(f"{where}: 'outputs' must list each output's name and shape; it was altered: recompile it")
    _check_names(folder, manifest, where)
    return manifest


def _check_names(folder: Path, manifest: dict[str, Any], where: Path) -> None:
    """Every name the manifest holds stays inside ``folder``; the code bertc loads or runs is a hashed file."""
    for rel in manifest["files"]:
        _inside(folder, rel, "the file", where)
    files = {str(PurePosixPath(n)) for n in manifest["files"]}
    for key in ("library", "tool"):
        name = manifest.get(key)
        if name is not None and (not isinstance(name, str) or str(PurePosixPath(name)) not in files):
            raise BertcError(f"{where} names the {key} {name!r}, which is not among its hashed files; the artifact was "
                             "altered: recompile it")
    for key, name in (("library", manifest["library"]), ("tool", manifest.get("tool")),
                      ("tokenizer", manifest.get("tokenizer")),
                      ("golden folder", (manifest.get("golden") or {}).get("folder")),
                      ("CPU build", (manifest.get("fallback") or {}).get("cpu"))):
        if name is not None:
            _inside(folder, name, f"the {key}", where)
    shaders = manifest.get("shaders", [])
    names = [o.get("name") for o in manifest.get("outputs", [])] + (manifest.get("golden") or {}).get("inputs", []) \
        + (shaders if isinstance(shaders, list) else [shaders])
    for name in names:  # each becomes part of a file name (golden/NAME.bin, shaders/NAME.spv)
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
            raise BertcError(f"{where} names an input, output or shader {name!r}, which is not a plain name; "
                             "recompile it")


def read_manifest(folder: Path, verify: bool = True) -> Manifest:
    """``folder``'s manifest, checked (and with ``verify``, every file it lists hashed against it)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BertcError(f"artifact '{folder}' does not exist (compile one with `bertc compile MODEL -o {folder}`)")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise BertcError(f"'{folder}' has no {MANIFEST}: not a bertc artifact, or an interrupted copy") from None
    except (ValueError, OSError) as e:  # JSONDecodeError, invalid UTF-8, a folder named manifest.json
        raise BertcError(f"{folder / MANIFEST} is corrupt ({e}); recompile the artifact") from None
    _check_manifest(folder, manifest)
    if verify:
        for rel, meta in manifest["files"].items():
            p = folder / rel
            if not p.is_file():
                raise BertcError(f"{p} is missing from the artifact; recompile it")
            if p.stat().st_size != meta["bytes"]:
                raise BertcError(f"{p} is {p.stat().st_size} bytes, the manifest says {meta['bytes']} (truncated?)")
            if sha256_file(p) != meta["sha256"]:
                raise BertcError(f"{p} does not match its sha256 in the manifest (altered or corrupt); recompile")
    return Manifest.from_dict(manifest)
