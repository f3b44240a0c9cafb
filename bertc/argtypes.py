"""argparse types the commands share (`bertc` and `bertc search` / `bertc prune`): numbers with a range,
refused with a message that says what was wrong. A leaf module: the CLIs at both ends import it."""

from __future__ import annotations

import argparse


def at_least(low: int, kind=int):
    """An argparse type: a number (int or float) of at least ``low``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
        if not low <= value < float("inf"):  # also refuses NaN
            raise argparse.ArgumentTypeError(f"{text} must be at least {low}" + (" and finite" if kind is float else ""))
        return value

    parse.__name__ = f"{kind.__name__} >= {low}"
    return parse


def positive(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value
