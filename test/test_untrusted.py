"""Files from someone else run no code and are read for what they say they are: a .pt2 is read without
unpickling (unless --trust-pickle), a checkpoint that lacks weights its config describes is refused,
a config number the compiler cannot use is named, and an artifact's manifest cannot point outside
its folder (issue 15: defects 2, 5, 6 and 9)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as T
from conftest import random_inputs, reference, save_pt2, tiny_model

import bertc
from bertc.artifact import read_manifest, sha256_file
from bertc.formats import load_model

# --------------------------------------------------------------------------- .pt2 archives (defect 2)


class CreatesFile:
    """Unpickling this creates a file: the stand-in for any code a crafted pickle runs."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="module")
def plain_pt2(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "m.pt2"
    save_pt2(tiny_model("bert", "sdpa"), path)
    return path


def _rewrite(src: Path, dst: Path, replace: dict) -> Path:
    """Copy the archive ``src`` to ``dst``, passing each member whose name ends with a key through its function."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            for suffix, change in replace.items():
                if info.filename.endswith(suffix):
                    data = change(data)
            zout.writestr(info.filename, data)
    return dst


def _pickled(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _weight_pickled(payload: bytes) -> dict:
    """Archive edits: the word embedding stored as a pickle (use_pickle), ``payload`` in its place."""
    def config(data: bytes) -> bytes:
        cfg = json.loads(data)
        cfg["config"]["m.embeddings.word_embeddings.weight"]["use_pickle"] = True
        return json.dumps(cfg).encode()

    return {"model_weights_config.json": config, "data/weights/weight_0": lambda _: payload}


def test_pt2_pickled_weight_runs_no_code_without_trust_pickle(plain_pt2, tmp_path):
    marker = tmp_path / "created-by-the-archive"
    evil = _rewrite(plain_pt2, tmp_path / "evil.pt2", _weight_pickled(_pickled(CreatesFile(marker))))
    with pytest.raises(bertc.BertcError, match="unpickling runs code.*--trust-pickle"):
        bertc.compile(str(evil), seq_len=16, out=tmp_path / "x.bertc")
    assert not marker.exists()
    assert not (tmp_path / "x.bertc").exists()
    # a weight pickled as a plain tensor (torch.export.save does that for some) is read with weights_only=True
    weight = torch.export.load(plain_pt2).state_dict["m.embeddings.word_embeddings.weight"]
    loaded, *_ = load_model(str(_rewrite(plain_pt2, tmp_path / "pickled.pt2", _weight_pickled(_pickled(weight)))))
    assert torch.equal(loaded.state_dict["m.embeddings.word_embeddings.weight"], weight)


def test_pt2_sample_inputs_are_never_unpickled(plain_pt2, tmp_path):
    """torch.export.load unpickles the sample inputs with weights_only=False; bertc makes its own inputs."""
    marker = tmp_path / "created-by-the-archive"
    evil = _rewrite(plain_pt2, tmp_path / "evil.pt2",
                    {"data/sample_inputs/model.pt": lambda _: _pickled(CreatesFile(marker))})
    art = bertc.compile(str(evil), seq_len=16, out=tmp_path / "x.bertc")
    assert not marker.exists()
    ids, mask, types = random_inputs(1, 16, 120, seed=3, pad_from=12)
    plain = bertc.compile(str(plain_pt2), seq_len=16, out=tmp_path / "plain.bertc")  # a plain archive still compiles
    assert np.array_equal(art.load()(ids, mask, types)["last_hidden_state"],
                          plain.load()(ids, mask, types)["last_hidden_state"])


# --------------------------------------------------------------------------- checkpoints (defect 5)


def _hf_folder(tmp_path: Path, model, **config_changes) -> Path:
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **config_changes}))
    return folder


@pytest.mark.parametrize("layers, message", [(3, r"missing encoder\.layer\.2\."),
                                             (1, r"unexpected encoder\.layer\.1\.")])
def test_checkpoint_that_does_not_fit_its_config_is_refused(tmp_path, layers, message):
    folder = _hf_folder(tmp_path, tiny_model("bert"), num_hidden_layers=layers)  # the weights hold 2 layers
    with pytest.raises(bertc.BertcError, match=message + ".*num_hidden_layers"):
        bertc.compile(str(folder), seq_len=16, out=tmp_path / "x.bertc")
    assert not (tmp_path / "x.bertc").exists()


def test_checkpoint_with_a_head_and_no_pooler_compiles_without_a_random_pooler(tmp_path, minilm_path):
    """A masked-LM checkpoint: its head is not the encoder's (left out), and it has no pooler, so the
    artifact has no pooler_output rather than one computed from random weights. The packaged MiniLM
    (a pooler, position_ids saved as a weight) still loads whole."""
    model, config, _, _ = load_model(minilm_path)
    assert config.num_hidden_layers == 6 and model.pooler is not None
    torch.manual_seed(0)
    lm = T.BertForMaskedLM(tiny_model("bert").config).eval()
    folder = _hf_folder(tmp_path, lm)
    art = bertc.compile(str(folder), seq_len=16, out=tmp_path / "x.bertc")
    ids, mask, types = random_inputs(1, 16, 120, seed=1, pad_from=10)
    ours = art.load()(ids, mask, types)
    assert sorted(ours) == ["last_hidden_state"]
    ref = reference(lm.bert, ids, mask, types)["last_hidden_state"]
    assert np.abs(ours["last_hidden_state"] - ref)[mask.astype(bool)].max() < 1e-4



# --------------------------------------------------------------------------- config numbers (defect 9)


@pytest.mark.parametrize("key, value", [("layer_norm_eps", float("nan")), ("layer_norm_eps", float("inf")),
                                        ("layer_norm_eps", 0), ("layer_norm_eps", -1e-12),
                                        ("hidden_dropout_prob", float("nan")), ("num_attention_heads", 2.5)])
def test_config_number_the_compiler_cannot_use_is_named(tmp_path, key, value):
    folder = _hf_folder(tmp_path, tiny_model("bert"), **{key: value})
    with pytest.raises(bertc.BertcError, match=f"config field '{key}' is .*fix the config"):
        bertc.compile(str(folder), seq_len=16, out=tmp_path / "x.bertc")
    assert not (tmp_path / "x.bertc").exists()


# --------------------------------------------------------------------------- manifests (defects 6 and 9)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "bert.bertc"
    bertc.compile(tiny_model("bert"), seq_len=16, out=out)
    return out


def _edited(artifact: Path, tmp_path: Path, edit) -> Path:
    art = tmp_path / "copy.bertc"
    shutil.copytree(artifact, art)
    manifest = json.loads((art / "manifest.json").read_text())
    (art / "manifest.json").write_text(json.dumps(edit(manifest, art)))
    return art


def _constructor_library(tmp_path: Path, marker: Path) -> Path:
    src = tmp_path / "evil.c"
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void run(void) {\n'
                   f'    FILE *f = fopen("{marker}", "w"); if (f) fclose(f);\n}}\n')
    lib = tmp_path / "evil.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


@pytest.mark.parametrize("where", ["absolute", "unlisted"])
def test_library_outside_the_hashed_files_is_never_loaded(artifact, tmp_path, where):
    marker = tmp_path / "constructor-ran"
    lib = _constructor_library(tmp_path, marker)

    def edit(m, art):
        if where == "absolute":
            m["library"] = str(lib)
        else:  # inside the folder, but not among the files the manifest hashes
            shutil.copy(lib, art / "extra.so")
            m["library"] = "extra.so"
        return m

    art = _edited(artifact, tmp_path, edit)
    with pytest.raises(bertc.BertcError, match="library"):
        bertc.load(art)
    assert not marker.exists()


@pytest.mark.parametrize("drop, message", [("files", "tool 'bertc_run', which is not among its hashed files"),
                                           ("tool", "names no tool")])
def test_bertc_run_that_is_not_hashed_is_never_run(artifact, tmp_path, drop, message):
    """bertc_run runs on a device (host, qemu, a phone) only as the manifest's hashed tool."""
    from bertc.device import DeviceModel

    marker = tmp_path / "tool-ran"

    def edit(m, art):
        if drop == "files":
            (art / "bertc_run").write_text(f"#!/bin/sh\ntouch {marker}\n")  # copytree kept it executable
            del m["files"]["bertc_run"]
        else:
            del m["tool"]
        return m

    art = _edited(artifact, tmp_path, edit)
    with pytest.raises(bertc.BertcError, match=message):
        DeviceModel(art, device="host")(np.ones((1, 16), np.int64))
    assert not marker.exists()


@pytest.mark.parametrize("name, message", [("../../etc/hostname", r"leaves the artifact folder"),
                                           ("/etc/hostname", "not a path inside"),
                                           ("outside", "leads out of the artifact folder")])
def test_file_names_stay_inside_the_artifact(artifact, tmp_path, name, message):
    secret = tmp_path / "secret.txt"
    secret.write_text("not the artifact's")

    def edit(m, art):
        if name == "outside":
            (art / "outside").symlink_to(secret)
        m["files"][name] = {"sha256": sha256_file(secret), "bytes": secret.stat().st_size}
        return m

    with pytest.raises(bertc.BertcError, match=message):
        read_manifest(_edited(artifact, tmp_path, edit))


@pytest.mark.parametrize("edit, message", [
    (lambda m: [m], "holds a list, not a bertc manifest"),
    (lambda m: {k: v for k, v in m.items() if k != "target"}, "has no 'target'"),
    (lambda m: {k: v for k, v in m.items() if k != "library"}, "has no 'library'"),
    (lambda m: {k: v for k, v in m.items() if k != "files"}, "has no 'files'"),
    (lambda m: {**m, "files": {k: {"bytes": v["bytes"]} for k, v in m["files"].items()}}, "needs a sha256"),
    (lambda m: {**m, "format_version": str(m["format_version"])}, r"format_version '2' \(a string, not a number\)"),
    (lambda m: {**m, "seq_len": "16"}, "'seq_len' is a string"),
    (lambda m: {**m, "golden": {"folder": "../x", "inputs": [], "outputs": [], "tolerance": 1}}, "golden folder"),
    (lambda m: {**m, "golden": {"folder": "golden"}}, "'golden' needs folder, inputs, outputs, tolerance"),
    (lambda m: {**m, "outputs": [{"name": "../../x", "shape": [1]}]}, "not a plain name"),
    (lambda m: {**m, "outputs": [{"name": "x", "shape": "1"}]}, "each output.s name and shape"),
])
def test_malformed_manifest_is_a_clear_error(artifact, tmp_path, edit, message):
    art = _edited(artifact, tmp_path, lambda m, _: edit(m))
    with pytest.raises(bertc.BertcError, match=message):
        bertc.load(art)


def test_malformed_manifest_is_one_error_line_from_the_cli(artifact, tmp_path, capsys):
    from bertc.cli import main

    art = _edited(artifact, tmp_path, lambda m, _: [m])
    ids = tmp_path / "ids.npy"
    np.save(ids, np.ones((1, 16), np.int64))
    assert main(["run", str(art), "--input-ids", str(ids)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bertc: error:") and "recompile" in err[0]
