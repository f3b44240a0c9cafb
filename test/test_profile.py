"""Per-op timing: model_run times every kernel call; the ops are those of the artifact's
src/model.mlir, their times add up to the end-to-end time, and the C API, bertc_run, `bertc bench`
and an ARM64 artifact under qemu all report them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import tiny_model

import bertc
from bertc.artifact import FORMAT_VERSION
from bertc.runtime import CompiledModel

NO_KERNEL = {"bertc.weight", "bertc.constant", "bertc.concat", "bertc.reshape"}  # weights.bin, or a view


def ir_ops(art) -> list[str]:
    """'bertc.linear [1, 64, 384]' for each op of the artifact's IR that runs a kernel, in order."""
    ops = []
    for line in (art / "src" / "model.mlir").read_text().splitlines():
        m = re.search(r'"(bertc\.\w+)"\(.*-> tensor<([^>]*)>\s*$', line)
        if m and m.group(1) not in NO_KERNEL:
            ops.append(f"{m.group(1)} [{', '.join(m.group(2).split('x')[:-1])}]")
    return ops


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    out = tmp_path_factory.mktemp("prof") / "bert.bertc"
    return bertc.compile(tiny_model("bert", hidden=128, ffn=256), seq_len=64, out=out).path


def bertc_run(art, tmp_path, *args: str) -> dict:
    ids = tmp_path / "ids.bin"
    np.full(64, 7, np.int64).tofile(ids)
    r = subprocess.run([str(art / "bertc_run"), str(art), "--input-ids", str(ids), *args], capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout)


def test_every_op_timed_in_process(art):
    model, ids = CompiledModel(art), np.full((1, 64), 7, np.int64)
    for _ in range(3):
        model(ids)
    model.reset_op_times()
    assert all(o["total_ms"] == 0 and o["runs"] == 0 for o in model.op_times())
    start = time.perf_counter()
    for _ in range(20):
        model(ids)
    wall_ms = (time.perf_counter() - start) * 1e3
    ops = model.op_times()
    assert [o["name"] for o in ops] == ir_ops(art) and len(ops) > 10
    assert all(o["ms"] >= 0 and o["runs"] == 20 and o["kernel"].startswith("bertc_") for o in ops)
    assert {o["kernel"] for o in ops} >= {"bertc_linear_packed", "bertc_attention", "bertc_layer_norm"}
    total = sum(o["total_ms"] for o in ops)
    # each op is timed inside the call: its sum cannot exceed the wall time (a lower bound would depend on how
    # busy the machine is: a thread preempted between two ops adds wall time that no op owns)
    assert 0 < total <= wall_ms, (total, wall_ms)
    lib, n = model.lib, len(ops)
    assert model.handoff_us(10) == 0.0 and CompiledModel(art, threads=2).handoff_us(10) >= 0.0
    assert lib.bertc_handoff_us(model._h, 0) == -1.0 and lib.bertc_handoff_us(None, 10) == -1.0
    assert lib.bertc_op_name(model._h, n) is None and lib.bertc_op_kernel(model._h, -1) is None
    assert lib.bertc_op_seconds(model._h, n) == -1.0 and lib.bertc_num_ops(None) == 0


def test_bertc_run_reports_ops(art, tmp_path):
    report = bertc_run(art, tmp_path, "--bench", "30", "--warmup", "3")
    ops = report["ops"]
    assert [o["name"] for o in ops] == ir_ops(art)
    assert all(o["ms"] >= 0 and o["p50_ms"] >= 0 and o["kernel"] in report["kernels"] for o in ops)
    # each op's span lies inside its run's span: the sum of op means is at most the mean run, give or
    # take printing's rounding (no lower bound: how much time falls between ops depends on the machine's load)
    assert 0 < sum(o["ms"] for o in ops) <= report["mean_ms"] + 1e-3 + len(ops) * 1e-5
    assert "ops" not in bertc_run(art, tmp_path)
    # the quiet stretch (bertc_run.c quiet_window): 5 runs are one window (two would be under 3 runs each), so each
    # op's median over it is its median over all; over 3000 runs, a window of the runs 10 ms take (3 at least)
    five = bertc_run(art, tmp_path, "--bench", "5", "--warmup", "1")
    assert five["quiet_runs"] == 5 and all(o["quiet_ms"] == o["p50_ms"] for o in five["ops"])
    assert abs(five["quiet_ms"] - five["p50_ms"]) <= 5e-4  # p50_ms is printed to 3 decimals
    long = bertc_run(art, tmp_path, "--bench", "3000", "--warmup", "3")
    assert 3 <= long["quiet_runs"] <= 1500 and long["min_ms"] - 5e-4 <= long["quiet_ms"]
    assert all(0 <= o["quiet_ms"] for o in long["ops"])
    # beside the timings, what a parallel call cost just after them: none on one thread, a cost on two (any amount)
    assert report["handoff_us"] == 0 and bertc_run(art, tmp_path, "--bench", "3", "--threads", "2")["handoff_us"] >= 0
    assert "handoff_us" not in bertc_run(art, tmp_path)  # only with --bench
    assert [o["name"] for o in bertc_run(art, tmp_path, "--ops")["ops"]] == ir_ops(art)


def test_bench_command_json_and_table(art):
    r = subprocess.run([sys.executable, "-m", "bertc.cli", "bench", str(art), "--runs", "5", "--top", "3"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)  # the table goes to stderr: stdout stays JSON
    assert len(report["ops"]) == len(ir_ops(art)) and report["ops_ms"] <= report["mean_ms"] + 1e-3
    assert sum(k["calls"] for k in report["by_kernel"].values()) == len(report["ops"])
    assert abs(sum(k["share"] for k in report["by_kernel"].values()) - 1) < 1e-3
    table = r.stderr.splitlines()
    assert table[0].split()[:3] == ["#", "op", "kernel"] and len(table[1:4]) == 3 and "more ops" in table[4]
    assert any(line.startswith("bertc_linear_packed") for line in table)


def test_other_format_version_refused(art, tmp_path):
    assert f".format_version = {FORMAT_VERSION}," in (art / "src" / "model.c").read_text()
    old = tmp_path / "old.bertc"
    shutil.copytree(art, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION - 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(bertc.BertcError, match=f"format_version {FORMAT_VERSION - 1}, this bertc reads"):
        bertc.load(old)
    np.full(64, 7, np.int64).tofile(tmp_path / "ids.bin")
    r = subprocess.run([str(old / "bertc_run"), str(old), "--input-ids", str(tmp_path / "ids.bin")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2 and f"format_version is not {FORMAT_VERSION}" in r.stderr


def test_arm64_under_qemu_reports_ops(tmp_path):
    arm = bertc.compile(tiny_model("bert"), target="android-arm64", seq_len=16, out=tmp_path / "m.bertc")
    report = arm.load().bench(np.full((1, 16), 7, np.int64), runs=2, warmup=1)
    assert report["device"] == "qemu" and [o["name"] for o in report["ops"]] == ir_ops(arm.path)
    assert all(o["ms"] >= 0 and o["p50_ms"] >= 0 for o in report["ops"])
    assert report["by_kernel"]["bertc_linear_packed"]["calls"] >= 6
