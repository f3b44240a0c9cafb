"""bertc search: the space file, students cut from a teacher (PyTorch, the compiler and the cost model
agree on them), and the whole study end to end on a tiny teacher: screened, trained, timed, resumed
after a kill, and run on a local Ray."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import transformers as T
from bertc.search.inherit import build_student, importance, load_student, select_layers
from bertc.search.lengths import Lengths, study_lengths
from bertc.search.space import Candidate, load_space, parse_space, supported
from bertc.search.study import BUDGET_MARGIN, SCREEN_SLACK
from bertc.search.tasks import load_task
from conftest import without_int8
from test_cost import _normalized

import bertc
from bertc.errors import BertcError

# lengths: the mean over rt-sentiment's dev lengths, each at its own length (students compiled with --max-seq-len);
# the resume test runs the older fixed length (FIXED), every student int8
SPACE = {"lengths": "mean", "layers": [1, 2, 4], "hidden": [32, 64], "heads": [2, 4], "ffn": [64, 128],
         "sparsity": ["none", "16x1@0.5"], "threads": [1], "precision": ["fp32", "int8"]}
FIXED = {**{k: v for k, v in SPACE.items() if k != "lengths"}, "seq_len": 32, "precision": ["int8"]}
BERTC = [sys.executable, "-m", "bertc.cli"]


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> Path:
    """A 4-layer, 64-wide BERT classifier (random weights) with MiniLM's tokenizer."""
    from bertc.search.teacher import packaged_minilm

    folder = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    cfg = T.BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=128, max_position_embeddings=64, id2label={0: "rotten", 1: "fresh"},
                       label2id={"rotten": 0, "fresh": 1}, architectures=["BertForSequenceClassification"])
    T.BertForSequenceClassification(cfg).save_pretrained(str(folder))
    T.AutoTokenizer.from_pretrained(str(packaged_minilm())).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def teacher_and_importance(tiny_teacher):
    from bertc.search.teacher import load_classifier

    task = load_task("rt-sentiment")
    teacher, tok = load_classifier(tiny_teacher, task)
    return teacher, tok, importance(teacher, tok, task, max_examples=64)


# --------------------------------------------------------------------------- the space


@pytest.mark.parametrize("data, message", [
    ({"layer": [1]}, "unknown key(s) ['layer']"),
    ({"heads": []}, "'heads' in the search space x.yaml must be a non-empty list"),
    ({"ffn": [512, "big"]}, "'ffn'"),
    ({"sparsity": ["16x1@2"]}, "sparsity entry '16x1@2'"),
    ({"ffn_per_layer": "yes"}, "'ffn_per_layer'"),
    ([1, 2], "must be a mapping"),
    ({"lengths": "median"}, "'lengths' in the search space x.yaml must be `mean`, a percentile such as `p90`"),
    ({"lengths": "p0"}, "'lengths'"),
    ({"lengths": 0}, "'lengths'"),
    ({"seq_len": 32, "lengths": "mean"}, "has both 'seq_len' and 'lengths'"),
    ({"precision": ["fp32", "fp16"]}, "'precision' in the search space x.yaml must be a non-empty list of fp32, int8"),
])
def test_bad_space_files_say_what_is_wrong(data, message):
    with pytest.raises(BertcError, match=None) as e:
        parse_space(data, "x.yaml")
    assert message in str(e.value)


def test_space_file_yaml_and_sampling(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("layers: [2, 3]\nffn: [256, 512]\nffn_per_layer: true\nsparsity: [none, 8x1@0.5]\n")
    space = load_space(path)
    assert space.layers == [2, 3] and space.hidden == [256, 320, 384] and space.sparsity == [None, "8x1@0.5"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    cands = [space.sample(study.ask()) for _ in range(20)]
    assert all(len(c.ffn) == c.layers and set(c.ffn) <= {256, 512} for c in cands)
    assert any(len(set(c.ffn)) > 1 for c in cands)  # per-layer widths really differ
    assert Candidate.from_dict(cands[0].asdict()) == cands[0]
    cfg = cands[0].config(T.BertConfig(hidden_size=384, num_attention_heads=12, intermediate_size=1536))
    assert cfg.intermediate_sizes == list(cands[0].ffn) and cfg.attention_head_size == 32
    with pytest.raises(BertcError, match="does not fit the teacher: layers up to 3, but the teacher has 2"):
        space.check_teacher(T.BertConfig(hidden_size=384, num_attention_heads=12, num_hidden_layers=2))


def test_precision_is_sampled_and_int8_is_sparse_only_in_blocks_its_kernel_runs():
    """Both precisions drawn; an int8 draw keeps r x 1 blocks (int8 blocks, priced as their own kind) and is made
    dense with a pattern the compiler refuses in int8 (1x4: space.supported); the warm start's dense candidates come
    in both; a candidate from before precision existed reads as fp32."""
    shape = {"layers": [2], "hidden": [256], "heads": [4], "ffn": [512], "threads": [1]}
    space = parse_space({**shape, "sparsity": ["1x4@0.5"]})
    assert supported("int8", "16x1@0.25") and supported("int8", "2:4") and not supported("int8", "1x4@0.5")
    blocks = parse_space({**shape, "sparsity": ["16x1@0.5"]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    assert {(c.precision, c.sparsity) for c in (blocks.sample(study.ask()) for _ in range(20))} == {
        ("fp32", "16x1@0.5"), ("int8", "16x1@0.5")}
    assert space.precision == ["fp32", "int8"]  # the default: phones ship int8
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trials = [study.ask() for _ in range(30)]
    cands = [space.sample(t) for t in trials]
    assert {c.precision for c in cands} == {"fp32", "int8"}
    assert all(c.sparsity == (None if c.precision == "int8" else "1x4@0.5") for c in cands)
    assert any(t.params["sparsity"] == "1x4@0.5" for t, c in zip(trials, cands) if c.precision == "int8")
    assert all(set(t.params) == set(trials[0].params) for t in trials)  # every parameter drawn every time
    int8 = next(c for c in cands if c.precision == "int8")
    assert int8.describe() == "L2 H256 A4 F512 int8 t1" and Candidate.from_dict(int8.asdict()) == int8
    assert space.params(int8)["precision"] == "int8"
    assert [c.precision for c in space.dense_uniform()] == ["int8"]  # fp32 is sparse only in this space
    old = {"layers": 2, "hidden": 256, "heads": 4, "ffn": [512, 512], "sparsity": None, "threads": 1}
    assert Candidate.from_dict(old) == Candidate(2, 256, 4, (512, 512), None, 1, "fp32")
    from bertc.search.settings import Settings
    from bertc.search.study import Study

    gpu = Study(Path("unused"), Settings(None, "rt-sentiment", "vulkan", {}, None, profile="vulkan-mobile"), False)
    with pytest.raises(BertcError, match=r"precision int8: target 'vulkan' is a GPU, whose int8 is weight-only.*`precision: \[fp32\]`"):
        gpu.check()  # before anything is written or trained


def test_study_lengths_mean_percentile_and_fixed():
    from bertc.search.lengths import study_lengths

    lat = study_lengths("mean", [3, 5, 9, 10, 12, 20, 30, 90], bound=64, source="x")
    # cut at the bound (90 -> 64), four groups of two at their mean lengths, each a quarter of the inputs
    assert lat.points == (4, 10, 16, 47) and lat.weights == (0.25,) * 4 and lat.bound == 64 and lat.dynamic
    assert lat.combine([1, 2, 3, 4]) == pytest.approx(2.5) and lat.compile_flags() == "--max-seq-len 64"
    assert study_lengths("p90", list(range(1, 101)), 64, "x").points == (64,)  # the 90th percentile, cut at 64
    assert study_lengths("p50", list(range(1, 101)), 128, "x").points == (51,)
    assert study_lengths("mean", [7, 7, 7], 64, "x").points == (7,)  # one group per distinct length
    fixed = study_lengths(32, [5, 6], 64, "x")
    assert (fixed.points, fixed.bound, fixed.dynamic, fixed.compile_flags()) == ((32,), 32, False, "--seq-len 32")
    assert parse_space({"seq_len": 48}).lengths == 48  # an older space (or study) reads as a fixed length


def test_timings_count_the_quietest_stretch_as_bertc_run_and_calibrate_do(tmp_path, monkeypatch):
    """PyTorch's times (search/timing.py quiet_ms) take bertc_run's quiet_window, with its constants; the search's
    candidates are timed by calibrate.point_ms, the statistic the cost model is fitted to."""
    from bertc.search import timing
    from conftest import tiny_model

    src = (Path(__file__).resolve().parents[1] / "runtime" / "tools" / "bertc_run.c").read_text()
    assert f"#define QUIET_WINDOW_MS {timing.QUIET_WINDOW_MS}\n" in src and f"#define QUIET_MIN_RUNS {timing.QUIET_MIN_RUNS}\n" in src
    # runs of 3 ms (the median) but a quiet stretch of 2: windows of 4 runs (10 ms / 3 + 1), the quiet one's median
    # 2.0; the last 2 runs are no whole window, so not one
    assert timing.quiet_ms([3.0] * 6 + [2.0] * 5 + [2.1] + [3.0] * 8 + [1.0] * 2) == 2.0
    assert timing.quiet_ms([3.0, 1.0, 2.0, 2.5]) == 2.5  # under two windows: every run's median
    art = bertc.compile(tiny_model("bert"), target="host", max_seq_len=16, out=tmp_path / "m.bertc")
    calls, real = [], timing.DeviceModel.bench
    monkeypatch.setattr(timing.DeviceModel, "bench", lambda self, *a, **k: calls.append(real(self, *a, **k)) or calls[-1])
    ms = timing.time_artifact(art.path, 1, study_lengths("mean", [4, 9], 16, "x"), None, 20)
    assert len(calls) == 2 and ms == pytest.approx(sum(r["quiet_ms"] for r in calls) / 2)


def test_four_length_groups_price_the_dev_split_as_every_length_does(tiny_teacher):
    """The study prices a candidate at BINS points; on rt-sentiment's real dev lengths that must agree with
    the cost model's mean over every sentence at its own length (each distinct length priced)."""
    from bertc.search.lengths import study_lengths, token_counts

    from bertc.cost import config_ops, load_profile

    task, tok = load_task("rt-sentiment"), T.AutoTokenizer.from_pretrained(str(tiny_teacher))
    lengths = token_counts(tok, [t for t, _ in task.dev], task.max_length)
    lat = study_lengths("mean", lengths, task.max_length, "dev")
    assert len(lat.points) == 4 and lat.points[0] < int(np.median(lengths)) < lat.points[-1]
    profile = load_profile(None, "host")
    config = T.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=2, num_attention_heads=6,
                          intermediate_size=1536, max_position_embeddings=64).to_dict()
    price = {n: profile.overhead_ms(1) + sum(profile.op_ms(o, 1) for o in config_ops(config, "host", n))
             for n in sorted(set(lengths) | set(lat.points))}
    every = float(np.mean([price[n] for n in lengths]))
    assert lat.combine([price[n] for n in lat.points]) == pytest.approx(every, rel=0.02)


# --------------------------------------------------------------------------- students


def test_select_layers():
    assert select_layers(6, 3) == [1, 3, 5] and select_layers(6, 6) == list(range(6)) and select_layers(4, 1) == [3]
    with pytest.raises(BertcError):
        select_layers(4, 5)


def test_a_full_cut_is_the_teacher(teacher_and_importance):
    teacher, tok, imp = teacher_and_importance
    assert imp.heads.shape == (4, 4) and len(imp.neurons) == 4 and imp.hidden.shape == (64,) and (imp.heads >= 0).all()
    student, _ = build_student(teacher, imp, 4, 64, [4] * 4, [128] * 4)
    batch = tok(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(student(**batch).logits, teacher(**batch).logits, atol=1e-5)


def test_a_cut_student_compiles_and_the_cost_model_sees_its_shape(teacher_and_importance, tmp_path):
    from bertc.passes import PassContext
    from torch_mlir import ir

    from bertc.cost import PASSES
    from bertc.ir import make_context
    from bertc.pipeline import run_pass
    from bertc.synth import bert_ir

    teacher, tok, imp = teacher_and_importance
    student, cut = build_student(teacher, imp, 2, 48, [3, 3], [96, 96])
    student.config.intermediate_sizes = [96, 40]  # per-layer FFN: narrow layer 1 further by hand
    layer = student.bert.encoder.layer[1]
    layer.intermediate.dense = torch.nn.Linear(48, 40)
    layer.output.dense = torch.nn.Linear(40, 48)
    assert cut.layers == [1, 3] and list(cut.heads[0]) == sorted(cut.heads[0])
    student.save_pretrained(str(tmp_path / "student"))
    tok.save_pretrained(str(tmp_path / "student"))
    reloaded = load_student(tmp_path / "student")
    ids = torch.randint(0, 30522, (1, 12))
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0
    with torch.no_grad():
        ref = reloaded.bert(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
        assert np.allclose(ref, student.bert(input_ids=ids, attention_mask=mask).last_hidden_state.numpy())
    art = bertc.compile(tmp_path / "student", seq_len=12, out=tmp_path / "s.bertc", dump_dir=tmp_path / "ir")
    out = bertc.load(art.path)(ids.numpy(), mask.numpy(), np.zeros_like(ids.numpy()))["last_hidden_state"]
    assert np.abs(out[0, :9] - ref[0, :9]).max() < 1e-4
    with make_context(), ir.Location.unknown():
        module = ir.Module.parse(bert_ir(reloaded.config, seq_len=12))
        for flag in PASSES:
            run_pass(module, flag, PassContext())
        assert _normalized(str(module)) == _normalized((tmp_path / "ir" / "05-plan_memory.mlir").read_text())


# --------------------------------------------------------------------------- the study


def _search(out: Path, teacher: Path, *extra: str, trials: int = 4, space_dict: dict = SPACE) -> list[str]:
    # budget: the teacher's own measured latency. Every student is smaller, so one is shipped unless the machine
    # slows down by more than the student's margin between the teacher's timing and its own (see _shipped)
    space = out.parent / "space.json"
    space.write_text(json.dumps(space_dict))
    return [*BERTC, "search", "-o", str(out), "--teacher", str(teacher), "--space", str(space),
            "--latency-budget", "1x", "--trials", str(trials), "--round-size", "2", "--timed-per-round", "1",
            "--max-train", "200", "--final-epochs", "1", "--augment", "1", "--runs", "5", *extra]


def _shipped(run: subprocess.CompletedProcess, out: Path, trials: list) -> bool:
    """Whether the search shipped a student. Timings are measured, so a loaded machine can leave no timed
    candidate under budget; the search must then say so, and only when the measurements say so too."""
    if run.returncode == 0:
        return True
    assert run.returncode == 2 and "bertc: error: no timed candidate met the" in run.stderr, run.stderr[-3000:]
    budget = json.loads((out / "search_report.json").read_text())["budget_ms"]
    measured = [t.user_attrs["measured_ms"] for t in trials if t.user_attrs.get("stage") == "timed"]
    assert measured and all(ms > budget * (1 - BUDGET_MARGIN) - 1e-3 for ms in measured)
    return False


def _screened_by_their_prediction(trials, budget_ms: float) -> None:
    """The screen's rule on its own inputs, whatever was measured: a candidate is trained if and only if the
    cost model (the study's re-fitted profile) predicted it within SCREEN_SLACK of the budget."""
    line = SCREEN_SLACK * budget_ms
    for t in trials:
        a = t.user_attrs
        if a.get("stage") == "screened-out":
            assert t.state.name == "PRUNED" and "dev_accuracy" not in a and a["predicted_ms"] > line - 1e-3
        elif a.get("stage") in ("trained", "timed"):
            assert t.state.name == "COMPLETE" and 0 <= a["dev_accuracy"] <= 1 and 0 < a["predicted_ms"] <= line + 1e-3


def _trials(out: Path, storage=None):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = storage or JournalStorage(JournalFileBackend(str(out / "study.log")))
    return optuna.load_study(study_name="bertc-search", storage=storage).get_trials(deepcopy=False)


@pytest.mark.parametrize("int8_fitted", [True, False])
def test_recalibration_fits_dense_sparse_and_int8_scales_that_reproduce_the_measurements(int8_fitted):
    """Timings made 10% slower than predicted for fp32 dense ops, 30% faster for sparse GEMMs, 40% faster for
    int8 ones and 50% for int8 blocks, in a profile with int8 fits (host-avx512's) and one without (their roofline
    price): each kind's scale comes back, an int8 sparse student's dense int8 pooler priced at the int8 one's, and
    the re-fitted profile predicts every timed candidate through the cost model's own op_ms, whichever kinds were
    timed."""
    from bertc.search.recalibrate import refit_profile
    from bertc.search.trials import TrialRecord

    from bertc.cost import Profile, config_ops, load_profile

    base = load_profile("host-avx512", "host") if int8_fitted else without_int8()  # named: not this CPU's closest
    config = T.BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=256, max_position_embeddings=64)
    timed, ops_of = [], {}
    for ffn, prune, dtype in [(256, None, "fp32"), (128, None, "fp32"), (256, "16x1@0.5", "fp32"),
                              (128, "4x1@0.5", "fp32"), (256, None, "int8"), (128, None, "int8"),
                              (256, "16x1@0.25", "int8"), (128, "16x1@0.25", "int8")]:
        config.intermediate_size = ffn
        ops = config_ops(config.to_dict(), "host", 32, prune=prune, cache=base.weight_cache, dtype=dtype)
        total = base.overhead_ms(1) + sum(base.op_ms(o, 1) for o in ops)
        sparse, int8, sp8 = (sum(base.op_ms(o, 1) for o in ops if o.kind == k)
                             for k in ("linear_sparse", "linear_i8", "linear_sparse_i8"))
        assert (sparse > 0) == (prune is not None and dtype == "fp32") and (sp8 > 0) == (prune is not None and
                                                                                         dtype == "int8")
        ops_of[len(timed)] = ops
        timed.append(TrialRecord(len(timed), "COMPLETE", "timed", threads=1, base_predicted_ms=total,
                                 base_sparse_ms=sparse, base_int8_ms=int8, base_sparse_int8_ms=sp8,
                                 measured_ms=1.1 * (total - sparse - int8 - sp8 + 0.7 * sparse) + 0.6 * int8
                                 + 0.5 * sp8))
    data, scales = refit_profile(base.data, timed)
    # a fitted kind's scale rides on the run scale; a roofline-priced one's (no int8 fit in the profile) does not
    i8, s8 = (f / 1.1 if k in base.data["fitted"]["1"] else f for k, f in (("linear_i8", 0.6), ("linear_sparse_i8", 0.5)))
    assert scales == {"1": pytest.approx(1.1, rel=1e-3), "1:linear_sparse": pytest.approx(0.7, rel=1e-3),
                      "1:linear_i8": pytest.approx(i8, rel=1e-3), "1:linear_sparse_i8": pytest.approx(s8, rel=1e-3)}
    refit = Profile("refit", data)
    for r in timed:
        predicted = refit.overhead_ms(1) + sum(refit.op_ms(o, 1) for o in ops_of[r.number])
        # the overhead is not scaled, so the dense scale is fitted through it: within a few per cent
        assert predicted == pytest.approx(r.measured_ms, rel=0.02)
    # with no fp32 dense candidate timed yet, every candidate fits the run scale and no kind scale is guessed
    for only in (timed[2:], timed[4:], timed[2:4]):
        data, scales = refit_profile(base.data, only)
        assert set(scales) == {"1"} and "kind_scale" not in data
    assert set(refit_profile(base.data, timed[:2] + timed[4:6])[1]) == {"1", "1:linear_i8"}  # no sparse timed
    # a profile with int8 fitted (`bertc calibrate --int8`; here fp32's rates): its int8 price is run-scaled too
    fitted = {**base.data["fitted"]["1"], "linear_i8": base.data["fitted"]["1"]["linear"]}
    calibrated = Profile("int8", {**base.data, "fitted": {"1": fitted}})
    for r in timed[4:6]:
        total, int8 = (sum(calibrated.op_ms(o, 1) for o in ops_of[r.number] if k in (None, o.kind)) for k in
                       (None, "linear_i8"))
        timed[r.number] = TrialRecord(r.number, "COMPLETE", "timed", threads=1, base_predicted_ms=total,
                                      base_int8_ms=int8, measured_ms=1.1 * (total - int8 + 0.6 * int8))
    data, scales = refit_profile(calibrated.data, timed[:2] + timed[4:6])
    assert scales == {"1": pytest.approx(1.1, rel=1e-3), "1:linear_i8": pytest.approx(0.6, rel=1e-3)}
    for r in timed[4:6]:
        predicted = sum(Profile("refit", data).op_ms(o, 1) for o in ops_of[r.number])
        assert predicted == pytest.approx(r.measured_ms, rel=1e-3)
    # a thread count with nothing timed at it takes the nearest one's run scale (the teacher's, at first)
    data, scales = refit_profile(base.data, timed[:1], [1, 2, 4])
    assert scales["2"] == scales["4"] == scales["1"] == pytest.approx(1.1, rel=1e-3)
    assert data["run_scale"]["4"] == pytest.approx(base.data["run_scale"].get("4", 1.0) * 1.1, rel=1e-3)


def test_a_calibrated_profile_is_the_base_of_the_screen_and_the_refit(tmp_path):
    """--profile FILE: the study prices with it until a round re-fits, and re-fits from it, not the built-in."""
    from bertc.search.recalibrate import recalibrate, study_profile
    from bertc.search.trials import TrialRecord

    from bertc.cost import load_profile

    data = load_profile(None, "host").data
    data["run_scale"] = {t: 3.0 * v for t, v in data["run_scale"].items()}  # a machine 3x slower than the built-in's
    mine = tmp_path / "here.json"
    mine.write_text(json.dumps(data))
    assert study_profile(tmp_path, "host", str(mine)).path == mine
    timed = [TrialRecord(0, "COMPLETE", "timed", threads=1, base_predicted_ms=1.0, base_sparse_ms=0.0, measured_ms=1.5)]
    assert recalibrate(tmp_path, "host", str(mine), timed) == {"1": 1.5}
    refit = study_profile(tmp_path, "host", str(mine)).data["run_scale"]["1"]
    assert refit == pytest.approx(1.5 * data["run_scale"]["1"], rel=1e-3)  # scaled from the file, not the built-in
    out = tmp_path / "s"
    run = subprocess.run([*BERTC, "search", "-o", str(out), "--profile", str(tmp_path / "missing.json")],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 2 and "cannot read profile" in run.stderr and not out.exists()


def test_the_screen_never_trains_a_candidate_the_cost_model_puts_over_budget(tiny_teacher, tmp_path, monkeypatch):
    """Screening, on the cost model's predictions alone: a budget set from the cost model's own price of the
    teacher-sized student, that student enqueued first, and training and timing stubbed (no clock involved)."""
    from bertc.search import study
    from bertc.search.settings import Settings
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from bertc.cost import load_profile

    teacher_config = T.AutoConfig.from_pretrained(tiny_teacher)
    settings = Settings(teacher=str(tiny_teacher), task="rt-sentiment", target="host", space=SPACE,
                        budget_ms=None, round_size=2, timed_per_round=1, warm_start=False)
    st = study.Study(tmp_path, settings, progress=False)
    st.lengths = study_lengths("mean", [5, 9, 12, 20, 31, 40], 64, "a few lengths")  # priced at four of them
    big = Candidate(4, 64, 4, (128,) * 4, None, 1)  # the teacher's own shape
    priced = st.predict(big, teacher_config, (load_profile(None, "host"),))[0]
    st.budget_ms = priced / 1.5
    st.state = {"teacher_dir": str(tiny_teacher), "budget_ms": st.budget_ms,  # a teacher timed as priced
                "teacher": {"threads": 1, "latency_ms": priced, "base_predicted_ms": priced}}
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.log")))
    optuna.create_study(study_name="bertc-search", storage=storage).enqueue_trial(st.space.params(big))
    trained = []

    class Pool:  # scores and times without training or compiling: the screen is what is under test
        def __init__(self, *args):
            pass

        def score(self, jobs):
            trained.extend(c for _, c in jobs)
            return [{"dev_accuracy": 0.5, "train_seconds": 0.0} for _ in jobs]

        def time(self, folder, cand):
            return st.budget_ms / 2

        def close(self):
            pass

    monkeypatch.setattr(study, "Pool", Pool)
    monkeypatch.setattr(study, "save_student", lambda *args: None)
    st.run(4, None, 1, None)
    trials = _trials(tmp_path)
    first = trials[0].user_attrs
    assert first["candidate"] == big.asdict() and first["stage"] == "screened-out" and trials[0].state.name == "PRUNED"
    assert big not in trained and len(trained) == 4
    _screened_by_their_prediction(trials, st.budget_ms)


def test_a_space_of_one_candidate_ends_when_it_is_scored_and_a_budget_nothing_fits_is_an_error(tiny_teacher, tmp_path,
                                                                                               monkeypatch):
    """Every sample a repeat of a scored candidate: the search ends (the space is exhausted), it does not blame
    the budget; every sample over the budget: the error says so and what to change."""
    from bertc.search import study
    from bertc.search.settings import Settings

    from bertc.cost import load_profile

    teacher_config = T.AutoConfig.from_pretrained(tiny_teacher)
    one = {"lengths": "mean", "layers": [1], "hidden": [32], "heads": [2], "ffn": [64], "sparsity": ["none"],
           "threads": [1], "precision": ["fp32"]}

    measured = {"ms": 0.01}  # the candidate "runs" at its own price, so the round's re-fit keeps that price

    class Pool:  # scores and times without training or compiling
        def __init__(self, *args):
            pass

        def score(self, jobs):
            return [{"dev_accuracy": 0.5, "train_seconds": 0.0} for _ in jobs]

        def time(self, folder, cand):
            return measured["ms"]

        def close(self):
            pass

    monkeypatch.setattr(study, "Pool", Pool)
    monkeypatch.setattr(study, "save_student", lambda *args: None)
    for name, fraction in [("fits", 2.0), ("over", 0.01)]:
        settings = Settings(teacher=str(tiny_teacher), task="rt-sentiment", target="host", space=one, budget_ms=None,
                            round_size=1, timed_per_round=1, warm_start=False)
        st = study.Study(tmp_path / name, settings, progress=False)
        (tmp_path / name).mkdir()
        st.lengths = study_lengths("mean", [5, 9, 12, 20], 64, "a few lengths")
        priced = st.predict(Candidate(1, 32, 2, (64,), None, 1), teacher_config, (load_profile(None, "host"),))[0]
        st.budget_ms, measured["ms"] = fraction * priced, priced
        st.state = {"teacher_dir": str(tiny_teacher), "budget_ms": st.budget_ms,
                    "teacher": {"threads": 1, "latency_ms": priced, "base_predicted_ms": priced}}
        if name == "fits":
            st.run(5, None, 1, None)
            assert [t.user_attrs["stage"] for t in _trials(tmp_path / name)].count("timed") == 1
        else:
            with pytest.raises(BertcError, match=r"screened out 400 of 400 sampled candidates in a row as over the "
                                                 r"[0-9.]+ ms budget .*raise the budget"):
                st.run(5, None, 1, None)


def test_search_end_to_end_on_a_local_ray_screened_then_timed(tiny_teacher, tmp_path):
    """The whole flow, with trials trained by two Ray workers and the study in a database. Every assertion
    holds whatever the timings are: the budget and the screen depend on measured times."""
    out, db = tmp_path / "s", f"sqlite:///{tmp_path / 'study.db'}"
    run = subprocess.run(_search(out, tiny_teacher, "--workers", "2", "--storage", db), capture_output=True,
                         text=True, check=False, timeout=600)
    assert not (out / "study.log").exists()
    trials = _trials(out, db)
    shipped = _shipped(run, out, trials)
    report = json.loads((out / "search_report.json").read_text())
    stages = [t.user_attrs.get("stage") for t in trials]
    # the warm start: the first trials are the cost model's largest dense student of each depth under budget
    seeds = [t for t in trials if t.user_attrs.get("warm_start")]
    assert [t.number for t in seeds] == list(range(len(seeds))) and len(seeds) == len(report["warm_start"]) >= 1
    from bertc.search.recalibrate import refit_profile
    from bertc.search.trials import TrialRecord

    from bertc.cost import Profile, config_ops, load_profile

    base, teacher_config = load_profile(None, "host"), T.AutoConfig.from_pretrained(tiny_teacher)
    # priced with the built-in profile scaled by the teacher's measured / predicted time (the re-fits of later
    # rounds may move predicted_ms past the budget)
    state = json.loads((out / "search.json").read_text())
    teacher, anchor = state["teacher"], state["teacher_anchor"]
    assert anchor["measured_ms"] == teacher["latency_ms"] and anchor["base_predicted_ms"] == teacher["base_predicted_ms"] > 0
    # the teacher timed fp32 and int8: the run scale and the int8 GEMMs' scale before the first round
    records = [TrialRecord(-1, "COMPLETE", "timed", threads=1, base_predicted_ms=r["base_predicted_ms"],
                           base_int8_ms=r.get("base_int8_ms"), measured_ms=r["latency_ms"])
               for r in (teacher, teacher["int8"])]
    data, scales = refit_profile(base.data, records, SPACE["threads"])
    assert scales == anchor["scale"] and set(scales) == {"1", "1:linear_i8"} and teacher["int8"]["base_int8_ms"] > 0
    profile = Profile("anchored", data)
    assert all(t.user_attrs["candidate"]["sparsity"] is None for t in seeds if "candidate" in t.user_attrs)
    cands = [Candidate.from_dict(t.user_attrs["candidate"]) for t in trials if "candidate" in t.user_attrs]
    assert {c.precision for c in cands} == {"fp32", "int8"}
    assert not any(c.sparsity for c in cands if c.precision == "int8")
    # every latency is the mean over the dev split's lengths: priced and timed at four of them, up to the
    # task's 64 tokens (the tiny teacher's positions too)
    lat = Lengths.from_json(report["lengths"])
    assert lat.measure == "mean" and len(lat.points) == 4 and lat.bound == 64 and "rt-sentiment dev" in lat.source

    def predicted(c: Candidate, prof=profile) -> float:
        config = c.config(teacher_config).to_dict()
        return lat.combine([prof.overhead_ms(1) + sum(prof.op_ms(o, 1) for o in config_ops(
            config, "host", n, prune=c.sparsity, cache=prof.weight_cache, dtype=c.precision, floor=prof.row_floor))
            for n in lat.points])

    largest = {}  # per depth and precision, the largest price under budget
    for n, p in [(n, p) for n in SPACE["layers"] for p in SPACE["precision"]]:
        fits = [predicted(Candidate(n, h, a, (f,) * n, None, 1, p)) for h in SPACE["hidden"] for a in SPACE["heads"]
                for f in SPACE["ffn"]]
        under = [ms for ms in fits if ms <= report["budget_ms"]]
        if under:
            largest[n, p] = max(under)
    assert len(seeds) == len({n for n, _ in largest})  # one per depth: the precision whose largest is the larger model
    # the seeds past --trials wait in the study, unsampled
    for c in [Candidate.from_dict(t.user_attrs["candidate"]) for t in seeds if "candidate" in t.user_attrs]:
        assert predicted(c) == pytest.approx(largest[c.layers, c.precision], rel=1e-3, abs=1e-4)  # rounded to 0.1 us
    # which candidates are over budget depends on the teacher's measured latency: the screen is checked on its
    # inputs here, and on a budget the test sets in test_the_screen_never_trains_a_candidate_the_cost_model_puts_...
    _screened_by_their_prediction(trials, report["budget_ms"])
    # the front shows an untimed candidate at the last re-fitted profile's price, not its round's
    refit = Profile("refit", json.loads((out / "profile.json").read_text()))
    for r in report["pareto_front"]:
        if r["measured_ms"] is None:
            assert r["latency_ms"] == pytest.approx(predicted(Candidate.from_dict(r["candidate"]), refit), rel=1e-3)
    timed = [t for t in trials if t.user_attrs.get("stage") == "timed"]
    assert len(timed) == 2 and all(t.user_attrs["measured_ms"] > 0 for t in timed)  # one per round
    assert stages.count("trained") == 2
    assert report["cost_model_on_timed"]["candidates"] == 2
    # each round says how far the cost model was off on its timed candidate, before re-fitting from it
    rounds = json.loads((out / "search.json").read_text())["recalibrations"]
    assert [r["round_error"]["timed"] for r in rounds] == [1, 1] and all(r["round_error"]["mape"] >= 0 for r in rounds)
    assert json.loads((out / "profile.json").read_text())["sources"]["search"].startswith("run_scale and kind_scale re-fitted")
    if not shipped:
        return
    final = report["final"]
    assert final["latency_ms"] > 0 and 0 <= final["test_accuracy"] <= 1
    # through the artifact, in the student's precision; an int8 one also compiled fp32, which PyTorch's matches
    fp32 = final["compiled_test_accuracy" if final["precision"] == "fp32" else "compiled_test_accuracy_fp32"]
    assert fp32 == pytest.approx(final["test_accuracy"], abs=0.01)
    assert final["compiled_test_accuracy"] == pytest.approx(fp32, abs=0.03)
    print("compiled accuracy", final["precision"], final["compiled_test_accuracy"], "fp32", fp32)
    both = final["interleaved"]  # the teacher and the student timed alternately
    assert both["min"] <= both["speedup"] <= both["max"] and both["teacher_ms"] > 0 and both["student_ms"] > 0
    assert report["chosen"]["measured_ms"] <= report["budget_ms"] * 0.98  # under by more than the timing noise
    assert (out / "pareto.png").stat().st_size > 10_000 and "plotly" in (out / "pareto.html").read_text()[:100_000]
    assert "Pareto front" in run.stderr + run.stdout
    # the student was timed as a --max-seq-len 64 artifact, and the command printed makes that artifact
    dtype = "" if final["precision"] == "fp32" else " --dtype int8"
    assert final["compile_command"].endswith(f"--target host --max-seq-len 64{dtype}")
    assert final["compile_command"] in run.stderr + run.stdout
    from bertc.artifact import read_manifest

    manifest = read_manifest(Path(final["artifact"]))
    assert manifest.max_seq_len == 64 and manifest.dtype == final["precision"]
    # the saved student is what `bertc compile` takes
    art = bertc.compile(out / "student", seq_len=16, out=tmp_path / "student.bertc")
    assert art.manifest.seq_len == 16


def test_search_resumes_after_a_kill_with_nothing_lost(tiny_teacher, tmp_path):
    out = tmp_path / "s"
    proc = subprocess.Popen(_search(out, tiny_teacher, "--final-epochs", "0", trials=4, space_dict=FIXED),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 1200  # a guard against a hung search only: how fast it runs is not asserted
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "study.log").exists() and sum(t.state.name == "COMPLETE" for t in _trials(out)) >= 2:
                break
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {t.number: (t.values, t.user_attrs.get("stage")) for t in _trials(out) if t.state.name == "COMPLETE"}
    assert len(before) >= 2, "the search did not get two trials done before the kill"
    again = subprocess.run([*BERTC, "search", "-o", str(out), "--resume", "--teacher", str(tiny_teacher)],
                           capture_output=True, text=True, check=False, timeout=600)
    assert again.returncode == 2 and "--resume continues the study with the settings" in again.stderr
    # the final training's settings may change on a resume (it was started with --final-epochs 0)
    resumed = subprocess.run([*BERTC, "search", "-o", str(out), "--resume", "--trials", "4", "--final-epochs", "1"],
                             capture_output=True, text=True, check=False, timeout=600)
    after = _trials(out)
    shipped = _shipped(resumed, out, after)
    assert sum(t.user_attrs.get("stage") in ("trained", "timed") for t in after) == 4
    for t in after:  # what was finished before the kill is still there, unchanged
        if t.number in before:
            assert (t.values, t.user_attrs.get("stage")) == before[t.number]
    # the space is int8 only: every candidate int8, dense or in 16x1 blocks (int8 blocks, priced as their own kind)
    cands = [t.user_attrs["candidate"] for t in after if "candidate" in t.user_attrs]
    assert cands and all(c["precision"] == "int8" and c["sparsity"] in (None, "16x1@0.5") for c in cands)
    if shipped:
        from bertc.artifact import read_manifest

        final = json.loads((out / "search_report.json").read_text())["final"]
        assert final["trial"] is not None and len(final["final_training"]["history"]) == 1
        # the int8 artifact, its accuracy and the same student's compiled fp32, side by side
        assert read_manifest(Path(final["artifact"])).dtype == "int8"
        assert final["compile_command"].endswith("--dtype int8")
        assert final["compiled_test_accuracy_fp32"] == pytest.approx(final["test_accuracy"], abs=0.01)
        assert final["compiled_test_accuracy"] == pytest.approx(final["compiled_test_accuracy_fp32"], abs=0.03)
        print("int8", final["compiled_test_accuracy"], "fp32", final["compiled_test_accuracy_fp32"])


def test_search_refuses_bad_input(tiny_teacher, tmp_path):
    bad = subprocess.run([*BERTC, "search", "-o", str(tmp_path / "x"), "--latency-budget", "3"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--latency-budget '3'" in bad.stderr
    none = subprocess.run([*BERTC, "search", "-o", str(tmp_path / "y"), "--resume"], capture_output=True, text=True, check=False)
    assert none.returncode == 2 and "holds no search" in none.stderr
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "keep.txt").write_text("mine")
    busy = subprocess.run(_search(tmp_path / "z", tiny_teacher), capture_output=True, text=True, check=False)
    assert busy.returncode == 2 and "not a search folder" in busy.stderr
    assert (tmp_path / "z" / "keep.txt").read_text() == "mine"
