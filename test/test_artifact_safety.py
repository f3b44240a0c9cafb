"""What `bertc compile -o` may touch: only a folder bertc provably wrote is replaced, nothing is
written when the output cannot be, a killed compile's staging folders are cleaned up by the next
one, the artifact gets the umask's mode, and a compile that cannot fit in memory is refused before
it starts (issue 15: defects 3, 7, 8, 9 and 10)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import tiny_model

import bertc
from bertc import artifact


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "bert.bertc"
    bertc.compile(tiny_model("bert"), seq_len=16, out=out)
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _web_app(tmp_path: Path) -> Path:
    app = tmp_path / "webapp"
    (app / "src").mkdir(parents=True)
    (app / "manifest.json").write_text(json.dumps({"name": "my app", "start_url": "/", "display": "standalone"}))
    (app / "src" / "index.js").write_text("console.log('hello')\n")
    (app / "notes.txt").write_text("do not lose these\n")
    return app


def test_folder_that_is_not_an_artifact_is_never_replaced(tmp_path):
    app = _web_app(tmp_path)
    before = _snapshot(app)
    with pytest.raises(bertc.BertcError, match="not a bertc manifest.*choose another -o"):
        bertc.compile(tiny_model("bert"), seq_len=16, out=app)
    assert _snapshot(app) == before


def test_artifact_holding_files_it_does_not_list_is_never_replaced(compiled, tmp_path):
    art = tmp_path / "art.bertc"
    shutil.copytree(compiled, art)
    (art / "notes.txt").write_text("mine\n")
    before = _snapshot(art)
    with pytest.raises(bertc.BertcError, match="holds notes.txt, which its manifest.json does not list"):
        bertc.compile(tiny_model("bert"), seq_len=16, out=art)
    assert _snapshot(art) == before
    # a GPU artifact's CPU build (--fallback cpu) has a manifest of its own, which the outer one does not list
    (art / "notes.txt").unlink()
    shutil.copytree(compiled, art / "cpu")
    manifest = artifact.read_manifest(art)
    artifact.write_manifest(art, replace(manifest, fallback=artifact.Fallback(cpu="cpu", target="host")))
    assert artifact.check_output(art) == art.resolve()


@pytest.mark.parametrize("out", [".", "..", "sub/.."])
def test_current_folder_and_its_parents_are_refused(tmp_path, monkeypatch, out):
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "manifest.json").write_text(json.dumps({"format_version": 2, "bertc_version": "0.1.0", "files": {}}))
    monkeypatch.chdir(project)
    before = _snapshot(tmp_path)
    with pytest.raises(bertc.BertcError, match="is the current folder"):
        bertc.compile(tiny_model("bert"), seq_len=16, out=out)
    assert _snapshot(tmp_path) == before


def test_refusal_is_one_error_line_from_the_cli(tmp_path, capsys):
    from bertc.cli import main

    model = tmp_path / "tiny"
    tiny_model("bert").save_pretrained(model)
    app = _web_app(tmp_path)
    before = _snapshot(app)
    capsys.readouterr()  # save_pretrained's progress bar
    assert main(["compile", str(model), "--seq-len", "16", "-q", "-o", str(app)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bertc: error:") and "choose another -o" in err[0]
    assert _snapshot(app) == before


def test_unwritable_output_fails_before_the_export(tmp_path, monkeypatch):
    import bertc.api

    def no_export(*args, **kwargs):
        raise AssertionError("the model was exported before the output was checked")

    monkeypatch.setattr(bertc.api, "export_model", no_export)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(bertc.BertcError, match="cannot write .*not a writable folder"):
        bertc.compile(tiny_model("bert"), seq_len=16, out=blocker / "x.bertc")


def test_the_manifest_record_writes_the_json_it_was_read_from(compiled):
    """read_manifest's Manifest gives back manifest.json byte for byte: the C loader and older tools read that JSON."""
    text = (compiled / "manifest.json").read_text()
    manifest = artifact.read_manifest(compiled)
    assert json.dumps(manifest.to_dict(), indent=2) + "\n" == text
    assert (manifest.batch, manifest.seq_len, manifest.target, manifest.tool) == (1, 16, "host", "bertc_run")


def test_recompiling_over_an_artifact_replaces_it_with_the_umask_mode(compiled, tmp_path):
    art = tmp_path / "art.bertc"
    shutil.copytree(compiled, art)
    old = os.umask(0o022)
    try:
        bertc.compile(tiny_model("bert", seed=1), seq_len=16, out=art)
    finally:
        os.umask(old)
    assert art.stat().st_mode & 0o777 == 0o755  # mkdtemp's 0700 before
    assert artifact.read_manifest(art).files["weights.bin"] != json.loads(
        (compiled / "manifest.json").read_text())["files"]["weights.bin"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_next_compile_removes_staging_folders_whose_owner_is_gone(tmp_path):
    owner = artifact.owner_token
    dead, me = _dead_pid(), os.getpid()
    stale = [tmp_path / f".x.bertc.partial-{owner(dead, 123)}-abcd1234",  # its compile was killed
             tmp_path / f".y.bertc.partial-{owner(me, 1)}-abcd1234",  # its PID now belongs to another process
             tmp_path / f".x.bertc.old-{owner(dead, 456)}"]
    live = [tmp_path / f".z.bertc.partial-{owner(me, artifact._start_ticks(me))}-abcd1234",  # a compile running
            tmp_path / f".v.bertc.partial-{dead}.123.0badc0de-abcd1234",  # another machine's, on a shared folder
            tmp_path / ".w.bertc.partial-k3j4h5g6",  # an older bertc's: its owner cannot be told
            tmp_path / "unrelated.partial-1-2"]
    for p in stale + live:
        p.mkdir()
        (p / "weights.bin").write_bytes(b"\0" * 64)
    bertc.compile(tiny_model("bert"), seq_len=16, out=tmp_path / "x.bertc")
    assert [p.exists() for p in stale] == [False] * len(stale)
    assert [p.exists() for p in live] == [True] * len(live)
    assert sorted(p.name for p in tmp_path.iterdir() if ".partial-" in p.name and ".x.bertc" in p.name) == []


def test_absurd_sizes_are_refused_before_anything_is_built(tmp_path, monkeypatch, minilm_path):
    from bertc import budget

    monkeypatch.setattr(budget, "available_bytes", lambda: 16 * 2**30)  # the same answer on any machine
    folder = tmp_path / "deep"
    folder.mkdir()
    cfg = json.loads((Path(minilm_path) / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 10_000}))  # and no weights
    with pytest.raises(bertc.BertcError, match=r"needs about \d+\.\d GiB .*10000 layers.*16\.0 GiB available.*"
                                               "smaller model"):
        bertc.compile(str(folder), seq_len=128, out=tmp_path / "deep.bertc")
    with pytest.raises(bertc.BertcError, match=r"--batch 1000000 .*needs about \d+\.\d GiB.*smaller --batch"):
        bertc.compile(tiny_model("bert"), seq_len=16, batch=1_000_000, out=tmp_path / "wide.bertc")
    assert not (tmp_path / "deep.bertc").exists() and not (tmp_path / "wide.bertc").exists()


def test_compile_need_comes_from_the_cost_model(minilm_path):
    from bertc import budget

    cfg = json.loads((Path(minilm_path) / "config.json").read_text())
    six = budget.compile_need(cfg, batch=1, seq_len=128)
    from bertc.cost import estimate

    est = estimate(cfg, seq_len=128)
    assert (six.weights_bytes, six.arena_bytes) == (est.weights_bytes, est.arena_bytes)
    assert budget.compile_need({**cfg, "num_hidden_layers": 12}, 4, 128).arena_bytes == 4 * est.arena_bytes
    assert budget.available_bytes() > 0
