"""What the FX passes before the import share (canonicalize-inputs, canonicalize-gelu, canonicalize-norms,
canonicalize-conv): the nodes a few users past one, the sub-graph between two nodes, running a sub-graph on values
the pass chooses, and the tensor a weight's placeholder holds. Not a pass: nothing in the registry of
``passes/__init__.py`` names it."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

# what an op raises when the values a pass tries do not suit it (an op that needs the model's real shapes)
REFUSALS = (RuntimeError, TypeError, IndexError, ValueError)


def users_within(node: fx.Node, depth: int = 3) -> list[fx.Node]:
    """The computed nodes up to ``depth`` users past ``node``, the nearest first."""
    frontier, seen = [node], []
    for _ in range(depth):
        frontier = [u for n in frontier for u in n.users if u.op == "call_function"]
        seen += frontier
    return seen


def region(x: fx.Node, out: fx.Node) -> list[fx.Node] | None:
    """The nodes between x and ``out`` in graph order, when they read only x, each other and scalars and
    nothing outside reads them (``out`` excepted); else None."""
    found, stack = set(), [out]
    while stack:
        n = stack.pop()
        if n is x or n in found:
            continue
        if n.op != "call_function":
            return None
        found.add(n)
        stack.extend(n.all_input_nodes)
    if any(u not in found for n in found - {out} for u in n.users):
        return None
    return [n for n in out.graph.nodes if n in found]


def run(nodes: list[fx.Node], env: dict[fx.Node, Any]) -> dict[fx.Node, Any]:
    """``env`` with the value of each of ``nodes`` (computed ones, in graph order), given the values of what
    they read; an op that refuses the values raises one of REFUSALS."""
    with torch.no_grad():
        for n in nodes:
            env[n] = n.target(*fx.node.map_arg(n.args, env.__getitem__), **fx.node.map_arg(n.kwargs, env.__getitem__))
    return env


def like(node: fx.Node, was: fx.Node, val) -> None:
    """A new node's value and the module it stands for (``was``'s: error messages name it)."""
    node.meta["val"] = val
    if "nn_module_stack" in was.meta:
        node.meta["nn_module_stack"] = was.meta["nn_module_stack"]


def value_of(ep: torch.export.ExportedProgram, node: Any) -> torch.Tensor | None:
    """The tensor a placeholder of a weight, buffer or constant holds (a model input or a computed node: None)."""
    if not isinstance(node, fx.Node) or node.op != "placeholder":
        return None
    spec = next(s for p, s in zip(node.graph.find_nodes(op="placeholder"), ep.graph_signature.input_specs) if p is node)
    if spec.kind.name not in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
        return None
    return ep.state_dict[spec.target] if spec.target in ep.state_dict else ep.constants[spec.target]
