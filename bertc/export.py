"""torch.export of whatever bertc/formats.py loaded, at one fixed (batch, seq_len), into one signature.

With ``max_seq_len`` a module is exported with the sequence axis dynamic instead
(``torch.export.Dim("seq", max=max_seq_len)`` on axis 1 of every input), so the program, and the IR
imported from it, holds ``?`` for the length (issue 17); the batch stays fixed.

Every program leaves here with the positional inputs input_ids / attention_mask / token_type_ids (those
the model takes) and a tuple of tensors out (last_hidden_state, then pooler_output when the model has
one), whatever the model's own signature was:

- a module (transformers or plain torch) is wrapped in ``_Signature`` and exported;
- a TorchScript archive is converted by torch.export's TS2EPConverter, its run-time size arithmetic
  folded to constants (``_fold_scalars``), and exported again at the static shape;
- an ExportedProgram is taken as it is, its inputs and outputs named from what they look like.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from typing import Any

import torch
from torch import fx

from .errors import BertcError
from .passes.canonicalize_inputs import replace_uses

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def export_program(obj: Any, desc: str, example: tuple[torch.Tensor, ...], max_seq_len: int | None = None
                   ) -> tuple[torch.export.ExportedProgram, list[str], list[str]]:
    """(program, input names, output names) for a module, a TorchScript module or an ExportedProgram.
    ``example`` holds the three inputs at the compiled shape; ``desc`` names the model in errors.
    ``max_seq_len``: export a module for every sequence length up to it (the example's length is one
    of them); an ExportedProgram keeps the shapes it was exported with."""
    if max_seq_len is not None and isinstance(obj, torch.jit.ScriptModule):
        raise BertcError(f"{desc} is a TorchScript archive, which bertc exports at one length only; compile it "
                         "with a fixed --seq-len, or export the model with torch.export and a Dim on the sequence")
    if isinstance(obj, torch.export.ExportedProgram):
        _make_buffers_persistent(obj)
        inline_grad_mode_regions(obj)
        names = [s.arg.name for s in obj.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
        return obj, [_canonical_input_name(n, i) for i, n in enumerate(names)], _tuple_output_names(obj)
    if isinstance(obj, torch.jit.ScriptModule):
        ep = _export_torchscript(obj, example)
        users = len([s for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"])
        return ep, list(INPUT_NAMES[:users]), _tuple_output_names(ep)
    module = obj
    _make_buffers_persistent(module)
    params = inspect.signature(module.forward).parameters
    takes = [n for n in INPUT_NAMES if n in params]
    if "input_ids" not in takes:
        raise BertcError(f"{desc} has no input_ids argument; bertc compiles BERT-family encoders")
    with torch.inference_mode(False), torch.no_grad():
        probe = module(**{n: t for n, t in zip(INPUT_NAMES, example) if n in takes})
    outputs = ["last_hidden_state"]
    if not isinstance(probe, (torch.Tensor, tuple, list)) and probe.get("pooler_output") is not None:
        outputs.append("pooler_output")
    wrapper = _Signature(module, takes, outputs).eval()
    dynamic = max_seq_len is not None
    try:
        ep = _export_module(wrapper, example, max_seq_len)
    except Exception as e:
        fix = "; compile it with a fixed --seq-len" if dynamic else ""
        # torch's first line says what failed; the rest is its traced graph and log hints (in the chained exception)
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise BertcError(f"torch.export could not trace {desc}{' for a dynamic length' if dynamic else ''}: {first}{fix}"
                         ) from e
    inline_grad_mode_regions(ep)
    return ep, list(INPUT_NAMES), outputs


def _export_module(module: torch.nn.Module, example: tuple, max_seq_len: int | None) -> torch.export.ExportedProgram:
    """torch.export of a module at the example's shape, or with ``max_seq_len`` for every length up to it.

    Tracing may guard on a length only to reason about strides: MobileBERT's trigram pads ``emb[:, 1:]``,
    of length L - 1, whose contiguity check asks whether L - 1 == 1, and torch.export refuses a range that
    the guard cuts (L != 2). The graph is the same at every length, so such a program is exported for
    lengths 3..N and runs at 1 and 2 as well (test_dynamic.py compares those lengths with PyTorch).
    The range reaches 3 at least: traced for lengths up to 2, transformers' BERT built its mask through a bool
    conversion and index arithmetic bertc does not lower (``--max-seq-len 2`` failed in raise-torch); the program is
    the same at every length, and the compiled bound stays ``max_seq_len``."""
    if max_seq_len is None:
        return torch.export.export(module, example, strict=False)
    def export(shortest: int) -> torch.export.ExportedProgram:
        seq = torch.export.Dim("seq", min=shortest, max=max(max_seq_len, 3))
        return torch.export.export(module, example, dynamic_shapes=tuple({1: seq} for _ in example), strict=False)

    try:
        return export(1)
    except Exception as e:
        if "Constraints violated" not in str(e) or not 3 <= example[0].shape[1] <= max_seq_len:
            raise
    return export(3)


class _Signature(torch.nn.Module):
    """Gives every model the same positional inputs and tuple-of-tensors outputs."""

    def __init__(self, model: torch.nn.Module, takes: list[str], outputs: list[str]):
        super().__init__()
        self.model, self.takes, self.outputs = model, takes, outputs

    def forward(self, input_ids, attention_mask, token_type_ids):
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        out = self.model(**{k: given[k] for k in self.takes})
        if isinstance(out, torch.Tensor):
            return (out,)
        if isinstance(out, (tuple, list)):
            return tuple(out)
        return tuple(out[k] for k in self.outputs)


def _make_buffers_persistent(obj: torch.nn.Module | torch.export.ExportedProgram) -> None:
    # transformers registers position_ids as non-persistent; torch-mlir's frozen import looks buffers up in the
    # state dict only ("Could not find state mapping for buffer"), and torch.export keeps these in its constants.
    if isinstance(obj, torch.nn.Module):
        for m in obj.modules():
            m._non_persistent_buffers_set.clear()
        return
    for spec in obj.graph_signature.input_specs:
        if spec.kind.name == "BUFFER" and not spec.persistent and spec.target in obj.constants:
            obj.state_dict[spec.target] = obj.constants.pop(spec.target)
            spec.persistent = True


def inline_grad_mode_regions(ep: torch.export.ExportedProgram) -> None:
    """Inline every ``wrap_with_set_grad_enabled`` region (a ``torch.no_grad()`` block or ``@torch.no_grad``
    method inside the model: RoFormer's sinusoid table, ESM's rotary cos/sin) into the graph around it.
    torch-mlir's importer has no lowering for that higher-order op, and a compiled forward computes no
    gradients, so the grad mode it switches changes nothing."""
    from torch._higher_order_ops.wrap import wrap_with_set_grad_enabled

    gm, g = ep.graph_module, ep.graph
    for node in [n for n in g.nodes if n.op == "call_function" and n.target is wrap_with_set_grad_enabled]:
        region = getattr(gm, node.args[1].target)
        env = dict(zip([p for p in region.graph.nodes if p.op == "placeholder"], node.args[2:]))
        with g.inserting_before(node):
            for inner in region.graph.nodes:
                if inner.op == "output":
                    outputs = fx.node.map_arg(inner.args[0], env.__getitem__)
                elif inner.op != "placeholder":
                    env[inner] = g.node_copy(inner, env.__getitem__)
        for user in list(node.users):  # getitem(region, i)
            user.replace_all_uses_with(outputs[user.args[1]])
            g.erase_node(user)
        attr = node.args[1]
        g.erase_node(node)
        if not attr.users:
            g.erase_node(attr)
            delattr(gm, attr.target)
    g.lint()
    gm.recompile()


def record_module_paths(ep: torch.export.ExportedProgram) -> None:
    """Add the owning submodule to each node's stack trace, which torch-mlir turns into the op's
    location, so errors can say where in the model an op came from."""
    for n in ep.graph.nodes:
        stack = n.meta.get("nn_module_stack")
        if not stack:
            continue
        path, cls = list(stack.values())[-1]
        path = path.replace("L['self'].", "").removeprefix("model.").replace("L__self___", "")
        name = cls.__name__ if isinstance(cls, type) else str(cls).rsplit(".", 1)[-1].strip("'>")
        frame = f'\n  File "module {path} ({name})", line 0, in forward'
        n.meta["stack_trace"] = (n.meta.get("stack_trace") or "") + frame


def has_dynamic_inputs(ep: torch.export.ExportedProgram) -> bool:
    """Whether a user input of ``ep`` has a symbolic dimension (exported with ``dynamic_shapes``)."""
    users = [p for p, spec in zip(ep.graph.find_nodes(op="placeholder"), ep.graph_signature.input_specs)
             if spec.kind.name == "USER_INPUT"]
    return any(not isinstance(d, int) for p in users for d in p.meta["val"].shape)


def _tuple_output_names(ep: torch.export.ExportedProgram) -> list[str]:
    """Names for a program that returns a tuple, as transformers does with return_dict=False:
    (last_hidden_state, pooler_output?, ...). The pooler is the [batch, hidden] second output."""
    outs = [n for n in ep.graph.output_node().args[0]]
    names = [f"output_{i}" for i in range(len(outs))]
    names[0] = "last_hidden_state"
    if len(outs) > 1:
        first, second = (getattr(o, "meta", {}).get("val") for o in outs[:2])
        if (isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor) and first.dim() == 3
                and tuple(second.shape) == (first.shape[0], first.shape[2])):
            names[1] = "pooler_output"
    return names


def _canonical_input_name(name: str, index: int) -> str:
    for canon, keys in (("token_type_ids", ("token_type", "type")), ("attention_mask", ("mask",)),
                        ("input_ids", ("input_ids", "ids"))):
        if any(k in name for k in keys):
            return canon
    return INPUT_NAMES[index] if index < len(INPUT_NAMES) else name


def table_rows(ep: torch.export.ExportedProgram, input_names: list[str], name: str) -> int | None:
    """Rows of the embedding table that the model input ``name`` indexes (vocabulary size for
    input_ids, type vocabulary for token_type_ids), for programs that come without a config."""
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    user = [p for p, spec in zip(placeholders, ep.graph_signature.input_specs) if spec.kind.name == "USER_INPUT"]
    node = dict(zip(input_names, user)).get(name)
    for n in ep.graph.nodes:
        if n.op == "call_function" and n.target == torch.ops.aten.embedding.default and n.args[1] is node:
            return int(n.args[0].meta["val"].shape[0])
    return None


def _export_torchscript(module: torch.jit.ScriptModule, example) -> torch.export.ExportedProgram:
    from torch._export.converter import TS2EPConverter  # seconds to import, and only TorchScript needs it

    n_inputs = len(list(module.graph.inputs())) - 1
    quiet = logging.getLogger("torch._export.non_strict_utils")  # "Dim.AUTO ... specialized", once per input
    level = quiet.level
    try:
        quiet.setLevel(logging.ERROR)
        # The converter exports with every dimension dynamic (Dim.AUTO); bertc compiles one
        # static shape, so the converted graph is exported again with the example's shapes.
        with warnings.catch_warnings():  # unused buffers it copies anyway (token_type_ids)
            warnings.filterwarnings("ignore", message="Manually populate")
            converted = TS2EPConverter(module, example[:n_inputs]).convert()
        gm = converted.module()
        _fold_scalars(gm, example[:n_inputs])
        return torch.export.export(gm, example[:n_inputs], strict=False)
    except Exception as e:
        raise BertcError(f"could not convert the TorchScript archive to a torch.export program: {e}; "
                         "export the model with torch.export and pass the .pt2 instead") from e
    finally:
        quiet.setLevel(level)


def _fold_scalars(gm: fx.GraphModule, example) -> None:
    """Replace every Python scalar the graph computes without reading input data by its value.

    A traced TorchScript graph recomputes sizes at run time (``seq_len + past_length`` turned
    into a tensor and back with ``.item()``); exported again, each becomes an unbacked symbol
    and the shapes that use it turn dynamic. At one fixed input shape they are constants.
    """
    data_free = {}
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            data_free[n] = False
        elif n.op == "call_function" and n.target in (torch.ops.aten.sym_size.int, torch.ops.aten.size.default):
            data_free[n] = True  # a size reads the shape, which is fixed, not the data
        else:
            data_free[n] = all(data_free[a] for a in n.all_input_nodes)
    values: dict[fx.Node, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            values[n] = r = super().run_node(n)
            return r

    with torch.no_grad():
        Recorder(gm).run(*example)
    for n in list(gm.graph.nodes):
        v = values.get(n)
        scalar = isinstance(v, (bool, int, float)) and not isinstance(v, torch.SymInt)
        if n.op == "call_function" and data_free[n] and scalar:
            replace_uses(n, v)
    for n in list(gm.graph.nodes):
        if n.op == "call_function" and n.target == torch.ops.aten._assert_scalar.default and n.args[0] is True:
            gm.graph.erase_node(n)
    gm.graph.eliminate_dead_code()
    gm.recompile()
