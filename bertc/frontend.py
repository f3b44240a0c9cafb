"""The frontend: MODEL path or object -> torch.export program -> torch dialect (torch-mlir).

``export_model`` (MODEL -> ``LoadedModel``), in four steps, each in its own file:

1. bertc/formats.py ``load_model``: a transformers model object, a Hugging Face folder (a ``bertc
   search`` student among them: bertc/student.py), a ``.pt2`` torch.export program, a TorchScript
   archive, or a ``.pt`` state dict saved with its config; configs and checkpoints checked first.
2. bertc/export.py ``export_program``: torch.export with fixed (batch, seq_len) and inputs named
   input_ids / attention_mask / token_type_ids; with ``max_seq_len`` the length is dynamic up to it
   (the imported IR then reads ``!torch.vtensor<[1,?],si64>``).
3. passes/canonicalize_gelu.py: a GELU written with erf (ESM's) becomes ``aten.gelu``;
   passes/canonicalize_norms.py: a written-out RMSNorm (EuroBERT's) or LayerNorm (DeBERTa v1's) becomes aten's;
   passes/canonicalize_rotary.py: each rotary position embedding (RoFormer, ESM) replaced by one op
   (``bertc::rotary``) with constant cos / sin tables; passes/canonicalize_trigram.py: MobileBERT's
   shifted embeddings (``bertc::trigram``); passes/canonicalize_token_dropout.py: ESM-2's scaling of
   its embeddings by the share of <mask> tokens (``bertc::token_dropout``); passes/canonicalize_conv.py:
   ConvBERT's convolutions over the sequence (``bertc::depthwise_conv1d``, ``bertc::span_conv``);
   passes/canonicalize_glu.py: ModernBERT's chunked GeGLU projection as two linears; then
   passes/canonicalize_inputs.py: the attention mask's and position ids' arithmetic replaced by one op
   each (``bertc::mask_bias``, ``bertc::keep_mask``, ``bertc::position_ids``), found by running the
   sub-graphs on random inputs; constant sub-graphs replaced by their value.
4. bertc/export.py ``record_module_paths``: each op's owning submodule, for error messages.

``import_torch`` (here): torch-mlir's FX importer with an empty decomposition table, so linear,
layer_norm, gelu, softmax, sdpa and embedding arrive whole. Parameters are not copied into the IR:
each becomes ``bertc.weight {name}`` and its data stays in a ``WeightStore``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_mlir import ir
from torch_mlir.dialects import torch as torch_d
from torch_mlir.extras.fx_importer import FxImporter, FxImporterHooks

from .errors import BertcError
from .export import export_program, has_dynamic_inputs, record_module_paths, table_rows
from .formats import load_model
from .passes.canonicalize_conv import canonicalize_conv
from .passes.canonicalize_gelu import canonicalize_gelu
from .passes.canonicalize_glu import canonicalize_glu
from .passes.canonicalize_inputs import canonicalize_inputs
from .passes.canonicalize_norms import canonicalize_norms
from .passes.canonicalize_rotary import canonicalize_rotary
from .passes.canonicalize_token_dropout import canonicalize_token_dropout
from .passes.canonicalize_trigram import canonicalize_trigram
from .pipeline import AUTO


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
    max_seq_len: int | None = None  # the bound of a dynamic length (export_model's max_seq_len); None: static
    seq_len: int = 0  # the length the program was traced at (of a static one, the length it runs)
    folder: Path | None = None  # the model folder it came from (its task head, if any: bertc/heads.py)


MAX_DEFAULT_SEQ_LEN = 512  # the default bound: what BERT-family encoders are trained to


def default_max_seq_len(obj: Any, cfg: dict[str, Any]) -> int | None:
    """The bound a compile without --seq-len or --max-seq-len takes: the model's usable positions (RoBERTa's
    start after its padding id), at most MAX_DEFAULT_SEQ_LEN; None (one fixed length) for the forms that fix
    their shapes when saved: a TorchScript archive, a torch.export program."""
    if isinstance(obj, (torch.jit.ScriptModule, torch.export.ExportedProgram)):
        return None
    usable = usable_positions(cfg)
    return max(2, min(MAX_DEFAULT_SEQ_LEN, usable if usable is not None else MAX_DEFAULT_SEQ_LEN))


# Models whose position ids start after the padding id (1), as RoBERTa's do: two rows of the table are never a position.
PADDED_POSITIONS = ("roberta", "xlm-roberta", "camembert", "data2vec-text", "mpnet")


def usable_positions(cfg: dict[str, Any]) -> int | None:
    """The longest input the config's position table takes (two fewer in the RoBERTa family), or None
    when the config does not say."""
    max_pos = cfg.get("max_position_embeddings")
    return None if max_pos is None else max_pos - (2 if cfg.get("model_type") in PADDED_POSITIONS else 0)


def _full_attention_up_to(cfg: dict[str, Any]) -> int:
    """The longest input a block_sparse BigBird attends to in full: its global, sliding and random blocks."""
    return (5 + 2 * cfg.get("num_random_blocks", 3)) * cfg.get("block_size", 64)


def export_model(model: Any, *, batch: int = 1, seq_len: int = 128, trust_pickle: bool = False,
                 config: str | Path | None = None, max_seq_len: int | str | None = None) -> LoadedModel:
    """Load ``model`` (any form bertc/formats.py reads) and export it at ``batch`` x ``seq_len``, or,
    with ``max_seq_len``, for every length from 1 to it (traced at ``seq_len``, clamped to 2..max:
    torch.export would fix a length traced at 1); ``max_seq_len=AUTO``: ``default_max_seq_len``'s."""
    if batch < 1 or not 1 <= seq_len <= 8192:
        raise BertcError(f"--batch {batch} / --seq-len {seq_len} out of range (batch >= 1, 1 <= seq-len <= 8192)")
    if max_seq_len not in (None, AUTO):
        if not 2 <= max_seq_len <= 8192:
            raise BertcError(f"--max-seq-len {max_seq_len} out of range (2 <= max-seq-len <= 8192)")
        seq_len = max(2, min(seq_len, max_seq_len))
    obj, hf_config, tok_dir, desc = load_model(model, trust_pickle=trust_pickle, config=config, batch=batch,
                                               seq_len=seq_len)
    cfg = hf_config.to_dict() if hf_config is not None else {}
    if max_seq_len == AUTO:
        max_seq_len = default_max_seq_len(obj, cfg)
        if max_seq_len is not None:
            seq_len = max(2, min(seq_len, max_seq_len))
    max_pos, usable = cfg.get("max_position_embeddings"), usable_positions(cfg)
    longest = max_seq_len or seq_len
    if usable is not None and longest > usable:
        flag = "--max-seq-len" if max_seq_len else "--seq-len"
        raise BertcError(f"{flag} {longest} is longer than the model's {usable} positions (max_position_embeddings "
                         f"{max_pos}); pass {flag} {usable} or less")
    if cfg.get("attention_type") == "block_sparse" and longest > (full := _full_attention_up_to(cfg)):
        flag = "--max-seq-len" if max_seq_len else "--seq-len"
        raise BertcError(f"BigBird's block_sparse attention, which transformers uses past {full} tokens, has no bertc "
                         f"kernel: pass {flag} {full} or less (full attention, as transformers computes there), or "
                         "load the model with attention_type='original_full'")
    if cfg.get("model_type") in ("longformer", "led"):
        raise BertcError("Longformer's attention (a sliding window per layer, plus global tokens chosen from the "
                         "input's global_attention_mask) has no bertc kernel: the global positions are data, not "
                         "shapes. bertc compiles ModernBERT's sliding-window layers and BigBird's full attention; "
                         "Longformer is not supported yet")
    example = (torch.ones(batch, seq_len, dtype=torch.long), torch.ones(batch, seq_len, dtype=torch.long),
               torch.zeros(batch, seq_len, dtype=torch.long))
    ep, input_names, output_names = export_program(obj, desc, example, max_seq_len)
    if max_seq_len is None and has_dynamic_inputs(ep):
        # the passes after fuse-epilogues (plan-memory, the emitters) still need one static length
        raise BertcError(f"{desc} was exported with a dynamic input shape, and bertc compiles one --seq-len so far: "
                         "export it again without dynamic_shapes, or give bertc the model itself")
    types = cfg.get("type_vocab_size") or table_rows(ep, input_names, "token_type_ids") or 0
    canonicalize_gelu(ep)  # an erf-written GELU (ESM's) as aten.gelu, which fuse-epilogues folds into its GEMM
    canonicalize_norms(ep)  # a written-out RMSNorm (EuroBERT's) or LayerNorm (DeBERTa v1's): one bertc op
    canonicalize_rotary(ep, input_names, max_seq_len)  # before the inputs' pass: its tables' sub-graphs die here
    canonicalize_trigram(ep)  # MobileBERT's shifted embeddings: one op, not pads of slices
    canonicalize_token_dropout(ep, input_names)  # ESM-2's <mask>-share scaling of its embeddings: one op
    canonicalize_conv(ep)  # ConvBERT's depthwise conv1d and span convolution (an unfold): one op each
    canonicalize_glu(ep)  # ModernBERT's GeGLU: its one projection as two, the GELU then in the first's GEMM
    canonicalize_inputs(ep, input_names, types or 2)  # trial token types within the table (RoBERTa's has 1 row)
    record_module_paths(ep)
    vocab = cfg.get("vocab_size") or table_rows(ep, input_names, "input_ids")
    if vocab is None:
        raise BertcError("could not find the word embedding to learn the vocabulary size; pass --config")
    return LoadedModel(program=ep, input_names=input_names, output_names=output_names, config=cfg,
                       vocab_size=int(vocab), max_token_type=int(types),
                       tokenizer_dir=tok_dir, source=desc, max_seq_len=max_seq_len,
                       seq_len=seq_len, folder=Path(model) if isinstance(model, (str, Path)) and Path(model).is_dir()
                       else None)


@dataclass
class WeightStore:
    """Parameter data by name; the IR refers to it with ``bertc.weight {name}``."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, name: str, array: np.ndarray) -> str:
        self.arrays[name] = np.ascontiguousarray(array)
        return name


def import_torch(loaded: LoadedModel, context):
    """torch-mlir FX import into the torch dialect; returns (module, WeightStore)."""
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
                names[literal.data_ptr()] = name  # a literal used again (a rotary table in every layer) is one weight
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
