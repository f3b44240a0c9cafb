"""``bertc search``: the student architecture with the best accuracy under a latency budget.

    bertc search --task rt-sentiment --target host -o minilm.search          # the packaged MiniLM teacher
    bertc search --resume -o minilm.search                                    # after a crash or Ctrl-C
    bertc compile minilm.search/student --target host -o student.bertc

One study, in rounds:

1. **Setup, once.** The teacher is fine-tuned on the task (cached, search/teacher.py), compiled for the
   target and timed: the budget is a fraction of that (default 1/3) unless given in ms. The teacher's
   Taylor importance (search/inherit.py) and its logits on the train split are computed and kept in
   the study folder.
2. **Screen.** A new study starts with a warm start (``--no-warm-start``: none): for each layer and
   thread count, the dense student the cost model prices closest under the budget, the largest of that
   depth that fits, is enqueued as a trial. Then Optuna samples candidates from the space (search/space.py); the cost model
   (bertc/cost.py, with the study's re-calibrated profile) predicts each one's latency in
   milliseconds. Those predicted over budget are recorded as pruned trials (stage ``screened-out``)
   and never trained; sampling goes on until a round has ``--round-size`` candidates under budget.
3. **Score.** Each is cut from the teacher and briefly distilled (logits, ``--epochs`` over the train
   split); its score is dev accuracy (stage ``trained``). With ``--workers N`` or ``--ray ADDRESS``
   the round's candidates train in parallel as Ray tasks.
4. **Time.** The round's best ``--timed-per-round`` by dev accuracy are compiled and timed for real
   with bertc_run (stage ``timed``), after the training, so nothing competes with them for cores.
   Predicted and measured ms are kept on the trial; the profile's run scale is re-fitted from the
   ratios measured / predicted of every timed trial so far, the sparse GEMMs with a scale of their own
   (``profile.json``, the next round's screen; see ``refit_profile``).
5. **Tell.** Every trial is told to Optuna: dev accuracy, and a latency (measured when timed, else
   predicted) that is the constraint (``--objective constrained``) or a second objective (``pareto``).
6. **End.** The best timed candidate whose measured latency is under the budget by more than the timing
   noise (2%, ``BUDGET_MARGIN``) is distilled longer
   (``--final-epochs``, on the train split plus ``--augment`` perturbed copies of it labelled by the
   teacher; ``--hidden-weight`` adds the hidden states), scored on dev and test (in PyTorch and with the compiled
   artifact), timed again and saved in ``OUT/student`` for ``bertc compile``; the Pareto front is
   printed and written as CSV, PNG and HTML; everything is in ``OUT/search_report.json``.

The study lives in ``OUT/study.log`` (Optuna's journal file: every finished trial is appended, so a
killed search resumes with nothing lost; trials that were running are run again) or in a database
(``--storage sqlite:///... / postgresql://...``) that many machines can share.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertc.errors import BertcError

from .space import Candidate, Space, load_space, parse_space

FORMAT = 1


@dataclass
class Settings:
    """What a study was started with (search.json); ``--resume`` reads them back."""

    teacher: str | None
    task: str
    target: str
    space: dict
    budget_ms: float | None  # None: budget_fraction x the teacher's measured latency
    budget_fraction: float = 1 / 3
    objective: str = "constrained"
    epochs: float = 0.5
    max_train: int | None = None
    round_size: int = 4
    timed_per_round: int = 2
    final_epochs: int = 3
    augment: int = 4
    hidden_weight: float = 0.0
    warm_start: bool = True  # seed the study with the cost model's largest dense student per depth under budget
    seed: int = 0
    device: str | None = None
    storage: str | None = None
    runs: int = 30
    format: int = FORMAT
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- scoring one candidate


class Scorer:
    """Everything a trial needs, loaded once per process (the driver, or a Ray worker)."""

    def __init__(self, teacher_dir: str, task: str, study_dir: str, settings: dict):
        from .distill import encode
        from .inherit import Importance
        from .tasks import load_task
        from .teacher import load_classifier

        self.task = load_task(task)
        self.teacher, self.tokenizer = load_classifier(teacher_dir, self.task)
        self.importance = Importance.load(Path(study_dir) / "importance.npz")
        self.logits = np.load(Path(study_dir) / "teacher_logits.npy")
        self.settings = settings
        self.dev = encode(self.tokenizer, self.task.dev, self.task.max_length)  # scored after every candidate

    def score(self, cand: dict, number: int, threads: int | None = None) -> dict:
        """Cut, distill briefly, score on dev. Returns the accuracy, time and the student's weights."""
        import torch

        from bertc.sparsity import apply_masks, model_masks, parse_spec

        from .distill import TrainConfig, accuracy, predict_logits, train
        from .inherit import build_student

        if threads:
            torch.set_num_threads(threads)
        c = Candidate.from_dict(cand)
        t0 = time.perf_counter()
        student, _ = build_student(self.teacher, self.importance, c.layers, c.hidden, [c.heads] * c.layers, list(c.ffn))
        masks = None
        if c.sparsity:
            masks = model_masks(student, parse_spec(c.sparsity))
            apply_masks(student, masks)
        s = self.settings
        epochs = max(1, math.ceil(s["epochs"]))
        n_train = len(train_examples(self.task, s["max_train"]))
        # a fraction of an epoch: train on that share of the examples (the teacher's logits come along)
        max_train = n_train if s["epochs"] >= 1 else max(1, int(n_train * s["epochs"]))
        config = TrainConfig(epochs=epochs, lr=1e-4, max_train=max_train, seed=s["seed"] + number)
        train(student, self.tokenizer, self.task, config, teacher=self.teacher, masks=masks,
              teacher_logits=self.logits[:max_train], progress=False)
        acc = accuracy(predict_logits(student, self.dev), self.dev.labels)
        state = {k: v.detach().numpy().copy() for k, v in student.state_dict().items()}
        return {"dev_accuracy": acc, "train_seconds": round(time.perf_counter() - t0, 1), "state": state,
                "config": student.config.to_dict()}


def train_examples(task, max_train: int | None):
    """The train split, or its first ``max_train`` examples (what the teacher's cached logits cover)."""
    return task.train[:max_train] if max_train else task.train


_SCORERS: dict[tuple, Scorer] = {}


def _score(args: tuple, cand: dict, number: int, threads: int | None) -> dict:
    if args not in _SCORERS:  # a Ray worker process keeps its Scorer between tasks
        _SCORERS.clear()
        _SCORERS[args] = Scorer(*args[:3], json.loads(args[3]))
    return _SCORERS[args].score(cand, number, threads)


def save_student(folder: Path, result: dict, tokenizer_dir: str | Path) -> None:
    """A scored student's weights and config as a model folder ``bertc compile`` takes."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(v) for k, v in result["state"].items() if not k.endswith("position_ids")},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(result["config"], indent=2) + "\n")
    AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True).save_pretrained(str(folder))


# --------------------------------------------------------------------------- timing


def time_artifact(path: Path, threads: int, seq_len: int, device: str | None, runs: int) -> float:
    """Median ms of ``runs`` runs of the artifact with bertc_run (after warm-up)."""
    from bertc.device import DeviceModel

    model = DeviceModel(path, device=device, threads=threads)
    if model.device.emulated:
        raise BertcError(f"{model.device.name} emulates the CPU: it cannot time a search's candidates; "
                         "search with --device host or --device adb[:SERIAL]")
    report = model.bench(np.full((1, seq_len), 7, np.int64), runs=runs, warmup=5)
    return float(report["p50_ms"])


def interleaved_ratio(st, student_art: Path, threads: int) -> dict:
    """The teacher and the student timed alternately (INTERLEAVED_ROUNDS pairs of --runs runs each), so that
    both see the same machine: their medians and the median, min and max of teacher / student per pair."""
    s, t = st.settings, st.state["teacher"]
    work = st.out / ".teacher.bertc"
    teacher_art = compile_quiet(Path(st.state["teacher_dir"]), work, s.target, st.space.seq_len, None)
    pairs = [(time_artifact(teacher_art.path, t["threads"], st.space.seq_len, s.device, s.runs),
              time_artifact(student_art, threads, st.space.seq_len, s.device, s.runs)) for _ in range(INTERLEAVED_ROUNDS)]
    shutil.rmtree(work, ignore_errors=True)
    ratios = [a / b for a, b in pairs]
    return {"teacher_ms": round(statistics.median(a for a, _ in pairs), 4),
            "student_ms": round(statistics.median(b for _, b in pairs), 4),
            "speedup": round(statistics.median(ratios), 3), "min": round(min(ratios), 3), "max": round(max(ratios), 3)}


def compile_quiet(model_dir: Path, out: Path, target: str, seq_len: int, prune: str | None):
    """bertc.compile, without transformers' report of the unused head (a classifier loads as its encoder)."""
    from bertc.api import compile as compile_model

    from .teacher import quiet_transformers

    with quiet_transformers():
        return compile_model(str(model_dir), target=target, seq_len=seq_len, out=out, prune=prune)


def compile_and_time(model_dir: Path, out: Path, target: str, seq_len: int, threads: int, prune: str | None,
                     device: str | None, runs: int) -> float:
    art = compile_quiet(model_dir, out, target, seq_len, prune)
    return time_artifact(art.path, threads, seq_len, device, runs)


# --------------------------------------------------------------------------- the study


def _sampler(settings: Settings, budget_ms: float):
    """TPE (multivariate: layers, widths and sparsity interact). Constrained studies set each trial's
    constraint, latency - budget, before telling it (Trial.set_constraint); TPE ranks infeasible trials
    below every feasible one."""
    import optuna

    record = {"name": "TPESampler", "multivariate": True, "n_startup_trials": STARTUP, "seed": settings.seed}
    if settings.objective == "pareto":
        record["objectives"] = ["maximize dev accuracy", "minimize latency ms"]
    else:
        record["objective"], record["constraint"] = "maximize dev accuracy", f"latency_ms - {budget_ms:.4f} <= 0"
    return optuna.samplers.TPESampler(seed=settings.seed, multivariate=True, n_startup_trials=STARTUP), record


def _storage(study_dir: Path, url: str | None):
    if url:
        return url
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(study_dir / "study.log")))


class Study:
    """A study folder: settings, teacher facts, caches, the Optuna study and the re-calibrated profile."""

    def __init__(self, out: Path, settings: Settings, progress: bool):
        self.out, self.settings, self.progress = out, settings, progress
        self.space: Space = parse_space(settings.space)
        self.state: dict[str, Any] = {}
        self._ops: dict[Candidate, list] = {}  # the cost model's ops per candidate, priced each round

    def log(self, msg: str) -> None:
        if self.progress:
            from tqdm import tqdm

            tqdm.write(msg)

    def write_state(self) -> None:
        tmp = self.out / ".search.json.tmp"
        tmp.write_text(json.dumps({"settings": self.settings.__dict__, **self.state}, indent=2) + "\n")
        tmp.replace(self.out / "search.json")

    # ---- setup (once; kept in the folder)

    def check(self) -> None:
        """What can fail fast, before search.json is written: the task and the teacher's dimensions."""
        from transformers import AutoConfig

        from .tasks import load_task
        from .teacher import check_folder, packaged_minilm

        load_task(self.settings.task)
        src = Path(self.settings.teacher) if self.settings.teacher else packaged_minilm()
        check_folder(src)
        self.space.check_teacher(AutoConfig.from_pretrained(str(src), local_files_only=True))

    def setup(self) -> None:
        """The teacher (fine-tuned, or continued from its checkpoint), its importance, logits and timing;
        each step is skipped when an earlier run of this study finished it."""
        from dataclasses import replace

        from .distill import encode, predict_logits
        from .inherit import importance
        from .tasks import load_task
        from .teacher import TEACHER_CONFIG, finetuned_teacher, is_classifier, load_classifier

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
        self.budget_ms = s.budget_ms or s.budget_fraction * t["latency_ms"]
        self.state["budget_ms"] = round(self.budget_ms, 4)
        self.write_state()

    def _teacher_facts(self, teacher, tokenizer, task) -> dict:
        from .teacher import split_accuracy

        threads = max(self.space.threads)
        self.log(f"teacher: compiling for {self.settings.target} and timing it at {threads} threads")
        work = self.out / "teacher.bertc"
        ms = compile_and_time(Path(self.state["teacher_dir"]), work, self.settings.target, self.space.seq_len,
                              threads, None, self.settings.device, self.settings.runs)
        shutil.rmtree(work, ignore_errors=True)
        return {"latency_ms": round(ms, 4), "threads": threads, "dev_accuracy": split_accuracy(teacher, tokenizer, task, "dev"),
                "test_accuracy": split_accuracy(teacher, tokenizer, task, "test"),
                "config": {k: teacher.config.to_dict()[k] for k in ("num_hidden_layers", "hidden_size",
                                                                    "num_attention_heads", "intermediate_size")}}

    # ---- the cost model, re-calibrated from the timed trials

    def profile(self):
        from bertc.cost import Profile, load_profile

        path = self.out / "profile.json"
        if path.is_file():
            data = json.loads(path.read_text())
            return Profile(data["name"], data, path)
        return load_profile(None, self.settings.target)

    def predict(self, cand: Candidate, teacher_config, profiles) -> list[float]:
        """Milliseconds for ``cand`` under each profile. The passes run once per candidate (its ops do not
        depend on the profile); each round prices them with that round's re-fitted profile."""
        ops = self._ops_of(cand, teacher_config, profiles[0].cache_bytes)
        return [p.overhead_ms(cand.threads) + sum(p.op_ms(o, cand.threads) for o in ops) for p in profiles]

    def _ops_of(self, cand: Candidate, teacher_config, cache_bytes):
        from bertc.cost import config_ops

        ops = self._ops.get(cand)
        if ops is None:
            ops = self._ops[cand] = config_ops(cand.config(teacher_config).to_dict(), self.settings.target,
                                               self.space.seq_len, prune=cand.sparsity, cache_bytes=cache_bytes)
        return ops

    def sparse_ms(self, cand: Candidate, teacher_config, profile) -> float:
        """The part of ``cand``'s prediction under ``profile`` spent in sparse GEMMs (0 for a dense one)."""
        ops = self._ops_of(cand, teacher_config, profile.cache_bytes)
        return sum(profile.op_ms(o, cand.threads) for o in ops if o.kind == "linear_sparse")

    def seed_frontier(self, study, teacher_config) -> None:
        """The compiler-aware warm start: before the sampler's first (random) trials, enqueue, for every
        layer count and thread count, the dense student the cost model prices closest under the budget:
        the largest of each depth that fits. Accuracy mostly grows with size, so these are the likely
        winners, and random sampling can take tens of trials to land near the budget line."""
        from bertc.cost import load_profile

        profile = load_profile(None, self.settings.target)
        best: dict[tuple[int, int], tuple[float, Candidate]] = {}
        for cand in self.space.dense_uniform():
            ms = self.predict(cand, teacher_config, (profile,))[0]
            key = (cand.layers, cand.threads)
            if ms <= self.budget_ms and ms > best.get(key, (0.0, None))[0]:
                best[key] = (ms, cand)
        for key in sorted(best):
            study.enqueue_trial(self.space.params(best[key][1]), user_attrs={"warm_start": True})
        self.state["warm_start"] = [f"{c.describe()} ({ms:.3f} ms predicted)" for ms, c in
                                    (best[k] for k in sorted(best))]
        self.log("warm start: the largest dense student of each depth under budget, by the cost model: "
                 + ", ".join(self.state["warm_start"]))

    def recalibrate(self, timed: list[dict]) -> dict[str, float]:
        """Re-fit the study's profile from the timed trials (see refit_profile) and save it."""
        from bertc.cost import load_profile

        data, scales = refit_profile(load_profile(None, self.settings.target).data, timed)
        tmp = self.out / ".profile.json.tmp"
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(self.out / "profile.json")
        return scales

    # ---- rounds

    def run(self, trials: int, timeout_min: float | None, workers: int, ray_address: str | None) -> None:
        import optuna
        from tqdm import tqdm

        from .tasks import load_task
        from .teacher import load_classifier

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = self.settings
        sampler, self.state["sampler"] = _sampler(s, self.budget_ms)
        directions = ["maximize", "minimize"] if s.objective == "pareto" else ["maximize"]
        study = optuna.create_study(study_name="bertc-search", storage=_storage(self.out, s.storage), sampler=sampler,
                                    directions=directions, load_if_exists=True)
        teacher_config = load_classifier(self.state["teacher_dir"], load_task(s.task))[0].config
        if not study.trials and s.warm_start:
            self.seed_frontier(study, teacher_config)
        rerun = _requeue_interrupted(study)
        if rerun:
            self.log(f"resuming: {rerun} trial(s) that were running when the search stopped will run again")
        self.write_state()
        pool = _Pool(self, workers, ray_address)
        deadline = time.monotonic() + 60 * timeout_min if timeout_min else math.inf
        bar = tqdm(total=trials, initial=min(trials, len(_scored(study))), desc="search", unit="trial",
                   disable=not self.progress)
        self._postfix(bar, study)
        while len(_scored(study)) < trials and time.monotonic() < deadline:
            from bertc.cost import load_profile

            profiles = (self.profile(), load_profile(None, s.target))  # the study's re-fitted one, the built-in one
            batch, asked = [], 0
            want = min(s.round_size, trials - len(_scored(study)))
            while len(batch) < want and asked < MAX_ASKS:
                trial = study.ask()
                cand = self.space.sample(trial)
                asked += 1
                pred, base_pred = self.predict(cand, teacher_config, profiles)
                for k, v in {"owner": _owner(), "candidate": cand.asdict(), "describe": cand.describe(),
                             "predicted_ms": round(pred, 4), "base_predicted_ms": round(base_pred, 4),
                             "base_sparse_ms": round(self.sparse_ms(cand, teacher_config, profiles[1]), 4),
                             "threads": cand.threads}.items():
                    trial.set_user_attr(k, v)
                if pred > SCREEN_SLACK * self.budget_ms:
                    trial.set_user_attr("stage", "screened-out")
                    trial.set_user_attr("latency_ms", round(pred, 4))
                    self._constrain(trial, pred)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    continue
                if cand in [c for _, c in batch]:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # drawn twice in one round
                    continue
                earlier = next((t for t in _scored(study) if t.user_attrs.get("candidate") == cand.asdict()), None)
                if earlier is not None:  # drawn again: the sampler learns the same value, nothing is retrained
                    for k in ("dev_accuracy", "latency_ms", "measured_ms"):
                        if k in earlier.user_attrs:
                            trial.set_user_attr(k, earlier.user_attrs[k])
                    trial.set_user_attr("stage", "duplicate")
                    trial.set_user_attr("same_as", earlier.number)
                    self._constrain(trial, earlier.user_attrs["latency_ms"])
                    study.tell(trial, earlier.values)
                    continue
                batch.append((trial, cand))
            if not batch:
                raise BertcError(f"the cost model screened out {asked} sampled candidates in a row as over the "
                                 f"{self.budget_ms:.3f} ms budget: the space has (almost) nothing under it. Add "
                                 "smaller choices (fewer layers, narrower FFN, sparsity) or raise the budget")
            self.log(f"round: {len(batch)} candidate(s) under budget after screening {asked} sampled: "
                     + ", ".join(c.describe() for _, c in batch))
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
            timed = [_record(t) for t in study.get_trials(deepcopy=False) if t.user_attrs.get("stage") == "timed"]
            scales = self.recalibrate(timed)
            self.state.setdefault("recalibrations", []).append({"timed": len(timed), "scale": scales})
            self.write_state()
            bar.update(min(len(batch), bar.total - bar.n))
            self._postfix(bar, study)
        bar.close()
        pool.close()
        self.study = study

    def _constrain(self, trial, latency_ms: float) -> None:
        if self.settings.objective == "constrained":
            trial.set_constraint("latency_ms", latency_ms - self.budget_ms)

    def _postfix(self, bar, study) -> None:
        best = self.best(study)
        if best is not None:
            bar.set_postfix_str(f"best {best['dev_accuracy']:.4f} dev at {best['measured_ms']:.2f} ms "
                                f"({best['describe']})")

    def best(self, study) -> dict | None:
        """The timed candidate with the best dev accuracy whose measured latency is under the budget by
        more than the timing noise (BUDGET_MARGIN): the one the search ships."""
        ok = [r for r in map(_record, study.get_trials(deepcopy=False))
              if r["stage"] == "timed" and r["measured_ms"] <= self.budget_ms * (1 - BUDGET_MARGIN)]
        return max(ok, key=lambda r: (r["dev_accuracy"], -r["measured_ms"]), default=None)


def refit_profile(base: dict, timed: list[dict]) -> tuple[dict, dict[str, float]]:
    """A copy of the profile ``base`` re-fitted from timed trials, per thread count, and the scales applied.

    The run scale is multiplied by the median measured / predicted of the dense candidates (of all, while
    none is dense). The sparse GEMMs get their own scale (``kind_scale``): the median k that makes each
    sparse candidate's ``scale x (dense part + k x sparse part)`` equal its measurement; the sparse kernels'
    rates are fitted on fewer shapes and were the cost model's largest error. Predictions are the base
    profile's (``base_predicted_ms``, ``base_sparse_ms``), so the fit does not chase its own corrections."""
    data = json.loads(json.dumps(base))
    scales = {}
    for t in sorted({r["threads"] for r in timed}):
        mine = [r for r in timed if r["threads"] == t]
        dense = [r for r in mine if not r.get("base_sparse_ms")] or mine
        scale = statistics.median(r["measured_ms"] / r["base_predicted_ms"] for r in dense)
        data.setdefault("run_scale", {})[str(t)] = round(base.get("run_scale", {}).get(str(t), 1.0) * scale, 4)
        scales[str(t)] = round(scale, 4)
        sparse = [r for r in mine if r.get("base_sparse_ms")]
        if sparse and len(dense) < len(mine):
            k = statistics.median((r["measured_ms"] / scale - (r["base_predicted_ms"] - r["base_sparse_ms"]))
                                  / r["base_sparse_ms"] for r in sparse)
            k = min(4.0, max(0.25, k))  # a wild measurement must not zero or explode the sparse kernels' cost
            data.setdefault("kind_scale", {}).setdefault(str(t), {})["linear_sparse"] = round(k, 4)
            scales[f"{t}:linear_sparse"] = round(k, 4)
    data.setdefault("sources", {})["search"] = (
        f"run_scale and kind_scale re-fitted by bertc search from {len(timed)} timed candidates (median "
        "measured / predicted of the dense ones per thread count; the sparse GEMMs' scale from the sparse ones)")
    return data, scales


STARTUP = 4  # random trials before TPE models the space: a search trains tens of candidates, not hundreds
MAX_ASKS = 400  # samples screened for one round before the space is declared (almost) empty under budget
SCREEN_SLACK = 1.10  # train candidates predicted up to 10% over budget: the cost model's error is about that
# The p50 of 30 runs moves by up to 2% from one timing to the next here (ten alternate timings of the same
# student: 2.108-2.195 ms), so a candidate measured within 2% of the budget is not reliably under it.
BUDGET_MARGIN = 0.02
INTERLEAVED_ROUNDS = 10  # final check: the teacher and the student timed alternately, this many times each


def _record(t) -> dict:
    a = t.user_attrs
    return {"number": t.number, "state": t.state.name, "stage": a.get("stage"), "describe": a.get("describe"),
            "candidate": a.get("candidate"), "threads": a.get("threads"), "predicted_ms": a.get("predicted_ms"),
            "base_predicted_ms": a.get("base_predicted_ms"), "base_sparse_ms": a.get("base_sparse_ms"),
            "measured_ms": a.get("measured_ms"),
            "latency_ms": a.get("latency_ms"), "dev_accuracy": a.get("dev_accuracy"),
            "train_seconds": a.get("train_seconds"), "student": a.get("student")}


def _scored(study) -> list:
    """Trials that trained a candidate (a duplicate is told the earlier result and does not count)."""
    import optuna

    return [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("stage") in ("trained", "timed")]


def _owner() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(owner: str | None) -> bool:
    """Whether the search process that asked a trial still runs (on another machine: assume it does)."""
    import socket

    host, _, pid = (owner or ":").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return host != ""  # another machine sharing the study's database: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _requeue_interrupted(study) -> int:
    """Trials left RUNNING by a killed search on this machine: marked failed, their parameters queued to
    run again. Trials that searches on other machines (sharing a database) are running are left alone."""
    import optuna

    n = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if _alive(t.user_attrs.get("owner")):
            continue
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"rerun_of": t.number}, skip_if_exists=False)
        n += 1
    return n


class _Pool:
    """Scores candidates in this process, or as tasks on a local (``--workers N``) or remote Ray."""

    def __init__(self, study: Study, workers: int, address: str | None):
        self.study, self.ray = study, None
        s = study.settings
        self.args = (study.state["teacher_dir"], s.task, str(study.out),
                     json.dumps({"epochs": s.epochs, "max_train": s.max_train, "seed": s.seed}))
        self.workers = workers
        if workers > 1 or address:
            import ray

            if address:
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
            self.ray = ray
            cores = len(os.sched_getaffinity(0))
            self.threads = max(1, cores // workers) if not address else None
            self.remote_score = ray.remote(num_cpus=1)(_score)
            # a trial that needs a phone is timed on the node that has it (`ray start --resources '{"phone": 1}'`)
            phone = (s.device or "").startswith("adb") and address
            self.remote_time = ray.remote(num_cpus=1, **({"resources": {"phone": 1}} if phone else {}))(compile_and_time)

    def score(self, jobs: list[tuple[int, Candidate]]) -> list[dict]:
        if self.ray is None:
            return [_score(self.args, c.asdict(), n, None) for n, c in jobs]
        return self.ray.get([self.remote_score.remote(self.args, c.asdict(), n, self.threads) for n, c in jobs])

    def time(self, folder: Path, cand: Candidate) -> float:
        s, space = self.study.settings, self.study.space
        args = (folder / "student", folder / "student.bertc", s.target, space.seq_len, cand.threads, cand.sparsity,
                s.device, s.runs)
        try:
            if self.ray is not None and s.device and s.device.startswith("adb"):
                return self.ray.get(self.remote_time.remote(*args))
            return compile_and_time(*args)
        finally:
            shutil.rmtree(folder / "student.bertc", ignore_errors=True)  # the student folder is what is kept

    def close(self) -> None:
        if self.ray is not None:
            self.ray.shutdown()


# --------------------------------------------------------------------------- the end: final student, front, report


def torch_ms(model, seq_len: int, threads: int, runs: int = 30) -> float:
    """Median ms of PyTorch eager on one sequence (the peer the teacher would otherwise run on)."""
    import torch

    torch.set_num_threads(threads)
    ids = torch.full((1, seq_len), 7, dtype=torch.long)
    mask = torch.ones_like(ids)
    times = []
    with torch.inference_mode():
        for i in range(runs + 3):
            t0 = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            if i >= 3:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def compiled_accuracy(art_path: Path, classifier, tokenizer, examples, threads: int) -> float:
    """Accuracy of the compiled encoder (bertc's runtime) + the student's classifier head on ``examples``."""
    from bertc.api import load

    model = load(art_path, threads=threads)
    w, b = classifier.weight.detach().numpy(), classifier.bias.detach().numpy()
    seq, right = model.seq_len, 0
    for text, label in examples:
        ids = np.asarray([tokenizer(text, truncation=True, max_length=seq)["input_ids"]], np.int64)
        pooled = model(ids, np.ones_like(ids), np.zeros_like(ids))["pooler_output"]
        right += int(np.argmax(pooled[0] @ w.T + b) == label)
    return right / len(examples)


def finish(st: Study) -> dict:
    from .report import format_table, pareto_front, write_csv, write_plots

    records = [_record(t) for t in st.study.get_trials(deepcopy=False)]
    scored = [r for r in records if r["stage"] in ("trained", "timed")]
    chosen = st.best(st.study)
    t = st.state["teacher"]
    front = pareto_front(scored)
    write_csv(sorted(scored, key=lambda r: r["number"]), st.out / "trials.csv")
    write_csv(front, st.out / "pareto.csv")
    plots = write_plots(scored, front, st.out / "pareto", st.budget_ms, t,
                        None if chosen is None else {**chosen, "latency_ms": chosen["measured_ms"]})
    timed = [r for r in records if r["stage"] == "timed"]
    errors = [abs(r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in timed]
    stages = {k: sum(r["stage"] == k for r in records) for k in ("screened-out", "trained", "timed")}
    report = {"settings": st.settings.__dict__, **st.state, "trials": records, "stages": stages,
              "pareto_front": front, "chosen": chosen,
              "cost_model_on_timed": {"candidates": len(timed),
                                      "mape": round(statistics.mean(errors), 4) if errors else None,
                                      "max_relative_error": round(max(errors), 4) if errors else None},
              "plots": [str(p) for p in plots]}
    st.log(f"\n{stages['screened-out']} candidates screened out by the cost model, {stages['trained']} trained "
           f"and scored only, {stages['timed']} also compiled and timed; cost model on the timed: mean |error| "
           f"{report['cost_model_on_timed']['mape'] or 0:.1%}")
    st.log(f"Pareto front (budget {st.budget_ms:.3f} ms = {st.budget_ms / t['latency_ms']:.2f} x the teacher's "
           f"{t['latency_ms']:.3f} ms):\n" + format_table(front, st.budget_ms))
    if chosen is None:
        st.state["final"] = None
        _write_report(st, report)
        raise BertcError(f"no timed candidate met the {st.budget_ms:.3f} ms budget after {len(scored)} scored "
                         f"trials; run more (`bertc search --resume -o {st.out} --trials N`), add smaller choices "
                         "to the space, or raise the budget")
    report["final"] = final_student(st, chosen)
    _write_report(st, report)
    return report


def _write_report(st: Study, report: dict) -> None:
    tmp = st.out / ".search_report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(st.out / "search_report.json")


def final_student(st: Study, chosen: dict) -> dict:
    """Distill the chosen student longer, score it on dev and test, compile and time it, save it."""
    import torch

    from bertc.artifact import publish
    from bertc.sparsity import model_masks, parse_spec

    from .distill import HiddenMap, TrainConfig, augment, train
    from .inherit import Importance, load_student, plan_cut
    from .tasks import load_task
    from .teacher import load_classifier, quiet_transformers, split_accuracy

    s, cand = st.settings, Candidate.from_dict(chosen["candidate"])
    task = load_task(s.task)
    teacher, tokenizer = load_classifier(st.state["teacher_dir"], task)
    student = load_student(chosen["student"])
    out: dict[str, Any] = {"trial": chosen["number"], "describe": cand.describe(), "candidate": cand.asdict(),
                           "search_dev_accuracy": chosen["dev_accuracy"]}
    if s.final_epochs > 0:
        masks = model_masks(student, parse_spec(cand.sparsity)) if cand.sparsity else None
        cut = plan_cut(Importance.load(st.out / "importance.npz"), cand.layers, cand.hidden, [cand.heads] * cand.layers,
                       list(cand.ffn))
        hidden_map = HiddenMap([0] + [i + 1 for i in cut.layers], torch.from_numpy(cut.hidden))
        texts = [x for x, _ in train_examples(task, s.max_train)]
        unlabelled = augment(texts, s.augment, s.seed)
        st.log(f"final: distilling {cand.describe()} for {s.final_epochs} epoch(s) on {len(texts)} + "
               f"{len(unlabelled)} augmented examples (logits{' and hidden states' if s.hidden_weight else ''})")
        out["final_training"] = train(student, tokenizer, task, TrainConfig(
            epochs=s.final_epochs, lr=1e-4, max_train=s.max_train, seed=s.seed, hidden_weight=s.hidden_weight),
            teacher=teacher, masks=masks, hidden_map=hidden_map, unlabelled=unlabelled, progress=st.progress,
            desc="final")
    out["dev_accuracy"] = split_accuracy(student, tokenizer, task, "dev")
    out["test_accuracy"] = split_accuracy(student, tokenizer, task, "test")
    folder, staging = st.out / "student", st.out / ".student.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    with quiet_transformers():
        student.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
    (staging / "student_report.json").write_text(json.dumps(out, indent=2) + "\n")
    publish(staging, folder)
    art = compile_quiet(folder, st.out / "student.bertc", s.target, st.space.seq_len, cand.sparsity)
    out["artifact"] = str(art.path)
    out["latency_ms"] = round(time_artifact(art.path, cand.threads, st.space.seq_len, s.device, s.runs), 4)
    if not s.device or s.device == "host":
        out["compiled_test_accuracy"] = compiled_accuracy(art.path, student.classifier, tokenizer, task.test,
                                                          cand.threads)
    t = st.state["teacher"]
    out["torch_ms"] = {"teacher": round(torch_ms(teacher.bert, st.space.seq_len, t["threads"]), 4),
                       "student": round(torch_ms(student.bert, st.space.seq_len, cand.threads), 4)}
    out["speedup_vs_teacher"] = round(t["latency_ms"] / out["latency_ms"], 3)
    out["interleaved"] = interleaved_ratio(st, art.path, cand.threads)
    out["accuracy_kept"] = round(out["test_accuracy"] / t["test_accuracy"], 4)
    (folder / "student_report.json").write_text(json.dumps(out, indent=2) + "\n")
    st.log(f"chosen: {cand.describe()} (trial {chosen['number']}): test accuracy {out['test_accuracy']:.4f} "
           f"({out['accuracy_kept']:.1%} of the teacher's {t['test_accuracy']:.4f}), {out['latency_ms']:.3f} ms with "
           f"bertc at {cand.threads} thread(s) ({out['speedup_vs_teacher']:.2f}x faster than the compiled teacher's "
           f"{t['latency_ms']:.3f} ms; PyTorch runs the teacher in {out['torch_ms']['teacher']:.3f} ms); timed "
           f"alternately with the teacher, {out['interleaved']['speedup']:.2f}x (range "
           f"{out['interleaved']['min']:.2f}-{out['interleaved']['max']:.2f}x over {INTERLEAVED_ROUNDS} pairs)\n"
           f"saved {folder}: `bertc compile {folder} --target {s.target}`")
    return out


# --------------------------------------------------------------------------- entry points


def parse_budget(text: str) -> tuple[float | None, float]:
    """'2.5ms' -> (2.5, _); '1/3' or '0.33x' -> (None, fraction of the teacher's compiled latency)."""
    t = text.strip().lower().replace(" ", "")
    try:
        if t.endswith("ms"):
            ms = float(t[:-2])
            if ms > 0:
                return ms, 1 / 3
        else:
            num, _, den = t.rstrip("x").partition("/")
            frac = float(num) / float(den or 1)
            if 0 < frac <= 1:
                return None, frac
    except ValueError:
        pass
    raise BertcError(f"--latency-budget '{text}': give milliseconds ('2.5ms') or a fraction of the teacher's "
                     "compiled latency in (0, 1] ('1/3', '0.25x')")


def search(out: str | Path, settings: Settings | None = None, *, trials: int = 16, timeout_min: float | None = None,
           workers: int = 1, ray_address: str | None = None, resume: bool = False, progress: bool = True,
           final: dict | None = None) -> dict:
    """Run (or, with ``resume``, continue) the study in folder ``out``; returns search_report.json's content.
    ``final`` changes the final training's settings (final_epochs, augment, hidden_weight) on a resume."""
    out = Path(out)
    saved = out / "search.json"
    if resume:
        if not saved.is_file():
            raise BertcError(f"--resume: '{out}' holds no search (no search.json); start one without --resume")
        data = json.loads(saved.read_text())
        settings = Settings(**{**data["settings"], **(final or {})})
        if settings.format != FORMAT:
            raise BertcError(f"'{out}' was made by another version of bertc search (format {settings.format}); "
                             "start a new search in another folder")
        st = Study(out, settings, progress)
        st.state = {k: v for k, v in data.items() if k != "settings"}
    else:
        if saved.is_file():
            raise BertcError(f"'{out}' already holds a search: continue it with --resume, or choose another -o")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise BertcError(f"'{out}' exists and is not a search folder; choose another -o or remove it")
        if settings is None:
            raise BertcError("a new search needs its settings")
        if workers < 1 or trials < 1:
            raise BertcError("--trials and --workers must be at least 1")
        st = Study(out, settings, progress)  # a bad space fails here, before anything is written
        st.check()
        out.mkdir(parents=True, exist_ok=True)
        st.write_state()  # the settings first: a search stopped in the (long) setup is continued by --resume
    t0 = time.perf_counter()
    try:
        st.setup()
        st.run(trials, timeout_min, workers, ray_address)
        report = finish(st)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (bertc.cli raises it in the main thread)
        kept = "every finished trial is" if "teacher" in st.state else "the settings and the finished setup steps are"
        raise BertcError(f"interrupted: {kept} kept in {out}; continue with `bertc search --resume -o {out}`") from None
    report["seconds"] = round(time.perf_counter() - t0, 1)
    _write_report(st, report)
    return report


HELP = """how it works (details: search/driver.py):
  setup   the teacher is fine-tuned on the task (cached), compiled for --target and timed; the
          budget is --latency-budget (default 1/3 of that); its Taylor importance (heads, FFN
          neurons, hidden channels) and its logits on the train split are kept in OUT
  screen  Optuna samples students from the space; the cost model predicts each one's latency
          (ms each); those over budget are pruned trials (stage screened-out), never trained
  score   each candidate is cut from the teacher (top heads/neurons/channels, evenly spaced
          layers) and distilled briefly (--epochs); its score is dev accuracy
  time    the best --timed-per-round of each round are compiled and timed with bertc_run;
          predicted and measured ms are kept, and OUT/profile.json is re-fitted from them
  end     the best timed student under budget is distilled longer (--final-epochs, on the train
          texts and --augment perturbed copies of them), scored on dev and
          test, compiled, timed and saved in OUT/student; the Pareto front is printed and
          written to OUT/pareto.{csv,png,html}; everything is in OUT/search_report.json

the space (--space FILE, YAML or JSON; every key optional):
  seq_len: 64           layers: [2, 3, 4, 5]          hidden: [256, 320, 384]
  heads: [4, 6, 8, 12]  ffn: [512, 768, 1024, 1536]   ffn_per_layer: false
  sparsity: [none, 16x1@0.5]                          threads: [1, 2]
  the teacher's latency (and so a relative budget) is measured at the largest thread count

resuming and sharing: the study is OUT/study.log (an Optuna journal); a killed search loses no
  finished trial: `bertc search --resume -o OUT [--trials N]` continues it. --storage URL
  (sqlite:///s.db, postgresql://...) keeps the study in a database many machines can share.

parallel: --workers N trains N candidates at once on a local Ray; --ray ADDRESS runs them on a
  Ray cluster (the study folder and teacher must be on a shared filesystem); with --device adb
  the timing runs on the node started with `ray start --resources '{"phone": 1}'`.

examples:
  bertc search -o minilm.search                                  # MiniLM, rt-sentiment, host, 1/3
  bertc search -o s2 --latency-budget 2ms --space space.yaml --trials 24 --timeout 50
  bertc search -o s3 --target android-arm64 --device adb:SERIAL --latency-budget 15ms
  bertc search --resume -o minilm.search --trials 24
  bertc compile minilm.search/student --target android-arm64 -o student.bertc"""


SETTING_FLAGS = ("teacher", "task", "target", "space", "latency_budget", "objective", "epochs", "max_train",
                 "round_size", "timed_per_round", "warm_start", "seed", "device", "storage", "runs")
FINAL_FLAGS = ("final_epochs", "augment", "hidden_weight")  # the final training only: --resume may change them


def _run(args) -> int:
    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in SETTING_FLAGS if getattr(args, k) is not None]
        if given:
            raise BertcError(f"--resume continues the study with the settings it was started with; leave out "
                             f"{', '.join(given)} (only --trials, --timeout, --workers, --ray and the final "
                             "training's --final-epochs, --augment and --hidden-weight may change)")
        settings = None
        final = {k: getattr(args, k) for k in FINAL_FLAGS if getattr(args, k) is not None}
    else:
        final = {}
        budget_ms, fraction = parse_budget(args.latency_budget or "1/3")
        space = load_space(args.space)
        pick = lambda name, default: default if getattr(args, name) is None else getattr(args, name)
        settings = Settings(teacher=args.teacher, task=pick("task", "rt-sentiment"), target=pick("target", "host"),
                            space={**space.asdict()}, budget_ms=budget_ms, budget_fraction=fraction,
                            objective=pick("objective", "constrained"), epochs=pick("epochs", 0.5),
                            max_train=args.max_train, round_size=pick("round_size", 4),
                            timed_per_round=pick("timed_per_round", 2), final_epochs=pick("final_epochs", 3),
                            augment=pick("augment", 4), hidden_weight=pick("hidden_weight", 0.0),
                            warm_start=pick("warm_start", True), seed=pick("seed", 0),
                            device=args.device, storage=args.storage, runs=pick("runs", 30),
                            extra={"space_file": space.source})
    search(args.output, settings, trials=args.trials, timeout_min=args.timeout, workers=args.workers,
           ray_address=args.ray, resume=args.resume, progress=not args.quiet, final=final)
    return 0


def add_parser(sub):
    """Register ``bertc search`` on the CLI's subparsers."""
    import argparse

    from bertc.cli import at_least, positive

    p = sub.add_parser("search", help="find the student architecture with the best accuracy under a latency budget",
                       description="Search student architectures cut from a fine-tuned teacher: the cost model screens "
                       "every sample, the best are distilled and timed on the real compiled code, and the best one "
                       "under the latency budget is saved for `bertc compile`.", epilog=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the study folder (created; --resume continues it)")
    p.add_argument("--resume", action="store_true", help="continue the study in OUT with its own settings (after a "
                   "crash, Ctrl-C or SIGTERM, also one stopped during the teacher's fine-tuning)")
    p.add_argument("--teacher", metavar="MODEL", help="a Hugging Face folder: an encoder (fine-tuned on the task "
                   "first, cached) or a sequence classifier (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--task", help="the task: rt-sentiment (default)")
    p.add_argument("--target", help="the target the students are compiled and timed for (default: host)")
    p.add_argument("--device", help="where timing runs: host (default) or adb[:SERIAL] (a phone; qemu cannot time)")
    p.add_argument("--space", metavar="FILE", help="the search space, YAML or JSON (default: see below)")
    p.add_argument("--latency-budget", metavar="B", help="'2.5ms', or a fraction of the teacher's compiled latency "
                   "such as '1/3' (default)")
    p.add_argument("--objective", choices=("constrained", "pareto"), help="constrained: best dev accuracy with "
                   "latency <= budget (default); pareto: accuracy and latency as two objectives")
    p.add_argument("--trials", type=at_least(1), default=16, metavar="N", help="candidates to train in all, counting those "
                   "of earlier runs of this study; screened-out samples do not count (default: 16)")
    p.add_argument("--timeout", type=positive, metavar="MIN", help="start no round after MIN minutes (the final student "
                   "is still trained)")
    p.add_argument("--round-size", type=at_least(1), metavar="N", help="candidates under budget per round (default: 4)")
    p.add_argument("--timed-per-round", type=at_least(1), metavar="N", help="of each round, the N best by dev accuracy are "
                   "compiled and timed (default: 2)")
    p.add_argument("--epochs", type=positive, metavar="E", help="distillation epochs per candidate; below 1, that "
                   "fraction of the train split (default: 0.5)")
    p.add_argument("--max-train", type=at_least(1), metavar="N", help="use the first N training examples only, for the "
                   "teacher's fine-tuning too (quick runs; that teacher is cached apart from the full one)")
    p.add_argument("--final-epochs", type=at_least(0), metavar="E", help="epochs for the chosen student (default: 3; 0: none)")
    p.add_argument("--augment", type=at_least(0), metavar="K", help="final training: K perturbed copies of each train text, "
                   "labelled by the teacher (default: 4)")
    p.add_argument("--hidden-weight", type=at_least(0, float), metavar="W", help="final training: weight of the hidden-state "
                   "loss (default: 0, logits only: the teacher then runs once per text, not at every step)")
    p.add_argument("--no-warm-start", dest="warm_start", action="store_false", default=None,
                   help="start with the sampler's random trials only, not the cost model's largest dense student "
                   "of each depth under budget")
    p.add_argument("--seed", type=int, help="sampler and training seed (default: 0)")
    p.add_argument("--runs", type=at_least(1), metavar="N", help="timed runs per candidate (default: 30)")
    p.add_argument("--storage", metavar="URL", help="an Optuna database URL instead of OUT/study.log")
    p.add_argument("--workers", type=at_least(1), default=1, metavar="N", help="train N candidates at once on a local Ray")
    p.add_argument("--ray", metavar="ADDRESS", help="run the trials on this Ray cluster (e.g. ray://head:10001)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log")
    p.set_defaults(func=_run)
    return p
