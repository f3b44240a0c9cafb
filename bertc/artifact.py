"""The artifact folder: manifest.json, weights.bin, library, bertc_run, src/, report.json.

Written into a temporary sibling folder and renamed into place at the end, so a failed
compile never leaves something that looks complete and never destroys the previous artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import BertcError

FORMAT_VERSION = 2  # 2: the program lists its ops and times each one (per-op timing)
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def staging(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it replaces ``final`` atomically."""
    final = final.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not (final / MANIFEST).exists():
        raise BertcError(f"{final} exists and is not a bertc artifact; refusing to overwrite it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, final)


def publish(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final``; an earlier ``final`` is moved aside first and
    removed only once the new one is in place, so there is never a moment with neither."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def write_manifest(folder: Path, fields: dict[str, Any]) -> dict[str, Any]:
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[str(p.relative_to(folder))] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest = {"format_version": FORMAT_VERSION, **fields, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: Path, verify: bool = True) -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        raise BertcError(f"artifact '{folder}' does not exist (compile one with `bertc compile MODEL -o {folder}`)")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise BertcError(f"'{folder}' has no {MANIFEST}: not a bertc artifact, or an interrupted copy") from None
    except json.JSONDecodeError as e:
        raise BertcError(f"{folder / MANIFEST} is corrupt ({e}); recompile the artifact") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BertcError(f"{folder} has format_version {manifest.get('format_version')}, this bertc reads "
                         f"{FORMAT_VERSION}; recompile it with this bertc")
    if verify:
        for rel, meta in manifest.get("files", {}).items():
            p = folder / rel
            if not p.is_file():
                raise BertcError(f"{p} is missing from the artifact; recompile it")
            if p.stat().st_size != meta["bytes"]:
                raise BertcError(f"{p} is {p.stat().st_size} bytes, the manifest says {meta['bytes']} (truncated?)")
            if sha256_file(p) != meta["sha256"]:
                raise BertcError(f"{p} does not match its sha256 in the manifest (altered or corrupt); recompile")
    return manifest
