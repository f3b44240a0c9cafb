"""The search space: which student architectures a study may sample, read from YAML or JSON.

    space = load_space("space.yaml")         # or DEFAULT_SPACE
    cand = space.sample(trial)               # an Optuna trial -> a Candidate
    cand.config(teacher.config)              # the student's transformers config (per-layer fields)

A space file (every key optional; the defaults are DEFAULT_SPACE's)::

    lengths: mean                 # what a latency is measured on (search/lengths.py): `mean` over the dev
                                  # split's sentences at their own lengths, `p90` (any pNN), or N: padded to N
    layers: [2, 3, 4]             # encoder layers, cut from the teacher's (evenly spaced, last kept)
    hidden: [256, 320, 384]       # hidden size: a multiple of the teacher's head size
    heads: [4, 6, 8, 12]          # attention heads per layer (each keeps the teacher's head size)
    ffn: [512, 768, 1024, 1536]   # FFN width
    ffn_per_layer: false          # true: one FFN width per layer, each drawn from `ffn`
    sparsity: [none, 16x1@0.5]    # `none` or a --prune-patterns SPEC (pattern@kept fraction)
    precision: [fp32, int8]       # GEMM weights (bertc compile --dtype); int8 with r x 1 blocks only (`supported`)
    threads: [1, 2]               # runtime threads the student is timed and shipped with
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bertc.errors import BertcError
from bertc.sparsity import check_int8_pattern, parse_spec

from .lengths import parse_measure

DEFAULT_SPACE: dict[str, Any] = {
    "lengths": "mean",
    "layers": [2, 3, 4, 5],
    "hidden": [256, 320, 384],
    "heads": [4, 6, 8, 12],
    "ffn": [512, 768, 1024, 1536],
    "ffn_per_layer": False,
    "sparsity": ["none", "16x1@0.5"],
    "threads": [1, 2],
    "precision": ["fp32", "int8"],  # phones ship int8: 2.5-2.9x faster GEMMs for ~0.5 points (README's int8)
}
LISTS = ("layers", "hidden", "heads", "ffn", "threads")
PRECISIONS = ("fp32", "int8")


def supported(precision: str, sparsity: str | None) -> bool:
    """Whether the search samples this pair. int8 with --prune-patterns is int8 blocks (priced as
    linear_sparse_i8, re-fitted apart), which the compiler builds for r x 1 blocks of 4, 8 or 16 rows (16x1, 8x1,
    4x1, 2:4) and refuses for others (1x4, ...): an int8 sample of those is made dense."""
    if precision == "fp32" or sparsity is None:
        return True
    try:
        check_int8_pattern(parse_spec(sparsity).pattern)
    except BertcError:
        return False
    return True


@dataclass(frozen=True)
class Candidate:
    """One student architecture, as the study samples it."""

    layers: int
    hidden: int
    heads: int
    ffn: tuple[int, ...]  # one width per layer
    sparsity: str | None  # a --prune-patterns SPEC, or None for dense
    threads: int
    precision: str = "fp32"  # the GEMM weights' --dtype

    def config(self, teacher_config):
        # inherit brings torch; space.py is read by `bertc search`'s flags, which must not pay for it
        from .inherit import student_config

        return student_config(teacher_config, self.layers, self.hidden, [self.heads] * self.layers, list(self.ffn))

    def describe(self) -> str:
        ffn = str(self.ffn[0]) if len(set(self.ffn)) == 1 else "/".join(map(str, self.ffn))
        return (f"L{self.layers} H{self.hidden} A{self.heads} F{ffn}" + (f" {self.sparsity}" if self.sparsity else "")
                + ("" if self.precision == "fp32" else f" {self.precision}") + f" t{self.threads}")

    def asdict(self) -> dict:
        return {**asdict(self), "ffn": list(self.ffn)}

    @classmethod
    def from_dict(cls, d: dict) -> Candidate:
        return cls(d["layers"], d["hidden"], d["heads"], tuple(d["ffn"]), d["sparsity"], d["threads"],
                   d.get("precision", "fp32"))  # a candidate of a search.json from before precision: fp32


@dataclass(frozen=True)
class Space:
    lengths: str | int  # "mean", "pNN" or a fixed length: see search/lengths.py
    layers: list[int]
    hidden: list[int]
    heads: list[int]
    ffn: list[int]
    ffn_per_layer: bool
    sparsity: list[str | None]
    threads: list[int]
    precision: list[str]
    source: str = field(default="built-in default", compare=False)

    def sample(self, trial) -> Candidate:
        """Draw a candidate with Optuna's suggest_* calls (the parameter names are the study's columns)."""
        layers = trial.suggest_categorical("layers", self.layers)
        if self.ffn_per_layer:  # every layer up to the most is drawn, so the parameters never change shape
            ffn = tuple(trial.suggest_categorical(f"ffn_{i}", self.ffn) for i in range(max(self.layers)))[:layers]
        else:
            ffn = (trial.suggest_categorical("ffn", self.ffn),) * layers
        # both drawn always, an unsupported pair made dense, so the parameters never change shape (as ffn_i's)
        sparsity = trial.suggest_categorical("sparsity", [s or "none" for s in self.sparsity])
        precision = trial.suggest_categorical("precision", self.precision)
        sparsity = None if sparsity == "none" or not supported(precision, sparsity) else sparsity
        return Candidate(layers, trial.suggest_categorical("hidden", self.hidden),
                         trial.suggest_categorical("heads", self.heads), ffn, sparsity,
                         trial.suggest_categorical("threads", self.threads), precision)

    def params(self, cand: Candidate) -> dict:
        """The Optuna parameters that make ``sample`` return ``cand`` (for Study.enqueue_trial)."""
        p = {"layers": cand.layers, "sparsity": cand.sparsity or "none", "hidden": cand.hidden, "heads": cand.heads,
             "threads": cand.threads, "precision": cand.precision}
        if self.ffn_per_layer:  # the layers past cand's are drawn but unused: give them its last width
            p.update({f"ffn_{i}": cand.ffn[min(i, cand.layers - 1)] for i in range(max(self.layers))})
        else:
            p["ffn"] = cand.ffn[0]
        return p

    def dense_uniform(self) -> list[Candidate]:
        """Every dense candidate with one FFN width for all layers, in every precision whose sparsity allows
        dense (`none`, or a pattern it cannot build, which its samples make dense)."""
        return [Candidate(n, h, a, (f,) * n, None, t, p) for p in self.precision
                if any(s is None or not supported(p, s) for s in self.sparsity) for n in self.layers
                for h in self.hidden for a in self.heads for f in self.ffn for t in self.threads]

    def check_teacher(self, config) -> None:
        """Errors for dimensions this teacher cannot supply (a student is cut out of it)."""
        d = config.hidden_size // config.num_attention_heads
        problems = []
        if max(self.layers) > config.num_hidden_layers:
            problems.append(f"layers up to {max(self.layers)}, but the teacher has {config.num_hidden_layers}")
        if max(self.hidden) > config.hidden_size or any(h % d for h in self.hidden):
            problems.append(f"hidden sizes {self.hidden} must be multiples of the teacher's head size {d} "
                            f"and at most its hidden size {config.hidden_size}")
        if max(self.heads) > config.num_attention_heads:
            problems.append(f"heads up to {max(self.heads)}, but the teacher has {config.num_attention_heads}")
        if max(self.ffn) > config.intermediate_size:
            problems.append(f"FFN up to {max(self.ffn)}, but the teacher's is {config.intermediate_size}")
        if isinstance(self.lengths, int) and self.lengths > config.max_position_embeddings:
            problems.append(f"lengths {self.lengths} is over the teacher's {config.max_position_embeddings} positions")
        if problems:
            raise BertcError(f"the search space ({self.source}) does not fit the teacher: " + "; ".join(problems)
                             + ". Edit the space file to stay within the teacher's shape.")

    def asdict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        d["sparsity"] = [s or "none" for s in self.sparsity]
        return d


def parse_space(data: Any, source: str = "built-in default") -> Space:
    """A Space from a parsed YAML/JSON mapping; every error names the key and what is allowed."""
    if not isinstance(data, dict):
        raise BertcError(f"the search space in {source} must be a mapping of keys to lists (see `bertc search --help`)")
    data = dict(data)
    if "seq_len" in data:  # a space written before dynamic lengths (or an older study's search.json)
        if "lengths" in data:
            raise BertcError(f"the search space {source} has both 'seq_len' and 'lengths': keep 'lengths' "
                             "('seq_len: N' is the older spelling of 'lengths: N')")
        data["lengths"] = data.pop("seq_len")
    unknown = set(data) - set(DEFAULT_SPACE)
    if unknown:
        raise BertcError(f"unknown key(s) {sorted(unknown)} in the search space {source}; known: {', '.join(DEFAULT_SPACE)}")
    d = {**DEFAULT_SPACE, **data}
    for key in LISTS:
        v = d[key]
        if not isinstance(v, list) or not v or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v):
            raise BertcError(f"'{key}' in the search space {source} must be a non-empty list of positive integers, got {v!r}")
    lengths = parse_measure(d["lengths"], source)
    if not isinstance(d["ffn_per_layer"], bool):
        raise BertcError(f"'ffn_per_layer' in the search space {source} must be true or false, got {d['ffn_per_layer']!r}")
    sp = d["sparsity"]
    if not isinstance(sp, list) or not sp:
        raise BertcError(f"'sparsity' in the search space {source} must be a non-empty list of `none` or SPECs, got {sp!r}")
    sparsity = []
    for s in sp:
        if s in (None, "none", "dense"):
            sparsity.append(None)
            continue
        try:
            sparsity.append(parse_spec(str(s)).text)
        except BertcError as e:
            raise BertcError(f"sparsity entry {s!r} in the search space {source}: {e}") from None
    pr = d["precision"]
    if not isinstance(pr, list) or not pr or any(p not in PRECISIONS for p in pr):
        raise BertcError(f"'precision' in the search space {source} must be a non-empty list of "
                         f"{', '.join(PRECISIONS)} (bertc compile --dtype; fp16 is not searched), got {pr!r}")
    return Space(lengths, *(sorted(set(d[k])) for k in ("layers", "hidden", "heads", "ffn")), d["ffn_per_layer"],
                 list(dict.fromkeys(sparsity)), sorted(set(d["threads"])), list(dict.fromkeys(pr)), source)


def load_space(path: str | Path | None) -> Space:
    """The space in a .yaml/.yml/.json file, or the default when ``path`` is None."""
    if path is None:
        return parse_space({})
    path = Path(path)
    if not path.is_file():
        raise BertcError(f"search space file '{path}' does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # json and yaml raise their own types; the message says where
        raise BertcError(f"could not parse the search space file '{path}': {e}") from e
    return parse_space(data if data is not None else {}, str(path))
