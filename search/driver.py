"""``bertc search``'s driver: open a new study folder or resume one, run its rounds, finish it.

    report = search("minilm.search", Settings(teacher=None, task="rt-sentiment", target="host",
                                              space=DEFAULT_SPACE, budget_ms=None))
    report = search("minilm.search", resume=True, trials=24)      # after a crash, Ctrl-C or SIGTERM

How the search works, step by step: ``bertc search --help`` (search/cli.py's HELP), the one description.
The steps live in study.py (setup and rounds), pool.py (scoring), timing.py, recalibrate.py and final.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bertc.errors import BertcError

from .final import finish, write_report
from .settings import FORMAT, Settings
from .study import Study


def search(out: str | Path, settings: Settings | None = None, *, trials: int = 16, timeout_min: float | None = None,
           workers: int = 1, ray_address: str | None = None, resume: bool = False, progress: bool = True,
           final: dict | None = None) -> dict:
    """Run (or, with ``resume``, continue) the study in folder ``out``; returns search_report.json's content.
    ``final`` changes the final training's settings (final_epochs, augment, hidden_weight) on a resume."""
    out = Path(out)
    st = _resume(out, progress, final) if resume else _start(out, settings, progress, trials, workers)
    t0 = time.perf_counter()
    try:
        st.setup()
        st.run(trials, timeout_min, workers, ray_address)
        report = finish(st)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (bertc.cli raises it in the main thread)
        kept = "every finished trial is" if "teacher" in st.state else "the settings and the finished setup steps are"
        raise BertcError(f"interrupted: {kept} kept in {out}; continue with `bertc search --resume -o {out}`") from None
    report["seconds"] = round(time.perf_counter() - t0, 1)
    write_report(st, report)
    return report


def _resume(out: Path, progress: bool, final: dict | None) -> Study:
    """The study saved in ``out``, with its own settings (the final training's may be changed by ``final``)."""
    saved = out / "search.json"
    if not saved.is_file():
        raise BertcError(f"--resume: '{out}' holds no search (no search.json); start one without --resume")
    data = json.loads(saved.read_text())
    settings = Settings(**{**data["settings"], **(final or {})})
    settings.space.setdefault("precision", ["fp32"])  # a study begun before precision was searched stays fp32
    if settings.format != FORMAT:
        raise BertcError(f"'{out}' was made by another version of bertc search (format {settings.format}); "
                         "start a new search in another folder")
    st = Study(out, settings, progress)
    st.state = {k: v for k, v in data.items() if k != "settings"}
    return st


def _start(out: Path, settings: Settings | None, progress: bool, trials: int, workers: int) -> Study:
    """A new study in ``out`` (which must be new or empty), checked before anything is written."""
    if (out / "search.json").is_file():
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
    return st
