"""What a study's latencies are measured on: the task's own sentence lengths, not one padded length.

    lat = study_lengths("mean", token_counts(tok, dev_texts, 64), bound=64, source="the rt-sentiment dev split")
    lat.points, lat.weights            # the lengths each candidate is priced and timed at, and their weights
    lat.combine([ms at each point])    # its latency, in the terms the budget is stated in

Students are compiled with --max-seq-len (every length up to ``bound``, each at its own cost), so a
sentence of 20 tokens costs 20 tokens. The space's ``lengths`` key picks the measure:

- ``mean`` (default): the expected latency over the dev split, each sentence at its own length. The
  sorted lengths are cut into BINS groups of equal count and each group is priced and timed at its mean
  length: latency is close to linear in the length (the GEMMs are; attention adds a small square term),
  so this is the mean over every sentence at a BINS-th of the work. The budget is then "ms per sentence,
  on average".
- ``pNN`` (``p90``, ``p50``, ...): the latency at that percentile of the dev lengths (latency grows with
  length, so the NNth-percentile sentence is the NNth-percentile latency): "NN% of sentences take at most
  the budget".
- a whole number N: every input padded to N and the students compiled for exactly N, as before dynamic
  lengths (an existing study's ``seq_len: N`` reads as this).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from bertc.errors import BertcError

BINS = 4  # `mean`: groups of dev sentences, each priced and timed at its mean length
MEASURES = "`mean`, a percentile such as `p90`, or a whole number of tokens"


@dataclass(frozen=True)
class Lengths:
    """The lengths a study prices and times each candidate at, and how it combines them into one latency."""

    measure: str  # "mean", "pNN" or "fixed"
    points: tuple[int, ...]  # lengths priced and timed, ascending
    weights: tuple[float, ...]  # each point's share of the inputs (sum 1)
    bound: int  # students are compiled for every length up to this (fixed: exactly this)
    source: str  # where the lengths came from

    @property
    def dynamic(self) -> bool:
        return self.measure != "fixed"

    def combine(self, ms: list[float]) -> float:
        """One latency from the ms measured or predicted at each point."""
        if len(ms) != len(self.points):
            raise ValueError(f"{len(ms)} times for {len(self.points)} lengths")
        return float(sum(w * m for w, m in zip(self.weights, ms)))

    def compile_flags(self) -> str:
        """The `bertc compile` flags that make the artifact the study timed."""
        return f"--max-seq-len {self.bound}" if self.dynamic else f"--seq-len {self.bound}"

    def describe(self) -> str:
        """What a latency of this study means, for logs, reports and plots."""
        at = ", ".join(map(str, self.points))
        if self.measure == "mean":
            return (f"mean ms per sentence over {self.source}, each at its own length (priced and timed at "
                    f"{at} tokens, the means of {len(self.points)} equal groups)")
        if self.measure == "fixed":
            return f"ms per input padded to {self.bound} tokens"
        return f"{self.measure} of {self.source}: ms of a sentence at that percentile's length, {at} tokens"

    def short(self) -> str:
        """A few words for a plot's axis."""
        return {"mean": "mean over the dev lengths", "fixed": f"padded to {self.bound}"}.get(
            self.measure, f"{self.measure} of the dev lengths")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Lengths:
        return cls(d["measure"], tuple(d["points"]), tuple(d["weights"]), d["bound"], d["source"])


def parse_measure(value, source: str) -> str | int:
    """The space's ``lengths`` value, checked: "mean", "pNN" (0 < NN <= 100) or a positive int."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 1:
            return value
    elif isinstance(value, str):
        v = value.strip().lower()
        if v == "mean":
            return v
        m = re.fullmatch(r"p(\d+(?:\.\d+)?)", v)
        if m and 0 < float(m.group(1)) <= 100:
            return v
    raise BertcError(f"'lengths' in the search space {source} must be {MEASURES}, got {value!r}")


def study_lengths(measure: str | int, lengths: list[int], bound: int, source: str) -> Lengths:
    """The Lengths of a study from its measure and the token count of each dev sentence (truncated at
    ``bound``, the task's max_length, which the students are compiled for)."""
    if isinstance(measure, int):
        return Lengths("fixed", (measure,), (1.0,), measure, f"every input padded to {measure}")
    if not lengths:
        raise BertcError(f"{source} has no sentences to take lengths from")
    arr = np.sort(np.minimum(np.asarray(lengths, dtype=np.int64), bound))
    described = f"{source} ({len(arr)} sentences, {arr[0]}-{arr[-1]} tokens, median {int(np.median(arr))})"
    if measure == "mean":
        groups = [g for g in np.array_split(arr, min(BINS, len(arr))) if len(g)]
        points = [max(1, round(float(g.mean()))) for g in groups]
        weights = [len(g) / len(arr) for g in groups]
        merged: dict[int, float] = {}  # two groups at one length (a narrow distribution) are priced once
        for p, w in zip(points, weights):
            merged[p] = merged.get(p, 0.0) + w
        return Lengths("mean", tuple(merged), tuple(merged.values()), bound, described)
    q = float(measure[1:])
    point = int(np.percentile(arr, q, method="higher")) if q < 100 else int(arr[-1])
    return Lengths(measure, (max(1, point),), (1.0,), bound, described)


def token_counts(tokenizer, texts: list[str], max_length: int | None = None) -> list[int]:
    """Tokens per text as the model sees it (special tokens counted), cut at ``max_length`` (None: the
    tokenizer's own limit): a task's encoding for training and evaluation, and `bertc estimate
    --lengths-from`."""
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return [len(ids) for ids in enc["input_ids"]]

