"""Hypothesis draws model shapes (hidden sizes that are not multiples of 8 or 16, odd head
counts, 1-4 layers, sequence lengths 1-256, padding masks); each must compile and agree with
PyTorch within 1e-4, on the host and (a smaller sample) compiled for ARM64 and run under
qemu-aarch64."""

from __future__ import annotations

import numpy as np
from conftest import ARCHS, max_error, reference, tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bertc

SHAPES = {"arch": st.sampled_from(ARCHS), "impl": st.sampled_from(["eager", "sdpa"]), "heads": st.integers(1, 5),
          "head_dim": st.integers(1, 13), "layers": st.integers(1, 4), "ffn_mult": st.integers(1, 4),
          "seq": st.integers(1, 256), "data": st.data()}
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


def check_shape(target, tmp_path_factory, arch, impl, heads, head_dim, layers, ffn_mult, seq, data):
    hidden = heads * head_dim
    model = tiny_model(arch, impl, hidden=hidden, heads=heads, layers=layers, ffn=hidden * ffn_mult + 1)
    out = tmp_path_factory.mktemp("shape") / "m.bertc"
    compiled = bertc.compile(model, target=target, seq_len=seq, out=out).load(threads=data.draw(st.integers(1, 2)))
    run_len = data.draw(st.integers(1, seq))
    valid = data.draw(st.integers(1, run_len))
    rng = np.random.default_rng(seq)
    ids = rng.integers(3, 120, size=(1, run_len)).astype(np.int64)
    mask = (np.arange(run_len) < valid).astype(np.int64)[None]
    types = np.zeros_like(ids)
    ours = compiled(ids, mask, types)
    assert ours["last_hidden_state"].shape == (1, run_len, hidden)
    assert max_error(ours, reference(model, ids, mask, types), mask) <= 1e-4


@settings(max_examples=12, **SETTINGS)
@given(**SHAPES)
def test_random_shapes_match_pytorch(tmp_path_factory, **shape):
    check_shape("host", tmp_path_factory, **shape)


@settings(max_examples=4, **SETTINGS)
@given(**SHAPES)
def test_random_shapes_match_pytorch_on_arm64_under_qemu(tmp_path_factory, **shape):
    check_shape("android-arm64", tmp_path_factory, **shape)
