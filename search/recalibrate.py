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

# The GEMM kinds re-fitted apart from the run scale, and the TrialRecord field with their part of the base price
APART = {"linear_sparse": "base_sparse_ms", "linear_i8": "base_int8_ms",
         "linear_sparse_i8": "base_sparse_int8_ms"}


def refit_profile(base: dict, timed: list[TrialRecord], threads: Iterable[int] = ()) -> tuple[dict, dict[str, float]]:
    """A copy of the profile ``base`` re-fitted from timed trials, per thread count, and the scales applied.
    A thread count in ``threads`` with nothing timed at it takes the run scale of the nearest one timed (the
    teacher, timed at the space's most threads, sets the 1-thread scale too until a 1-thread student is timed).

    The run scale is multiplied by the median measured / predicted of the plain candidates (fp32 dense; of all,
    while none is plain). The sparse, the int8 and the int8 sparse GEMMs (APART) each get their own scale
    (``kind_scale``): the median k that makes each such candidate's ``scale x (rest + k x its part + its other APART
    parts at their kinds' k)`` equal its measurement, in three rounds; their rates are fitted on fewer shapes (the
    int8 ones not at all in a profile without `bertc calibrate --int8`: then their roofline price, which the run
    scale does not scale, is what k scales). Predictions are the base profile's (``base_predicted_ms`` and the
    parts), so the fit does not chase its own corrections."""
    data = json.loads(json.dumps(base))
    scales = {}
    part = lambda r, kind: getattr(r, APART[kind]) or 0.0
    for t in sorted({r.threads for r in timed}):
        mine = [r for r in timed if r.threads == t]
        plain = [r for r in mine if not any(part(r, k) for k in APART)] or mine
        scale = statistics.median(r.measured_ms / r.base_predicted_ms for r in plain)
        data.setdefault("run_scale", {})[str(t)] = round(base.get("run_scale", {}).get(str(t), 1.0) * scale, 4)
        scales[str(t)] = round(scale, 4)
        # each APART kind is fitted from the candidates it takes most of the APART time of (none while every
        # candidate is plain)
        informs = {kind: some for kind in APART if len(plain) < len(mine) for some in [
            [r for r in mine if part(r, kind) and part(r, kind) == max(part(r, k) for k in APART)]] if some}
        factor = {}  # each kind's price factor at the run scale
        for _ in range(3):
            for kind, some in informs.items():
                # those candidates' other APART parts (an int8 sparse student's dense int8 pooler) are priced at
                # their own kinds' factors, which the next round has: left in this kind's, they would bias it
                factor[kind] = statistics.median(
                    (r.measured_ms / scale - (r.base_predicted_ms - sum(part(r, o) for o in APART))
                     - sum(part(r, o) * factor.get(o, 1.0) for o in APART if o != kind)) / part(r, kind)
                    for r in some)
        for kind, f in factor.items():
            k = f * (1 if kind in base.get("fitted", {}).get(str(t), {}) else scale)
            k *= base.get("kind_scale", {}).get(str(t), {}).get(kind, 1.0)
            k = min(4.0, max(0.25, k))  # a wild measurement must not zero or explode these kernels' cost
            data.setdefault("kind_scale", {}).setdefault(str(t), {})[kind] = round(k, 4)
            scales[f"{t}:{kind}"] = round(k, 4)
    fitted = sorted(int(t) for t in scales if ":" not in t)
    for t in sorted(set(threads) - set(fitted)):
        if fitted:
            near = str(min(fitted, key=lambda f: (abs(f - t), f)))
            data.setdefault("run_scale", {})[str(t)] = round(base.get("run_scale", {}).get(str(t), 1.0)
                                                             * scales[near], 4)
            scales[str(t)] = scales[near]
    data.setdefault("sources", {})["search"] = (
        f"run_scale and kind_scale re-fitted by bertc search from {len(timed)} timed candidates (median "
        "measured / predicted of the fp32 dense ones per thread count; the sparse and int8 GEMMs' scales from theirs)")
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
