"""The command line on careless input: one `bertc: error:` line that says what is wrong and what to do,
found before any work is done, and nothing written; a long --text is cut with a warning, not silently."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as T

import bertc
from bertc.cli import main as cli

BERTC = [sys.executable, "-m", "bertc.cli"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A one-layer BERT with MiniLM's tokenizer, saved as a model folder."""
    from bertc.search.teacher import packaged_minilm

    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    cfg = T.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=64)
    T.BertModel(cfg).save_pretrained(str(folder))
    T.AutoTokenizer.from_pretrained(str(packaged_minilm())).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def art(folder, tmp_path_factory) -> Path:
    """That BERT compiled at seq 16 (so `bertc run --text` works)."""
    return bertc.compile(folder, seq_len=16, out=tmp_path_factory.mktemp("art") / "m.bertc", progress=False).path


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        rc = cli(argv)
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bertc: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_text_that_is_not_utf8_is_an_error_not_a_traceback(art, tmp_path):
    run = subprocess.run([*BERTC, "run", str(art), "--text", b"\xff\xfe ok"], capture_output=True, text=True,
                         check=False, timeout=300)
    assert run.returncode == 2 and run.stdout == ""
    _one_error(run.stderr, "--text is not valid UTF-8 (byte 0xff at position 0)", "--input-ids")


def test_a_long_text_is_cut_with_a_warning(art, capsys):
    rc, out, err = _cli(["run", str(art), "--text", "word " * 20000], capsys)
    assert rc == 0 and "on 16 tokens" in out
    warning = (f"bertc: warning: --text is 20002 tokens, cut to the first 16 ({art} was compiled with --seq-len 16); "
               "compile with a larger --seq-len to use more of it")
    assert err.strip().splitlines() == [warning]
    rc, out, err = _cli(["run", str(art), "--text", "a short one"], capsys)
    assert rc == 0 and err == ""  # nothing to say when it fits


def test_a_batch_of_sentences_runs_at_the_longest_of_them(folder, tmp_path, capsys):
    """--text once per sentence of a --batch 2 --max-seq-len artifact: padded to the longer one (not to the
    bound) and masked; each sentence's outputs are PyTorch's on that sentence alone."""
    art = bertc.compile(folder, max_seq_len=48, batch=2, out=tmp_path / "b.bertc", progress=False).path
    texts = ["a gripping, funny film with a heart", "dull"]
    tok, model = T.AutoTokenizer.from_pretrained(str(folder)), T.BertModel.from_pretrained(str(folder)).eval()
    capsys.readouterr()  # transformers' loading bar
    rc, out, err = _cli(["run", str(art), "--text", texts[0], "--text", texts[1], "--output", str(tmp_path / "o.npz")],
                        capsys)
    lengths = [len(tok(t)["input_ids"]) for t in texts]
    assert rc == 0 and f"on 2 sentences of {lengths[0]} tokens" in out and lengths[1] < lengths[0], out + err
    ours = np.load(tmp_path / "o.npz")["last_hidden_state"]
    assert ours.shape == (2, lengths[0], 32)
    for i, text in enumerate(texts):
        with torch.no_grad():
            want = model(**tok(text, return_tensors="pt")).last_hidden_state[0].numpy()
        assert np.abs(ours[i, :lengths[i]] - want).max() <= 1e-4, i
    rc, out, err = _cli(["run", str(art), "--text", texts[0]], capsys)
    assert rc == 2
    _one_error(err, "--text was given 1 time(s), but", "batch of 2: give --text once per sentence (2)")


def test_text_and_token_ids_are_one_or_the_other(art, tmp_path, capsys):
    np.save(tmp_path / "ids.npy", np.array([[101, 2023, 102]]))
    rc, out, err = _cli(["run", str(art), "--text", "hello", "--input-ids", str(tmp_path / "ids.npy")], capsys)
    assert rc == 2 and out == ""
    _one_error(err, "give either --text or --input-ids, not both")
    rc, out, err = _cli(["run", str(art), "--text", "hello", "--attention-mask", str(tmp_path / "ids.npy")], capsys)
    assert rc == 2 and out == ""
    _one_error(err, "--attention-mask goes with --input-ids", "leave out --attention-mask")


@pytest.mark.parametrize(("output", "message"), [
    ("missing/out.npz", "the folder '{tmp}/missing' does not exist; create it first"),
    ("a-file/out.npz", "the folder '{tmp}/a-file' does not exist"),
    ("a-folder", "'{tmp}/a-folder' is a folder; give a file name such as {tmp}/a-folder/out.npz"),
])
def test_an_unwritable_output_is_refused_before_the_run(art, tmp_path, capsys, output, message):
    (tmp_path / "a-file").write_text("mine")
    (tmp_path / "a-folder").mkdir()
    before = sorted(tmp_path.rglob("*"))
    rc, out, err = _cli(["run", str(art), "--text", "hello", "--output", str(tmp_path / output)], capsys)
    assert rc == 2 and out == ""  # the run did not happen
    _one_error(err, f"--output {tmp_path / output}: " + message.format(tmp=tmp_path))
    assert sorted(tmp_path.rglob("*")) == before and (tmp_path / "a-file").read_text() == "mine"


def test_output_without_npz_names_the_file_written(art, tmp_path, capsys):
    rc, out, err = _cli(["run", str(art), "--text", "hello", "--output", str(tmp_path / "outnoext")], capsys)
    assert rc == 0 and err == ""
    assert f"saved to {tmp_path / 'outnoext.npz'}\n" in out and sorted(p.name for p in tmp_path.iterdir()) == ["outnoext.npz"]
    assert set(np.load(tmp_path / "outnoext.npz")) == {"last_hidden_state", "pooler_output"}


@pytest.mark.parametrize(("argv", "message"), [
    (["bench", "ART", "--runs", "-1"], "argument --runs: -1 must be at least 1; see `bertc bench --help`"),
    (["bench", "ART", "--runs", "0"], "argument --runs: 0 must be at least 1"),
    (["bench", "ART", "--runs", "3x"], "argument --runs: '3x' is not an integer"),
    (["bench", "ART", "--warmup", "-1"], "argument --warmup: -1 must be at least 0"),
    (["bench", "ART", "--seq", "0"], "argument --seq: 0 must be at least 1"),
    (["bench", "ART", "--top", "0"], "argument --top: 0 must be at least 1"),
    (["bench", "ART", "--threads", "0"], "argument --threads: 0 must be at least 1"),
    (["bench", "ART", "--text", "hello", "--seq", "4"], "--seq sets the length of the synthetic input"),
    (["run", "ART", "--text", "hello", "--threads", "-2"], "argument --threads: -2 must be at least 1"),
    (["estimate", "cfg.json", "--seq-len", "0"], "argument --seq-len: 0 must be at least 1"),
    (["compile", "model", "--batch", "0", "-o", "TMP/x.bertc"], "argument --batch: 0 must be at least 1"),
    (["calibrate", "--threads", "0,2", "-o", "TMP/p.json"], "--threads 0,2: expected a comma-separated list"),
    (["search", "-o", "TMP/s", "--teacher", "TMP/none", "--epochs", "nan"], "argument --epochs: nan must be a positive"),
    (["search", "-o", "TMP/s", "--teacher", "TMP/none", "--trials", "0"], "argument --trials: 0 must be at least 1"),
    (["search", "-o", "TMP/s", "--teacher", "TMP/none", "--final-epochs", "-1"], "argument --final-epochs: -1 must"),
    (["prune", "model", "2:4", "--task", "rt-sentiment", "--epochs", "0"], "argument --epochs: 0 must be at least 1"),
])
def test_bad_numbers_are_one_line_errors_before_any_work(art, tmp_path, capsys, argv, message):
    argv = [str(art) if a == "ART" else a.replace("TMP", str(tmp_path)) for a in argv]
    rc, out, err = _cli(argv, capsys)
    assert rc == 2 and out == ""
    _one_error(err, message)
    assert list(tmp_path.iterdir()) == []  # nothing written
