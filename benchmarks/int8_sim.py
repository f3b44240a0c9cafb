"""int8 schemes simulated in PyTorch on the packaged MiniLM: each linear's weight rounded per output feature to
[-qmax, qmax], its input per row symmetrically ([-127, 127] of max |x|) or asymmetrically (255 steps over the row's
range with 0 in it, a zero point); each rt-sentiment test snippet's mean-pooled sentence embedding against fp32.

    .venv/bin/python benchmarks/int8_sim.py [--sentences 1275]

The README's comparison of symmetric and asymmetric rows at 8- and 7-bit weights (kernels.h's quantization, and
why AVX2 without VNNI can take 7-bit weights) comes from it; bertc's own kernels are measured by int8.py."""

from __future__ import annotations

import argparse
from pathlib import Path

import compare as C
import numpy as np
import torch


def fake_rows(x: torch.Tensor, asymmetric: bool) -> torch.Tensor:
    if not asymmetric:
        s = x.abs().amax(-1, keepdim=True).clamp(min=1e-30) / 127
        return torch.round(x / s).clamp(-127, 127) * s
    lo, hi = x.amin(-1, keepdim=True).clamp(max=0), x.amax(-1, keepdim=True).clamp(min=0)
    s = ((hi - lo) / 255).clamp(min=1e-30)
    zp = torch.round(-lo / s)
    return (torch.round(x / s).clamp(-zp, 255 - zp)) * s


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sentences", type=int, default=1275)
    args = p.parse_args()
    b = C.load_bundle(C.MODELS["minilm"], Path(__file__).parent / ".cache", False)
    xs, model = C.load_sentences(args.sentences, b), b.model
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    fp32 = {id(m): m.weight.data.clone() for m in linears}

    def embed(x):
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in x.items()}).last_hidden_state[0].mean(0)

    ref = [embed(x) for x in xs]
    print("| weights | rows | cosine mean | cosine min |\n|---|---|---:|---:|")
    for qmax in (127, 63):
        for asym in (False, True):
            for m in linears:
                w = fp32[id(m)]
                s = w.abs().amax(1, keepdim=True) / qmax
                m.weight.data = torch.round(w / s).clamp(-qmax, qmax) * s
            hooks = [m.register_forward_pre_hook(lambda _, a, asym=asym: (fake_rows(a[0], asym),)) for m in linears]
            cos = [float(torch.nn.functional.cosine_similarity(embed(x), r, 0)) for x, r in zip(xs, ref)]
            for h in hooks:
                h.remove()
            print(f"| [-{qmax}, {qmax}] | {'asymmetric' if asym else 'symmetric'} | {np.mean(cos):.5f} | "
                  f"{np.min(cos):.5f} |", flush=True)
    for m in linears:
        m.weight.data = fp32[id(m)]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
