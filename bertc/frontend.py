"""Model loading and import: MODEL path or object -> torch.export -> torch dialect (torch-mlir).

Steps:
1. ``load_model``: a transformers model object, a Hugging Face folder, a ``.pt2`` torch.export
   program, a TorchScript archive, or a ``.pt`` state dict saved with its config. Pickled whole
   modules run code when loaded, so they are refused unless ``trust_pickle``, and a ``.pt2`` is read
   without unpickling anything in it. A config is checked before a model is built from it (numbers
   the compiler uses, the memory the compile needs), and a checkpoint against its config.
2. ``export_model``: torch.export with fixed (batch, seq_len) and inputs named
   input_ids / attention_mask / token_type_ids.
3. ``canonicalize_inputs``: the graph a transformers model exports builds its attention mask
   and position ids from dozens of small integer ops (arange, index, __and__, where, cumsum).
   Each sub-graph that depends only on one model input (or on nothing) is evaluated with
   several random inputs and, when it equals a known form, replaced by one op
   (``bertc::mask_bias``, ``bertc::keep_mask``, ``bertc::position_ids``) or by its constant
   value. A sub-graph that matches no form is left alone, and raise-torch names its ops.
4. ``import_torch``: torch-mlir's FX importer with an empty decomposition table, so linear,
   layer_norm, gelu, softmax, sdpa and embedding arrive whole. Parameters are not copied
   into the IR: each becomes ``bertc.weight {name}`` and its data stays in a ``WeightStore``.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx

from .errors import BertcError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


# --------------------------------------------------------------------------- custom ops
# Stand-ins for recognised sub-graphs. They have real eager implementations, so a
# canonicalized program still runs in PyTorch (the tests compare it with the original).


@torch.library.custom_op("bertc::mask_bias", mutates_args=())
def mask_bias(mask: torch.Tensor, shape: list[int], fill: float) -> torch.Tensor:
    keep = mask[:, None, None, :].bool()
    out = torch.where(keep, torch.zeros((), dtype=torch.float32), torch.tensor(fill, dtype=torch.float32))
    return out.expand(shape).clone()


@mask_bias.register_fake
def _(mask, shape, fill):
    return mask.new_empty(shape, dtype=torch.float32)


@torch.library.custom_op("bertc::keep_mask", mutates_args=())
def keep_mask(mask: torch.Tensor, shape: list[int]) -> torch.Tensor:
    return mask[:, None, None, :].bool().expand(shape).clone()


@keep_mask.register_fake
def _(mask, shape):
    return mask.new_empty(shape, dtype=torch.bool)


@torch.library.custom_op("bertc::position_ids", mutates_args=())
def position_ids(ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    keep = ids.ne(padding_idx).long()
    return torch.cumsum(keep, dim=1) * keep + padding_idx


@position_ids.register_fake
def _(ids, padding_idx):
    return torch.empty_like(ids)


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """What the frontend hands to the compiler."""

    program: torch.export.ExportedProgram
    input_names: list[str]
    output_names: list[str]
    config: dict[str, Any]
    vocab_size: int
    max_token_type: int
    tokenizer_dir: Path | None = None
    source: str = ""


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith(("/constants.pkl", "code/__torch__.py")) or "/code/" in n for n in z.namelist())


def load_model(model: Any, *, trust_pickle: bool = False, config: str | Path | None = None, batch: int = 1,
               seq_len: int = 128):
    """Return (module_or_exported_program, hf_config_or_None, tokenizer_dir_or_None, description).

    A config is checked before a model is built from it: the numbers the compiler uses, and the memory a
    compile at ``batch`` x ``seq_len`` needs (bertc/budget.py)."""
    import transformers

    from .budget import check_compile_fits

    def checked(cfg, where: str):
        if cfg is not None:
            fields = cfg if isinstance(cfg, dict) else cfg.to_dict()
            check_config_numbers(fields, where)
            check_compile_fits(fields, batch, seq_len, where)
        return cfg

    if isinstance(model, transformers.PreTrainedModel):
        return model.eval(), checked(model.config, type(model).__name__), None, type(model).__name__
    if isinstance(model, (torch.nn.Module, torch.export.ExportedProgram)):
        return model, checked(getattr(model, "config", None), type(model).__name__), None, type(model).__name__
    path = Path(model)
    if not path.exists():
        raise BertcError(f"model path '{path}' does not exist; pass a Hugging Face model folder, a .pt2, "
                         "a TorchScript archive or a .pt state dict")
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BertcError(f"'{path}' is a folder but has no config.json; a Hugging Face model folder "
                             "needs config.json and its weights (model.safetensors or pytorch_model.bin)")
        checked(_read_config(path / "config.json"), str(path / "config.json"))  # before a model of its size is built
        from .search.inherit import is_student, load_student

        student = is_student(path)
        try:  # a `bertc search` student: per-layer heads and FFN widths that transformers cannot build itself
            if student:
                m = load_student(path).bert  # checks its weights against its config itself
            else:
                m, info = transformers.AutoModel.from_pretrained(str(path), local_files_only=True,
                                                                 output_loading_info=True)
        except BertcError:
            raise
        except Exception as e:  # transformers raises many types; the message is what matters
            raise BertcError(f"could not load the Hugging Face model in '{path}': {e}") from e
        if not student:
            _check_checkpoint(m, info, path)
        tok = path if any((path / n).exists() for n in ("tokenizer.json", "vocab.txt")) else None
        return m.eval(), m.config, tok, f"{type(m).__name__} from {path}"
    if path.suffix == ".pt2":
        sidecar = checked(_sidecar_config(path, config), str(path))
        try:
            program = torch.export.load(str(path)) if trust_pickle else load_pt2_without_pickle(path)
        except BertcError:
            raise
        except Exception as e:
            raise BertcError(f"could not read the torch.export program '{path}': {e}") from e
        return program, sidecar, None, f"torch.export program {path}"
    if _is_torchscript(path):
        sidecar = checked(_sidecar_config(path, config), str(path))
        try:
            m = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise BertcError(f"could not read the TorchScript archive '{path}': {e}") from e
        return m.eval(), sidecar, None, f"TorchScript archive {path}"
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        if not trust_pickle:
            raise BertcError(
                f"'{path}' is not a plain state dict (it holds pickled Python objects, which run code when "
                "loaded). Save `{'config': model.config.to_dict(), 'state_dict': model.state_dict()}` instead, "
                "or pass --trust-pickle if you trust where this file came from") from e
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(obj, torch.nn.Module):
        return obj.eval(), checked(getattr(obj, "config", None), str(path)), None, f"pickled module {path}"
    if not isinstance(obj, dict):
        raise BertcError(f"'{path}' holds a {type(obj).__name__}, not a state dict or a module")
    cfg_dict = obj.get("config")
    state = obj.get("state_dict", obj)
    if cfg_dict is None:
        sidecar = _sidecar_config(path, config)
        cfg_dict = sidecar.to_dict() if sidecar is not None else None
    if cfg_dict is None:
        raise BertcError(f"the state dict '{path}' has no config: save it as "
                         "{'config': model.config.to_dict(), 'state_dict': model.state_dict()}, "
                         "or put config.json beside it, or pass --config")
    if not isinstance(cfg_dict, dict):
        raise BertcError(f"the config in '{path}' is a {type(cfg_dict).__name__}; save model.config.to_dict()")
    checked(cfg_dict, str(path))
    cfg = transformers.AutoConfig.for_model(**cfg_dict)
    m = transformers.AutoModel.from_config(cfg)
    missing, unexpected = m.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise BertcError(f"the state dict '{path}' does not fit a {type(m).__name__}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return m.eval(), m.config, None, f"{type(m).__name__} state dict {path}"


def _read_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BertcError(f"{path} is not readable JSON ({e}); fix it, or save the model again with "
                         "save_pretrained") from None
    if not isinstance(cfg, dict):
        raise BertcError(f"{path} holds a {type(cfg).__name__}, not a config (a JSON object)")
    return cfg


# Config fields that become sizes in the compiled program (transformers' names and DistilBERT's).
SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
               "max_position_embeddings", "embedding_size", "dim", "n_layers", "n_heads", "hidden_dim")


def check_config_numbers(cfg: dict[str, Any], where: str) -> None:
    """Refuse config numbers the compiler cannot use: a NaN or infinity anywhere (it would reach the
    generated C as ``nan.0f``), an epsilon (layer_norm_eps) that is not above 0, a size that is not a
    positive integer. The error names the field."""
    for key, value in cfg.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise BertcError(f"{where}: config field '{key}' is {value}; it must be a finite number: fix the config")
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key.endswith(("_eps", "_epsilon")) and value is not None and not (is_number and value > 0):
            raise BertcError(f"{where}: config field '{key}' is {value!r}; it must be a number above 0 "
                             "(BERT uses 1e-12): fix the config")
        if key in SIZE_FIELDS and value is not None and not (isinstance(value, int) and is_number and value >= 1):
            raise BertcError(f"{where}: config field '{key}' is {value!r}; it must be a positive integer: "
                             "fix the config")


def _check_checkpoint(model, info: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint that does not hold the weights its config.json describes. transformers fills a
    missing weight with random numbers and only logs it; an unexpected one inside the encoder
    (encoder.layer.2.* for a 2-layer config) means the config and the checkpoint disagree. A task head's
    weights (classifier, lm_head, cls) are not the encoder's and are left out, and a checkpoint without a
    pooler (a masked-LM one) gives an encoder without pooler_output rather than a random one."""
    missing = sorted(info.get("missing_keys") or ())
    if missing and all(k.startswith("pooler.") for k in missing) and getattr(model, "pooler", None) is not None:
        model.pooler = None
        missing = []
    parts = {name for name, _ in model.named_children()}
    unexpected = sorted(k for k in info.get("unexpected_keys") or () if k.split(".", 1)[0] in parts)
    mismatched = sorted(str(k[0] if isinstance(k, (tuple, list)) else k) for k in info.get("mismatched_keys") or ())
    errors = [str(e) for e in info.get("error_msgs") or ()]
    if not (missing or unexpected or mismatched or errors):
        return

    def some(keys: list[str]) -> str:
        return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")

    what = [f"missing {some(missing)}" if missing else "", f"unexpected {some(unexpected)}" if unexpected else "",
            f"of another shape {some(mismatched)}" if mismatched else "", "; ".join(errors[:2])]
    raise BertcError(f"the weights in '{path}' do not fit its config.json ({type(model).__name__}): "
                     f"{'; '.join(w for w in what if w)}. transformers would fill missing weights with random "
                     "numbers; check num_hidden_layers and the sizes in config.json against the checkpoint, or "
                     "save the model again with save_pretrained")


def load_pt2_without_pickle(path: Path) -> torch.export.ExportedProgram:
    """Read a torch.export archive (.pt2) without unpickling anything in it.

    torch.export.load unpickles the sample inputs and any payload marked use_pickle with
    weights_only=False, and loads AOTInductor libraries: a crafted archive runs code. Here the program
    (JSON) and the raw tensor payloads are read as data; a pickled tensor is read with weights_only=True;
    the sample inputs (bertc makes its own) and AOTInductor code are left alone. What can only be read by
    unpickling Python objects is refused, naming --trust-pickle.
    """
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _bytes_to_dataclass
    from torch.export.pt2_archive import _package as pt2
    from torch.export.pt2_archive import constants as names

    def refuse(what: str) -> BertcError:
        return BertcError(f"'{path}' holds {what}, which only unpickling can read, and unpickling runs code from the "
                          "file. Save the program with torch.export.save from plain tensors, or pass --trust-pickle "
                          "if you trust where this file came from")

    try:
        archive = pt2.PT2ArchiveReader(str(path))
    except Exception as e:
        raise BertcError(f"'{path}' is not a torch.export archive ({e}); save the program with torch.export.save "
                         "(torch >= 2.7), or pass --trust-pickle for an older archive you trust") from e
    files = set(archive.get_file_names())
    model = names.MODELS_FILENAME_FORMAT.format("model")
    if archive.read_string(names.ARCHIVE_VERSION_PATH) != names.ARCHIVE_VERSION_VALUE or model not in files:
        raise BertcError(f"'{path}' is not an archive this torch reads (version or models/model.json); save it "
                         "again with torch.export.save")

    def payloads(config_file: str, folder: str, legacy: str) -> dict[str, torch.Tensor]:
        if legacy in files:  # torch < 2.8 kept the whole state dict as one torch.save file
            return _unpickle_tensors(archive.read_bytes(legacy), legacy, refuse)
        config = pt2._load_payload_config(archive, config_file)
        flat = pt2._build_file_map(archive, config, folder)  # raw bytes as tensors: nothing unpickled
        out = {}
        for fqn, meta in config.config.items():
            prefix = meta.path_name.split("_", 1)[0]
            if meta.use_pickle:
                t = _unpickle_tensors(archive.read_bytes(folder + meta.path_name), fqn, refuse)
                if not isinstance(t, torch.Tensor):
                    raise refuse(f"'{fqn}', a pickled {type(t).__name__} where a tensor belongs")
                out[fqn] = torch.nn.Parameter(t, requires_grad=t.requires_grad) if meta.is_param and \
                    not isinstance(t, torch.nn.Parameter) else t
            elif folder == names.CONSTANTS_DIR and not meta.path_name.startswith(names.TENSOR_CONSTANT_FILENAME_PREFIX):
                raise refuse(f"a constant '{fqn}' that is a Python object ({prefix})")
            else:
                t = meta.tensor_meta
                size, stride = pt2.deserialize_size(t.sizes), pt2.deserialize_stride(t.strides)
                view = torch.as_strided(flat[meta.path_name], size, stride,
                                        pt2.deserialize_storage_offset(t.storage_offset))
                out[fqn] = torch.nn.Parameter(view, requires_grad=t.requires_grad) if meta.is_param else view
        return out

    state_dict = payloads(names.WEIGHTS_CONFIG_FILENAME_FORMAT.format("model"), names.WEIGHTS_DIR,
                          f"{names.WEIGHTS_DIR}model.pt")
    constants = payloads(names.CONSTANTS_CONFIG_FILENAME_FORMAT.format("model"), names.CONSTANTS_DIR,
                         f"{names.CONSTANTS_DIR}model.pt")
    program = _bytes_to_dataclass(schema.ExportedProgram, archive.read_bytes(model))
    return ExportedProgramDeserializer().deserialize(program, state_dict, constants, None)


def _unpickle_tensors(data: bytes, what: str, refuse) -> Any:
    """A tensor (or a dict of them) saved with torch.save, read with weights_only=True: tensors and plain
    containers only, no Python object's code."""
    import io

    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise refuse(f"'{what}', a pickle that is not plain tensors") from e


def _sidecar_config(path: Path, config: str | Path | None):
    import transformers

    cfg_path = Path(config) if config else path.parent / "config.json"
    if not cfg_path.exists():
        return None
    return transformers.AutoConfig.for_model(**json.loads(cfg_path.read_text()))


# --------------------------------------------------------------------------- export


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


def _make_buffers_persistent(module: torch.nn.Module) -> None:
    # transformers registers position_ids as non-persistent; torch-mlir's frozen import
    # then cannot find it in the state dict ("Could not find state mapping for buffer").
    for m in module.modules():
        m._non_persistent_buffers_set.clear()


def export_model(model: Any, *, batch: int = 1, seq_len: int = 128, trust_pickle: bool = False,
                 config: str | Path | None = None) -> LoadedModel:
    if batch < 1 or not 1 <= seq_len <= 8192:
        raise BertcError(f"--batch {batch} / --seq-len {seq_len} out of range (batch >= 1, 1 <= seq-len <= 8192)")
    obj, hf_config, tok_dir, desc = load_model(model, trust_pickle=trust_pickle, config=config, batch=batch,
                                               seq_len=seq_len)
    cfg = hf_config.to_dict() if hf_config is not None else {}
    max_pos = cfg.get("max_position_embeddings")
    if max_pos is not None and seq_len > max_pos - (2 if cfg.get("model_type") == "roberta" else 0):
        raise BertcError(f"--seq-len {seq_len} is longer than the model's max_position_embeddings ({max_pos})")
    example = (torch.ones(batch, seq_len, dtype=torch.long), torch.ones(batch, seq_len, dtype=torch.long),
               torch.zeros(batch, seq_len, dtype=torch.long))
    if isinstance(obj, torch.export.ExportedProgram):
        ep = obj
        names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
        input_names = [_canonical_input_name(n, i) for i, n in enumerate(names)]
        output_names = _tuple_output_names(ep)
    else:
        module = obj
        if isinstance(module, torch.jit.ScriptModule):
            ep = _export_torchscript(module, example)
            input_names = list(INPUT_NAMES[: len([s for s in ep.graph_signature.input_specs
                                                  if s.kind.name == "USER_INPUT"])])
            output_names = _tuple_output_names(ep)
        else:
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
            try:
                ep = torch.export.export(wrapper, example, strict=False)
            except Exception as e:
                raise BertcError(f"torch.export could not trace {desc}: {e}") from e
            input_names, output_names = list(INPUT_NAMES), outputs
    canonicalize_inputs(ep, input_names)
    _record_module_paths(ep)
    vocab = cfg.get("vocab_size") or _table_rows(ep, input_names, "input_ids")
    if vocab is None:
        raise BertcError("could not find the word embedding to learn the vocabulary size; pass --config")
    types = cfg.get("type_vocab_size") or _table_rows(ep, input_names, "token_type_ids") or 0
    return LoadedModel(program=ep, input_names=input_names, output_names=output_names, config=cfg,
                       vocab_size=int(vocab), max_token_type=int(types),
                       tokenizer_dir=tok_dir, source=desc)


def _record_module_paths(ep: torch.export.ExportedProgram) -> None:
    """Add the owning submodule to each node's stack trace, which torch-mlir turns into the op's
    location, so errors can say where in the model an op came from."""
    for n in ep.graph.nodes:
        stack = n.meta.get("nn_module_stack")
        if not stack:
            continue
        path, cls = list(stack.values())[-1]
        path = path.replace("L['self'].", "").removeprefix("model.").replace("L__self___", "")
        name = cls.__name__ if isinstance(cls, type) else str(cls).rsplit(".", 1)[-1].strip("'>")
        n.meta["stack_trace"] = (n.meta.get("stack_trace") or "") + f'\n  File "module {path} ({name})", line 0, in forward'


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


def _table_rows(ep: torch.export.ExportedProgram, input_names: list[str], name: str) -> int | None:
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
    from torch._export.converter import TS2EPConverter

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
        if n.op == "call_function" and data_free[n] and isinstance(v, (bool, int, float)) and not isinstance(v, torch.SymInt):
            _replace_uses(n, v)
    for n in list(gm.graph.nodes):
        if n.op == "call_function" and n.target == torch.ops.aten._assert_scalar.default and n.args[0] is True:
            gm.graph.erase_node(n)
    gm.graph.eliminate_dead_code()
    gm.recompile()


# --------------------------------------------------------------------------- canonicalization


def _random_inputs(input_names: list[str], shapes: list[tuple], dtypes, rng: np.random.Generator, trial: int):
    out = []
    for name, shp, dt in zip(input_names, shapes, dtypes):
        b, s = shp
        if name == "attention_mask":
            lens = rng.integers(1, s + 1, size=b) if trial else np.full(b, s)
            v = (np.arange(s)[None, :] < lens[:, None]).astype(np.int64)
            if trial == 2:  # holes, not only right padding
                v = (rng.random((b, s)) < 0.6).astype(np.int64)
                v[:, 0] = 1
        elif name == "input_ids":
            v = rng.integers(0, 3, size=(b, s)) if trial == 2 else rng.integers(0, 50, size=(b, s))
        else:
            v = rng.integers(0, 2, size=(b, s))
        out.append(torch.from_numpy(v).to(dt))
    return out


def _evaluate_all(ep: torch.export.ExportedProgram, user_inputs: list[torch.Tensor], keep: set[fx.Node]) -> dict:
    """The values of the nodes in ``keep`` for these inputs. Only those are held: the interpreter frees every
    other value after its last use, so memory stays that of one eager forward, not of every layer's."""
    values: dict[fx.Node, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            r = super().run_node(n)
            if n in keep:
                values[n] = r
            return r

    args, k = [], 0
    for spec in ep.graph_signature.input_specs:
        if spec.kind.name == "USER_INPUT":
            args.append(user_inputs[k])
            k += 1
        elif spec.kind.name == "CONSTANT_TENSOR":
            args.append(ep.constants[spec.target])
        else:
            args.append(ep.state_dict[spec.target] if spec.target in ep.state_dict else ep.constants[spec.target])
    with torch.no_grad():
        Recorder(ep.graph_module).run(*args)
    return values


def canonicalize_inputs(ep: torch.export.ExportedProgram, input_names: list[str]) -> None:
    """Replace input-only and constant sub-graphs by recognised ops or constants (in place)."""
    g = ep.graph
    for n in list(g.nodes):
        if n.op == "call_function" and n.target == torch.ops.aten._assert_tensor_metadata.default:
            g.erase_node(n)
    placeholders = [n for n in g.nodes if n.op == "placeholder"]
    kinds = {p: s for p, s in zip(placeholders, ep.graph_signature.input_specs)}
    _narrow_double_scalars(ep, placeholders, kinds)
    user = [p for p in placeholders if kinds[p].kind.name == "USER_INPUT"]
    role = {p: input_names[i] for i, p in enumerate(user)}
    # deps: the model inputs a node depends on; "param" marks a dependence on learned weights.
    deps: dict[fx.Node, frozenset] = {}
    for n in g.nodes:
        if n.op == "placeholder":
            kind = kinds[n].kind.name
            # Learned weights end a sub-graph. A TorchScript archive converted by torch.export
            # holds them as buffers, so a floating-point buffer counts as a weight too; integer
            # buffers (position_ids, token_type_ids) are constants.
            learned = kind == "PARAMETER" or (kind == "BUFFER" and n.meta["val"].is_floating_point())
            deps[n] = frozenset([role[n]]) if n in role else frozenset(["param"] if learned else [])
        else:
            deps[n] = frozenset().union(*[deps[a] for a in n.all_input_nodes]) if n.all_input_nodes else frozenset()

    def group(n):  # the single input (or "const") a node is a pure function of, else None
        d = deps[n]
        if n.op in ("placeholder", "output") or "param" in d or len(d) > 1:
            return None
        return next(iter(d)) if d else "const"

    frontier = [n for n in g.nodes if group(n) is not None and n.op == "call_function"
                and any(group(u) != group(n) for u in n.users)]
    if not frontier:
        return
    shapes = [tuple(p.meta["val"].shape) for p in user]
    dtypes = [p.meta["val"].dtype for p in user]
    rng = np.random.default_rng(0)
    trials = []
    for t in range(3):
        ins = _random_inputs(input_names, shapes, dtypes, rng, t)
        trials.append((dict(zip(input_names, ins)), _evaluate_all(ep, ins, set(frontier))))
    placeholder_of = {v: k for k, v in role.items()}
    for n in frontier:
        kind = group(n)
        vals = [vals_[n] for _, vals_ in trials]
        if not all(isinstance(v, torch.Tensor) for v in vals):
            continue
        replacement = None
        if kind == "const":
            # torch-mlir imports a list argument only if all its items are graph values
            in_list = any(isinstance(a, (list, tuple)) and n in a for u in n.users for a in u.args)
            if not in_list and all(torch.equal(vals[0], v) for v in vals[1:]):
                replacement = vals[0].clone()
        elif kind == "attention_mask":
            replacement = _match_mask(n, vals, [ins["attention_mask"] for ins, _ in trials],
                                      placeholder_of["attention_mask"], g)
        elif kind == "input_ids":
            replacement = _match_position_ids(n, vals, [ins["input_ids"] for ins, _ in trials],
                                              placeholder_of["input_ids"], g)
        if replacement is None and kind != "const" and all(torch.equal(vals[0], v) for v in vals[1:]):
            # Reads an input but gives the same value for every trial: in a traced TorchScript
            # graph, token_type_ids gathered from a zero buffer at the position ids.
            replacement = vals[0].clone()
        if replacement is None:
            continue
        _replace_uses(n, replacement)
    g.eliminate_dead_code()
    g.lint()


def _narrow_double_scalars(ep, placeholders, kinds) -> None:
    """TorchScript keeps Python float constants (the 1/sqrt(head_dim) scale) as 0-d float64
    tensors. Beside a float32 tensor a 0-d operand does not promote, so the op computes in
    float32 either way; store them as float32 so that bertc sees one element type."""
    for p in placeholders:
        spec = kinds[p]
        val = p.meta.get("val")
        if (spec.kind.name != "CONSTANT_TENSOR" or not isinstance(val, torch.Tensor) or val.dtype != torch.float64
                or val.dim() != 0 or not all(_result_dtype(u) == torch.float32 for u in p.users)):
            continue
        ep.constants[spec.target] = ep.constants[spec.target].float()
        p.meta["val"] = val.float()


def _result_dtype(n: fx.Node):
    v = n.meta.get("val")
    return v.dtype if isinstance(v, torch.Tensor) else None


def _replace_uses(n: fx.Node, value: Any) -> None:
    """Make every user of ``n`` take ``value`` (a node or a literal) instead."""
    def swap(a):
        return value if a is n else a

    for u in list(n.users):
        u.args = fx.node.map_arg(u.args, swap)
        u.kwargs = fx.node.map_arg(u.kwargs, swap)


def _new_node(g: fx.Graph, after: fx.Node, target, args, like: fx.Node) -> fx.Node:
    with g.inserting_after(after):
        node = g.call_function(target, args)
    node.meta["val"] = like.meta["val"]
    return node


def _match_mask(n, vals, masks, mask_node, g):
    v0 = vals[0]
    if v0.dim() != 4 or v0.shape[0] != masks[0].shape[0] or v0.shape[3] != masks[0].shape[1]:
        return None
    shape = list(v0.shape)
    if v0.dtype == torch.bool:
        if all(torch.equal(v, keep_mask(m, shape)) for v, m in zip(vals, masks)):
            return _new_node(g, mask_node, torch.ops.bertc.keep_mask.default, (mask_node, shape), n)
        return None
    if v0.dtype != torch.float32:
        return None
    # The fill shows where some key was masked; with nothing ever masked (seq_len 1) any
    # large negative fill gives the same values, so try the one transformers uses.
    for fill in {float(v.min()) for v in vals} - {0.0} | {float(torch.finfo(torch.float32).min)}:
        if all(torch.equal(v, mask_bias(m, shape, fill)) for v, m in zip(vals, masks)):
            return _new_node(g, mask_node, torch.ops.bertc.mask_bias.default, (mask_node, shape, fill), n)
    return None


def _match_position_ids(n, vals, ids, ids_node, g):
    if vals[0].shape != ids[0].shape or vals[0].dtype != torch.long:
        return None
    for pad in {int(a) for u in _ancestors(n) for a in u.args if isinstance(a, int)}:
        if all(torch.equal(v, position_ids(i, pad)) for v, i in zip(vals, ids)):
            return _new_node(g, ids_node, torch.ops.bertc.position_ids.default, (ids_node, pad), n)
    return None


def _ancestors(n: fx.Node) -> list[fx.Node]:
    seen, stack = [], [n]
    while stack:
        x = stack.pop()
        if x not in seen and x.op == "call_function":
            seen.append(x)
            stack.extend(x.all_input_nodes)
    return seen


# --------------------------------------------------------------------------- import


@dataclass
class WeightStore:
    """Parameter data by name; the IR refers to it with ``bertc.weight {name}``."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, name: str, array: np.ndarray) -> str:
        self.arrays[name] = np.ascontiguousarray(array)
        return name


def import_torch(loaded: LoadedModel, context):
    """torch-mlir FX import into the torch dialect; returns (module, WeightStore)."""
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d
    from torch_mlir.extras.fx_importer import FxImporter, FxImporterHooks

    ep = loaded.program
    store = WeightStore()
    names: dict[int, str] = {}
    for k, v in list(ep.state_dict.items()) + list(getattr(ep, "constants", {}).items()):
        if isinstance(v, torch.Tensor):
            names.setdefault(v.data_ptr(), k.removeprefix("model."))

    class KeepWeightsOutOfIR(FxImporterHooks):
        def resolve_literal(self, gni, literal, info):
            if not isinstance(literal, torch.Tensor):
                return None
            if literal.numel() == 1 and not isinstance(literal, torch.nn.Parameter):
                return None  # a scalar stays in the IR (torch.vtensor.literal), where passes read it
            name = names.get(literal.data_ptr()) if literal.numel() else None
            if name is None or name not in store.arrays:
                name = name or f"constant.{len(store.arrays)}"
                store.add(name, literal.detach().cpu().numpy())
            vtype = gni._cc.tensor_to_vtensor_type(literal)
            return ir.Operation.create("bertc.weight", results=[vtype],
                                       attributes={"name": ir.StringAttr.get(name)}).result

    torch_d.register_dialect(context)
    importer = FxImporter(context=context, hooks=KeepWeightsOutOfIR())
    with context:
        try:
            importer.import_frozen_program(ep, func_name="main")
        except Exception as e:
            raise BertcError(f"torch-mlir could not import the exported program: {e}") from e
    return importer.module, store
