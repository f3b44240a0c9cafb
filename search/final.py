"""The end of a search: the Pareto front and report, and the chosen student trained longer, checked and saved.

    report = finish(st)          # OUT/trials.csv, pareto.{csv,png,html}, OUT/student; search_report.json's content
    write_report(st, report)     # OUT/search_report.json

What the final student's recipe is, and why: ``bertc search --help``.
"""

from __future__ import annotations

import json
import shutil
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig

from bertc.artifact import publish
from bertc.errors import BertcError
from bertc.sparsity import model_masks, parse_spec
from bertc.student import load_student

from .distill import HiddenMap, TrainConfig, augment, train
from .inherit import Importance, plan_cut
from .recalibrate import study_profile
from .report import format_table, pareto_front, write_csv, write_plots
from .space import Candidate
from .study import Study
from .tasks import Task, load_task, train_examples
from .teacher import compiled_accuracy, load_classifier, quiet_transformers, split_accuracy
from .timing import INTERLEAVED_ROUNDS, compile_quiet, interleaved_ratio, time_artifact, torch_ms
from .trials import SCORED_STAGES, TrialRecord, trial_records


def finish(st: Study) -> dict:
    """The front and the report of a study whose rounds are done, and its final student (or the error that
    none met the budget, after the report is written)."""
    records = trial_records(st.study)
    scored = _repriced(st, [r for r in records if r.stage in SCORED_STAGES])
    chosen = st.best(st.study)
    t = st.state["teacher"]
    front = pareto_front(scored)
    write_csv(sorted(scored, key=lambda r: r.number), st.out / "trials.csv")
    write_csv(front, st.out / "pareto.csv")
    plots = write_plots(scored, front, st.out / "pareto", st.budget_ms, t,
                        None if chosen is None else replace(chosen, latency_ms=chosen.measured_ms),
                        latency=st.lengths.short())
    timed = [r for r in records if r.stage == "timed"]
    errors = [abs(r.predicted_ms - r.measured_ms) / r.measured_ms for r in timed]
    stages = {k: sum(r.stage == k for r in records) for k in ("screened-out", "trained", "timed")}
    report = {"settings": st.settings.__dict__, **st.state, "trials": [r.to_json() for r in records], "stages": stages,
              "pareto_front": [r.to_json() for r in front], "chosen": None if chosen is None else chosen.to_json(),
              "cost_model_on_timed": {"candidates": len(timed),
                                      "mape": round(statistics.mean(errors), 4) if errors else None,
                                      "max_relative_error": round(max(errors), 4) if errors else None},
              "plots": [str(p) for p in plots]}
    st.log(f"\n{stages['screened-out']} candidates screened out by the cost model, {stages['trained']} trained "
           f"and scored only, {stages['timed']} also compiled and timed; cost model on the timed: mean |error| "
           f"{report['cost_model_on_timed']['mape'] or 0:.1%}")
    st.log(f"Pareto front (budget {st.budget_ms:.3f} ms = {st.budget_ms / t['latency_ms']:.2f} x the teacher's "
           f"{t['latency_ms']:.3f} ms; {st.lengths.describe()}):\n" + format_table(front, st.budget_ms))
    if chosen is None:
        st.state["final"] = None
        write_report(st, report)
        raise BertcError(f"no timed candidate met the {st.budget_ms:.3f} ms budget after {len(scored)} scored "
                         f"trials; run more (`bertc search --resume -o {st.out} --trials N`), add smaller choices "
                         "to the space, or raise the budget")
    report["final"] = final_student(st, chosen)
    write_report(st, report)
    return report


def _repriced(st: Study, rows: list[TrialRecord]) -> list[TrialRecord]:
    """The untimed rows at the price of the study's last re-fitted profile. The latency the sampler was told
    came from the profile of the trial's round, and the first rounds' timings can move that far: the
    built-in profile, fitted on another CPU, priced a MiniLM-sized student 6x under its measured time, and a
    front drawn with such prices puts never-timed students ahead of every timed one."""
    profile = study_profile(st.out, st.settings.target, st.settings.profile)
    config = AutoConfig.from_pretrained(st.state["teacher_dir"], local_files_only=True)
    return [r if r.measured_ms is not None else
            replace(r, latency_ms=round(st.predict(Candidate.from_dict(r.candidate), config, (profile,))[0], 4))
            for r in rows]


def write_report(st: Study, report: dict) -> None:
    tmp = st.out / ".search_report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(st.out / "search_report.json")


def final_student(st: Study, chosen: TrialRecord) -> dict:
    """Distill the chosen student longer, score it on dev and test, compile and time it, save it."""
    s, cand = st.settings, Candidate.from_dict(chosen.candidate)
    task = load_task(s.task)
    teacher, tokenizer = load_classifier(st.state["teacher_dir"], task)
    student = load_student(chosen.student)
    out: dict[str, Any] = {"trial": chosen.number, "describe": cand.describe(), "candidate": cand.asdict(),
                           "search_dev_accuracy": chosen.dev_accuracy}
    if s.final_epochs > 0:
        out["final_training"] = _train_longer(st, cand, student, teacher, tokenizer, task)
    out["dev_accuracy"] = split_accuracy(student, tokenizer, task, "dev")
    out["test_accuracy"] = split_accuracy(student, tokenizer, task, "test")
    folder = _save(st, student, tokenizer, out)
    _measure(st, cand, folder, student, teacher, tokenizer, task, out)
    t = st.state["teacher"]
    (folder / "student_report.json").write_text(json.dumps(out, indent=2) + "\n")
    compiled = "".join(f"; compiled {d} {out[k]:.4f}" for d, k in ((cand.precision, "compiled_test_accuracy"),
                                                                   ("fp32", "compiled_test_accuracy_fp32")) if k in out)
    st.log(f"chosen: {cand.describe()} (trial {chosen.number}): test accuracy {out['test_accuracy']:.4f} "
           f"({out['accuracy_kept']:.1%} of the teacher's {t['test_accuracy']:.4f}{compiled}), "
           f"{out['latency_ms']:.3f} ms with bertc at {cand.threads} thread(s) ({out['speedup_vs_teacher']:.2f}x "
           f"faster than the compiled teacher's {t['latency_ms']:.3f} ms; PyTorch runs the teacher in "
           f"{out['torch_ms']['teacher']:.3f} ms); timed "
           f"alternately with the teacher, {out['interleaved']['speedup']:.2f}x (range "
           f"{out['interleaved']['min']:.2f}-{out['interleaved']['max']:.2f}x over {INTERLEAVED_ROUNDS} pairs)\n"
           f"saved {folder}: `{out['compile_command']}` makes the artifact these times are of")
    return out


def _train_longer(st: Study, cand: Candidate, student, teacher, tokenizer, task: Task) -> dict:
    """--final-epochs of distillation on the train texts and --augment perturbed copies labelled by the teacher,
    the sparsity mask held, the hidden states mapped to the teacher's layers and channels the student kept."""
    s = st.settings
    masks = model_masks(student, parse_spec(cand.sparsity)) if cand.sparsity else None
    cut = plan_cut(Importance.load(st.out / "importance.npz"), cand.layers, cand.hidden, [cand.heads] * cand.layers,
                   list(cand.ffn))
    hidden_map = HiddenMap([0] + [i + 1 for i in cut.layers], torch.from_numpy(cut.hidden))
    texts = [x for x, _ in train_examples(task, s.max_train)]
    unlabelled = augment(texts, s.augment, s.seed)
    st.log(f"final: distilling {cand.describe()} for {s.final_epochs} epoch(s) on {len(texts)} + "
           f"{len(unlabelled)} augmented examples (logits{' and hidden states' if s.hidden_weight else ''})")
    return train(student, tokenizer, task, TrainConfig(
        epochs=s.final_epochs, lr=1e-4, max_train=s.max_train, seed=s.seed, hidden_weight=s.hidden_weight),
        teacher=teacher, masks=masks, hidden_map=hidden_map, unlabelled=unlabelled, progress=st.progress,
        desc="final")


STUDENT_README = """# A bertc search student

A BERT sequence classifier cut from the teacher by `bertc search`, with its tokenizer.

- Compiled: `{out}/student.bertc` is the artifact the search timed: encoder, classifier head and tokenizer.
  `bertc run {out}/student.bertc --text "a gripping film"` prints the label and its probability (add
  `--device qemu` or `--device adb` for a phone; no Python runs there).
- Compile again: `bertc compile {folder} --target TARGET --max-seq-len N` (the search prints its own command).
- PyTorch: `bertc.student.load_student("{folder}")` gives a `BertForSequenceClassification`. Plain
  `transformers.AutoModelForSequenceClassification.from_pretrained` cannot load this folder when its layers
  differ (config.json's `attention_heads` and `intermediate_sizes`, one per layer): transformers builds every
  layer with one head count and one FFN width, and takes the head size as hidden / heads.
"""


def _save(st: Study, student, tokenizer, out: dict) -> Path:
    """The student (classifier, tokenizer, report so far) staged and published as ``OUT/student``."""
    folder, staging = st.out / "student", st.out / ".student.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    with quiet_transformers():
        student.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
    (staging / "student_report.json").write_text(json.dumps(out, indent=2) + "\n")
    (staging / "README.md").write_text(STUDENT_README.format(folder=folder, out=st.out))
    publish(staging, folder)
    return folder


def _measure(st: Study, cand: Candidate, folder: Path, student, teacher, tokenizer, task: Task, out: dict) -> None:
    """The saved student compiled and timed again, its compiled accuracy (on the host), PyTorch's times and the
    teacher/student pairs timed alternately, added to ``out``. An int8 student's accuracy is also measured
    compiled fp32 (``compiled_test_accuracy_fp32``): what its int8 GEMMs cost in accuracy, side by side."""
    s, lengths, t = st.settings, st.lengths, st.state["teacher"]
    art = compile_quiet(folder, st.out / "student.bertc", s.target, lengths, cand.sparsity, cand.precision)
    out["artifact"], out["precision"] = str(art.path), cand.precision
    dtype = "" if cand.precision == "fp32" else f" --dtype {cand.precision}"
    out["compile_command"] = f"bertc compile {folder} --target {s.target} {lengths.compile_flags()}{dtype}"
    out["latency"] = lengths.describe()
    out["latency_ms"] = round(time_artifact(art.path, cand.threads, lengths, s.device, s.runs), 4)
    if not s.device or s.device == "host":
        out["compiled_test_accuracy"] = compiled_accuracy(art.path, task.test, cand.threads)
        if cand.precision != "fp32":
            fp32 = compile_quiet(folder, st.out / ".student-fp32.bertc", s.target, lengths, cand.sparsity)
            out["compiled_test_accuracy_fp32"] = compiled_accuracy(fp32.path, task.test, cand.threads)
            shutil.rmtree(fp32.path, ignore_errors=True)
    out["torch_ms"] = {"teacher": round(torch_ms(teacher.bert, lengths, t["threads"]), 4),
                       "student": round(torch_ms(student.bert, lengths, cand.threads), 4)}
    out["speedup_vs_teacher"] = round(t["latency_ms"] / out["latency_ms"], 3)
    work = st.out / ".teacher.bertc"
    teacher_art = compile_quiet(Path(st.state["teacher_dir"]), work, s.target, lengths, None)
    out["interleaved"] = interleaved_ratio(teacher_art.path, t["threads"], art.path, cand.threads,
                                           lengths=lengths, device=s.device, runs=s.runs)
    shutil.rmtree(work, ignore_errors=True)
    out["accuracy_kept"] = round(out["test_accuracy"] / t["test_accuracy"], 4)

