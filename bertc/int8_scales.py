"""Static int8 activation scales (``bertc compile --dtype int8 --calibrate SOURCE``): one scale per GEMM input,
chosen ahead of time from the fp32 model run over calibration texts, in place of each row's max|x| at run time.

The fp32 model run is the exported program itself (``LoadedModel.program``, after the frontend's
canonicalisations), interpreted node by node, not forward hooks on the transformers modules: it is the program
that is compiled, whatever form MODEL came in (a .pt2 or TorchScript archive has no modules to hook), and every
``aten.linear`` in it names its weight by the tensor that --pack-weights later quantizes: the same names
(``import_torch``'s, by storage) as the IR's ``bertc.weight`` ops. A GEMM that fuse-attention made of several
linears (Q, K, V) reads one input, so its scale is the largest of theirs.

The scale of a GEMM's input is max|x| over the texts' tokens (padding masked) / 127, and every value beyond it
saturates at run time; where that scale's quantization noise is not MIN_SQNR_DB under the signal, the GEMM keeps
its per-row scales (report.json says which are static). Measured on MiniLM (README, "int8"): a 99.99th percentile
or the noise-minimising clip instead of the max, or an asymmetric (zero-point) scale on the GELU output, did not
bring a static FFN near per row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import BertcError

TASK_TEXTS = 256  # texts a task's train split lends to calibration: its first ones, so every compile sees the same
SQNR_TEXTS = 64  # of them, the texts the quantization noise is measured on
# A GEMM's input is quantized statically only where its calibrated scale keeps the noise this far under the signal
# (on the calibration texts); the others stay per row. On MiniLM (README, "int8"), the Q/K/V and attention-output
# inputs measure 28-32 dB (per row: 35-40), the FFN's 14-27 dB (per row: 27-34), and quantizing those statically
# cost the most: mean embedding cosine 0.982 with every GEMM static, 0.997 with the FFN's per row.
MIN_SQNR_DB = 28.0


@dataclass(frozen=True)
class CalibrationTexts:
    texts: tuple[str, ...]
    source: str  # what report.json names: "task:rt-sentiment", or the file's path


def read_texts(source: str | Path | CalibrationTexts | Sequence[str]) -> CalibrationTexts:
    """--calibrate's texts: a UTF-8 file of one text per line (blank lines skipped), a list of texts, or texts
    already resolved (``task:NAME`` is resolved by bertc.compile and the CLI: search/tasks.calibration_texts)."""
    if isinstance(source, CalibrationTexts):
        texts, name = source.texts, source.source
    elif isinstance(source, (str, Path)):
        if str(source).startswith("task:"):
            raise BertcError(f"--calibrate {source}: a task's texts are read by bertc.compile (or `bertc compile`), "
                             "not bertc.api.compile; call bertc.compile")
        try:
            texts = tuple(line.strip() for line in Path(source).read_text(encoding="utf-8").splitlines())
        except UnicodeDecodeError as e:
            raise BertcError(f"--calibrate {source}: not UTF-8 (byte {e.start}); convert it with `iconv -t UTF-8`") \
                from None
        except OSError as e:
            raise BertcError(f"--calibrate {source}: cannot read it ({e.strerror}); give a text file, one text per "
                             "line, or task:NAME (e.g. task:rt-sentiment)") from None
        texts, name = tuple(t for t in texts if t), str(source)
    else:
        texts, name = tuple(source), "the texts given"
    if not texts:
        raise BertcError(f"--calibrate {name}: no texts in it; give one text per line, typical of what the model "
                         "will see")
    return CalibrationTexts(texts, name)


def calibrate_scales(loaded, texts: CalibrationTexts, max_length: int, batch: int = 1) -> dict[str, float]:
    """{weight name: the static scale of the input of the linear that reads it}, for the linears whose input
    keeps MIN_SQNR_DB with it; from the fp32 exported program run over ``texts``, each cut to ``max_length``
    tokens (and padded to the program's length where it has one), ``batch`` copies of it where the program
    takes a batch. Two runs: the inputs' max|x| over every text, then their quantization noise over the first
    SQNR_TEXTS."""
    if loaded.tokenizer_dir is None:
        raise BertcError(f"--calibrate needs the model's tokenizer to read the texts, and {loaded.source} has none: "
                         "compile the Hugging Face model folder (with its tokenizer files), or leave out --calibrate "
                         "(dynamic scales, per row)")
    import torch  # (here: search/tasks.py imports this module for CalibrationTexts alone)
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(loaded.tokenizer_dir), local_files_only=True)
    ep = loaded.program
    names = {}
    for k, v in list(ep.state_dict.items()) + list(getattr(ep, "constants", {}).items()):
        if isinstance(v, torch.Tensor):
            names.setdefault(v.data_ptr(), k.removeprefix("model."))
    absmax: dict[str, float] = {}
    energy: dict[str, list[float]] = {}  # name: [sum x^2, sum (dequantized - x)^2]
    keep = None  # the current text's real tokens, [batch, length] bools

    class Recorder(torch.fx.Interpreter):
        def call_function(self, target, args, kwargs):
            if target is torch.ops.aten.linear.default and args[1].data_ptr() in names:
                x, name = args[0].detach(), names[args[1].data_ptr()]
                x = x[keep] if x.dim() == 3 and tuple(x.shape[:2]) == tuple(keep.shape) else x
                if not scales:
                    absmax[name] = max(absmax.get(name, 0.0), float(x.abs().max()) if x.numel() else 0.0)
                elif name in scales:  # kernels.h's static quantization: round half to even, saturated
                    s, e = scales[name], energy.setdefault(name, [0.0, 0.0])
                    e[0] += float((x * x).sum())
                    e[1] += float(((torch.round(x / s).clamp(-127, 127) * s - x) ** 2).sum())
            return super().call_function(target, args, kwargs)

    gm = ep.module()
    static = loaded.max_seq_len is None
    length = loaded.seq_len if static else max_length

    def run(text: str) -> None:
        nonlocal keep
        enc = tok([text] * batch, truncation=True, max_length=length, return_tensors="pt",
                  **({"padding": "max_length"} if static else {}))
        if enc["input_ids"].shape[1] < 2:  # a dynamic program's length starts at 2 (export_model)
            enc = tok([text] * batch, max_length=2, padding="max_length", return_tensors="pt")
        keep = enc["attention_mask"].bool()
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                  "token_type_ids": enc.get("token_type_ids", torch.zeros_like(enc["input_ids"]))}
        Recorder(gm).run(*(inputs[n] for n in loaded.input_names))

    scales: dict[str, float] = {}
    with torch.inference_mode():
        for text in texts.texts:
            run(text)
        scales.update({name: m / 127.0 for name, m in absmax.items() if m > 0})
        for text in texts.texts[:SQNR_TEXTS]:
            run(text)
    return {name: s for name, s in scales.items() if sqnr_db(*energy.get(name, (0.0, 0.0))) >= MIN_SQNR_DB}


def sqnr_db(signal: float, noise: float) -> float:
    return 10 * math.log10(signal / noise) if noise > 0 else math.inf
