"""The cost model: the config path builds the same IR as the real pipeline, the arithmetic on cases
checked by hand, calibration end to end on a small grid, and clear errors for bad profiles,
configs and targets."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
import torch
import transformers as T
from bertc.passes import PassContext
from conftest import without_int8
from torch_mlir import ir

import bertc
from bertc.calibrate import PASSES, calibrate, format_quality, measurements_path, report
from bertc.cli import main as cli
from bertc.cost import (
    COST_MODEL,
    FEATURES,
    Profile,
    estimate,
    fitted_cost,
    format_table,
    load_profile,
    parallel_calls,
    priced_as,
    quality,
)
from bertc.cpu import parse_cpuinfo, read_cpu
from bertc.errors import BertcError
from bertc.ir import make_context
from bertc.pipeline import CompileOptions, lowering, pipeline_for, run_pass
from bertc.synth import bert_ir
from bertc.targets import get_target

SMALL = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 128,
         "vocab_size": 100, "max_position_embeddings": 64}


def _normalized(text: str) -> list[str]:
    text = re.sub(r'name = "[^"]*"', "name = _", text)  # the position ids constant is named by the exporter
    return [re.sub(r" loc\(.*\)$", "", line) for line in text.splitlines()]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_config_path_builds_the_ir_the_real_pipeline_builds(impl, tmp_path):
    cfg = T.BertConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=80,
                       vocab_size=120, max_position_embeddings=64, hidden_act="gelu", attn_implementation=impl)
    torch.manual_seed(0)
    bertc.compile(T.BertModel(cfg).eval(), seq_len=16, out=tmp_path / "m.bertc", dump_dir=tmp_path / "ir")
    real = (tmp_path / "ir" / "05-plan_memory.mlir").read_text()
    with make_context(), ir.Location.unknown():
        module = ir.Module.parse(bert_ir(cfg, seq_len=16))
        for flag in lowering(pipeline_for(get_target("host"))):
            run_pass(module, flag, PassContext())
        ours = str(module)
    assert _normalized(ours) == _normalized(real)


@pytest.mark.parametrize("target", ["host", "android-arm64", "vulkan"])
def test_the_cost_model_prices_a_slice_of_the_compile_pipeline(target):
    """One pass list: --prune-patterns goes after the fusions, and what the cost model runs on raised IR is
    that list without raise-torch and the emitter."""
    tgt = get_target(target)
    passes = pipeline_for(tgt, CompileOptions(target=target, prune="16x1@0.25", force_sparse=True))
    assert passes[:4] == ["raise-torch", "fuse-attention", "fuse-epilogues", "prune-patterns{force=1}=16x1@0.25"]
    assert passes[-1] == ("emit-vulkan" if tgt.is_gpu else "emit-c")
    assert lowering(passes) == passes[1:-1]
    assert pipeline_for(tgt) == [p for p in passes if not p.startswith("prune-patterns")]


def _profile(**fitted) -> Profile:
    data = json.loads(load_profile("cortex-a76").path.read_text())
    if fitted:
        data["fitted"], data["cost_model"] = {"1": fitted}, COST_MODEL
    return Profile("test", data)


def test_roofline_arithmetic_by_hand():
    est = estimate(SMALL, target="android-arm64", threads=1, seq_len=8, profile=_profile())
    kinds = [o.kind for o in est.ops]
    assert kinds.count("linear") == 5 and kinds.count("attention") == 1 and kinds.count("layer_norm") == 3
    qkv = next(o for o in est.ops if o.kind == "linear")
    assert qkv.op == "bertc.linear [1, 8, 192]"
    # NEON's 8 x 12 tile divides M = 8 and N = 192, so nothing is padded
    assert qkv.features["flops"] == qkv.flops == 2 * 8 * 192 * 64
    roof = _profile().data["roofline"]
    compute = qkv.flops / (roof["peak_gflops_per_core"] * roof["efficiency"]["linear"] * 1e6)
    memory = 4 * (8 * 64 + 192 * 64 + 8 * 192) / (roof["bandwidth_gbs"] * 1e6)
    assert qkv.ms == pytest.approx(roof["dispatch_us"] / 1e3 + max(compute, memory))
    attn = next(o for o in est.ops if o.kind == "attention")
    assert attn.flops == 4 * 8 * 8 * 64 and attn.features["scores"] == 2 * 8 * 8
    assert est.total_ms == pytest.approx(roof["run_overhead_ms"] + sum(o.ms for o in est.ops))
    assert est.arena_bytes > 0 and est.weights_bytes >= 4 * (100 * 64 + 64 * 64 * 4 + 2 * 64 * 128)


def test_x86_attention_is_priced_in_its_query_blocks_and_key_vectors():
    """The x86 attention runs queries in blocks of 8 (a short block recomputes spare rows) over whole vectors of
    keys, so 3 tokens cost what 8 do there; NEON's per-query kernel is priced at the tokens themselves."""
    from bertc.targets import AVX512_TILE, get_target

    def attention(target):
        return next(o for o in estimate(SMALL, target=target, seq_len=3, profile=_profile()).ops
                    if o.kind == "attention").features

    assert attention("android-arm64")["scores"] == 2 * 3 * 3  # SMALL: 2 heads
    host = get_target("host")
    if host.isa != "avx2":
        pytest.skip("the blocked attention is x86's")
    keys = 32 if host.tile == AVX512_TILE else 8
    f = attention("host")
    assert f["scores"] == 2 * 8 * keys and f["head_rows"] == 2 * 8 and f["flops"] == 4 * 8 * keys * 64


def test_gemm_rows_follow_the_kernels_tiles():
    """The FMA rows a GEMM is priced at: the x86 kernel merges a short remainder with the last full tile and
    splits the two (gemm_tile_rows), NEON takes whole tiles and one remainder; no tile counts under 4 rows."""
    from bertc.cost import gemm_rows

    # 7 = 4 + 3 -> 4 + 4; 13 = 6 + 4 + 3 -> 6 + 4 + 4; 27 = 6 + 6 + 6 + 5 + 4; 128 = 20 x 6 + 4 + 4
    assert [gemm_rows(m, 6, "avx2") for m in (1, 4, 6, 7, 8, 12, 13, 27, 128)] == [4, 4, 6, 8, 8, 12, 14, 27, 128]
    assert [gemm_rows(m, 8, "neon") for m in (1, 8, 9, 12, 27)] == [4, 8, 12, 12, 28]  # 27 = 3 x 8 + 3 -> + 4
    assert [gemm_rows(m, 12, "avx2") for m in (3, 13, 27)] == [4, 13, 27]  # the AVX-512 path's 12-row tile


def test_a_profile_chooses_the_fewest_rows_a_dense_tile_costs():
    """Profile.row_floor (calibrate.choose_row_floor): at 2 rows a dense fp32 GEMM of 1-2 tokens costs its FLOPs and
    weight stream at 2 rows, not MIN_TILE_ROWS; 3 tokens at 3; longer ones and sparse GEMMs as before."""
    from bertc.cost import MIN_TILE_ROWS, Profile, config_ops, gemm_rows

    assert [gemm_rows(m, 12, "avx2", 2) for m in (1, 2, 3, 13)] == [2, 2, 3, 13]
    base = load_profile("host-avx512")
    two = Profile("two", {**base.data, "row_floor": {"rows": 2}})
    assert base.row_floor == MIN_TILE_ROWS == 4 and two.row_floor == 2
    for seq, rows in ((1, 2), (3, 3), (8, 8)):
        four, floored = (estimate(SMALL, seq_len=seq, profile=p).ops for p in (base, two))
        linear = [(a, b) for a, b in zip(four, floored) if a.tile is not None and a.tile[0] == seq]  # not the pooler
        assert linear and all(b.features["flops"] == a.features["flops"] * rows / max(rows, 4) for a, b in linear)
        assert all(b.features["weights_h4"] == a.features["weights"] * (1 - rows / 4) or rows >= 4 for a, b in linear)
    blocks = [[o.features for o in config_ops(SMALL, "host", 1, "16x1@0.5", force=True, floor=f)
               if o.kind == "linear_sparse"] for f in (2, 4)]
    assert blocks[0] and blocks[0] == blocks[1]


def test_fitted_arithmetic_and_sparse_forms_by_hand():
    from bertc.cost import sparse_tile

    coef = {k: [0.0] * len(v) for k, v in FEATURES.items()}
    coef["linear"][:2] = [0.5, 1e-6]  # dispatch and FLOPs only
    coef["linear_sparse"][:2] = [0.25, 2e-6]
    prof = _profile(**coef)
    dense = estimate(SMALL, target="android-arm64", seq_len=8, profile=prof)
    up = next(o for o in dense.ops if o.op == "bertc.linear [1, 8, 128]")
    assert up.detail == "gelu" and up.ms == pytest.approx(0.5 + 1e-6 * 2 * 8 * 132 * 64)  # N padded to 11 x 12
    sparse = estimate(SMALL, target="android-arm64", seq_len=8, profile=prof, prune="4x1@0.25")
    # android-arm64 has no measured sparse rates: pruned but dense, so the same price
    assert [o.kind for o in sparse.ops] == [o.kind for o in dense.ops]
    forced = estimate(SMALL, target="host", seq_len=8, profile=prof, prune="16x1@0.25")
    kinds = {o.kind for o in forced.ops}
    if "linear_sparse" in kinds:  # the host's measured rates keep 16x1 at 25% sparse
        sp = next(o for o in forced.ops if o.kind == "linear_sparse" and o.op == "bertc.linear [1, 8, 128]")
        blocks = round(0.25 * (128 // 16) * 64)
        work = 2 * sparse_tile(8, 16, 1, get_target("host"))[0] * blocks * 16  # FMAs at the tile's rows, FLOPs at 8
        assert sp.flops == 2 * 8 * blocks * 16 and sp.ms == pytest.approx(0.25 + 2e-6 * work)
        assert forced.weights_bytes < dense.weights_bytes
    # a dense GEMM's weight hinges fade over the rows its tile runs (NEON's: 4 at least), not over m
    hinge = {k: [0.0] * len(v) for k, v in FEATURES.items()}
    for name in ("weights_h8", "weights_dram_h8"):
        hinge["linear"][FEATURES["linear"].index(name)] = 1e-6
    gemms = {s: sum(o.ms for o in estimate(SMALL, target="android-arm64", seq_len=s, profile=_profile(**hinge)).ops
                    if o.kind == "linear") for s in (1, 2, 4, 6, 8)}
    pooler = gemms[8]  # the pooler's 1-row GEMM, at 4 rows whatever the length: the rest is 0 from 8 rows on
    assert gemms[1] == gemms[2] == gemms[4] > gemms[6] > pooler
    assert gemms[4] - pooler == pytest.approx(2 * (gemms[6] - pooler))


def test_int8_gemms_are_their_own_kind():
    """--dtype int8: the GEMMs are linear_i8 (whole int8 tiles and K groups of 4, a byte a weight), priced at twice
    the fp32 GEMMs' roofline rate by a profile that has no int8 fit, and the weights count a byte each."""
    coef = {k: [0.0] * len(v) for k, v in FEATURES.items() if k != "linear_i8"}
    prof = _profile(**coef)
    fp32 = estimate(SMALL, target="host", seq_len=8, profile=prof)
    int8 = estimate(SMALL, target="host", seq_len=8, profile=prof, dtype="int8")
    up = next(o for o in int8.ops if o.op == "bertc.linear [1, 8, 128]")
    tile = get_target("host").int8_tile
    assert up.kind == "linear_i8" and up.kernel == "bertc_linear_packed_i8" and up.detail == "gelu, int8"
    # x86's int8 tile is instanced per row count (8 rows cost 8 rows' work, AVX2's 4 x 16 and VNNI's 12 x 32 alike)
    rows = 8 if get_target("host").isa == "avx2" else max(8, -(-8 // tile.mr) * tile.mr)
    assert up.features["macs"] == rows * -(-128 // tile.nr) * tile.nr * 64
    assert {o.kind for o in fp32.ops} & {"linear_i8"} == set() and up.ms > 0
    # 3 bytes fewer a GEMM weight: Q|K|V, O, the FFN's up and down, the pooler
    assert fp32.weights_bytes - int8.weights_bytes == 3 * 64 * (3 * 64 + 64 + 128 + 128 + 64)


def test_silu_and_tanh_epilogues_are_priced_as_gelu_is():
    """SiLU (EuroBERT's SwiGLU gate) evaluates an exp per output as GELU does its erf: both count in gelu_outputs."""
    from conftest import tiny_model

    coef = {k: [0.0] * len(v) for k, v in FEATURES.items()}
    coef["linear"][FEATURES["linear"].index("gelu_outputs")] = 1e-3
    est = estimate(tiny_model("eurobert"), target="host", seq_len=8, profile=_profile(**coef))
    gates = [o for o in est.ops if o.kind == "linear" and o.detail.startswith("silu")]
    assert len(gates) == 2 and all(o.ms == pytest.approx(1e-3 * 8 * 64) for o in gates)  # [8 tokens, 64] each
    assert all(o.ms == 0 for o in est.ops if o.kind == "linear" and o.detail.startswith("none"))


def test_a_config_is_priced_without_a_model_weights_or_the_exporter(monkeypatch):
    """What makes the config path fast (what the search screens thousands of candidates with): the IR is
    written from the config; no model is built, no weights made, nothing exported or imported. Asserted on
    the work done, not on the clock, so a busy machine cannot fail it."""
    import bertc.frontend

    def refuse(*args, **kwargs):
        raise AssertionError("the config path must not build, export or import a model")

    for name in ("export_model", "import_torch"):
        monkeypatch.setattr(bertc.frontend, name, refuse)
    monkeypatch.setattr(torch.export, "export", refuse)
    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)  # no BertModel, no weight tensors
    est = estimate(T.BertConfig(), threads=2)
    assert sum(o.kind == "linear" for o in est.ops) == 4 * 12 + 1 and est.total_ms > 0
    assert est.weights_bytes > 4 * 85_000_000  # BERT-base's weights are priced from their shapes alone


def test_model_folder_and_its_config_give_the_same_estimate(tmp_path):
    cfg = T.BertConfig(**SMALL)
    torch.manual_seed(0)
    T.BertModel(cfg).save_pretrained(tmp_path / "m")
    a = estimate(tmp_path / "m", seq_len=16)
    b = estimate(tmp_path / "m" / "config.json", seq_len=16)
    assert [o.op for o in a.ops] == [o.op for o in b.ops]
    assert a.total_ms == pytest.approx(b.total_ms) and a.arena_bytes == b.arena_bytes


def test_quality_metrics():
    q = quality([1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 4.0, 4.0])
    assert q["spearman"] == pytest.approx(0.9486832980505138)
    assert q["mape"] == pytest.approx((0 + 0 + 0.25 + 0.25) / 4) and q["max_ape"] == pytest.approx(0.25)


def _rows(errors: list[tuple[int, bool, int, float]]) -> list[dict]:
    return [{"config": f"c{i}", "threads": t, "sparse": sp, "seq": seq, "measured_ms": 1.0 + i,
             "predicted_ms": (1.0 + i) * (1 + e), "error": e} for i, (t, sp, seq, e) in enumerate(errors)]


def test_the_report_counts_within_10_percent_per_group_and_says_when_the_goal_is_missed():
    good = _rows([(1, False, 4, 0.02), (1, True, 30, -0.05), (1, False, 200, 0.0), (2, True, 8, 0.08),
                  (2, False, 50, -0.03), (2, True, 100, 0.01)])
    q = report(good)
    assert q["within_10pct"] == 1.0 and q["groups"]["1 thread"]["configs"] == 3 and q["groups"]["sparse"]["configs"] == 3
    assert q["groups"]["length 1-16"]["configs"] == 2 and q["groups"]["length 65-512"]["configs"] == 2
    assert q["goal_misses"] == [] and "goal met" in format_quality(q)
    # two configurations off by 30%, and two sparse ones priced in the wrong order: 2 of 6 within 10%
    bad = _rows([(1, False, 4, 0.3), (1, True, 30, -0.3), (1, False, 200, 0.0), (2, True, 8, 0.0),
                 (2, False, 50, 0.0), (2, True, 100, 0.0)])
    bad[3]["predicted_ms"], bad[5]["predicted_ms"] = 9.0, 2.0
    q = report(bad)
    assert q["groups"]["all"]["within_10pct"] == pytest.approx(2 / 6, abs=1e-4)
    assert any("33% of the held-out configurations within 10% (goal 90%)" in m for m in q["goal_misses"])
    assert any(m.startswith("Spearman") and "sparse" in m for m in q["goal_misses"])
    assert "GOAL MISSED" in format_quality(q) and "+30.0%  > 10%" in format_quality(q)
    assert q["repeatability"] is None and "timing noise" not in format_quality(q)  # rows without pass spreads
    assert "hand-off" not in format_quality(q)  # none measured


def test_calibrate_reports_the_thread_hand_off_of_its_grid_and_of_its_check():
    """bertc_run --bench measures a parallel call's cost after its timings (bertc_handoff_us); calibrate keeps it
    with each grid record and held-out row, and prints the medians at each thread count above 1: the machine's
    state when it timed each, which moves a few-token 2-thread model's time between calibrations."""
    from bertc.calibrate import handoffs

    grid = [{"threads": 1, "handoff_us": 0.0}, {"threads": 2, "handoff_us": 0.3}, {"threads": 2, "handoff_us": 0.5},
            {"threads": 2, "handoff_us": 0.4}, {"threads": 2}]  # the last from a runtime before it: none
    check = [{"threads": 2, "handoff_us": 1.2}, {"threads": 1, "handoff_us": 0.0}]
    assert handoffs(grid, check) == {"2": {"grid": 0.4, "check": 1.2}} and handoffs(grid[:1], check[1:]) == {}
    q = {**report(_rows([(2, False, 4, 0.0)])), "handoff_us": handoffs(grid, check)}
    assert ("thread hand-off at 2 threads (bertc_handoff_us, median): 0.40 us a parallel call during the grid, 1.20 us "
            "a parallel call during the held-out runs") in format_quality(q)
    # priced at each run's own hand-off beside the grid's: the 2-thread rows' share within 10% and MAPE both ways
    rows = _rows([(1, False, 4, 0.02), (2, False, 4, -0.2), (2, True, 8, 0.05)])
    rows[1]["error_at_own_handoff"], rows[2]["error_at_own_handoff"] = -0.04, 0.06
    q = report(rows)
    assert q["at_own_handoff"] == {"2": {"configs": 2, "at_grid": {"within_10pct": 0.5, "mape": 0.125},
                                         "at_own": {"within_10pct": 1.0, "mape": 0.05}}}
    assert ("priced at each run's own hand-off (`bertc estimate --handoff-us`), the 2 2-thread configurations: 100% "
            "within 10%, MAPE 5.0% (at the grid's: 50%, 12.5%)") in format_quality(q)
    assert "at_own_handoff" not in report(_rows([(2, False, 4, 0.0)]))


class SettleBar:
    """settle's progress bar: its total and count of runs."""
    total, n = 0, 0

    def refresh(self):
        pass

    def update(self, k):
        self.n += k


def test_points_whose_passes_disagree_are_timed_once_more_and_the_fastest_counts():
    """calibrate.settle: after the passes, each point whose passes' p50s lie more than 10% apart is timed again, after
    all the others, and fastest() then takes the best of its three; points that agree are left alone."""
    from bertc.calibrate import fastest, settle

    reports = [[{"p50_ms": a}, {"p50_ms": b}] for a, b in [(1.0, 1.05), (2.0, 3.0), (5.0, 4.0), (1.0, 1.08)]]
    third = {1: 2.1, 2: 3.5}
    timed = []

    def time_one(i, reps):
        timed.append(i)
        assert len(reps[i]) == PASSES  # its passes so far
        return {"p50_ms": third[i]}

    bar = SettleBar()
    assert settle(reports, time_one, bar) == 2 and timed == [1, 2] and bar.total == 2 and bar.n == 2
    assert [len(r) for r in reports] == [2, 3, 3, 2]  # 8% apart agrees
    assert [fastest(r)[0]["p50_ms"] for r in reports] == [1.0, 2.0, 3.5, 1.0]
    assert fastest(reports[2])[1] == pytest.approx(5.0 / 3.5 - 1)


def test_points_timed_only_with_the_vcpus_apart_are_timed_once_more_grid_and_held_out_alike():
    """calibrate.settle: a point whose passes all measured a hand-off over SLOW_HANDOFF x the near group's median at
    its thread count (a shared VM's vCPUs placed apart) is timed again, in the grid too (disagree=False), where passes
    that merely disagree are not; the report counts those still timed only apart."""
    from bertc.calibrate import SLOW_HANDOFF, SLOW_TRIES, fastest, otherwise_counts, settle

    def point(t, *passes):  # (quiet_ms, handoff_us) per pass
        return [{"threads": t, "quiet_ms": ms, "p50_ms": ms, "handoff_us": h} for ms, h in passes]

    def passes():
        return [point(2, (1.0, 0.25), (1.02, 0.26)), point(2, (1.5, 0.9), (1.48, 0.95)),  # both passes placed apart
                point(2, (1.0, 0.24), (1.4, 0.9)),  # its pass apart is not its fastest (and disagrees)
                point(2, (1.0, 0.25), (2.0, 0.25)),  # disagrees, at the usual hand-off
                point(1, (3.0, 0.0), (3.01, 0.0)), point(2, (2.0, 0.27), (2.01, 0.3))]
    reports, timed = passes(), []

    def time_one(i, reps):
        timed.append(i)
        return {"threads": 2, "quiet_ms": 1.02, "p50_ms": 1.02, "handoff_us": 0.26}

    assert settle(reports, time_one, SettleBar(), disagree=False) == 1 and timed == [1]
    assert fastest(reports[1])[0]["handoff_us"] == 0.26 and [len(r) for r in reports] == [2, 3, 2, 2, 2, 2]
    timed.clear()
    assert settle(passes(), time_one, SettleBar()) == 3 and timed == [1, 2, 3]  # the held-out set's: disagreeing ones too
    timed.clear()
    bar = SettleBar()
    assert settle(passes(), time_one, bar, budget_s=0.0) == 0 and timed == [] and bar.total == 0  # out of time
    timed.clear()  # the grid's points off its first fit (off_fit) after those apart, once, each point once
    assert settle(passes(), time_one, SettleBar(), disagree=False, also=[4, 1, 0]) == 3 and timed == [1, 4, 0]
    rows = [fastest(r)[0] for r in reports]
    assert otherwise_counts(rows) == {"otherwise": 0, "of": 5} and otherwise_counts(rows[4:5]) is None
    rows[5] = {**rows[5], "handoff_us": 0.27 * SLOW_HANDOFF * 1.1}
    q = {**report(_rows([(2, False, 4, 0.0)])), "placed_otherwise": otherwise_counts(rows)}
    assert q["placed_otherwise"] == {"otherwise": 1, "of": 5}
    assert (f"vCPUs placed otherwise: 1 of the 5 held-out configurations at more than one thread were timed only with a "
            f"parallel call's hand-off over {SLOW_HANDOFF:g}x the near ones' median") in format_quality(q)
    # a point still timed only apart is timed again, SLOW_TRIES timings in all; one that comes back near is not
    slow = {1: 5, 2: 1}  # point 1 slow in every timing, point 2 in its first
    reports, timed = passes(), []

    def stays_slow(i, reps):
        timed.append(i)
        slow[i] = slow.get(i, 0) - 1
        ms, us = (1.3, 0.9) if slow[i] >= 0 else (1.0, 0.26)
        return {"threads": 2, "quiet_ms": ms, "p50_ms": ms, "handoff_us": us}

    reports[2] = point(2, (1.5, 0.9), (1.48, 0.95))
    bar = SettleBar()
    assert settle(reports, stays_slow, bar, disagree=False) == SLOW_TRIES + 2 and bar.total == bar.n == SLOW_TRIES + 2
    assert timed == [1, 2, 1, 2] + [1] * (SLOW_TRIES - 2) and fastest(reports[2])[0]["handoff_us"] == 0.26


def test_a_point_counts_its_fastest_timing_with_the_vcpus_near_in_an_hour_mostly_apart_too():
    """calibrate.placement_lines and fastest: apart, a model whose weights spill the cache runs faster (1.45-1.55x at
    77-164 MiB on the Zen 4 EPYC), yet a point counts its fastest timing near, so that the fit prices one machine.
    The line is SLOW_HANDOFF x the median of the group below the widest gap of the hand-offs, so an hour when most
    timings ran apart still tells them from the near ones; with one group, or a lone low outlier, of all of them."""
    from bertc.calibrate import SLOW_HANDOFF, fastest, grid_records, placement_lines, settle

    def timing(ms, us, t=2):
        return {"threads": t, "quiet_ms": ms, "p50_ms": ms, "mean_ms": ms, "ops_ms": ms, "ops": [], "handoff_us": us}

    mostly_apart = [[timing(1.0, 0.9), timing(1.5, 0.21)], [timing(0.5, 0.2), timing(0.8, 0.95)],
                    [timing(3.0, 0.92), timing(3.1, 0.88)], [timing(2.0, 0.0, 1), timing(2.1, 0.0, 1)]] + [
                   [timing(1.0, 0.93), timing(1.0, 0.97)] for _ in range(3)]
    flat = [r for reps in mostly_apart for r in reps]
    assert placement_lines(flat) == {2: pytest.approx((0.205 / SLOW_HANDOFF, 0.205 * SLOW_HANDOFF))}  # all: 0.92
    lines = placement_lines(flat)
    assert [fastest(reps, lines)[0]["quiet_ms"] for reps in mostly_apart[:3]] == [1.5, 0.5, 3.0]
    assert fastest(mostly_apart[0], lines)[1] == pytest.approx(0.0)  # its spread: slowest over the one that counts
    assert [fastest(reps)[0]["quiet_ms"] for reps in mostly_apart[:3]] == [1.0, 0.5, 3.0]  # without lines, any
    model = type("M", (), {"config": {}, "prune": None, "dtype": "fp32"})()
    records = grid_records([model], [(0, 2, 1), (0, 2, 2)], mostly_apart[:2])
    assert [(r["quiet_ms"], r["handoff_us"]) for r in records] == [(1.5, 0.21), (0.5, 0.2)]
    timed = []
    assert settle(mostly_apart, lambda i, reps: timed.append(i) or timing(3.4, 0.22), SettleBar(), False) == 4
    assert timed == [2, 4, 5, 6] and fastest(mostly_apart[2], lines)[0]["quiet_ms"] == 3.4
    one_group = [timing(1.0, us) for us in (0.2, 0.24, 0.3, 0.33, 0.35, 0.26, 0.05, 0.28, 0.31, 0.22, 0.29)]
    assert placement_lines(one_group) == {2: pytest.approx((0.28 / SLOW_HANDOFF, 0.28 * SLOW_HANDOFF))}  # 0.05 no group
    # ... but a timing on one core: a hand-off under the near median / SLOW_HANDOFF, run 1.47x as long (0.105 us)
    lines = placement_lines(one_group)
    assert fastest([timing(0.9, 0.05), timing(1.0, 0.24)], lines)[0]["quiet_ms"] == 1.0


def test_a_timing_counts_its_quietest_stretch_and_the_report_gives_the_calls_p50_beside_it():
    """calibrate.point_ms: a bertc_run report (or grid record) counts as its quiet_ms, the median of its quietest
    stretch of runs, where it has one (its p50 in measurements from before it); fastest() and the spread compare
    passes by it. The report adds the share within 10% against the calls' p50 over all their runs."""
    from bertc.calibrate import fastest, point_ms

    noisy, calm = {"p50_ms": 1.0, "quiet_ms": 0.9}, {"p50_ms": 0.95, "quiet_ms": 0.92}
    assert point_ms(noisy) == 0.9 and point_ms({"p50_ms": 0.95}) == 0.95
    best, spread = fastest([calm, noisy])
    assert best is noisy and spread == pytest.approx(0.92 / 0.9 - 1)
    rows = _rows([(1, False, 4, 0.02), (2, False, 4, 0.05)])
    rows[0]["error_at_p50"], rows[1]["error_at_p50"] = -0.2, 0.04
    q = report(rows)
    assert q["at_p50"] == {"within_10pct": 0.5, "mape": 0.12} and "at_p50" not in report(_rows([(1, False, 4, 0.0)]))
    assert ("against its calls' p50 over all their runs (`bertc bench`'s p50_ms) instead: 50% within 10%, MAPE "
            "12.0%") in format_quality(q)


def test_the_grid_and_the_check_are_timed_in_the_same_passes_spread_among_each_other():
    """calibrate.interleaved: the held-out configurations lie evenly among the grid's points in every pass (each
    pass the reverse of the one before), so a machine that changes speed for minutes moves both alike; each set's
    time_one sees its own points' earlier reports."""
    from bertc.calibrate import interleaved

    class Bar:
        def update(self, k):
            pass

    order = []

    def timer(name):
        def time_one(k, reports):
            assert len(reports[k]) == len(order) // 11  # its earlier passes
            order.append(f"{name}{k}")
            return {"p50_ms": 1.0}
        return time_one

    grid, held = interleaved([(8, timer("g")), (3, timer("h"))], Bar())
    first = ["g0", "h0", "g1", "g2", "g3", "h1", "g4", "g5", "g6", "h2", "g7"]
    assert order == first + first[::-1] and PASSES == 2
    assert [len(r) for r in grid + held] == [PASSES] * 11


def test_the_report_says_how_well_the_machine_repeats_its_own_timings():
    rows = _rows([(1, False, 4, 0.3), (1, True, 30, 0.0), (2, False, 50, 0.0), (2, True, 100, 0.0)])
    for r, spread in zip(rows, [0.02, 0.05, 0.25, 0.4]):
        r["spread"] = spread
    q = report(rows)
    assert q["repeatability"] == {"within_10pct": 0.5, "median_spread": 0.15, "configs": 4}
    text = format_quality(q)
    assert "passes of 50% of the held-out configurations agreed within 10% (median spread 15.0%)" in text
    assert "too noisy now to show the goal" in text and "third time" not in text
    rows[2]["passes"] = rows[3]["passes"] = PASSES + 1  # settle timed the two that disagreed again
    assert report(rows)["repeatability"]["timed_again"] == 2
    assert ("2 timed again (those that did not, and any timed only with the vCPUs placed otherwise), the fastest near "
            "counting"
            in format_quality(report(rows)))
    for r in rows:
        r["spread"] = 0.01
    assert "too noisy" not in format_quality(report(rows))
    # passes that agree, and a machine that slowed at 2 threads over the calibration
    text = format_quality(report(rows, {"model": "L4 H384 A8 F1536", "lengths": [8, 128],
                                        "threads": {"1": 0.02, "2": 0.35}}))
    assert "ran +2% at 1 thread, +35% at 2 threads against its grid timing" in text
    assert "changed speed at 2 threads during the calibration (+35%)" in text
    assert "changed speed at 1 thread" not in text


def test_a_deliberately_wrong_profile_is_reported_as_wrong(tmp_path):
    """bertc calibrate --check PROFILE times the held-out set and reports PROFILE's predictions of it: a profile
    that prices everything 100 times what the built-in one does misses the goal on any machine that is not
    100 times slower than the built-in profile's (no assertion on how good a real fit is)."""
    from bertc.calibrate import check_profile

    data = load_profile("host").data
    data["run_scale"] = {t: 100.0 * v for t, v in data["run_scale"].items()}
    data["run_overhead_ms"] = {t: 100.0 * v for t, v in data["run_overhead_ms"].items()}
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(data))
    q = check_profile(wrong, threads=[1], holdout_n=3, runs=2, progress=False, int8=False,
                      holdout_limits={"max_layers": 2, "max_hidden": 128, "max_seq": 32})
    assert q["configs"] == 3 and all(r["error"] > 1 for r in q["measured"])
    assert q["within_10pct"] == 0 and q["goal_misses"] and "GOAL MISSED" in format_quality(q)


def test_check_times_the_held_out_set_the_profile_was_calibrated_with(tmp_path, monkeypatch):
    """bertc calibrate --check PROFILE without --int8 times the set PROFILE's calibration did: int8 configurations
    where it fitted the int8 GEMMs (an --int8 calibration checked without them timed another set); --int8 forces them."""
    import bertc.calibrate as C

    asked = []

    def holdout(*args, int8=False, **kw):
        asked.append(int8)
        raise KeyboardInterrupt  # the set is all this test needs

    monkeypatch.setattr(C, "holdout", holdout)
    data = load_profile("host-avx512-zen4").data
    assert any("linear_i8" in kinds for kinds in data["fitted"].values())
    fp32 = {**data, "fitted": {t: {k: v for k, v in kinds.items() if "_i8" not in k} for t, kinds in data["fitted"].items()}}
    for name, d in (("int8", data), ("fp32", fp32)):
        (tmp_path / f"{name}.json").write_text(json.dumps(d))
    for spec, int8 in ((tmp_path / "int8.json", None), (tmp_path / "fp32.json", None), (tmp_path / "fp32.json", True)):
        with pytest.raises(KeyboardInterrupt):
            C.check_profile(spec, progress=False, int8=int8)
    assert asked == [True, False, True]


def test_calibrate_compiles_on_a_process_a_core_what_it_would_compile_alone(tmp_path, monkeypatch):
    """compile_all: the grid's and held-out set's artifacts, compiled by worker processes, hold the same weights and
    code as compiled one at a time (a calibration's 56 compiles took 140 s of 592 on a 2-core EPYC, one by one)."""
    import bertc.calibrate as C

    class Bar:
        def set_postfix_str(self, s): pass

    jobs = lambda d: C.grid_jobs(C.grid("small")[:2], "host", tmp_path / d) + C.check_jobs(C.holdout(2, [1], 3, 1, 96, 16), "host", tmp_path / d)
    monkeypatch.setattr(C.os, "cpu_count", lambda: 2)
    files = []
    for d, least in (("workers", 2), ("alone", 99)):
        monkeypatch.setattr(C, "COMPILE_POOL_MIN", least)
        paths = C.compile_all(jobs(d), Bar())
        files.append({f"{p.name}/{n}": (p / n).read_bytes() for p in paths for n in ("weights.bin", "src/model.c")})
    assert len(files[0]) == 8 and files[0] == files[1]
    bad = jobs("bad")
    bad[1] = (bad[1][0][:1] + ("16x1@1.5",) + bad[1][0][2:], bad[1][1])  # a density past 1, in a worker
    monkeypatch.setattr(C, "COMPILE_POOL_MIN", 2)
    with pytest.raises(BertcError, match="failed in a worker process: .*16x1@1.5"):
        C.compile_all(bad[:2], Bar())


def test_calibration_end_to_end_on_a_small_grid(tmp_path):
    out = tmp_path / "p.json"
    profile, q = calibrate("host", None, [1], "small", holdout_n=3, out=out, runs=3, progress=False,
                           holdout_limits={"max_layers": 2, "max_hidden": 128, "max_seq": 48}, int8=True)
    saved = load_profile(out)
    assert saved.data["fitted"] == profile.data["fitted"]  # what was written is what was fitted
    assert set(saved.data["fitted"]["1"]) >= {"linear", "linear_i8", "linear_sparse", "linear_sparse_i8", "attention",
                                              "layer_norm", "embedding"}
    assert q["groups"]["int8"]["configs"] == 1 and [r["int8"] for r in q["measured"]] == [False, False, True]
    assert all(c >= 0 for coef in saved.data["fitted"]["1"].values() for c in coef)
    # the tile's row floor, chosen by the left-out models' errors over the runs it prices differently
    assert saved.data["row_floor"]["rows"] in (2, 4) and saved.row_floor == saved.data["row_floor"]["rows"]
    assert [c["rows"] for c in saved.data["row_floor"]["leave_one_model_out"]] == [4, 2]
    assert q["row_floor"] == saved.data["row_floor"] and "GEMM tiles: a dense fp32 GEMM's tile costs" in format_quality(q)
    # the profile records this CPU, and its caches are this CPU's, not the built-in profile's
    here = read_cpu()
    assert saved.data["cpu"]["features"] == here["features"] and saved.data["caches"] == here["caches"]
    assert q["configs"] == 3 and 0 <= q["within_10pct"] <= 1 and math.isfinite(q["mape"])
    assert len(q["measured"]) == 3 and all(r["measured_ms"] > 0 and 1 <= r["seq"] <= 48 for r in q["measured"])
    assert set(q["groups"]) >= {"all", "1 thread"} and isinstance(q["goal_misses"], list)
    est = estimate(SMALL, seq_len=32, profile=out)
    assert est.profile == "p" and not est.notes and est.total_ms > 0  # named after its file; fitted here: no warning
    assert not estimate(SMALL, seq_len=32, profile=out, dtype="int8").notes  # int8 GEMMs fitted too
    # a profile without int8 fits (one calibrated without --int8) says so
    assert "no fitted costs for linear_i8" in " ".join(estimate(SMALL, seq_len=32, dtype="int8",
                                                                profile=without_int8()).notes)
    # the measurements are kept: --refit fits the same coefficients from them without timing the grid
    kept = json.loads(measurements_path(out).read_text())
    assert kept["cpu"] == saved.data["cpu"] and all(r["p50_ms"] > 0 and r["ops"] for r in kept["records"])
    # each grid point was timed in PASSES passes, and its fastest is what was fitted; the report says how they agreed
    assert all(len(r["passes_quiet_ms"]) == PASSES and r["quiet_ms"] == min(r["passes_quiet_ms"]) and
               r["p50_ms"] in r["passes_p50_ms"] for r in kept["records"])
    assert all("p50_ms" in r and "error_at_p50" in r for r in q["measured"])  # beside measured_ms, its calls' p50
    assert q["grid_repeatability"]["configs"] == len(kept["records"]) and "of the grid's" in format_quality(q)
    # the first grid model was timed again after the check: how far the machine moved since the grid (any amount)
    assert q["drift"]["model"] == "L1 H64 A2 F128" and q["drift"]["lengths"] == [32] and math.isfinite(q["drift"]["threads"]["1"])
    assert "machine drift: the grid's L1 H64 A2 F128 timed again after the passes (at 32 tokens) ran" in format_quality(q)
    again, _ = calibrate("host", None, [1], holdout_n=1, out=tmp_path / "again.json", progress=False,
                         refit=measurements_path(out), holdout_limits={"max_layers": 1, "max_hidden": 128, "max_seq": 8})
    assert again.data["fitted"] == saved.data["fitted"]
    # --no-retime times nothing: the held-out timings p.json kept are predicted again, and the report says so
    untimed, uq = calibrate("host", None, [1], out=out, progress=False, refit=measurements_path(out), retime=False)
    assert untimed.data["fitted"] == saved.data["fitted"] and uq["measured"] == q["measured"]
    assert uq["holdout_limits"] == q["holdout_limits"] == {"max_layers": 2, "max_hidden": 128, "max_seq": 48}
    assert uq["drift"] == q["drift"] and "--no-retime" in uq["not_checked"] and "not checked" in format_quality(uq)
    with pytest.raises(BertcError, match="--no-retime goes with --refit"):
        calibrate("host", None, [1], out=out, progress=False, retime=False)
    with pytest.raises(BertcError, match="--refit .*not the measurements file"):
        calibrate("host", None, [1], refit=out, progress=False)


def test_a_profile_from_another_cpu_is_named_in_the_estimate(tmp_path):
    """bertc/cpu.py reads the CPU's model, kernel features and caches; a profile recorded on another CPU (or on
    none) makes `bertc estimate` say so and how to calibrate this one."""
    text = "processor : 0\nmodel name : AMD EPYC\nflags : fpu sse avx2 fma avx512f\nprocessor : 1\n"
    assert parse_cpuinfo(text) == {"model": "AMD EPYC", "features": ["avx2", "avx512f", "fma"], "cores": 2}
    # AMD's family 25 with AVX-512 (Zen 4) runs it as two 256-bit halves: bertc's own feature avx512_split
    zen = "vendor_id : AuthenticAMD\ncpu family : {}\nflags : fpu avx2 fma {}\n"
    assert [parse_cpuinfo(zen.format(f, x))["features"] for f, x in ((25, "avx512f"), (26, "avx512f"), (25, ""))] == [
        ["avx2", "avx512_split", "avx512f", "fma"], ["avx2", "avx512f", "fma"], ["avx2", "fma"]]
    arm = "processor : 0\nFeatures : fp asimd asimddp\nCPU implementer : 0x41\nCPU part : 0xd0b\n"
    assert parse_cpuinfo(arm) == {"model": "0x41:0xd0b", "features": ["asimd", "asimddp"], "cores": 1}
    files = {"/proc/cpuinfo": text, **{f"/sys/devices/system/cpu/cpu1/cache/index{i}/{k}": v for i, row in enumerate(
        [("1", "Data", "48K"), ("1", "Instruction", "32K"), ("2", "Unified", "1024K"), ("3", "Unified", "32768K")])
        for k, v in zip(("level", "type", "size"), row)}}
    other = read_cpu(files.get)
    assert other["caches"] == {"l1d_bytes": 48 << 10, "l2_bytes": 1 << 20, "l3_bytes": 32 << 20}
    data = load_profile("host").data
    data["cpu"] = {**other, "features": ["avx2", "avx512f", "fma", "sve"]}
    (tmp_path / "p.json").write_text(json.dumps(data))
    note = " ".join(estimate(SMALL, seq_len=8, profile=tmp_path / "p.json").notes)
    assert "was not fitted on this CPU" in note and "bertc calibrate --target host" in note and "sve only there" in note
    data["cpu"] = read_cpu()
    (tmp_path / "p.json").write_text(json.dumps(data))
    assert not estimate(SMALL, seq_len=8, profile=tmp_path / "p.json").notes
    data.pop("cpu")
    (tmp_path / "p.json").write_text(json.dumps(data))
    assert "records no CPU" in " ".join(estimate(SMALL, seq_len=8, profile=tmp_path / "p.json").notes)


def test_the_host_profile_is_the_built_in_one_fitted_on_the_most_similar_cpu(tmp_path, monkeypatch):
    """`host` names the host-* profile whose CPU shares the most kernel features with this one, then the
    nearest caches; every built-in host-* profile records its CPU and is a profile of its own name."""
    from bertc import cost

    for name in [n for n in cost.builtin_profiles() if n.startswith("host-")]:
        assert load_profile(name).name == name and load_profile(name).data["cpu"]["features"]
    assert load_profile("host").name in cost.builtin_profiles()
    base = load_profile("host").data
    cpus = {"host-a": {"features": ["avx2", "fma"], "caches": {"l2_bytes": 512 << 10, "l3_bytes": 8 << 20}},
            "host-b": {"features": ["avx2", "avx512f", "fma"], "caches": {"l2_bytes": 1 << 20, "l3_bytes": 32 << 20}},
            "host-c": {"features": ["avx2", "avx512f", "fma"], "caches": {"l2_bytes": 2 << 20, "l3_bytes": 96 << 20}}}
    for name, cpu in cpus.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({**base, "name": name, "cpu": cpu}))
    (tmp_path / "host-a.measurements.json").write_text("{}")  # not a profile
    monkeypatch.setattr(cost, "PROFILES_DIR", tmp_path)
    assert cost.closest_builtin("host", {"features": ["avx2", "fma"], "caches": {"l2_bytes": 1 << 20}}) == "host-a"
    avx512 = {"features": ["avx2", "avx512f", "fma"], "caches": {"l2_bytes": 1 << 20, "l3_bytes": 32 << 20}}
    assert cost.closest_builtin("host", avx512) == "host-b"
    assert cost.closest_builtin("host", {**avx512, "caches": {"l2_bytes": 2 << 20, "l3_bytes": 64 << 20}}) == "host-c"
    assert cost.closest_builtin("host", None) == "host-a"
    monkeypatch.setattr(cost, "_HOST_CPU", avx512)
    assert load_profile(None, "host").name == load_profile("host").name == "host-b"
    assert cost.builtin_profiles() == ["host", "host-a", "host-b", "host-c"]


def test_the_runtime_is_compiled_once_per_cpu_through_ccache(monkeypatch):
    from bertc.toolchain import Toolchain, _ccache

    cc = Toolchain("cc", ["/usr/bin/cc"], None, [], "cc")
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    wrapper = _ccache(cc)
    assert wrapper[0] == "env" and wrapper[-1] == "/usr/bin/ccache" and "/bertc/ccache/" in wrapper[1]
    assert _ccache(Toolchain("zig", ["python", "-m", "ziglang", "cc"], ["ar"], [], "zig")) == []  # zig caches itself
    monkeypatch.setenv("BERTC_CCACHE", "0")
    assert _ccache(cc) == []


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("roofline"), "no 'roofline'"),
    (lambda d: d["roofline"].update(bandwidth_gbs=0), "roofline.bandwidth_gbs must be a positive number"),
    (lambda d: d.update(fitted={"1": {"linear": [1.0]}}), f"fitted[1][linear] needs {len(FEATURES['linear'])} coefficients"),
    (lambda d: d.pop("cost_model"), f"fitted for cost model version 1, this bertc's is {COST_MODEL}"),
    (lambda d: d.update(fitted={"1": {"conv": [1.0]}}), "fitted kind 'conv' is not one of"),
    (lambda d: d.update(fitted={"one": {}}), "fitted thread count 'one' is not an integer"),
    (lambda d: d.update(weight_cache={"bytes": "8M"}), "weight_cache needs a positive integer 'bytes'"),
])
def test_bad_profiles_say_what_is_wrong(edit, message, tmp_path):
    data = json.loads(load_profile("host").path.read_text())
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BertcError) as e:
        load_profile(path)
    assert message in str(e.value) and "bertc calibrate" in str(e.value)


def test_a_profile_fitted_for_another_cost_model_is_still_the_base_of_its_refit(tmp_path):
    """After the features change (COST_MODEL), the built-in profiles' fits are stale until re-fitted; `bertc
    calibrate` replaces the fit, so it takes such a profile as its base (its target, roofline and sources)."""
    data = json.loads(load_profile("host").path.read_text())
    data["cost_model"] = COST_MODEL - 1
    (tmp_path / "old.json").write_text(json.dumps(data))
    with pytest.raises(BertcError, match="--refit old.measurements.json"):
        load_profile(tmp_path / "old.json")
    base = load_profile(tmp_path / "old.json", as_base=True)
    assert "fitted" not in base.data and base.data["roofline"] == data["roofline"]


def test_bad_inputs_say_what_is_wrong(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(BertcError, match="not JSON"):
        load_profile(tmp_path / "x.json")
    with pytest.raises(BertcError, match="unknown profile 'nokia'"):
        load_profile("nokia")
    with pytest.raises(BertcError, match="unknown target 'riscv'"):
        estimate(SMALL, target="riscv")
    with pytest.raises(BertcError, match="hidden_size 64 is not divisible by num_attention_heads 3"):
        estimate({**SMALL, "num_attention_heads": 3})
    with pytest.raises(BertcError, match="intermediate_sizes must hold 1 positive integers"):
        estimate({**SMALL, "intermediate_sizes": [64, 64]})
    with pytest.raises(BertcError, match="model_type 'gpt2'"):
        estimate({**SMALL, "model_type": "gpt2"})
    (tmp_path / "cfg.json").write_text(json.dumps(SMALL))
    assert cli(["estimate", str(tmp_path / "cfg.json"), "--json", "--seq-len", "16"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["total_ms"] > 0 and len(est["ops"]) > 10 and est["memory"]["peak_bytes"] > 0
    assert cli(["estimate", str(tmp_path / "cfg.json"), "--profile", "nokia"]) == 2
    assert "unknown profile 'nokia'" in capsys.readouterr().err


def test_a_distribution_of_lengths_is_priced_at_each_length(tmp_path, capsys):
    """bertc estimate --lengths / --lengths-from: each distinct length priced as --seq-len prices it, and the
    per-input mean, p50 and p90 weighted by how many inputs have each length (issue 17)."""
    from bertc.search.teacher import packaged_minilm

    config = {**SMALL, "max_position_embeddings": 512}
    (tmp_path / "config.json").write_text(json.dumps(config))
    tok = T.AutoTokenizer.from_pretrained(str(packaged_minilm()))
    tok.save_pretrained(str(tmp_path))  # beside the config: --lengths-from finds it there
    lines = ["a", "a gripping, funny film", "a gripping, funny film", "dull, and far too long for what it says"]
    (tmp_path / "s.txt").write_text("\n".join(lines) + "\n\n")
    cfg = str(tmp_path / "config.json")
    assert cli(["estimate", cfg, "--lengths-from", str(tmp_path / "s.txt"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    want = [len(ids) for ids in tok(lines)["input_ids"]]
    assert report["inputs"] == 4 and [r["length"] for r in report["lengths"]] == sorted(set(want))
    ms = {n: estimate(config, seq_len=n).total_ms for n in set(want)}
    for row in report["lengths"]:
        assert row["inputs"] == want.count(row["length"]) and row["total_ms"] == pytest.approx(ms[row["length"]],
                                                                                               abs=1e-4)
    assert report["mean_ms"] == pytest.approx(sum(ms[n] for n in want) / 4, abs=1e-4)
    assert report["p50_ms"] == pytest.approx(ms[want[1]], abs=1e-4)  # two of the four are that sentence
    assert cli(["estimate", cfg, "--lengths", "1,8"]) == 0
    table = capsys.readouterr().out
    assert "2 input(s) at 2 distinct length(s), from --lengths" in table and "each at its own length" in table
    rows = [line.split() for line in table.splitlines() if line.split() and line.split()[0] in ("1", "8")]
    assert [float(r[2]) for r in rows] == [pytest.approx(estimate(config, seq_len=n).total_ms, abs=1e-3) for n in (1, 8)]
    # a task's dev split, tokenized: every sentence counted once
    assert cli(["estimate", cfg, "--lengths-from", "task:rt-sentiment", "--json"]) == 0
    task = json.loads(capsys.readouterr().out)
    assert task["inputs"] == 1275 and sum(r["inputs"] for r in task["lengths"]) == 1275
    lo, hi = task["lengths"][0]["total_ms"], task["lengths"][-1]["total_ms"]
    assert lo <= task["p50_ms"] <= task["p90_ms"] <= hi and lo <= task["mean_ms"] <= hi


@pytest.mark.parametrize(("argv", "message"), [
    (["--lengths", "8,27", "--seq-len", "16"], "--seq-len and --lengths: give one"),
    (["--lengths", "0,3"], "--lengths 0,3: every length must be at least 1 token"),
    (["--lengths", "8,x"], "--lengths 8,x: expected whole numbers separated by commas"),
    (["--tokenizer", "t"], "--tokenizer tokenizes the sentences of --lengths-from"),
    (["--lengths-from", "nothere.txt"], "has no tokenizer beside it: pass --tokenizer FOLDER"),
    (["--lengths-from", "nothere.txt", "--tokenizer", "."], "--lengths-from nothere.txt: no such file"),
    (["--lengths-from", "task:imdb", "--tokenizer", "."], "unknown task 'imdb'"),
])
def test_bad_length_options_say_what_is_wrong(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(SMALL))
    assert cli(["estimate", "config.json", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_sparse_gemm_is_priced_at_the_rows_its_tile_computes():
    """runtime/kernels/sparse_gemm.h computes whole row tiles whatever the rows: on AVX2 1x4 blocks by rows of 32, a
    last tile by a quarter, half or three quarters of its registers (9 tokens cost what 16 do, 17 what 24 do), 4x1
    of 16 and 8, 16x1 by columns of 5 (a last tile of 4); at 1-8 tokens a few-rows tile computes just those
    (4x1 at 1-3 on AVX2, 1x1 at 1-2 only), in FMAs narrower than a register, priced apart. On AVX-512 16x1 goes by columns of 16. The grid times 1-8 and multiples of 32 tokens,
    where rows and tiles agree, so only the held-out lengths between them showed it (-63% at 9 tokens). Each block
    height's features are its own (cost model 4: 1x4 blocks are family r1, 4x1 r4), with the row tiles it runs."""
    from bertc.cost import config_ops, sparse_tile
    from bertc.targets import host_cpu_as

    with host_cpu_as(["avx2", "fma"]):
        t = get_target("host")
        assert [sparse_tile(m, 1, 4, t)[0] for m in (1, 8, 9, 16, 17, 32, 33, 48, 49)] == [1, 8, 16, 16, 24, 32, 40,
                                                                                             48, 56]
        assert [sparse_tile(m, 4, 1, t)[0] for m in (3, 4, 8, 9, 17)] == [3, 8, 8, 16, 24]  # few-rows tile to 3
        assert [sparse_tile(m, 16, 1, t)[0] for m in (1, 5, 6)] == [4, 5, 9]  # by columns: a last tile of 4 rows
        assert (sparse_tile(2, 1, 1, t)[0], sparse_tile(3, 1, 1, t)[0]) == (2, 8)
        nine, full = ([o for o in config_ops(SMALL, "host", n, prune="1x4@0.25") if o.kind == "linear_sparse"]
                      for n in (9, 32))
        assert nine and all(2 * a.features["r1:flops"] == b.features["r1:flops"] and a.flops < b.flops
                            for a, b in zip(nine, full))
        assert [sparse_tile(m, 1, 4, t)[2] for m in (1, 8, 9, 32, 33)] == [1, 1, 1, 1, 2]
        two = [o for o in config_ops(SMALL, "host", 33, prune="1x4@0.25") if o.kind == "linear_sparse"]
        assert all(o.features["r1:row_tiles"] == 2 * int(o.op.split()[-1].rstrip("]")) for o in two)  # N block rows, 2 tiles
        # each row tile sweeps every block: two tiles read each block's index twice (cost model 8)
        assert two and all(b.features["r1:blocks"] == 2 * a.features["r1:blocks"] for a, b in zip(nine, two))
        # at 1-3 tokens 4x1 blocks run the few-rows tile: one 4-lane FMA a block and row, its own feature; from 4
        # the by-rows tile, whose FLOPs and loads of x are its 16 rows'
        three, nine = ([o for o in config_ops(SMALL, "host", n, prune="4x1@0.25") if o.kind == "linear_sparse"]
                       for n in (3, 9))
        assert three and all(o.features["r4:few_fmas"] == 3 * o.features["r4:blocks"] == o.features["r4:blocks_x_m"]
                             and "r4:flops" not in o.features for o in three)
        # the few-rows tile's block rows are their own feature (cost model 7), the by-rows tiles' row_tiles
        assert all(o.features["r4:few_rows"] == int(o.op.split()[-1].rstrip("]")) // 4 and "r4:row_tiles" not in
                   o.features for o in three)
        assert all("r4:few_rows" not in o.features and o.features["r4:row_tiles"] > 0 for o in nine)
        assert all(o.features["r4:flops"] == 2 * 4 * o.features["r4:blocks_x_m"] == 2 * 16 * 4 * o.features["r4:blocks"]
                   and "r4:few_fmas" not in o.features for o in nine)
        assert all(set(FEATURES["linear_sparse"]) >= set(o.features) and all(k.startswith("r4:") for k in o.features)
                   for o in three + nine)
    with host_cpu_as(["avx2", "fma", "avx512f"]):
        # 16x1 by columns of 16, a last tile of 4 or 8 rows where that holds what is left
        assert [sparse_tile(m, 16, 1, get_target("host"))[0] for m in (1, 5, 12, 16, 17, 24, 25)] == [4, 8, 16, 16, 20,
                                                                                                    24, 32]
        # r x 1 blocks: the few-rows tile to r / 2 rows, then the 16-row tail tile; 1x4 the few-rows tile to 8
        assert [sparse_tile(m, 4, 1, get_target("host"))[0] for m in (2, 3, 4, 16, 17)] == [2, 16, 16, 16, 32]
        assert [sparse_tile(m, 8, 1, get_target("host"))[0] for m in (4, 5, 8, 33)] == [4, 16, 16, 48]
        assert [sparse_tile(m, 1, 4, get_target("host"))[0] for m in (8, 9, 17)] == [8, 16, 32]
    with host_cpu_as(["avx2", "fma", "avx512f", "avx512_split"]):
        # AVX-512 on 256-bit halves (Zen 4): 17-24 rows by rows take one register and a half, priced as 24 rows
        assert [sparse_tile(m, r, 1, get_target("host"))[0] for r, m in ((4, 17), (8, 24), (4, 25), (4, 49))] == [
            24, 24, 32, 56]
        assert [sparse_tile(m, 16, 1, get_target("host"))[0] for m in (17, 24)] == [20, 24]  # by columns as before
    # NEON: 1x1 blocks by rows of 32 (8 registers of 4), a last tile of 8, 16 or 24 rows
    assert [sparse_tile(m, 1, 1, get_target("android-arm64"))[0] for m in (9, 17, 21, 25, 33)] == [16, 24, 24, 32, 40]


def test_int8_blocks_are_their_own_kind_priced_at_the_tiles_and_groups_their_kernel_runs():
    """--dtype int8 --prune-patterns: bertc_linear_sparse_i8 (runtime/kernels/int8_gemm.h) computes tiles of 4 rows
    (16 above 4 with AVX-512 VNNI) whatever m leaves of them and takes a block row's blocks four at a time on x86, the row padded to a multiple of 4
    (VNNI's VPDPBUSD, or VPMADDUBSW on 7-bit weights without it), two at a time elsewhere (ARM64), gathering x bytes
    per group and row of the tile: linear_sparse_i8,
    not the fp32 blocks' kind. A profile with no fit for it prices it at the fp32 blocks' roofline rate and says so;
    a fitted one prices it from its own coefficients."""
    from bertc.cost import config_ops
    from bertc.sparsity import int8_block_group
    from bertc.targets import host_cpu_as

    # AVX2: 5 rows are two tiles of 4; AVX-512 VNNI takes more than 4 rows in one tile of 16
    for features, five_tiles in ((["avx2", "fma"], 2), (["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"], 4)):
        group = int8_block_group("avx2", 1)
        assert group == 4 and int8_block_group("neon", 1) == 1 and int8_block_group("avx2", 4) == 1
        with host_cpu_as(features):
            one, four, five = ([o for o in config_ops(SMALL, "host", n, prune="16x1@0.25", dtype="int8", force=True)
                                if o.kernel.endswith("_sparse_i8")] for n in (1, 4, 5))
        assert one and all(o.kind == "linear_sparse_i8" for o in one + four + five)
        for a, b, c in zip(one, four, five):
            assert a.features["r16:macs"] == b.features["r16:macs"] == c.features["r16:macs"] / five_tiles  # 1, 4 rows: a tile
            assert a.features["r16:macs"] == 16 * group * a.features["r16:x_gathers"]  # a group's blocks, each tile row
            assert c.features["r16:x_gathers"] == five_tiles * a.features["r16:x_gathers"] > 0
            blocks = a.weight_bytes / 16  # a byte a kept weight
            assert 4 * 16 * blocks <= a.features["r16:macs"] < 4 * 16 * (blocks + group * 64)  # padded to whole groups
            assert a.features["r16:inputs"] * 4 == b.features["r16:inputs"]
        # each height its own coefficients (int8_family): 8- and 4-row blocks share the 8-row ones
        for spec, family in (("8x1@0.25", "r8"), ("4x1@0.25", "r8")):
            ops = [o for o in config_ops(SMALL, "host", 4, prune=spec, dtype="int8", force=True)
                   if o.kind == "linear_sparse_i8"]
            assert ops and all(set(o.features) <= set(FEATURES["linear_sparse_i8"]) for o in ops)
            assert all({k.split(":")[0] for k in o.features} == {family} for o in ops)
    with host_cpu_as(["avx2", "fma"]):  # whose int8 rates keep 16x1 blocks at 25% sparse
        assert "linear_sparse_i8 as linear_sparse x1" in " ".join(
            estimate(SMALL, seq_len=4, prune="16x1@0.25", dtype="int8", profile=without_int8()).notes)
    base = load_profile("host-avx512")
    coef = [0.0] * len(FEATURES["linear_sparse_i8"])
    coef[FEATURES["linear_sparse_i8"].index("r16:x_gathers")] = 1e-6
    fitted = Profile("f", {**base.data, "fitted": {"1": {**base.data["fitted"]["1"], "linear_sparse_i8": coef}},
                           "run_scale": {"1": 1.0}})
    assert fitted.op_ms(five[0], 1) == pytest.approx(fitted_cost(coef, "linear_sparse_i8", five[0].features))
    assert fitted.op_ms(five[0], 1) == pytest.approx(1e-6 * five[0].features["r16:x_gathers"])


def test_grid_points_timed_far_over_a_first_fit_are_the_ones_timed_again():
    """calibrate.off_fit: a grid point timed more than OFF_FIT over a first fit of the whole grid (a shared machine
    slowed one model in both its passes) is timed once more, the farthest first; as measured, the built-in profile's
    grid has few such points, and the one made 1.8x slower leads them."""
    from bertc.calibrate import OFF_FIT, bert_config, off_fit, retimed
    from bertc.cost import PROFILES_DIR

    meas = json.loads((PROFILES_DIR / "host-avx512.measurements.json").read_text())
    records = [r for r in meas["records"] if r["seq"] in (1, 8, 32)]
    base = load_profile("host-avx512").data
    as_timed = off_fit(records, base, "host", meas["cpu"], {})
    assert len(as_timed) < len(records) / 10
    k = next(i for i, r in enumerate(records) if r["threads"] == 1 and r["seq"] == 8 and i not in as_timed)
    slow = {**records[k], **{f: records[k][f] * 1.8 for f in ("p50_ms", "mean_ms", "ops_ms", "quiet_ms")
                             if f in records[k]}, "ops": [[n, ms * 1.8] for n, ms in records[k]["ops"]]}
    flagged = off_fit(records[:k] + [slow] + records[k + 1:], base, "host", meas["cpu"], {})
    assert flagged[0] == k and 1.8 - 1 > OFF_FIT
    # the report: how many were off, timed again (settle's budget allowing), and now count a faster timing
    def rec(ms, passes):
        return {"config": bert_config(1, 128, 2, 256), "prune": None, "seq": 8, "threads": 1, "p50_ms": ms,
                "passes": passes}

    off = retimed([0, 1, 2], [rec(2.0, 2), rec(1.0, 2), rec(3.0, 2)], [rec(1.2, 3), rec(0.95, 3), rec(3.0, 2)])
    assert off == {"points": 3, "timed_again": 2, "faster": 1, "line": OFF_FIT, "faster_points": ["L1 H128 A2 F256 S8 T1"]}
    text = format_quality({**report(_rows([(2, False, 4, 0.0)])), "grid_off_fit": off})
    assert f"grid points timed over {OFF_FIT:.0%} above a first fit of the grid: 3, 2 timed again, 1 of them" in text


def test_a_refit_of_another_cpus_measurements_prices_them_with_its_kernels(tmp_path):
    """`bertc calibrate --refit` of measurements taken on another kind of CPU fits them with that CPU's kernels and
    tiles, records that CPU, and, since its held-out set cannot be timed here, predicts again the held-out timings
    the profile at -o kept from it, saying so."""
    from bertc.calibrate import fit_profile
    from bertc.cost import PROFILES_DIR
    from bertc.targets import host_cpu_as

    meas = json.loads((PROFILES_DIR / "host-avx512.measurements.json").read_text())
    here = read_cpu()
    other = {**meas["cpu"], "features": ["avx2", "f16c", "fma"] if "avx512f" in here["features"]
             else meas["cpu"]["features"]}
    records = [r for r in meas["records"] if r["seq"] in (1, 8, 32)]
    (tmp_path / "m.json").write_text(json.dumps({**meas, "cpu": other, "records": records}))
    out = tmp_path / "p.json"
    out.write_text((PROFILES_DIR / "host-avx512.json").read_text())  # the earlier profile, with its held-out timings
    earlier = json.loads(out.read_text())["quality"]["measured"]
    profile, q = calibrate("host", None, [1, 2], refit=tmp_path / "m.json", out=out, progress=False)
    assert profile.data["cpu"] == other and "another CPU" in q["not_checked"] and "not checked" in format_quality(q)
    with host_cpu_as(other["features"]):
        theirs = fit_profile(load_profile("host-avx2").data, records, "host", other)["fitted"]
    mine = fit_profile(load_profile("host-avx2").data, records, "host", here)["fitted"]
    assert profile.data["fitted"] == theirs != mine  # its tiles, not this machine's
    assert [r["measured_ms"] for r in q["measured"]] == [r["measured_ms"] for r in earlier]
    assert [r["predicted_ms"] for r in q["measured"]] != [r["predicted_ms"] for r in earlier]


def test_cross_names_the_fit_that_predicts_the_other_hours_best(tmp_path, monkeypatch):
    """`bertc calibrate --cross`: each calibration's kept measurements fitted again and asked for every held-out
    set given (its own and other hours', checks' too). A fit prices its own hour's timings; one made from timings
    60% slower prices them all 60% slower, and the table shows it (at 1.3 times, a small 2-thread model the quiet fit
    priced 17-22% under on the Zen 4 EPYC landed within 10% of the slower hours). Its last row, each configuration's
    median timing over the sets, shows what the hours' own spread leaves any fit."""
    import gzip

    from bertc.calibrate import cross, format_cross
    from bertc.cost import PROFILES_DIR

    meas = json.loads((PROFILES_DIR / "host-avx512.measurements.json").read_text())
    prof = json.loads((PROFILES_DIR / "host-avx512.json").read_text())
    records = [r for r in meas["records"] if r["seq"] in (1, 8, 32)]
    held = prof["quality"]["measured"][:8]  # the held-out set's first 8 configurations are the set of 8 (holdout)

    def slower(x, s):  # every timing of a record or a held-out row, s times slower
        if isinstance(x, dict):
            return {k: v if k in ("config", "seq", "threads", "prune", "dtype") else slower(v, s) for k, v in x.items()}
        return [slower(v, s) for v in x] if isinstance(x, list) else x * s if isinstance(x, float) else x

    def kept(name, s, measured=True, gz=False):
        q = {"measured": [{**r, "measured_ms": r["measured_ms"] * s, "handoff_us": r.get("handoff_us", 0) * s}
                          for r in held], "holdout_seed": 7}
        (tmp_path / name).write_text(json.dumps({"quality": q}))
        if measured:
            body = json.dumps({**meas, "records": [slower(r, s) for r in records]}).encode()
            m = measurements_path(tmp_path / name)
            (m.with_name(m.name + ".gz").write_bytes(gzip.compress(body)) if gz else m.write_bytes(body))
        return tmp_path / name

    paths = [kept("quiet.json", 1.0), kept("busy.json", 1.6, gz=True), tmp_path / "later.json"]
    # a check's timings, kept by `bertc calibrate --check PROFILE -o FILE` (its timing stood in for: minutes)
    later = json.loads(kept("timed.json", 1.04, measured=False).read_text())["quality"]
    monkeypatch.setattr("bertc.calibrate.check_profile", lambda *a, **k: {**later, **report(later["measured"])})
    assert cli(["calibrate", "--check", "host-avx512", "-o", str(paths[2]), "-q"]) == 1  # it misses the goal
    assert json.loads(paths[2].read_text())["checked"] == "host-avx512"
    c = cross(paths + [measurements_path(paths[0])], progress=False)  # as `dir/*.json` gives them: skipped
    assert c["sets"] == ["quiet.json", "busy.json", "later.json"] and [t["fit"] for t in c["fits"]] == ["quiet.json", "busy.json"]
    (quiet, busy) = ({k: v["within_10pct"] for k, v in t["sets"].items()} for t in c["fits"])
    assert quiet["quiet.json"] == pytest.approx(busy["busy.json"], abs=0.13)  # the same fit, 1.6 times over
    assert quiet["quiet.json"] > 0.5 and quiet["busy.json"] <= 0.125 and busy["quiet.json"] <= 0.125 >= busy["later.json"]
    assert quiet["later.json"] > 0 and c["best"]["fit"] == "quiet.json"
    assert c["fits"][0]["others_mean"] == pytest.approx((quiet["busy.json"] + quiet["later.json"]) / 2)
    # the timings' own spread: each configuration's median over the three sets is the 1.04 times one
    assert {k: v["within_10pct"] for k, v in c["spread"]["sets"].items()} == {"quiet.json": 1.0, "busy.json": 0.0,
                                                                              "later.json": 1.0}
    assert c["spread"]["mean"] == pytest.approx(2 / 3) and c["spread"]["configs"] == 8
    text = format_cross(c)
    assert "| quiet.json |" in text and "predicts the other hours best: quiet.json" in text
    assert "| each configuration's median timing | 100% | 0% | 100% | 66.7% | - |" in text
    assert f"--refit {measurements_path(paths[0])} -o {paths[0]} --no-retime" in text
    (tmp_path / "bare.json").write_text(json.dumps({"name": "bare"}))
    with pytest.raises(BertcError, match="bare.json: holds no held-out timings"):
        cross([paths[0], tmp_path / "bare.json"], progress=False)
    with pytest.raises(BertcError, match="none of these has its measurements"):
        cross([paths[2]], progress=False)
    assert cli(["calibrate", "--cross", str(paths[2]), "-q"]) == 2  # the same error, from the command


def test_a_weight_cache_sends_the_share_of_weights_beyond_it_to_memory(tmp_path):
    """A profile without a chosen split keeps all GEMM weights cached up to its last-level cache and none beyond
    (the model before); with calibrate's "weight_cache", the share of a model's weights beyond its bytes is priced
    as streamed from memory and the rest as cached, each GEMM alike, and the estimate grows with that share."""
    from bertc.cost import WeightCache, gemm_weight_bytes, spill

    cfg = {**SMALL, "num_hidden_layers": 2}
    assert WeightCache(100).dram_share(400) == 0.75 and WeightCache(100).dram_share(80) == 0.0
    assert [WeightCache(100, all_or_nothing=True).dram_share(w) for w in (80, 101)] == [0.0, 1.0]
    f = {"flops": 5.0, "weights": 8.0, "weights_h2": 4.0}
    assert spill(f, 0.25) == {"flops": 5.0, "weights": 6.0, "weights_h2": 3.0, "weights_h4": 0.0, "weights_h8": 0.0,
                              "weights_h16": 0.0, "weights_h32": 0.0, "weights_dram": 2.0, "weights_dram_h2": 1.0,
                              "weights_dram_h4": 0.0, "weights_dram_h8": 0.0, "weights_dram_h16": 0.0,
                              "weights_dram_h32": 0.0} and spill(f, 0.0) is f
    with make_context(), ir.Location.unknown():
        module = ir.Module.parse(bert_ir(cfg, seq_len=4, batch=1, target="host"))
        for flag in lowering(pipeline_for(get_target("host"), CompileOptions(target="host"))):
            if not flag.startswith("--emit"):
                run_pass(module, flag, PassContext())
        stored = gemm_weight_bytes(module)
    data = load_profile("host-avx2").data
    data.pop("weight_cache", None)
    assert Profile("p", data).weight_cache == WeightCache(data["caches"]["l3_bytes"], all_or_nothing=True)
    totals, shares = [], []
    for cached in (stored * 2, stored // 2, stored // 4):
        (tmp_path / "p.json").write_text(json.dumps({**data, "weight_cache": {"bytes": cached}}))
        est = estimate(cfg, seq_len=4, profile=tmp_path / "p.json")
        gemms = [o for o in est.ops if o.kind == "linear"]
        assert sum(o.weight_bytes for o in gemms) == stored
        shares.append({round(o.features.get("weights_dram", 0.0) / o.weight_bytes * 4, 6) for o in gemms})
        totals.append(est.total_ms)
    assert shares == [{0.0}, {0.5}, {0.75}] and totals[0] < totals[1] < totals[2]


def _synthetic_runs(cached_bytes: int, all_or_nothing: bool, l2: int = 0, **rates: float):
    """Grid runs of small models at 1-8 tokens, each op's time made by a known cost model whose weights beyond
    ``cached_bytes`` stream from memory at a quarter of the cached rate (and those ``l2`` bytes of a core's L2 hold
    at the cached rate, or ``rates``' weights_l2; ``rates`` replace the model's)."""
    from bertc.cost import WeightCache, config_ops, with_cache

    rate = {"dispatch": 2e-3, "flops": 2e-8, "outputs": 1e-6, "elements": 1e-6, "weights": 1e-7, "weights_dram": 4e-7,
            "weights_l2": 1e-7, "scores": 1e-6, "heads": 1e-4, **rates}
    runs = []
    for layers, hidden in ((1, 128), (2, 128), (4, 128), (1, 256), (3, 192), (2, 256), (4, 256)):
        config = {**SMALL, "hidden_size": hidden, "num_hidden_layers": layers, "intermediate_size": 4 * hidden,
                  "num_attention_heads": 4}
        key = (json.dumps(config, sort_keys=True), None, "fp32")
        for seq in (1, 2, 4, 8):
            ops = config_ops(config, "host", seq)
            truth = with_cache([dataclasses.replace(o) for o in ops], WeightCache(cached_bytes, all_or_nothing, l2))
            times = [fitted_cost([rate.get(n, 0.0) for n in FEATURES[o.kind]], o.kind, o.features) for o in truth]
            total = sum(times)
            rec = {"config": config, "prune": None, "dtype": "fp32", "seq": seq, "threads": 1, "p50_ms": total,
                   "mean_ms": total, "ops_ms": total, "ops": [[o.op, t] for o, t in zip(ops, times)]}
            runs.append((rec, key, ops))
    return runs


def test_a_runs_overhead_and_scale_are_fitted_to_the_grids_p50s():
    """calibrate._run_fit: p50 = overhead + scale x the run's fitted ops, by least squares on relative error. Runs made
    with an overhead give it back; where the best overhead would be negative (the ops' own dispatch costs already
    hold more than the run spends between them) it is none, and the scale the median ratio."""
    from bertc.calibrate import _run_fit

    ops = [0.01, 0.05, 0.3, 2.0, 15.0, 80.0]
    a, s = _run_fit([(0.004 + 1.2 * f, f) for f in ops])
    assert a == pytest.approx(0.004, rel=1e-6) and s == pytest.approx(1.2, rel=1e-6)
    a, s = _run_fit([(1.1 * f - 0.001 * (f < 1), f) for f in ops])
    assert a == 0.0 and s == pytest.approx(1.1, rel=0.05)


def test_an_op_too_small_to_split_runs_and_is_priced_on_one_thread():
    """Below the work pool.h names for its kernel, an op's calls run on the calling thread alone (bertc_pool_sized,
    which the generated code calls with emit_c's SERIAL_POOL macro; cost.SERIAL_BELOW holds pool.h's values). In a
    2-thread run the cost model prices such a GEMM with the 1-thread fit, and such a layer norm with the run's own
    fit at its serial rates (it reads what both threads wrote); calibrate fits each from those runs' ops so. Just
    above the line both are priced as the run's."""
    from bertc.passes.emit_c import ELEMENTWISE_POOL, SERIAL_POOL

    from bertc.calibrate import _fit, _samples
    from bertc.cost import SERIAL_BELOW, OpCost, op_threads
    from bertc.toolchain import RUNTIME

    pool_h = (RUNTIME / "src" / "pool.h").read_text()
    macros = {name: int(v) for name, v in re.findall(r"#define (BERTC_SERIAL_\w+) (\d+)", pool_h)}
    assert set(SERIAL_POOL.values()) == set(macros) and set(SERIAL_BELOW) <= set(SERIAL_POOL)
    assert {k: macros[SERIAL_POOL[k]] for k in SERIAL_BELOW} == SERIAL_BELOW
    assert {k for k, m in SERIAL_POOL.items() if m in ELEMENTWISE_POOL} <= set(SERIAL_BELOW)

    def norm(elements: int) -> OpCost:
        return OpCost(0, "bertc.layer_norm [1, 4, 8]", "bertc_layer_norm", "layer_norm",
                      {"dispatch": 1, "elements": elements}, 8.0 * elements, 8.0 * elements)

    def gemm(macs: int, kernel: str = "bertc_linear_packed_i8") -> OpCost:
        return OpCost(0, "bertc.linear [1, 4, 8]", kernel, "linear_i8", {"dispatch": 1, "macs": macs}, 2.0 * macs, 0.0)

    below, macs = SERIAL_BELOW["bertc_layer_norm"], SERIAL_BELOW["bertc_linear_packed_i8"]
    ops = [norm(below - 1), norm(below), gemm(macs - 1), gemm(macs)]
    assert [op_threads(o, 2) for o in ops] == [1, 2, 1, 2]
    assert op_threads(norm(below - 1), 1) == 1 and op_threads(gemm(1, "bertc_attention"), 2) == 2
    base = {k: v for k, v in load_profile("host-avx512").data.items() if k != "handoff_us"}  # no hand-off apart
    fitted = {"1": {"layer_norm": [0.0, 1e-6, 0.0, 0.0], "linear_i8": [0.0, 1e-8]},
              "2": {"layer_norm": [0.0, 2e-6, 0.0, 3e-6], "linear_i8": [0.0, 2e-8]}}
    prof = Profile("p", {**base, "fitted": fitted, "run_scale": {"1": 1.0, "2": 1.5}})
    assert [prof.op_ms(o, 2) for o in ops] == pytest.approx(  # each times the run's scale
        [1.5 * 3e-6 * (below - 1), 1.5 * 2e-6 * below, 1.5 * 1e-8 * (macs - 1), 1.5 * 2e-8 * macs])
    # calibrate: a 2-thread run's small layer norm fits the 2-thread serial rates, its small GEMM the 1-thread fit
    records = [{"config": SMALL, "prune": None, "seq": 4, "threads": t, "p50_ms": 1.0,
                "ops": [[o.op, 0.001 * (i + 1)] for i, o in enumerate(ops)]} for t in (1, 2)]
    samples = [_samples(rec, ops) for rec in records]
    assert [(t, sorted(f)) for _, f, _, t, _ in samples[1]] == [
        (2, ["serial_dispatch", "serial_elements"]), (2, ["dispatch", "elements"]), (1, ["dispatch", "macs"]),
        (2, ["dispatch", "macs"])]
    fit = _fit(list(zip(records, samples)))
    assert [len(fit["samples"][t, k]) for t in (1, 2) for k in ("layer_norm", "linear_i8")] == [2, 3, 2, 1]
    fit = _fit([(records[1], samples[1])])  # a grid without 1-thread runs: its small GEMM with its own runs' ops
    assert set(fit["fitted"]) == {2} and len(fit["samples"][2, "linear_i8"]) == 2


def test_each_parallel_call_pays_the_hand_off_of_its_runs_hour():
    """An op split across T > 1 threads pays the hand-off of each of its pool calls (two for an int8 GEMM,
    which quantizes x in a call of its own from QUANTIZE_SPLIT elements of it, below that on the calling thread; none
    where the op runs on one thread, or in a 1-thread run). calibrate
    takes each record's measured hand-off out of its ops' times before the fit, so runs of the same model timed at
    other hours' hand-offs fit one cost; the profile keeps the grid's median, and a prediction adds the hand-off it is
    given (`bertc estimate --handoff-us`, a held-out run's own) or that one."""
    from bertc.calibrate import _fit, _run_ms, _samples
    from bertc.cost import QUANTIZE_SPLIT, SERIAL_BELOW, SERIAL_LINES, UNPOOLED, OpCost
    from bertc.toolchain import RUNTIME

    below = SERIAL_BELOW["bertc_layer_norm"]
    ops = [OpCost(0, "bertc.layer_norm [1, 4, 8]", "bertc_layer_norm", "layer_norm", {"dispatch": 1, "elements": e},
                  8.0 * e, 8.0 * e) for e in (below, 2 * below, 4 * below, below - 1)]
    ops.append(OpCost(4, "bertc.linear [1, 4, 8]", "bertc_linear_packed_i8", "linear_i8", {"dispatch": 1, "macs": 1e6},
                      2e6, 0.0, x_elements=QUANTIZE_SPLIT))
    assert [parallel_calls(o, 2) for o in ops] == [1, 1, 1, 0, 2] and {parallel_calls(o, 1) for o in ops} == {0}
    assert parallel_calls(dataclasses.replace(ops[4], x_elements=QUANTIZE_SPLIT - 1), 2) == 1
    int8_h = (RUNTIME / "kernels" / "int8_gemm.h").read_text()  # the runtime's line for the quantizing call
    line = re.search(r"q8_quantize_pool\(.*?\{\s*return bertc_pool_sized\(p, M \* K, (BERTC_SERIAL_\w+)\);", int8_h,
                     re.DOTALL)
    assert line and SERIAL_LINES[line.group(1)] == QUANTIZE_SPLIT
    kernels_h = (RUNTIME / "kernels" / "kernels.h").read_text()  # the kernels that take no pool make no calls
    declared = re.findall(r"^void (bertc_\w+)\(([^)]*)", kernels_h, re.MULTILINE)
    assert UNPOOLED == {k for k, args in declared if "bertc_pool" not in args}
    assert parallel_calls(dataclasses.replace(ops[0], kernel="bertc_slice"), 2) == 0
    true = {"layer_norm": [0.0, 2e-6, 0.0, 3e-6], "linear_i8": [0.001, 1e-8]}  # ms: the work, without hand-offs

    def run_ms(o, h):
        return fitted_cost(true[o.kind], o.kind, priced_as(o, 2)[1]) + parallel_calls(o, 2) * h / 1e3

    records = [{"config": SMALL, "prune": None, "seq": 4, "threads": 2, "handoff_us": h,
                "p50_ms": sum(run_ms(o, h) for o in ops), "ops": [[o.op, run_ms(o, h)] for o in ops]}
               for h in (0.3, 1.2, 0.5, 2.0)]
    samples = [_samples(rec, ops) for rec in records]
    for rec, smp in zip(records, samples):  # each op's time less the hand-off its run measured, and that hand-off
        assert [s[2] for s in smp] == pytest.approx([run_ms(o, 0.0) for o in ops])
        assert [s[4] for s in smp] == pytest.approx([parallel_calls(o, 2) * rec["handoff_us"] / 1e3 for o in ops])
    fit = _fit(list(zip(records, samples)))
    for smp in samples:  # one cost per op whatever its run's hand-off: the hours' runs agree once it is out
        assert [fitted_cost(fit["fitted"][u][k], k, f) for k, f, _, u, _ in smp] == pytest.approx(
            [run_ms(o, 0.0) for o in ops], rel=1e-4)
    assert [_run_ms(fit, r, s) for r, s in zip(records, samples)] == pytest.approx([r["p50_ms"] for r in records])
    # the profile: priced at the grid's hand-off, or at the one it is given; a 1-thread run and a serial op pay none
    base = load_profile("host-avx512").data
    prof = Profile("p", {**base, "fitted": {"1": true, "2": true}, "run_scale": {"1": 1.0, "2": 1.0},
                         "handoff_us": {"2": 0.5}})
    assert [prof.op_ms(o, 2) for o in ops] == pytest.approx([run_ms(o, 0.5) for o in ops])
    assert [prof.op_ms(o, 2, 1.7) for o in ops] == pytest.approx([run_ms(o, 1.7) for o in ops])
    assert prof.op_ms(ops[0], 1, 1.7) == pytest.approx(fitted_cost(true["layer_norm"], "layer_norm", ops[0].features))
    # a profile fitted before the hand-off was measured (none recorded) prices none apart: its costs hold it
    old = Profile("old", {k: v for k, v in prof.data.items() if k != "handoff_us"})
    assert old.op_ms(ops[4], 2, 1.7) == pytest.approx(run_ms(ops[4], 0.0))
    # a run whose hand-off probe read more than its int8 GEMM took (the probe in a busy stretch, the op's quiet one
    # not): that timing, at or below zero once the hand-off is out, is left out of the fit instead of outweighing
    # the rest (fit_kind weighs a sample by 1 / sqrt of its time), and the fit is as without it
    busy = {**records[0], "handoff_us": 7.0}  # its ops took what they took at 0.3 us
    bad = _samples(busy, ops)
    assert bad[4][2] < 0 and all(s[2] > 0 for s in bad[:4])
    fit2 = _fit(list(zip(records, samples)) + [(busy, bad)])
    assert fit2["left_out"] == 1 and fit["left_out"] == 0
    assert fit2["fitted"][2]["linear_i8"] == pytest.approx(fit["fitted"][2]["linear_i8"], rel=1e-6)


def test_estimate_prices_the_hand_off_it_is_given():
    """`bertc estimate --threads 2 --handoff-us US`: every parallel call at that hand-off, the rest as the profile
    fits it; the JSON and the table say what it was priced at; a negative value is refused; a profile without a
    recorded hand-off says it cannot price one apart."""
    base = load_profile("host-avx512").data
    prof = Profile("h", {**base, "handoff_us": {"2": 0.4}})
    at = {h: estimate(SMALL, threads=2, seq_len=16, profile=prof, handoff_us=h) for h in (None, 0.0, 2.0)}
    calls = sum(parallel_calls(o, 2) for o in at[0.0].ops)
    assert calls >= 4 and at[None].handoff_us == 0.4 and at[2.0].to_json()["handoff_us"] == 2.0
    assert at[2.0].total_ms - at[0.0].total_ms == pytest.approx(calls * 2.0 / 1e3, rel=1e-6)
    assert at[None].total_ms - at[0.0].total_ms == pytest.approx(calls * 0.4 / 1e3, rel=1e-6)
    assert f"thread hand-off: {calls} parallel calls at 2.00 us each" in format_table(at[2.0])
    assert estimate(SMALL, threads=1, seq_len=16, profile=prof, handoff_us=2.0).handoff_us == 0.0
    with pytest.raises(BertcError, match="--handoff-us -1: must be the microseconds of a parallel call"):
        estimate(SMALL, threads=2, seq_len=16, profile=prof, handoff_us=-1.0)
    before = Profile("old", {k: v for k, v in base.items() if k != "handoff_us"})  # fitted before the hand-off was measured
    old = estimate(SMALL, threads=2, seq_len=16, profile=before, handoff_us=2.0)
    assert old.handoff_us == 0.0 and any("holds no hand-off at 2 threads" in n for n in old.notes)


def test_calibrate_chooses_the_weight_cache_the_grid_shows():
    """choose_weight_cache fits the grid with each model left out in turn, under each split: on runs made by a model
    whose weights beyond 1 MiB stream from memory it finds that split, and on runs made by the all-or-nothing model
    at the last-level cache that one: each predicts its runs CACHE_MARGIN better than the default split (the share
    beyond half the last-level cache), which it keeps otherwise."""
    from bertc.calibrate import CACHE_MARGIN, choose_weight_cache

    llc = 4 << 20
    chosen, record, _ = choose_weight_cache(_synthetic_runs(1 << 20, False), llc)
    assert (chosen.bytes, chosen.all_or_nothing) == (1 << 20, False) and record["bytes"] == 1 << 20
    scores = {c["label"]: c["within_10pct"] for c in record["leave_one_model_out"]}
    assert scores["the share beyond 1 MiB"] == 1.0 and scores["all or none at 4 MiB"] < 1.0
    assert scores["the share beyond 2 MiB"] < 1.0 - CACHE_MARGIN
    chosen, record, _ = choose_weight_cache(_synthetic_runs(llc, True), llc)
    assert chosen.all_or_nothing and chosen.bytes == llc and "none beyond" in record["rule"]
    chosen, *_ = choose_weight_cache(_synthetic_runs(2 << 20, False), llc)
    assert (chosen.bytes, chosen.all_or_nothing) == (2 << 20, False)


def test_calibrate_prices_a_cores_l2_apart_where_the_grid_shows_it_faster():
    """A model whose weights a core's L2 holds (the grid's smallest) streams them on the Xeon 3.4x faster than from
    its L3, and on the Zen EPYCs 1.2-1.3x. choose_l2_tier compares the grid's 1-token 1-thread dense runs: on runs
    made by a model whose L2 streams ten times faster it takes the tier, and the fit that prices the tier predicts
    the smallest model's runs where the one without it does not; on runs made with one rate it keeps none. The
    share the L2s hold: on one core all up to its L2, none from twice that; on more, all up to 0.8 of their L2s, none
    from 1.5 (cost.L2_LINES)."""
    from bertc.calibrate import L2_TIER_SPEEDUP, _cached, _fit, _run_ms, _samples, choose_l2_tier
    from bertc.cost import WeightCache

    assert [WeightCache(1 << 30, l2=100).l2_share(w, t) for w, t in ((100, 1), (150, 1), (200, 1), (160, 2),
                                                                      (230, 2), (300, 2))] == pytest.approx(
        [1.0, 0.5, 0.0, 1.0, 0.5, 0.0]) and WeightCache(1 << 30).l2_share(10) == 0.0  # 2 cores: 0.8 to 1.5 L2s
    l2, llc = 1 << 20, 64 << 20
    weight_bound = {"flops": 2e-9, "dispatch": 1e-5}  # a 1-token GEMM streams its weights, as measured
    runs = _synthetic_runs(llc, True, l2, weights_l2=1e-8, **weight_bound)
    cache, tier = choose_l2_tier(runs, WeightCache(llc, True), l2)
    assert cache.l2 == l2 and tier["on"] and tier["speedup"] >= L2_TIER_SPEEDUP and "priced apart" in tier["rule"]
    small = [(rec, _samples(rec, _cached(ops, c))) for rec, _, ops in runs for c in (cache, WeightCache(llc, True))]
    with_tier, without = _fit(small[0::2]), _fit(small[1::2])
    errors = [[abs(_run_ms(fit, rec, ops) / rec["p50_ms"] - 1) for rec, ops in pairs if rec["config"]["hidden_size"]
               == 128 and rec["config"]["num_hidden_layers"] == 1] for fit, pairs in ((with_tier, small[0::2]),
                                                                                 (without, small[1::2]))]
    assert max(errors[0]) < 0.01 < max(errors[1])
    cache, tier = choose_l2_tier(_synthetic_runs(llc, True, l2, **weight_bound), WeightCache(llc, True), l2)
    assert cache.l2 == 0 and not tier["on"] and tier["speedup"] == pytest.approx(1.0, abs=0.3)


def test_attention_prices_the_heads_a_parallel_calls_chunks_pack_again():
    """x86's blocked attention packs a head's K and V at its first query block and again at each chunk of a parallel
    call that starts inside a head (attn_blocks, pool.c's chunks): 2 heads of 15 blocks in 4 chunks of 8 pack 5 times,
    12 heads of 16 blocks in 4 chunks of 48 (whole heads) 12. priced_as adds the repacked values at 2 threads, and
    only there."""
    from bertc.cost import config_ops, head_packs, priced_as

    assert head_packs(2, 15, 2, 2) == 5 and head_packs(12, 16, 2, 2) == 12 and head_packs(2, 15, 1, 2) == 2
    assert head_packs(3, 1, 2, 2) == 3  # one block a head: the chunks start at heads
    config = {**SMALL, "hidden_size": 256, "num_attention_heads": 2, "intermediate_size": 512, "max_position_embeddings": 128}
    att = next(o for o in config_ops(config, "host", 117) if o.kind == "attention")
    assert att.packs == (2, 15, 2, 117 * 128) and priced_as(att, 1) == (1, att.features)
    t, two = priced_as(att, 2)
    assert t == 2 and two["values"] == att.features["values"] + 3 * 117 * 128
