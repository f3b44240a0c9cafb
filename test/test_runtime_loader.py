"""The C loader (runtime/src/loader.h) parses manifest.json as JSON: a fresh artifact loads whatever its
model config holds, a damaged manifest is refused with what is wrong and the fix; and bertc_run reads
its numeric flags strictly. bertc_run is the C loader alone (no Python read_manifest before it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import tiny_model

import bertc


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("loader") / "bert.bertc"
    bertc.compile(tiny_model("bert"), seq_len=16, out=out)
    return out


@pytest.fixture(scope="module")
def ids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ids") / "ids.bin"
    np.arange(3, 19, dtype=np.int64).tofile(path)
    return path


def _edited(artifact, tmp_path, edit):
    """A copy of the artifact whose manifest.json is edit(manifest text) (nothing it hashes changes)."""
    art = tmp_path / "copy.bertc"
    shutil.copytree(artifact, art)
    (art / "manifest.json").write_text(edit((art / "manifest.json").read_text()))
    return art


def _bertc_run(art, ids_file, *flags):
    return subprocess.run([str(art / "bertc_run"), str(art), "--input-ids", str(ids_file), *flags],
                          capture_output=True, text=True, check=False, timeout=120)


def test_big_config_with_weights_bin_strings_loads(artifact, ids_file, tmp_path):
    """60,000 labels (a 3.6 MB manifest, over the old 1 MiB read) and config entries named like the
    loader's keys, placed before "files"."""

    def edit(text):
        manifest = json.loads(text)
        config = manifest["model"]["config"]
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(60_000)}
        config["label2id"] = {f"LABEL_{i}": i for i in range(60_000)}
        config["task"] = "weights.bin"
        config["weights.bin"] = {"sha256": "0" * 64, "format_version": 99}
        return json.dumps(manifest, indent=2)

    art = _edited(artifact, tmp_path, edit)
    assert (art / "manifest.json").stat().st_size > 3_000_000
    assert (art / "manifest.json").read_text().index('"weights.bin"') < (art / "manifest.json").read_text().index('"files"')
    ids = np.fromfile(ids_file, np.int64)[None]
    out = bertc.load(art)(ids)
    assert np.array_equal(out["last_hidden_state"], bertc.load(artifact)(ids)["last_hidden_state"])
    r = _bertc_run(art, ids_file)
    assert r.returncode == 0, r.stderr


def _set(key_path, value):
    def edit(text):
        manifest = json.loads(text)
        *parents, last = key_path
        node = manifest
        for k in parents:
            node = node[k]
        node[last] = value
        return json.dumps(manifest)
    return edit


@pytest.mark.parametrize(("edit", "message"), [
    (_set(["format_version"], "2"), "format_version is not a number"),
    (_set(["format_version"], 2.5), "format_version is 2.5, not a whole number"),
    (_set(["files", "weights.bin", "sha256"], 7), "files -> weights.bin -> sha256 is not a string"),
    (_set(["files", "weights.bin", "sha256"], "AB" * 32), "sha256 is not 64 lowercase hex digits"),
    (_set(["files"], {}), "has no files -> weights.bin"),
    (lambda t: t[: len(t) // 2], "not valid JSON \\(it ends early: truncated\\?"),
    (lambda t: t.replace('"files"', '"files": {}, "files"', 1), 'has the key "files" twice'),
    (lambda t: t.replace('"sha256":', '"sha256"', 1), "not valid JSON"),
    (lambda t: t + "{}", "not valid JSON \\(it is not one JSON object"),
    (lambda t: "[" + t + "]", "not valid JSON \\(it is not one JSON object"),
])
def test_damaged_manifest_is_refused_with_the_fix(artifact, ids_file, tmp_path, edit, message):
    r = _bertc_run(_edited(artifact, tmp_path, edit), ids_file)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "manifest.json" in r.stderr and "recompile" in r.stderr
    assert re.search(message, r.stderr), r.stderr


def test_oversized_manifest_is_refused_before_reading(artifact, ids_file, tmp_path):
    art = _edited(artifact, tmp_path, lambda t: t)
    with open(art / "manifest.json", "r+b") as f:
        f.truncate(65 << 20)  # sparse: no 65 MB written
    r = _bertc_run(art, ids_file)
    assert r.returncode == 2 and "more than the 64 MiB" in r.stderr, r.stderr


@pytest.mark.parametrize(("flag", "value", "valid"), [
    ("--threads", "2x", "1..256"), ("--threads", "0", "1..256"), ("--bench", "3000000000", "0..100000"),
    ("--warmup", "-1", "0..100000"), ("--seq", "", "1..2147483647"), ("--seq", "8.5", "1..2147483647"),
])
def test_bertc_run_reads_numbers_strictly(artifact, ids_file, flag, value, valid):
    r = _bertc_run(artifact, ids_file, flag, value)
    assert r.returncode == 6, r.stdout
    assert f"{flag} {value} is not a whole number in {valid}" in r.stderr
