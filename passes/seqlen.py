"""Sizes that depend on the run's sequence length (issue 17): what the emitters compute shapes with
when a module was imported with a dynamic length (``tensor<1x?x384xf32>``).

A dynamic dimension is the one run-time length ``L`` (1 <= L <= the module's ``bertc.max_seq_len``),
so every size, stride and element count the kernels take is a polynomial in L with integer
coefficients: rows of a linear ``L``, attention scores ``12*L*L``, their row stride ``L``. ``Len`` is
that polynomial; a static module never makes one, so its emitted code is what it was::

    >>> rows = math.prod(dims_of(x)[:-1])        # x: tensor<1x?x384xf32> -> Len: L
    >>> rows * 384                               # Len: 384*L
    >>> str(Len.L * Len.L * 12 + 1)              # the C expression: '(12*L*L + 1)'
    >>> (Len.L * 3).at(27)                       # its value in a run of 27 tokens: 81

``dims_of`` reads a value's shape with each ``?`` as ``Len.L``; ``bound`` gives the size at the longest
length, which is what --plan-memory lays the arena out for.
"""

from __future__ import annotations

import math

from torch_mlir import ir

from bertc.errors import BertcError


class Len:
    """sum(coef * L**power): immutable, hashable, equal to an int when it is a constant."""

    __slots__ = ("terms",)
    L: Len  # the run's length itself, set below

    def __init__(self, terms: dict[int, int]) -> None:
        self.terms = tuple(sorted((p, c) for p, c in terms.items() if c))

    @staticmethod
    def of(x: int | Len) -> Len:
        return x if isinstance(x, Len) else Len({0: int(x)})

    @staticmethod
    def simplify(x: int | Len) -> int | Len:
        """An int when ``x`` does not depend on L."""
        if isinstance(x, Len) and all(p == 0 for p, _ in x.terms):
            return sum(c for _, c in x.terms)
        return x

    def __add__(self, other: int | Len) -> int | Len:
        t = dict(self.terms)
        for p, c in Len.of(other).terms:
            t[p] = t.get(p, 0) + c
        return Len.simplify(Len(t))

    __radd__ = __add__

    def __mul__(self, other: int | Len) -> int | Len:
        t: dict[int, int] = {}
        for p, c in self.terms:
            for q, d in Len.of(other).terms:
                t[p + q] = t.get(p + q, 0) + c * d
        return Len.simplify(Len(t))

    __rmul__ = __mul__

    def __floordiv__(self, d: int) -> int | Len:
        """Exact division only (a head's width of a 3*H*L buffer): every coefficient divisible by ``d``."""
        if not isinstance(d, int) or any(c % d for _, c in self.terms):
            raise BertcError(f"{self} is not divisible by {d} at every length")
        return Len.simplify(Len({p: c // d for p, c in self.terms}))

    def at(self, length: int) -> int:
        return sum(c * length**p for p, c in self.terms)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, int):
            return self.terms == Len.of(other).terms
        return isinstance(other, Len) and self.terms == other.terms

    def __hash__(self) -> int:
        return hash(self.terms)

    def __str__(self) -> str:
        """A C (and GLSL) expression in ``L``, parenthesised: '(12*L*L + 1)'."""
        parts = []
        for p, c in reversed(self.terms):
            factors = ([] if c == 1 and p else [str(c)]) + ["L"] * p
            parts.append("*".join(factors))
        return "(" + " + ".join(parts).replace("+ -", "- ") + ")" if parts else "0"

    __repr__ = __str__


Len.L = Len({1: 1})

Size = int | Len


def at(x: Size, length: int) -> int:
    """``x`` in a run of ``length`` tokens."""
    return x.at(length) if isinstance(x, Len) else int(x)


def dims_of(value: ir.Value) -> list[Size]:
    """A value's shape with each dynamic dimension as ``Len.L``."""
    t = ir.RankedTensorType(value.type)
    return [Len.L if t.is_dynamic_dim(i) else t.get_dim_size(i) for i in range(t.rank)]


def is_dynamic(value: ir.Value) -> bool:
    return not ir.RankedTensorType(value.type).has_static_shape


def max_seq_len(module: ir.Operation) -> int | None:
    """The bound of the run's length (``bertc.max_seq_len`` on the module), None in a static module."""
    attrs = module.attributes
    return ir.IntegerAttr(attrs["bertc.max_seq_len"]).value if "bertc.max_seq_len" in attrs else None


def bound(x: Size, module: ir.Operation) -> int:
    """``x`` at the longest length the module runs: what memory is laid out for."""
    if not isinstance(x, Len):
        return int(x)
    n = max_seq_len(module)
    if n is None:
        raise BertcError("a dynamic length (?) needs bertc.max_seq_len on the module: compile with --max-seq-len")
    return x.at(n)


def prod(xs: list[Size]) -> Size:
    return math.prod(xs, start=1)
