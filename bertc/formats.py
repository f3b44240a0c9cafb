"""The model formats bertc reads, and the checks made before anything is built from them.

``load_model`` takes a transformers model object (or any torch module / ExportedProgram), a Hugging
Face folder (a ``bertc search`` student among them, bertc/student.py), a ``.pt2`` torch.export
program (known by its content, whatever the file is called), a TorchScript archive, or a ``.pt`` state
dict saved with its config. Pickled whole modules
run code when loaded, so they are refused unless ``trust_pickle``, and a ``.pt2`` is read without
unpickling anything in it (``load_pt2_without_pickle``). A config is checked before a model is built
from it (``check_config_numbers``: numbers the compiler uses; bertc/budget.py: the memory the compile
needs), and a Hugging Face checkpoint against its config (``_check_checkpoint``).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch._export.serde import schema
from torch._export.serde.serialize import ExportedProgramDeserializer, _bytes_to_dataclass
from torch.export.pt2_archive import _package as pt2
from torch.export.pt2_archive import constants as pt2_names

from .budget import check_compile_fits
from .errors import BertcError
from .student import is_student, load_student


def _zip_names(path: Path) -> list[str]:
    if not zipfile.is_zipfile(path):
        return []
    with zipfile.ZipFile(path) as z:
        return z.namelist()


def _is_torchscript(path: Path) -> bool:
    return any(n.endswith(("/constants.pkl", "code/__torch__.py")) or "/code/" in n for n in _zip_names(path))


def _is_pt2(path: Path) -> bool:
    """A torch.export archive, whatever the file is called: torch.export.save writes <root>/archive_format."""
    return any(n.count("/") == 1 and n.endswith("/" + pt2_names.ARCHIVE_FORMAT_PATH) for n in _zip_names(path))


def load_model(model: Any, *, trust_pickle: bool = False, config: str | Path | None = None, batch: int = 1,
               seq_len: int = 128):
    """Return (module_or_exported_program, hf_config_or_None, tokenizer_dir_or_None, description).

    A config is checked before a model is built from it: the numbers the compiler uses, and the memory a
    compile at ``batch`` x ``seq_len`` needs (bertc/budget.py)."""
    import transformers  # seconds to import; only loading a model needs it

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
    if _is_pt2(path) or (path.suffix == ".pt2" and not _is_torchscript(path)):
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
    model = pt2_names.MODELS_FILENAME_FORMAT.format("model")
    if archive.read_string(pt2_names.ARCHIVE_VERSION_PATH) != pt2_names.ARCHIVE_VERSION_VALUE or model not in files:
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
            elif folder == pt2_names.CONSTANTS_DIR and \
                    not meta.path_name.startswith(pt2_names.TENSOR_CONSTANT_FILENAME_PREFIX):
                raise refuse(f"a constant '{fqn}' that is a Python object ({prefix})")
            else:
                t = meta.tensor_meta
                size, stride = pt2.deserialize_size(t.sizes), pt2.deserialize_stride(t.strides)
                view = torch.as_strided(flat[meta.path_name], size, stride,
                                        pt2.deserialize_storage_offset(t.storage_offset))
                out[fqn] = torch.nn.Parameter(view, requires_grad=t.requires_grad) if meta.is_param else view
        return out

    state_dict = payloads(pt2_names.WEIGHTS_CONFIG_FILENAME_FORMAT.format("model"), pt2_names.WEIGHTS_DIR,
                          f"{pt2_names.WEIGHTS_DIR}model.pt")
    constants = payloads(pt2_names.CONSTANTS_CONFIG_FILENAME_FORMAT.format("model"), pt2_names.CONSTANTS_DIR,
                         f"{pt2_names.CONSTANTS_DIR}model.pt")
    program = _bytes_to_dataclass(schema.ExportedProgram, archive.read_bytes(model))
    return ExportedProgramDeserializer().deserialize(program, state_dict, constants, None)


def _unpickle_tensors(data: bytes, what: str, refuse) -> Any:
    """A tensor (or a dict of them) saved with torch.save, read with weights_only=True: tensors and plain
    containers only, no Python object's code."""
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

