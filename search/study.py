"""A study folder and its rounds: the setup (teacher, importance, logits, budget), then rounds of screen,
score, time and re-fit, told to Optuna. What each step does for the user: ``bertc search --help``.

    st = Study(out, settings, progress=True)
    st.check(); st.setup()                     # fails fast, then the setup steps not yet done in ``out``
    st.run(trials=16, timeout_min=None, workers=1, ray_address=None)
    st.best(st.study)                          # the TrialRecord the search ships, or None

``st.state`` is what search.json keeps besides the settings: ``teacher_dir``, ``lengths`` (what a latency
is measured on: search/lengths.py), ``teacher`` (its latency, threads, accuracies and shape), ``budget_ms``,
``teacher_anchor`` (the profile scaled by the teacher's measured / predicted time before the first round; with
int8 in the space the teacher is timed in int8 too, ``teacher["int8"]``, and its int8 GEMMs' scale anchored),
``sampler``, ``warm_start`` and ``recalibrations`` (one per round: its error, then the re-fit).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from tqdm import tqdm
from transformers import AutoConfig

from bertc.cost import config_ops, load_profile, profile_cpu_note, quality
from bertc.errors import BertcError
from bertc.pipeline import CompileOptions

from .distill import encode, predict_logits
from .inherit import importance
from .lengths import Lengths, study_lengths, token_counts
from .pool import Pool, save_student
from .recalibrate import APART, recalibrate, study_profile
from .settings import Settings
from .space import Candidate, Space, parse_space
from .tasks import load_task, train_examples
from .teacher import (
    TEACHER_CONFIG,
    check_folder,
    finetuned_teacher,
    is_classifier,
    load_classifier,
    packaged_minilm,
    split_accuracy,
)
from .timing import compile_and_time
from .trials import TrialRecord, owner, requeue_interrupted, sampler, scored_trials, storage, trial_records

STARTUP = 4  # random trials before TPE models the space: a search trains tens of candidates, not hundreds
MAX_ASKS = 400  # samples screened for one round before the space is declared (almost) empty under budget
SCREEN_SLACK = 1.10  # train candidates predicted up to 10% over budget: the cost model's error is about that
# The p50 of 30 runs moved by up to 2% from one timing to the next on a quiet host (ten alternate timings of the same
# student: 2.108-2.195 ms), so a candidate measured within 2% of the budget is not reliably under it. (On the Zen 4
# EPYC in a busy hour ten timings of a 6 x 384 student at the four dev-length points spread 5-7% by p50 and 5-9%
# by the quietest stretch's median, which the search times by, 1.5-4% below the p50: a margin for such an hour
# would refuse most students near the budget, so the final check re-times the chosen one beside the teacher.)
BUDGET_MARGIN = 0.02


class Study:
    """A study folder: settings, teacher facts, caches, the Optuna study and the re-calibrated profile."""

    def __init__(self, out: Path, settings: Settings, progress: bool):
        self.out, self.settings, self.progress = out, settings, progress
        self.space: Space = parse_space(settings.space)
        self.state: dict[str, Any] = {}
        self.lengths: Lengths | None = None  # set by setup (kept in state, so a resumed study keeps them)
        self._ops: dict[Candidate, list[list]] = {}  # the cost model's ops per candidate and length, priced each round

    def log(self, msg: str) -> None:
        if self.progress:
            tqdm.write(msg)

    def write_state(self) -> None:
        tmp = self.out / ".search.json.tmp"
        tmp.write_text(json.dumps({"settings": self.settings.__dict__, **self.state}, indent=2) + "\n")
        tmp.replace(self.out / "search.json")

    # ---- setup (once; kept in the folder)

    def check(self) -> None:
        """What can fail fast, before search.json is written: the task and the teacher's dimensions."""
        load_task(self.settings.task)
        load_profile(self.settings.profile, self.settings.target)  # a missing or bad --profile file fails here
        src = Path(self.settings.teacher) if self.settings.teacher else packaged_minilm()
        check_folder(src)
        for dtype in self.space.precision:  # fails here, not after the teacher's fine-tuning
            try:
                if CompileOptions(target=self.settings.target, dtype=dtype).check().is_gpu and dtype == "int8":
                    raise BertcError(f"target '{self.settings.target}' is a GPU, whose int8 is weight-only, and the "
                                     "cost model prices it as fp32, so the search could not weigh it")
            except BertcError as e:
                raise BertcError(f"the search space ({self.space.source}) has precision {dtype}: {e}. Give the space "
                                 "`precision: [fp32]` for this target") from None
        self.space.check_teacher(AutoConfig.from_pretrained(str(src), local_files_only=True))

    def setup(self) -> None:
        """The teacher (fine-tuned, or continued from its checkpoint), its importance, logits and timing;
        each step is skipped when an earlier run of this study finished it."""
        s = self.settings
        task = load_task(s.task)
        if "teacher_dir" not in self.state:
            src = Path(s.teacher) if s.teacher else None
            # --max-train makes a quick run quick: the teacher's fine-tuning too (cached apart from a full one)
            config = replace(TEACHER_CONFIG, max_train=s.max_train) if s.max_train else TEACHER_CONFIG
            self.state["teacher_dir"] = str(src if src is not None and is_classifier(src)
                                            else finetuned_teacher(src, s.task, config, progress=self.progress))
            self.write_state()
        teacher, tokenizer = load_classifier(self.state["teacher_dir"], task)
        self.space.check_teacher(teacher.config)
        if "lengths" not in self.state:
            bound = min(task.max_length, teacher.config.max_position_embeddings)
            self.state["lengths"] = study_lengths(
                self.space.lengths, token_counts(tokenizer, [t for t, _ in task.dev], bound), bound,
                f"the {task.name} dev split").to_json()
            self.write_state()
        self.lengths = Lengths.from_json(self.state["lengths"])
        self.log(f"latency: {self.lengths.describe()}")
        note = profile_cpu_note(load_profile(s.profile, s.target), s.target, s.device)
        if note:  # the teacher's timing corrects its scale before the first round; not its shape
            self.log(f"warning: {note}")
            self.state["profile_warning"] = note
        if not (self.out / "importance.npz").is_file():
            self.log("teacher: Taylor importance of heads, FFN neurons and hidden channels")
            importance(teacher, tokenizer, task).save(self.out / ".importance.npz")
            os.replace(self.out / ".importance.npz", self.out / "importance.npz")
        if not (self.out / "teacher_logits.npy").is_file():
            enc = encode(tokenizer, train_examples(task, s.max_train), task.max_length)
            np.save(self.out / ".teacher_logits.npy", predict_logits(teacher, enc, progress=self.progress,
                                                                     desc="teacher logits"))
            os.replace(self.out / ".teacher_logits.npy", self.out / "teacher_logits.npy")
        if "teacher" not in self.state:
            self.state["teacher"] = self._teacher_facts(teacher, tokenizer, task)
        t = self.state["teacher"]
        c, base = teacher.config, load_profile(s.profile, s.target)
        whole = lambda dtype: Candidate(c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
                                        (c.intermediate_size,) * c.num_hidden_layers, None, t["threads"], dtype)
        if "base_predicted_ms" not in t:  # the teacher priced as the candidate of its own shape
            t["base_predicted_ms"] = round(self.predict(whole("fp32"), c, (base,))[0], 4)
        if "int8" in self.space.precision and "int8" not in t:  # what anchors the int8 GEMMs' price before round 1
            self.log(f"teacher: compiling it --dtype int8 and timing it at {t['threads']} threads")
            work = self.out / "teacher-int8.bertc"
            ms = compile_and_time(Path(self.state["teacher_dir"]), work, s.target, self.lengths, t["threads"], None,
                                  s.device, s.runs, "int8")
            shutil.rmtree(work, ignore_errors=True)
            w8 = whole("int8")
            t["int8"] = {"latency_ms": round(ms, 4), "base_predicted_ms": round(self.predict(w8, c, (base,))[0], 4),
                         "base_int8_ms": round(self.kind_ms(w8, c, base, "linear_i8"), 4)}
        self.budget_ms = s.budget_ms or s.budget_fraction * t["latency_ms"]
        self.state["budget_ms"] = round(self.budget_ms, 4)
        if "teacher_anchor" not in self.state:  # the first re-fit, before the first round's screen
            scale = recalibrate(self.out, s.target, s.profile, self.teacher_records(), self.space.threads)
            self.state["teacher_anchor"] = {"measured_ms": t["latency_ms"], "base_predicted_ms": t["base_predicted_ms"],
                                            "scale": scale}
            self.log(f"cost model: the teacher measured {t['latency_ms']:.3f} ms, predicted "
                     f"{t['base_predicted_ms']:.3f} ms; the first round screens with the profile scaled by {scale}")
        self.write_state()

    def teacher_records(self) -> list[TrialRecord]:
        """The teacher's timings (fp32, and int8 when the space has it) as timed dense trials: measurements every
        re-fit of the profile counts."""
        t = self.state["teacher"]
        return [TrialRecord(-1, "COMPLETE", "timed", describe=f"teacher {d}", threads=t["threads"],
                            base_predicted_ms=r["base_predicted_ms"], base_int8_ms=r.get("base_int8_ms"),
                            measured_ms=r["latency_ms"]) for d, r in (("fp32", t), ("int8", t.get("int8"))) if r]

    def _teacher_facts(self, teacher, tokenizer, task) -> dict:
        threads = max(self.space.threads)
        self.log(f"teacher: compiling for {self.settings.target} and timing it at {threads} threads")
        work = self.out / "teacher.bertc"
        ms = compile_and_time(Path(self.state["teacher_dir"]), work, self.settings.target, self.lengths,
                              threads, None, self.settings.device, self.settings.runs)
        shutil.rmtree(work, ignore_errors=True)
        return {"latency_ms": round(ms, 4), "threads": threads, "dev_accuracy": split_accuracy(teacher, tokenizer, task, "dev"),
                "test_accuracy": split_accuracy(teacher, tokenizer, task, "test"),
                "config": {k: teacher.config.to_dict()[k] for k in ("num_hidden_layers", "hidden_size",
                                                                    "num_attention_heads", "intermediate_size")}}

    # ---- the cost model's price of a candidate

    def predict(self, cand: Candidate, teacher_config, profiles) -> list[float]:
        """Milliseconds for ``cand`` under each profile, in the study's terms (its lengths' points, combined).
        The passes run once per candidate and length (the ops do not depend on the profile); each round prices
        them with that round's re-fitted profile."""
        per_length = self._ops_of(cand, teacher_config, profiles[0])
        return [self.lengths.combine([p.overhead_ms(cand.threads) + sum(p.op_ms(o, cand.threads) for o in ops)
                                      for ops in per_length]) for p in profiles]

    def _ops_of(self, cand: Candidate, teacher_config, profile) -> list[list]:
        """``cand``'s ops at each length, priced with ``profile``'s weight cache and tile row floor."""
        ops = self._ops.get(cand)
        if ops is None:
            config = cand.config(teacher_config).to_dict()
            ops = self._ops[cand] = [config_ops(config, self.settings.target, n, prune=cand.sparsity,
                                                cache=profile.weight_cache, dtype=cand.precision,
                                                floor=profile.row_floor, threads=cand.threads)
                                     for n in self.lengths.points]
        return ops

    def kind_ms(self, cand: Candidate, teacher_config, profile, kind: str) -> float:
        """The part of ``cand``'s prediction under ``profile`` spent in ops of ``kind`` (APART's)."""
        per_length = self._ops_of(cand, teacher_config, profile)
        return self.lengths.combine([sum(profile.op_ms(o, cand.threads) for o in ops if o.kind == kind)
                                     for ops in per_length])

    def seed_frontier(self, study, teacher_config) -> None:
        """The compiler-aware warm start: before the sampler's first (random) trials, enqueue, for every
        layer count and thread count, the dense student the cost model prices closest under the budget (in the
        precision whose is the larger model): the largest of each depth that fits. Accuracy mostly grows with
        size, so these are the likely winners, and random sampling can take tens of trials to land near the
        budget line."""
        profile = study_profile(self.out, self.settings.target, self.settings.profile)  # scaled by the teacher's time
        best: dict[tuple[int, int, str], tuple[float, Candidate]] = {}
        for cand in self.space.dense_uniform():
            ms = self.predict(cand, teacher_config, (profile,))[0]
            key = (cand.layers, cand.threads, cand.precision)
            if ms <= self.budget_ms and ms > best.get(key, (0.0, None))[0]:
                best[key] = (ms, cand)
        # one seed per depth and thread count, as before precision was searched: the precision whose best is the
        # larger model (int8's, when it buys width; fp32's on a tie), so the seeds never crowd out the sampler
        size = lambda c: (4 * c.hidden + 2 * c.ffn[0]) * c.hidden  # a layer's weights
        seeds = {}
        for (n, t, _), (ms, c) in sorted(best.items()):
            rank = (size(c), c.precision == "fp32")
            if (n, t) not in seeds or rank > (size(seeds[n, t][1]), seeds[n, t][1].precision == "fp32"):
                seeds[n, t] = (ms, c)
        for key in sorted(seeds):
            study.enqueue_trial(self.space.params(seeds[key][1]), user_attrs={"warm_start": True})
        self.state["warm_start"] = [f"{c.describe()} ({ms:.3f} ms predicted)" for ms, c in
                                    (seeds[k] for k in sorted(seeds))]
        self.log("warm start: the largest dense student of each depth under budget, by the cost model: "
                 + ", ".join(self.state["warm_start"]))

    # ---- rounds

    def run(self, trials: int, timeout_min: float | None, workers: int, ray_address: str | None) -> None:
        """Rounds until ``trials`` candidates are scored (those of earlier runs of this study count) or
        ``timeout_min`` has passed; the Optuna study is left in ``self.study``."""
        s = self.settings
        study = self._open_optuna()
        teacher_config = load_classifier(self.state["teacher_dir"], load_task(s.task))[0].config
        if not study.trials and s.warm_start:
            self.seed_frontier(study, teacher_config)
        rerun = requeue_interrupted(study)
        if rerun:
            self.log(f"resuming: {rerun} trial(s) that were running when the search stopped will run again")
        self.write_state()
        pool = Pool(self.state["teacher_dir"], self.out, s, self.lengths, workers, ray_address)
        deadline = time.monotonic() + 60 * timeout_min if timeout_min else math.inf
        bar = tqdm(total=trials, initial=min(trials, len(scored_trials(study))), desc="search", unit="trial",
                   disable=not self.progress)
        self._postfix(bar, study)
        while len(scored_trials(study)) < trials and time.monotonic() < deadline:
            batch = self._screen_round(study, teacher_config, min(s.round_size, trials - len(scored_trials(study))))
            if not batch:
                break
            self._score_round(study, pool, batch)
            self._refit(study, {t.number for t, _ in batch})
            bar.update(min(len(batch), bar.total - bar.n))
            self._postfix(bar, study)
        bar.close()
        pool.close()
        self.study = study

    def _open_optuna(self):
        """The study's Optuna study, created or loaded from its storage, with the sampler described in state."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = self.settings
        tpe, self.state["sampler"] = sampler(s.seed, s.objective, self.budget_ms, STARTUP)
        directions = ["maximize", "minimize"] if s.objective == "pareto" else ["maximize"]
        return optuna.create_study(study_name="bertc-search", storage=storage(self.out, s.storage), sampler=tpe,
                                   directions=directions, load_if_exists=True)

    def _screen_round(self, study, teacher_config, want: int) -> list[tuple[Any, Candidate]]:
        """Ask Optuna until ``want`` candidates pass the screen (or MAX_ASKS were asked); each one priced with
        the study's re-fitted profile and the base one (--profile, or the built-in)."""
        s = self.settings
        profiles = (study_profile(self.out, s.target, s.profile), load_profile(s.profile, s.target))
        batch: list[tuple[Any, Candidate]] = []
        asked = over = 0
        while len(batch) < want and asked < MAX_ASKS:
            trial = study.ask()
            cand = self.space.sample(trial)
            asked += 1
            verdict = self._screen(study, trial, cand, teacher_config, profiles, [c for _, c in batch])
            if verdict == "train":
                batch.append((trial, cand))
            over += verdict == "over"
        if not batch and not over:  # a small space, every candidate of it scored: nothing new to try
            self.log(f"the space is exhausted: the last {asked} sampled candidates were all scored before")
            return []
        if not batch:
            raise BertcError(f"the cost model screened out {over} of {asked} sampled candidates in a row as over "
                             f"the {self.budget_ms:.3f} ms budget (the other {asked - over} were scored before): "
                             "the space has (almost) nothing new under it. Add smaller choices (fewer layers, "
                             "narrower FFN, sparsity) or raise the budget")
        self.log(f"round: {len(batch)} candidate(s) under budget after screening {asked} sampled: "
                 + ", ".join(c.describe() for _, c in batch))
        return batch

    def _screen(self, study, trial, cand: Candidate, teacher_config, profiles, taken: list[Candidate]) -> str:
        """Record the cost model's prediction on ``trial``; "train" if it is to be trained. Otherwise it is told
        here: "over" budget (screened-out), or "repeat": drawn twice in this round, or a scored candidate."""
        pred, base_pred = self.predict(cand, teacher_config, profiles)
        for k, v in {"owner": owner(), "candidate": cand.asdict(), "describe": cand.describe(),
                     "predicted_ms": round(pred, 4), "base_predicted_ms": round(base_pred, 4),
                     **{f: round(self.kind_ms(cand, teacher_config, profiles[1], k), 4) for k, f in APART.items()},
                     "threads": cand.threads}.items():
            trial.set_user_attr(k, v)
        if pred > SCREEN_SLACK * self.budget_ms:
            trial.set_user_attr("stage", "screened-out")
            trial.set_user_attr("latency_ms", round(pred, 4))
            self._constrain(trial, pred)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return "over"
        if cand in taken:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # drawn twice in one round
            return "repeat"
        # compared as Candidates: one saved before precision was searched reads as fp32
        earlier = next((t for t in scored_trials(study) if Candidate.from_dict(t.user_attrs["candidate"]) == cand),
                       None)
        if earlier is not None:  # drawn again: the sampler learns the same value, nothing is retrained
            known = TrialRecord.from_trial(earlier)
            for k in ("dev_accuracy", "latency_ms", "measured_ms"):
                if getattr(known, k) is not None:
                    trial.set_user_attr(k, getattr(known, k))
            trial.set_user_attr("stage", "duplicate")
            trial.set_user_attr("same_as", earlier.number)
            self._constrain(trial, known.latency_ms)
            study.tell(trial, earlier.values)
            return "repeat"
        return "train"

    def _score_round(self, study, pool: Pool, batch: list[tuple[Any, Candidate]]) -> None:
        """Train and score the round's candidates, compile and time its best ``timed_per_round`` by dev accuracy
        (after the training, so nothing competes with them for cores), and tell Optuna every result."""
        s = self.settings
        results = pool.score([(t.number, c) for t, c in batch])
        order = sorted(range(len(batch)), key=lambda i: -results[i]["dev_accuracy"])
        for rank, i in enumerate(order):
            trial, cand = batch[i]
            r = results[i]
            trial.set_user_attr("dev_accuracy", round(r["dev_accuracy"], 4))
            trial.set_user_attr("train_seconds", r["train_seconds"])
            latency, stage = trial.user_attrs["predicted_ms"], "trained"
            if rank < s.timed_per_round:
                folder = self.out / "trials" / f"{trial.number:04d}"
                save_student(folder / "student", r, self.state["teacher_dir"])
                measured = pool.time(folder, cand)
                latency, stage = measured, "timed"
                trial.set_user_attr("measured_ms", round(measured, 4))
                trial.set_user_attr("student", str(folder / "student"))
                self.log(f"  timed #{trial.number} {cand.describe()}: dev {r['dev_accuracy']:.4f}, predicted "
                         f"{trial.user_attrs['predicted_ms']:.3f} ms, measured {measured:.3f} ms")
            trial.set_user_attr("stage", stage)
            trial.set_user_attr("latency_ms", round(latency, 4))
            self._constrain(trial, latency)
            study.tell(trial, [r["dev_accuracy"], latency] if s.objective == "pareto" else r["dev_accuracy"])

    def _refit(self, study, round_trials: set[int]) -> None:
        """Say how far the cost model was off on this round's timed candidates, then re-fit the study's profile
        from every timed trial so far (the next round's screen uses it)."""
        timed = [r for r in trial_records(study) if r.stage == "timed"]
        s = self.settings
        entry: dict[str, Any] = {"timed": len(timed), "scale": recalibrate(
            self.out, s.target, s.profile, [*timed, *self.teacher_records()], self.space.threads)}
        mine = [r for r in timed if r.number in round_trials]
        if mine:
            q = quality([r.predicted_ms for r in mine], [r.measured_ms for r in mine])
            worst = max(((r.predicted_ms - r.measured_ms) / r.measured_ms for r in mine), key=abs)  # with its sign
            entry["round_error"] = {"timed": len(mine), "mape": round(q["mape"], 4),
                                    "within_10pct": round(q["within_10pct"], 4), "worst": round(worst, 4)}
            self.log(f"cost model this round: {round(q['within_10pct'] * len(mine))} of {len(mine)} timed "
                     f"candidate(s) predicted within 10%, mean error {q['mape']:.1%} (worst {worst:+.1%}); "
                     f"re-fitted from {len(timed)} timed and the teacher: {entry['scale']}")
        self.state.setdefault("recalibrations", []).append(entry)
        self.write_state()

    def _constrain(self, trial, latency_ms: float) -> None:
        if self.settings.objective == "constrained":
            trial.set_constraint("latency_ms", latency_ms - self.budget_ms)

    def _postfix(self, bar, study) -> None:
        best = self.best(study)
        if best is not None:
            bar.set_postfix_str(f"best {best.dev_accuracy:.4f} dev at {best.measured_ms:.2f} ms ({best.describe})")

    def best(self, study) -> TrialRecord | None:
        """The timed candidate with the best dev accuracy whose measured latency is under the budget by
        more than the timing noise (BUDGET_MARGIN): the one the search ships."""
        ok = [r for r in trial_records(study)
              if r.stage == "timed" and r.measured_ms <= self.budget_ms * (1 - BUDGET_MARGIN)]
        return max(ok, key=lambda r: (r.dev_accuracy, -r.measured_ms), default=None)
