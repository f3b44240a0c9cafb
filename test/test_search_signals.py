"""A stopped search keeps what it finished: training continues from its last finished epoch as if it had
never stopped, SIGTERM and Ctrl-C during the teacher's fine-tuning leave a study that `--resume`
continues, and no staging folder is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import transformers as T
from bertc.search import distill
from bertc.search.distill import TrainConfig, train
from bertc.search.tasks import load_task
from bertc.search.teacher import packaged_minilm

BERTC = [sys.executable, "-m", "bertc.cli"]


# runs the command after it with SIGINT's default action (an ignored signal stays ignored across exec)
SIGINT_DEFAULT = [sys.executable, "-c", ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                                         "os.execv(sys.argv[1], sys.argv[1:])")]


def _tiny_config(**kw) -> T.BertConfig:
    return T.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, **kw)


def test_training_continues_from_its_checkpoint_as_if_never_stopped(tmp_path, monkeypatch):
    task, tokenizer = load_task("rt-sentiment"), T.AutoTokenizer.from_pretrained(str(packaged_minilm()))
    config = TrainConfig(epochs=2, lr=1e-3, batch_size=16, max_train=64)

    def model():
        torch.manual_seed(0)
        return T.BertForSequenceClassification(_tiny_config(num_labels=2))

    whole = model()
    history = train(whole, tokenizer, task, config, progress=False)
    loss, calls = distill._loss, []

    def stopped_in_epoch_2(*args, **kwargs):  # Ctrl-C (or SIGTERM, which bertc.cli turns into it) mid-epoch
        calls.append(1)
        if len(calls) == 64 // 16 + 2:
            raise KeyboardInterrupt
        return loss(*args, **kwargs)

    monkeypatch.setattr(distill, "_loss", stopped_in_epoch_2)
    checkpoint = tmp_path / "teacher.checkpoint"
    with pytest.raises(KeyboardInterrupt):
        train(model(), tokenizer, task, config, progress=False, checkpoint=checkpoint)
    assert [p.name for p in tmp_path.iterdir()] == ["teacher.checkpoint"]  # whole, no temporary file beside it
    monkeypatch.setattr(distill, "_loss", loss)
    resumed = model()
    again = train(resumed, tokenizer, task, config, progress=False, checkpoint=checkpoint)
    assert again["resumed_after_epoch"] == 1 and len(calls) == 64 // 16 + 2  # epoch 1 was not trained again
    for a, b in zip(again["history"], history["history"], strict=True):
        assert a == pytest.approx(b)
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=1e-5, atol=1e-6)
    # a checkpoint of other settings is not continued from: it starts afresh
    other = train(model(), tokenizer, task, TrainConfig(epochs=1, lr=1e-3, batch_size=16, max_train=32),
                  progress=False, checkpoint=checkpoint)
    assert "resumed_after_epoch" not in other


def test_a_killed_fine_tunings_staging_folder_is_removed_by_the_next(tmp_path, monkeypatch):
    from bertc.search import teacher

    from bertc.artifact import owner_token

    encoder = tmp_path / "encoder"
    T.BertModel(_tiny_config(architectures=["BertModel"])).save_pretrained(str(encoder))
    T.AutoTokenizer.from_pretrained(str(packaged_minilm())).save_pretrained(str(encoder))
    monkeypatch.setenv("BERTC_CACHE", str(tmp_path / "cache"))
    config = TrainConfig(epochs=1, max_train=32)
    name = f"rt-sentiment-{teacher.teacher_key(encoder, load_task('rt-sentiment'), config)}"
    gone = subprocess.Popen(["true"])
    gone.wait()
    teachers = tmp_path / "cache" / "teachers"
    stale = teachers / f".{name}.partial-{owner_token(gone.pid, 1)}-x1y2z3"  # SIGKILLed mid fine-tuning
    (stale / "sub").mkdir(parents=True)
    (teachers / ".notes").mkdir()  # not a staging folder: left alone

    def finetune(model_dir, task, out, config, progress, checkpoint=None):  # no training: the folders are tested
        (Path(out) / "teacher_report.json").write_text("{}")

    monkeypatch.setattr(teacher, "finetune", finetune)
    folder = teacher.finetuned_teacher(encoder, config=config, progress=False)
    assert sorted(p.name for p in teachers.iterdir()) == [".notes", name] and folder == teachers / name


def _wait_for(what, proc: subprocess.Popen, log: Path, limit: float = 600):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        assert proc.poll() is None, f"bertc search ended (rc {proc.returncode}) first:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"timed out; the search's output:\n{log.read_text()[-3000:]}")


def _state(out: Path) -> dict:
    try:
        return json.loads((out / "search.json").read_text())
    except (OSError, ValueError):
        return {}


def test_sigterm_while_the_teacher_fine_tunes_leaves_a_study_that_resume_continues(tmp_path):
    encoder = tmp_path / "encoder"  # not a classifier: the search fine-tunes it on the task first
    torch.manual_seed(0)
    T.BertModel(_tiny_config(architectures=["BertModel"])).save_pretrained(str(encoder))
    T.AutoTokenizer.from_pretrained(str(packaged_minilm())).save_pretrained(str(encoder))
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"seq_len": 32, "layers": [1, 2], "hidden": [32], "heads": [2], "ffn": [32, 48, 64],
                                 "threads": [1]}))
    out, cache, log = tmp_path / "s", tmp_path / "cache", tmp_path / "log.txt"
    teachers = cache / "teachers"
    env = {**os.environ, "BERTC_CACHE": str(cache)}
    cmd = [*BERTC, "search", "-o", str(out), "--teacher", str(encoder), "--space", str(space), "--max-train", "2000",
           "--trials", "100", "--round-size", "1", "--timed-per-round", "1", "--final-epochs", "0", "--runs", "3",
           "--epochs", "0.05", "--latency-budget", "1x"]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    try:
        # the first epoch's checkpoint: the fine-tuning (3 epochs) is under way
        _wait_for(lambda: list(teachers.glob("*.checkpoint")), proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 2
    finally:
        proc.kill()
    text = log.read_text()
    assert "Traceback" not in text, text
    assert text.strip().splitlines()[-1] == (
        f"bertc: error: interrupted: the settings and the finished setup steps are kept in {out}; continue with "
        f"`bertc search --resume -o {out}`")
    assert not list(teachers.glob("*/teacher_report.json")), "the stop came after the fine-tuning"
    checkpoint = [p.name for p in teachers.iterdir()]
    assert len(checkpoint) == 1 and checkpoint[0].endswith(".checkpoint")  # no staging folder left
    assert _state(out)["settings"]["teacher"] == str(encoder)

    # --resume continues: the fine-tuning from its checkpoint, then the rest of the setup; Ctrl-C after it, among the
    # trials. The search gets SIGINT's default action whatever this process inherited: a suite started in the
    # background (`.ci/run &`) ignores SIGINT, so did its search, which ran to the end (rc 0).
    with open(log, "w") as f:
        proc = subprocess.Popen([*SIGINT_DEFAULT, *BERTC, "search", "--resume", "-o", str(out)], env=env, stdout=f,
                                stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: "teacher" in _state(out), proc, log)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 2, log.read_text()[-3000:]
    finally:
        proc.kill()
    text = log.read_text()
    assert "Traceback" not in text and f"every finished trial is kept in {out}; continue with" in text, text
    teacher = list(teachers.iterdir())
    assert len(teacher) == 1 and teacher[0].is_dir()  # in place; its checkpoint removed, nothing else
    training = json.loads((teacher[0] / "teacher_report.json").read_text())["training"]
    assert training["resumed_after_epoch"] >= 1 and len(training["history"]) == 3
    assert training["train_examples"] == 2000  # --max-train: the teacher's fine-tuning is quick too
    state = _state(out)
    assert state["teacher_dir"] == str(teacher[0]) and state["budget_ms"] > 0
    assert (out / "importance.npz").is_file() and (out / "teacher_logits.npy").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
