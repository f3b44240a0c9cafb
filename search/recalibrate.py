"""The study's cost model, re-fitted from its own timed candidates after every round.

    profile = study_profile(out, "host", None)    # OUT/profile.json once written, else the base
    scales = recalibrate(out, "host", None, timed)  # re-fit from the timed TrialRecords, write OUT/profile.json

The base profile is --profile's file (`bertc calibrate` on this machine), else the target's built-in one.
The teacher, timed during the setup, is the first measurement: it sets the scale before the first round (a
profile fitted on another CPU was 6.8x off), and counts beside the timed students in every re-fit.
The screen of the next round prices candidates with the re-fitted profile; the fit always starts from the
base profile and its predictions (``base_predicted_ms``), so it never chases its own corrections.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path

from bertc.cost import Profile, load_profile

from .trials import TrialRecord


def refit_profile(base: dict, timed: list[TrialRecord], threads: Iterable[int] = ()) -> tuple[dict, dict[str, float]]:
    """A copy of the profile ``base`` re-fitted from timed trials, per thread count, and the scales applied.
    A thread count in ``threads`` with nothing timed at it takes the run scale of the nearest one timed (the
    teacher, timed at the space's most threads, sets the 1-thread scale too until a 1-thread student is timed).

    The run scale is multiplied by the median measured / predicted of the dense candidates (of all, while
    none is dense). The sparse GEMMs get their own scale (``kind_scale``): the median k that makes each
    sparse candidate's ``scale x (dense part + k x sparse part)`` equal its measurement; the sparse kernels'
    rates are fitted on fewer shapes and were the cost model's largest error. Predictions are the base
    profile's (``base_predicted_ms``, ``base_sparse_ms``), so the fit does not chase its own corrections."""
    data = json.loads(json.dumps(base))
    scales = {}
    for t in sorted({r.threads for r in timed}):
        mine = [r for r in timed if r.threads == t]
        dense = [r for r in mine if not r.base_sparse_ms] or mine
        scale = statistics.median(r.measured_ms / r.base_predicted_ms for r in dense)
        data.setdefault("run_scale", {})[str(t)] = round(base.get("run_scale", {}).get(str(t), 1.0) * scale, 4)
        scales[str(t)] = round(scale, 4)
        sparse = [r for r in mine if r.base_sparse_ms]
        if sparse and len(dense) < len(mine):
            k = statistics.median((r.measured_ms / scale - (r.base_predicted_ms - r.base_sparse_ms))
                                  / r.base_sparse_ms for r in sparse)
            k = min(4.0, max(0.25, k))  # a wild measurement must not zero or explode the sparse kernels' cost
            data.setdefault("kind_scale", {}).setdefault(str(t), {})["linear_sparse"] = round(k, 4)
            scales[f"{t}:linear_sparse"] = round(k, 4)
    fitted = sorted(int(t) for t in scales if ":" not in t)
    for t in sorted(set(threads) - set(fitted)):
        if fitted:
            near = str(min(fitted, key=lambda f: (abs(f - t), f)))
            data.setdefault("run_scale", {})[str(t)] = round(base.get("run_scale", {}).get(str(t), 1.0)
                                                             * scales[near], 4)
            scales[str(t)] = scales[near]
    data.setdefault("sources", {})["search"] = (
        f"run_scale and kind_scale re-fitted by bertc search from {len(timed)} timed candidates (median "
        "measured / predicted of the dense ones per thread count; the sparse GEMMs' scale from the sparse ones)")
    return data, scales


def study_profile(study_dir: Path, target: str, base: str | None) -> Profile:
    """The study's re-fitted profile (``study_dir/profile.json``), or the base one (``base``: a profile file,
    None: the target's built-in) before any re-fit."""
    path = study_dir / "profile.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return Profile(data["name"], data, path)
    return load_profile(base, target)


def recalibrate(study_dir: Path, target: str, base: str | None, timed: list[TrialRecord],
                threads: Iterable[int] = ()) -> dict[str, float]:
    """Re-fit the base profile from the timed trials (see refit_profile) and save it as the study's
    ``profile.json``; returns the scales applied."""
    data, scales = refit_profile(load_profile(base, target).data, timed, threads)
    tmp = study_dir / ".profile.json.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(study_dir / "profile.json")
    return scales
