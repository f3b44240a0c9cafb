"""Pattern sparsity: the SPEC grammar, block masks by magnitude, and the compressed form the kernels read.

A SPEC names a pattern, then densities (the fraction of weights *kept*)::

    16x1@0.25                          blocks of 16 outputs x 1 input; keep 25% of them everywhere
    4x1@0.5,L0=0.75,L5=1               per layer: layer 0 keeps 75%, layer 5 stays dense
    8x1@0.3,*.intermediate.dense=0.2   per matrix: a glob over the weight's name (".weight" optional)
    2:4                                N:M: of every 4 consecutive inputs keep 2, per 8 outputs
    2:4x16                             the same with blocks of 16 outputs

Block shapes are ``RxC`` on the weight as PyTorch stores it, W[out, in]: R output features (the
dimension the GEMM micro-kernels vectorise) by C inputs. N:M keeps N of every M consecutive R x 1
blocks along the inputs, so a vector of R outputs shares one index, never one index per weight.

The default density applies to the linear weights inside the encoder's layers (names with
``layer.N`` / ``layers.N``); poolers and classifier heads stay dense unless a rule names them. The
rules are applied in order and the last one that matches a name wins.

Pruning is by magnitude: each block's L2 norm, the largest kept (ties go to the earlier block), so
pruning an already pruned matrix again at the same density keeps the same blocks.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

import numpy as np

from .errors import BertcError

SPEC_HELP = ("SPEC is PATTERN[@DENSITY][,RULE...]: PATTERN is RxC blocks (16x1, 8x1, 4x1, 1x4, ...: R outputs x "
             "C inputs of W[out, in]) or N:M[xR] (2:4: keep 2 of every 4 inputs, per 8 outputs); DENSITY is the "
             "fraction kept, 0 < D <= 1 (N:M implies N/M); a RULE is L<layer>=D or <glob over weight names>=D, "
             "e.g. '16x1@0.25,L0=0.5,*.intermediate.dense=0.2'")

_LAYER = re.compile(r"(?:^|[._])layers?\.(\d+)\.")


@dataclass(frozen=True)
class Pattern:
    r: int  # outputs per block (rows of W)
    c: int  # inputs per block (columns of W)
    n: int = 0  # N:M: keep n of every m blocks along the inputs; 0 for plain blocks
    m: int = 0

    def __str__(self) -> str:
        if self.m:
            return f"{self.n}:{self.m}" + (f"x{self.r}" if self.r != NM_ROWS else "")
        return f"{self.r}x{self.c}"


NM_ROWS = 8  # outputs sharing an N:M choice unless the SPEC says otherwise (2:4x16)


@dataclass(frozen=True)
class PruneSpec:
    pattern: Pattern
    density: float  # the default, for weights in the encoder's layers
    rules: tuple[tuple[str, float], ...] = ()
    text: str = ""

    def density_for(self, name: str) -> float | None:
        """The density of the weight called ``name``; None when the SPEC leaves it dense."""
        layer = _LAYER.search(name)
        d = self.density if layer else None
        for selector, density in self.rules:
            if selector.startswith("L") and selector[1:].isdigit():
                if layer and int(layer.group(1)) == int(selector[1:]):
                    d = density
            elif fnmatch.fnmatchcase(name, selector) or fnmatch.fnmatchcase(name, selector + ".weight"):
                d = density
        return None if d is None or d >= 1.0 else d


def _positive_int(text: str, what: str, spec: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise BertcError(f"bad prune SPEC '{spec}': {what} '{text}' is not a positive integer. {SPEC_HELP}")
    return int(text)


def _density(text: str, spec: str) -> float:
    try:
        d = float(text)
    except ValueError:
        d = -1.0
    if not 0.0 < d <= 1.0:
        raise BertcError(f"bad prune SPEC '{spec}': density '{text}' is not in (0, 1] (the fraction of weights "
                         f"kept: 0.25 prunes 75%). {SPEC_HELP}")
    return d


def parse_pattern(text: str, spec: str | None = None) -> Pattern:
    spec = spec if spec is not None else text
    if ":" in text:
        nm, _, rows = text.partition("x")
        n_s, _, m_s = nm.partition(":")
        n, m = _positive_int(n_s, "N of N:M", spec), _positive_int(m_s, "M of N:M", spec)
        if n >= m:
            raise BertcError(f"bad prune SPEC '{spec}': N:M needs N < M (got {n}:{m}). {SPEC_HELP}")
        return Pattern(_positive_int(rows, "rows of N:MxR", spec) if rows else NM_ROWS, 1, n, m)
    r_s, x, c_s = text.partition("x")
    if not x:
        raise BertcError(f"bad prune SPEC '{spec}': unknown pattern '{text}'. {SPEC_HELP}")
    r, c = _positive_int(r_s, "block rows", spec), _positive_int(c_s, "block columns", spec)
    if r * c == 1:
        raise BertcError(f"bad prune SPEC '{spec}': 1x1 blocks are unstructured sparsity, which no kernel here "
                         f"runs faster than dense; use blocks such as 16x1 or 4x1. {SPEC_HELP}")
    return Pattern(r, c)


def parse_spec(spec: str) -> PruneSpec:
    """Parse a SPEC (see the module docstring); every mistake is a BertcError that says what is wrong."""
    if not isinstance(spec, str) or not spec.strip():
        raise BertcError(f"empty prune SPEC. {SPEC_HELP}")
    head, *items = [s.strip() for s in spec.strip().split(",")]
    pattern_text, at, density_text = head.partition("@")
    pattern = parse_pattern(pattern_text, spec)
    if pattern.m:
        if at:
            raise BertcError(f"bad prune SPEC '{spec}': an N:M pattern fixes its density ({pattern.n}/{pattern.m}); "
                             f"drop '@{density_text}'")
        density = pattern.n / pattern.m
    elif at:
        density = _density(density_text, spec)
    else:
        density = None
    rules = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise BertcError(f"bad prune SPEC '{spec}': rule '{item}' is not SELECTOR=DENSITY. {SPEC_HELP}")
        if pattern.m:
            raise BertcError(f"bad prune SPEC '{spec}': an N:M pattern has one density; rule '{item}' cannot change it")
        if key == "density":
            density = _density(value, spec)
        else:
            rules.append((key, _density(value, spec)))
    if density is None:
        if not rules:
            raise BertcError(f"bad prune SPEC '{spec}': no density; write e.g. '{pattern}@0.25'. {SPEC_HELP}")
        density = 1.0  # only the matrices the rules name are pruned
    return PruneSpec(pattern, density, tuple(rules), spec.strip())


INT8_BLOCK_ROWS = (4, 8, 16)  # r of the r x 1 blocks bertc_linear_sparse_i8 runs (runtime/kernels/kernels.h)


def kept_blocks(density: float, pattern: Pattern, n: int, k: int) -> int:
    """The blocks kept of an [n, k] weight's at ``density`` (of its block rows x block columns), at least one: what
    the cost model prices and the generated code sizes the GEMM's work by (emit_c's bertc_pool_sized)."""
    return max(1, round(density * -(-n // pattern.r) * -(-k // pattern.c)))


def int8_block_group(isa: str, c: int) -> int:
    """bertc_block_sparse_i8.group of int8 r x c blocks on a target of kernels ``isa``: 4 for r x 1 blocks on x86,
    which takes them four at a time (VNNI's VPDPBUSD; without VNNI VPMADDUBSW, on the 7-bit weights that --pack-weights
    gives every int8 linear there), else 1 (the plain layout, run two blocks at a time)."""
    return 4 if isa == "avx2" and c == 1 else 1


def check_int8_pattern(pattern: Pattern) -> None:
    """Refuse a pattern the sparse int8 kernel does not run (--dtype int8 with --prune-patterns)."""
    if pattern.c != 1 or pattern.r not in INT8_BLOCK_ROWS:
        raise BertcError(f"--prune-patterns {pattern} with --dtype int8: the sparse int8 kernel runs r x 1 blocks "
                         "with r = 4, 8 or 16 (16x1, 8x1, 4x1, and N:M with those rows: 2:4, 2:4x16); use one of "
                         "those, or --dtype fp32 for this pattern")


# --------------------------------------------------------------------------- masks


def _blocks(w: np.ndarray, r: int, c: int) -> np.ndarray:
    """W[N, K] zero-padded to whole blocks, as [block rows, block cols, c, r] (the kernels' order)."""
    n, k = w.shape
    br, bc = -(-n // r), -(-k // c)
    padded = np.zeros((br * r, bc * c), w.dtype)
    padded[:n, :k] = w
    return padded.reshape(br, r, bc, c).transpose(0, 2, 3, 1)


def block_mask(w: np.ndarray, pattern: Pattern, density: float) -> np.ndarray:
    """Boolean [N, K]: True where W is kept. Blocks ranked by L2 norm (partial edge blocks by the
    norm of what they hold); plain blocks keep round(density x blocks), at least one; N:M keeps N
    per group of M blocks along the inputs (a short last group keeps ceil(N x size / M))."""
    w = np.asarray(w, np.float32)
    if w.ndim != 2:
        raise BertcError(f"prune: expected a 2-D weight, got shape {list(w.shape)}")
    r, c = pattern.r, pattern.c
    norms = np.sqrt(np.square(_blocks(w, r, c).astype(np.float64)).sum(axis=(2, 3)))  # [br, bc]
    bc = norms.shape[1]
    keep = np.zeros_like(norms, bool)
    if pattern.m:
        for g0 in range(0, bc, pattern.m):
            group = norms[:, g0:g0 + pattern.m]
            n_keep = -(-pattern.n * group.shape[1] // pattern.m)
            order = np.argsort(-group, axis=1, kind="stable")[:, :n_keep]
            np.put_along_axis(keep[:, g0:g0 + pattern.m], order, True, axis=1)
    else:
        n_keep = max(1, round(density * norms.size))
        order = np.argsort(-norms.reshape(-1), kind="stable")[:n_keep]
        keep.reshape(-1)[order] = True
    full = np.repeat(np.repeat(keep, r, axis=0), c, axis=1)
    return full[: w.shape[0], : w.shape[1]]


@dataclass
class BlockSparse:
    """The compressed form runtime/kernels/kernels.h's bertc_block_sparse points at."""

    r: int
    c: int
    shape: tuple[int, int]
    offsets: np.ndarray  # int32 [block_rows + 1]
    index: np.ndarray  # int32 [blocks]: first input column of each block
    values: np.ndarray  # float32 [blocks, c, r]

    @property
    def blocks(self) -> int:
        return int(self.index.size)

    @property
    def density(self) -> float:
        """Stored blocks over all blocks."""
        return self.blocks / max(1, (self.offsets.size - 1) * -(-self.shape[1] // self.c))


def compress(w: np.ndarray, r: int, c: int) -> BlockSparse:
    """Keep every r x c block of W[N, K] that holds a nonzero."""
    w = np.asarray(w, np.float32)
    blocks = _blocks(w, r, c)
    nonzero = blocks.any(axis=(2, 3))  # [br, bc]
    rows, cols = np.nonzero(nonzero)  # row-major: block-row order, ascending columns
    offsets = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))]).astype(np.int32)
    return BlockSparse(r, c, tuple(w.shape), offsets, (cols * c).astype(np.int32),
                       np.ascontiguousarray(blocks[rows, cols], np.float32))


def decompress(s: BlockSparse) -> np.ndarray:
    n, k = s.shape
    br, bc = s.offsets.size - 1, -(-k // s.c)
    blocks = np.zeros((br, bc, s.c, s.r), np.float32)
    rows = np.repeat(np.arange(br), np.diff(s.offsets))
    blocks[rows, s.index // s.c] = s.values
    return blocks.transpose(0, 3, 1, 2).reshape(br * s.r, bc * s.c)[:n, :k]


# --------------------------------------------------------------------------- PyTorch models


def model_masks(model, spec: PruneSpec | str) -> dict[str, np.ndarray]:
    """{parameter name: boolean keep-mask} for every nn.Linear weight the SPEC prunes."""
    import torch

    spec = parse_spec(spec) if isinstance(spec, str) else spec
    masks = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            pname = f"{name}.weight" if name else "weight"
            d = spec.density_for(pname)
            if d is not None:
                masks[pname] = block_mask(module.weight.detach().cpu().numpy(), spec.pattern, d)
    return masks


def apply_masks(model, masks: dict[str, np.ndarray]) -> None:
    """Zero the pruned weights in place (the masks from model_masks)."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, keep in masks.items():
            p = params[name]
            p.mul_(torch.from_numpy(keep).to(p.dtype))
