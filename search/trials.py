"""A study's trials, as Optuna keeps them and as the search reads them.

    record = TrialRecord.from_trial(trial)      # what the report, the re-fit and the choice read
    record.to_json()                            # one entry of search_report.json's "trials"
    scored_trials(study)                        # the trials that trained a candidate
    requeue_interrupted(study)                  # after a killed search: its running trials run again

A trial's facts live in its Optuna ``user_attrs`` (kept in the study's journal or database, so a
resumed search and other machines see them); ``TrialRecord`` is the one place that names those keys
for reading. Optuna itself is imported inside the functions: this module is imported by the report
and the CLI's helpers, which must not pay for it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass

# A trial's stage: "screened-out" (the cost model put it over budget; never trained), "duplicate" (drawn again:
# told its earlier result), "trained" (distilled briefly and scored on dev), "timed" (also compiled and timed).
SCORED_STAGES = ("trained", "timed")


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the search reports it (search_report.json, trials.csv, the Pareto front). Fields are
    None where the trial did not get that far (a screened-out trial has no dev accuracy)."""

    number: int
    state: str  # Optuna's TrialState name: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    stage: str | None = None
    describe: str | None = None  # the candidate in words: "4 layers, 320, 4 heads, FFN 512"
    candidate: dict | None = None  # Candidate.asdict()
    threads: int | None = None
    predicted_ms: float | None = None  # the cost model, with the study's re-fitted profile of that round
    base_predicted_ms: float | None = None  # the cost model, with the built-in profile (what the re-fit fits)
    base_sparse_ms: float | None = None  # the part of base_predicted_ms spent in sparse GEMMs
    base_int8_ms: float | None = None  # the part of base_predicted_ms spent in int8 GEMMs
    base_sparse_int8_ms: float | None = None  # ... in int8 sparse GEMMs (int8 blocks)
    measured_ms: float | None = None  # bertc_run's median, when timed
    latency_ms: float | None = None  # what the sampler was told: measured when timed, else predicted
    dev_accuracy: float | None = None
    train_seconds: float | None = None
    student: str | None = None  # the timed student's model folder

    @classmethod
    def from_trial(cls, trial) -> TrialRecord:
        """The record of an Optuna FrozenTrial (its number, state and user_attrs)."""
        a = trial.user_attrs
        return cls(number=trial.number, state=trial.state.name,
                   **{k: a.get(k) for k in cls.__dataclass_fields__ if k not in ("number", "state")})

    def to_json(self) -> dict:
        """The record as search_report.json writes it: every field, in declaration order."""
        return asdict(self)


def trial_records(study) -> list[TrialRecord]:
    return [TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False)]


def scored_trials(study) -> list:
    """Trials that trained a candidate (a duplicate is told the earlier result and does not count)."""
    import optuna

    return [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("stage") in SCORED_STAGES]


def sampler(seed: int, objective: str, budget_ms: float, startup: int):
    """TPE (multivariate: layers, widths and sparsity interact), and its description for search.json.
    Constrained studies set each trial's constraint, latency - budget, before telling it
    (Trial.set_constraint); TPE ranks infeasible trials below every feasible one."""
    import optuna

    record = {"name": "TPESampler", "multivariate": True, "n_startup_trials": startup, "seed": seed}
    if objective == "pareto":
        record["objectives"] = ["maximize dev accuracy", "minimize latency ms"]
    else:
        record["objective"], record["constraint"] = "maximize dev accuracy", f"latency_ms - {budget_ms:.4f} <= 0"
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup), record


def storage(study_dir, url: str | None):
    """The study's storage: the database at ``url``, else the journal file ``study_dir/study.log``."""
    if url:
        return url
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(study_dir / "study.log")))


def owner() -> str:
    """This search process, as a trial's ``owner`` attribute names it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(owner: str | None) -> bool:
    """Whether the search process that asked a trial still runs (on another machine: assume it does)."""
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


def _mark_failed(study, trial) -> None:
    """End a trial another (killed) process left RUNNING, through Optuna's private storage API. The public
    ``study.tell(number, state=FAIL)`` would also run the sampler's ``after_trial`` hook on a trial this process
    never sampled; the storage call only records the state, but it takes the internal ``_trial_id``. Checked
    against optuna==5.0.0 (pinned); the search's only use of Optuna's private API."""
    import optuna

    study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def requeue_interrupted(study) -> int:
    """Trials left RUNNING by a killed search on this machine: marked failed, their parameters queued to
    run again. Trials that searches on other machines (sharing a database) are running are left alone."""
    import optuna

    n = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if _alive(t.user_attrs.get("owner")):
            continue
        _mark_failed(study, t)
        study.enqueue_trial(t.params, user_attrs={"rerun_of": t.number}, skip_if_exists=False)
        n += 1
    return n
