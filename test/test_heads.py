"""Task heads in the artifact (issue 20: head.bin, runtime/src/head.h): a sentence-transformers folder answers
with sentence-transformers' own embedding, a *ForSequenceClassification folder with its labels and
probabilities, in this process and on ARM64 under qemu, tokenized by the artifact's C tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers as T
from conftest import tiny_config

import bertc
from bertc.errors import BertcError
from search.tasks import load_task

SNIPPETS = [t for t, _ in load_task("rt-sentiment").test[:40]]


def test_minilm_embeds_as_sentence_transformers_does(minilm_path, tmp_path):
    from sentence_transformers import SentenceTransformer

    art = bertc.compile(minilm_path, "host", out=tmp_path / "st.bertc", max_seq_len=512)
    head = json.loads((art.path / "report.json").read_text())["head"]
    assert head["kind"] == "embed" and head["source"] == "mean" and head["last"] == "L2 normalize"
    model = bertc.load(art.path)
    long = " ".join(SNIPPETS)  # over 256 tokens: sentence-transformers cuts it at its max_seq_length, so must we
    texts = [*SNIPPETS, long, "", "Crème brûlée, 中文 😀"]
    ours = model.encode(texts)
    want = SentenceTransformer(minilm_path, device="cpu").encode(texts, convert_to_numpy=True)
    assert model.text_max_tokens == 256 and len(model.tokenize(long)["input_ids"][0]) == 256
    assert ours.shape == want.shape == (len(texts), 384)
    assert np.abs(ours - want).max() < 1e-5
    assert (ours * want).sum(1).min() > 1 - 1e-5  # both are unit vectors: the cosine


def _classifier_folder(tmp_path, minilm_path, arch: str, labels: int = 3, problem: str | None = None) -> str:
    """A tiny random sequence classifier of ``arch`` beside MiniLM's tokenizer (its vocabulary size)."""
    torch.manual_seed(0)
    cfg = tiny_config(arch, vocab=30522)
    cfg.num_labels, cfg.id2label = labels, {i: f"class-{i}" for i in range(labels)}
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    cfg.problem_type = problem
    model = T.AutoModelForSequenceClassification.from_config(cfg).eval()
    folder = tmp_path / arch
    model.save_pretrained(folder)
    T.AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    return str(folder)


def _torch_probabilities(folder: str, texts: list[str], sigmoid: bool = False) -> np.ndarray:
    tok = T.AutoTokenizer.from_pretrained(folder)
    model = T.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    rows = []
    for text in texts:
        enc = tok(text, return_tensors="pt", truncation=True, max_length=64)
        enc.pop("token_type_ids") if model.config.model_type in ("distilbert", "roberta") else None
        with torch.inference_mode():
            logits = model(**enc).logits[0]
        rows.append((logits.sigmoid() if sigmoid else logits.softmax(-1)).numpy())
    return np.stack(rows)


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta", "electra", "albert"])
def test_classifier_heads_answer_as_pytorch(tmp_path, minilm_path, arch):
    folder = _classifier_folder(tmp_path, minilm_path, arch)
    art = bertc.compile(folder, "host", out=tmp_path / "c.bertc", max_seq_len=64)
    model = bertc.load(art.path)
    assert model.labels == ["class-0", "class-1", "class-2"]
    answers = model.classify(SNIPPETS[:8])
    want = _torch_probabilities(folder, SNIPPETS[:8])
    ours = np.array([[a["probabilities"][name] for name in model.labels] for a in answers])
    assert np.abs(ours - want).max() < 1e-5
    assert [a["label"] for a in answers] == [f"class-{i}" for i in want.argmax(1)]


def test_multi_label_classifier_takes_the_sigmoid(tmp_path, minilm_path, capsys):
    from bertc.cli import main

    folder = _classifier_folder(tmp_path, minilm_path, "bert", labels=4, problem="multi_label_classification")
    assert main(["compile", folder, "-o", str(tmp_path / "m.bertc"), "--max-seq-len", "64", "-q"]) == 0
    assert ("text in: WordPiece tokenizer.bin (30522 tokens, texts cut to 64); head: classify -> logits, "
            "probabilities (4 labels)") in capsys.readouterr().out
    art = tmp_path / "m.bertc"
    assert json.loads((art / "report.json").read_text())["head"]["last"] == "sigmoid"
    out = bertc.load(art).run_text(SNIPPETS[0])[0]
    assert np.abs(out["probabilities"][0] - _torch_probabilities(folder, SNIPPETS[:1], sigmoid=True)[0]).max() < 1e-5


def test_classifier_answers_on_arm64_under_qemu(tmp_path, minilm_path, capsys):
    folder = _classifier_folder(tmp_path, minilm_path, "bert")
    art = bertc.compile(folder, "android-arm64", out=tmp_path / "arm.bertc", max_seq_len=64)
    device = bertc.load(art.path, device="qemu")
    answer = device.classify(SNIPPETS[0])[0]
    want = _torch_probabilities(folder, SNIPPETS[:1])[0]
    assert answer["label"] == f"class-{want.argmax()}" and abs(answer["probability"] - want.max()) < 1e-5
    assert device.last_report["predictions"] == [{"label": answer["label"], "index": int(want.argmax()),
                                                  "probability": pytest.approx(want.max(), abs=1e-5)}]
    from bertc.cli import main

    assert main(["run", str(art.path), "--device", "qemu", "--text", SNIPPETS[0]]) == 0
    assert f"label: {answer['label']} with probability {answer['probability']:.4f}" in capsys.readouterr().out


def test_an_encoder_without_a_head_says_how_to_get_one(minilm_path, tmp_path):
    folder = tmp_path / "plain"
    T.AutoModel.from_pretrained(minilm_path).save_pretrained(folder)
    T.AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    model = bertc.load(bertc.compile(str(folder), "host", out=tmp_path / "p.bertc", max_seq_len=32).path)
    assert model.labels == [] and "sentence_embedding" not in model.run_text("text")[0]
    with pytest.raises(BertcError, match="compiled from a plain encoder; compile a \\*ForSequenceClassification"):
        model.classify("text")
    with pytest.raises(BertcError, match="sentence-transformers folder"):
        model.encode("text")


def test_a_damaged_head_bin_is_refused_at_load(tmp_path, minilm_path):
    """A head.bin whose labels run past its end (checksum fixed up, as a crafted file would be): refused by
    name, not read past the end (the fuzzer found that read; runtime/tests/fuzz_corpus/head-cut-labels)."""
    import hashlib
    import shutil

    folder = _classifier_folder(tmp_path, minilm_path, "bert")
    art = bertc.compile(folder, "host", out=tmp_path / "c.bertc", max_seq_len=16)
    copy = tmp_path / "copy.bertc"
    shutil.copytree(art.path, copy)
    data = (copy / "head.bin").read_bytes()[:-5]
    (copy / "head.bin").write_bytes(data[:8] + hashlib.sha256(data[40:]).digest() + data[40:])
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["head.bin"] = {"sha256": bertc.artifact.sha256_file(copy / "head.bin"),
                                     "bytes": len(data)}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BertcError, match="head.bin: inconsistent labels"):
        bertc.load(copy)


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_token_classifier_labels_every_token_as_pytorch(tmp_path, minilm_path, arch, capsys):
    torch.manual_seed(0)
    cfg = tiny_config(arch, vocab=30522)
    cfg.num_labels, cfg.id2label = 5, {i: f"tag-{i}" for i in range(5)}
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    model = T.AutoModelForTokenClassification.from_config(cfg).eval()
    folder = tmp_path / "ner"
    model.save_pretrained(folder)
    tok = T.AutoTokenizer.from_pretrained(minilm_path)
    tok.save_pretrained(folder)
    art = bertc.compile(str(folder), "host", out=tmp_path / "ner.bertc", max_seq_len=64)
    assert json.loads((art.path / "report.json").read_text())["head"]["kind"] == "classify tokens"
    compiled = bertc.load(art.path)
    texts = SNIPPETS[:4]
    answers = compiled.classify(texts)
    for text, answer in zip(texts, answers):
        enc = tok(text, return_tensors="pt", truncation=True, max_length=64)
        enc.pop("token_type_ids") if arch == "roberta" else None
        with torch.inference_mode():
            want = model(**enc).logits[0].softmax(-1).numpy()
        assert [a["id"] for a in answer] == enc["input_ids"][0].tolist()
        assert [a["label"] for a in answer] == [f"tag-{i}" for i in want.argmax(1)]
        assert max(abs(a["probability"] - p) for a, p in zip(answer, want.max(1))) < 1e-5
    from bertc.cli import main

    assert main(["run", str(art.path), "--text", texts[0]]) == 0
    printed = capsys.readouterr().out
    assert "token labels: " + " ".join(a["label"] for a in answers[0]) in printed


def test_classifier_answers_over_adb_with_text_the_shell_would_mangle(tmp_path, minilm_path, monkeypatch):
    """--device adb: the text travels through `adb shell` (quoted) to bertc_run --text on the phone (the stand-in
    adb runs it under qemu), and the answer is the host's."""
    import os
    from pathlib import Path

    monkeypatch.setenv("PATH", f"{Path(__file__).resolve().parent / 'stand_in'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("BERTC_FAKE_ADB_ROOT", str(tmp_path / "phone"))
    folder = _classifier_folder(tmp_path, minilm_path, "bert")
    text = 'it\'s a "gripping" $HOME film; `ls` && ünïcode 😀 \\ back'
    host = bertc.load(bertc.compile(folder, "host", out=tmp_path / "h.bertc", max_seq_len=64).path)
    phone = bertc.load(bertc.compile(folder, "android-arm64", out=tmp_path / "a.bertc", max_seq_len=64).path,
                       device="adb:FAKE1")
    want, got = host.classify(text)[0], phone.classify(text)[0]
    assert got["label"] == want["label"] and abs(got["probability"] - want["probability"]) < 1e-5
    assert phone.last_report["texts"][0]["ids"] == host.tokenize(text)["input_ids"][0].tolist()
