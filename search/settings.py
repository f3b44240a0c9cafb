"""What a study was started with: the settings kept in ``OUT/search.json`` and read back by ``--resume``.

A light module (no torch, no Optuna): ``bertc search``'s flags build a ``Settings`` before anything heavy is
imported. What each setting does: ``bertc search --help`` (search/cli.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORMAT = 1  # search.json's layout; a folder of another format is refused, not misread


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
    profile: str | None = None  # the cost model's starting profile (a `bertc calibrate` file); None: the built-in
    storage: str | None = None
    runs: int = 30
    format: int = FORMAT
    extra: dict = field(default_factory=dict)
