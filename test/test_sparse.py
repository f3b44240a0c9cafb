"""--prune-patterns end to end: a model compiled with a SPEC agrees within 1e-4 with PyTorch running
the same masked weights (bertc.sparsity.model_masks on the PyTorch side, the pass on the compiler's),
on the host and under qemu-aarch64; hypothesis draws block shapes that do not divide the matrices;
the masks, the compressed form and bad SPECs are checked on their own."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from conftest import max_error, random_inputs, reference, tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bertc
from bertc.cli import main as cli
from bertc.errors import BertcError
from bertc.sparsity import apply_masks, block_mask, compress, decompress, model_masks, parse_pattern, parse_spec


def masked_copy(model, spec: str):
    masked = copy.deepcopy(model)
    masks = model_masks(masked, spec)
    apply_masks(masked, masks)
    return masked, masks


def compile_and_compare(model, spec: str, tmp_path, *, target="host", threads=1, seq=24, force=True, pad_from=17):
    masked, masks = masked_copy(model, spec)
    art = bertc.compile(model, target=target, seq_len=seq, out=tmp_path / "m.bertc", prune=spec, force_sparse=force)
    ids, mask, types = random_inputs(1, seq, 120, seed=seq, pad_from=pad_from)
    err = max_error(art.load(threads=threads)(ids, mask, types), reference(masked, ids, mask, types), mask)
    return err, art.report["sparsity"], masks


@pytest.mark.parametrize(("arch", "spec"), [
    ("bert", "16x1@0.25"), ("bert", "4x1@0.5,L1=0.2"), ("distilbert", "1x4@0.3"), ("albert", "2:4"),
    ("roberta", "8x1@0.1,*.intermediate.dense=0.6"), ("electra", "3x5@0.4"),
])
def test_pruned_model_matches_pytorch_with_the_same_masks(arch, spec, tmp_path):
    model = tiny_model(arch, hidden=48, heads=3, ffn=80)
    err, report, masks = compile_and_compare(model, spec, tmp_path, threads=2)
    assert err <= 1e-4
    # every matrix the SPEC names was pruned to its density and, forced, stored sparse
    assert masks and report["sparse_matrices"] == len(report["matrices"])
    want = 1 - sum(m.sum() for m in masks.values()) / sum(m.size for m in masks.values())
    assert report["pruned_fraction"] == pytest.approx(want, abs=2e-3)


def test_pruned_matrices_left_dense_where_the_target_has_no_faster_kernel(tmp_path):
    # 3x5 blocks have no measured rate on any target: pruned, but kept dense without --force
    model = tiny_model("bert", hidden=48, heads=3, ffn=80)
    err, report, _ = compile_and_compare(model, "3x5@0.4", tmp_path, force=False)
    assert err <= 1e-4
    assert {r["format"] for r in report["matrices"]} == {"dense"}
    assert all(r["expected_gain"] is None for r in report["matrices"])
    assert "bertc_linear_sparse" not in json.loads((tmp_path / "m.bertc" / "report.json").read_text())["kernels"]


def test_pruned_model_matches_pytorch_on_arm64_under_qemu(tmp_path):
    model = tiny_model("bert", hidden=40, heads=2, ffn=72)
    err, report, _ = compile_and_compare(model, "4x1@0.3,*.output.dense=0.5", tmp_path, target="android-arm64",
                                         threads=2)
    assert err <= 1e-4 and report["sparse_matrices"] == len(report["matrices"])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(r=st.integers(1, 17), c=st.integers(1, 6), density=st.floats(0.05, 1.0), heads=st.integers(1, 3),
       head_dim=st.integers(3, 13), ffn=st.integers(5, 70), seq=st.integers(1, 40), threads=st.integers(1, 2))
def test_random_blocks_that_do_not_divide_the_matrices(tmp_path_factory, r, c, density, heads, head_dim, ffn, seq,
                                                         threads):
    if r * c == 1:
        r = 2
    model = tiny_model("bert", hidden=heads * head_dim, heads=heads, ffn=ffn, layers=1)
    err, _, _ = compile_and_compare(model, f"{r}x{c}@{density:.3f}", tmp_path_factory.mktemp("blocks"),
                                    threads=threads, seq=seq, pad_from=None)
    assert err <= 1e-4


# ---- masks and storage ------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["16x1", "4x1", "1x4", "3x5", "2:4", "1:3x4"])
def test_masks_keep_the_largest_blocks_and_pruning_again_changes_nothing(pattern):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((37, 29)).astype(np.float32)
    p = parse_pattern(pattern)
    keep = block_mask(w, p, 0.3)
    s = compress(w * keep, p.r, p.c)
    np.testing.assert_array_equal(decompress(s), w * keep)
    np.testing.assert_array_equal(block_mask(w * keep, p, 0.3), keep)
    assert (s.index % p.c == 0).all() and (np.diff(s.offsets) >= 0).all()
    if p.m:  # N:M: N of every M blocks along the inputs in every block row (the short last group: ceil)
        full = 29 // p.m * p.m
        blocks = keep[:: p.r, :full].reshape(-1, full // p.m, p.m)
        assert (blocks.sum(axis=2) == p.n).all()
    else:  # the kept blocks are the largest by L2 norm
        rows, cols = -(-37 // p.r), -(-29 // p.c)
        assert s.blocks == round(0.3 * rows * cols)
        padded = np.zeros((rows * p.r, cols * p.c), np.float32)
        padded[:37, :29] = w
        norms = np.linalg.norm(padded.reshape(rows, p.r, cols, p.c).transpose(0, 2, 1, 3).reshape(rows, cols, -1),
                               axis=2)
        kept = np.zeros((rows, cols), bool)
        kept[np.repeat(np.arange(rows), np.diff(s.offsets)), s.index // p.c] = True
        assert norms[kept].min() >= norms[~kept].max()


def test_spec_rules_per_layer_and_per_matrix():
    spec = parse_spec("16x1@0.25,L0=0.5,*.intermediate.dense=0.2,L3=1")
    assert spec.density_for("encoder.layer.0.attention.self.query.weight") == 0.5
    assert spec.density_for("encoder.layer.2.intermediate.dense.weight") == 0.2
    assert spec.density_for("encoder.layer.2.output.dense.weight") == 0.25
    assert spec.density_for("encoder.layer.3.output.dense.weight") is None  # density 1: dense
    assert spec.density_for("pooler.dense.weight") is None  # outside the encoder's layers
    assert parse_spec("4x1@0.5,pooler.dense=0.5").density_for("pooler.dense.weight") == 0.5


@pytest.mark.parametrize(("spec", "message"), [
    ("", "empty prune SPEC"),
    ("16x1", "no density; write e.g. '16x1@0.25'"),
    ("16x1@0", "density '0' is not in (0, 1]"),
    ("16x1@1.5", "density '1.5' is not in (0, 1]"),
    ("16x1@abc", "density 'abc' is not in (0, 1]"),
    ("16y1@0.5", "unknown pattern '16y1'"),
    ("0x4@0.5", "block rows '0' is not a positive integer"),
    ("1x1@0.5", "1x1 blocks are unstructured sparsity"),
    ("4:2", "N:M needs N < M"),
    ("2:4@0.3", "an N:M pattern fixes its density"),
    ("16x1@0.5,L0", "rule 'L0' is not SELECTOR=DENSITY"),
])
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(BertcError, match=None) as e:
        parse_spec(spec)
    assert message in str(e.value)
    if spec:
        assert "SPEC is PATTERN" in str(e.value) or "drop" in str(e.value)


def test_compile_cli_refuses_bad_specs_before_the_slow_steps(tmp_path, capsys):
    model_dir = tmp_path / "tiny"
    tiny_model("bert").save_pretrained(model_dir)
    assert cli(["compile", str(model_dir), "-o", str(tmp_path / "x.bertc"), "--prune-patterns", "8x1@2", "-q"]) == 2
    assert "density '2' is not in (0, 1]" in capsys.readouterr().err
    assert cli(["compile", str(model_dir), "-o", str(tmp_path / "x.bertc"), "--force", "-q"]) == 2
    assert "--force applies to --prune-patterns" in capsys.readouterr().err
    assert cli(["compile", str(model_dir), "-o", str(tmp_path / "x.bertc"), "--target", "android-arm64",
                "--dtype", "fp16", "--prune-patterns", "8x1@0.5", "-q"]) == 2
    assert "the sparse kernels are fp32 and int8" in capsys.readouterr().err
    assert cli(["compile", str(model_dir), "-o", str(tmp_path / "x.bertc"), "--dtype", "int8", "--prune-patterns",
                "1x4@0.5", "-q"]) == 2  # int8 blocks are r x 1
    assert "runs r x 1 blocks with r = 4, 8 or 16 (16x1, 8x1, 4x1" in capsys.readouterr().err
    assert not (tmp_path / "x.bertc").exists()
