"""ARM64 artifacts (android-arm64 with zig cc, static) run under qemu-aarch64 and through a
stand-in adb, agree with PyTorch within 1e-4, are ARM64 binaries, and ran the NEON kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import transformers as T
from conftest import ARCHS, max_error, random_inputs, reference, tiny_model

import bertc
from bertc import toolchain
from bertc.runtime import CompiledModel

TOL = 1e-4
HOT = {"bertc_linear_packed", "bertc_attention", "bertc_layer_norm"}  # must be NEON wherever they are used
STAND_IN = Path(__file__).resolve().parent / "stand_in"


def elf_machine(path: Path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF"
    return int.from_bytes(head[18:20], "little")


def check_neon(report: dict) -> None:
    used = report["kernels"]
    assert HOT & set(used), used
    assert all(used[k] == "neon" for k in HOT & set(used)), used


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", ARCHS)
def test_architecture_under_qemu(arch, impl, tmp_path):
    model = tiny_model(arch, impl)
    art = bertc.compile(model, target="android-arm64", seq_len=24, out=tmp_path / "m.bertc")
    assert elf_machine(art.path / "bertc_run") == 183  # EM_AARCH64
    assert art.manifest.arch == "aarch64" and art.manifest.isa == "neon"
    compiled = art.load(threads=2)  # an ARM64 artifact on this x86-64 machine: qemu by default
    for seq, pad_from in ((24, 17), (9, 5)):
        ids, mask, types = random_inputs(1, seq, 120, seed=seq, pad_from=pad_from)
        types[:, seq // 2:] = 1
        ours = compiled(ids, mask, types) if arch != "distilbert" else compiled(ids, mask)
        err = max_error(ours, reference(model, ids, mask, types), mask)
        print(f"qemu {arch}-{impl} seq {seq}: max error {err:.2e}")  # shown with pytest -s
        assert err <= TOL
    assert compiled.last_report["device"] == "qemu"
    check_neon(compiled.last_report)


def test_real_minilm_under_qemu(minilm_path, tmp_path):
    model = T.AutoModel.from_pretrained(minilm_path).eval()
    art = bertc.compile(minilm_path, target="android-arm64", seq_len=128, out=tmp_path / "minilm.bertc")
    tok = T.AutoTokenizer.from_pretrained(minilm_path)
    enc = tok(["the plot never comes together and the jokes fall flat"], padding="max_length", max_length=128,
              return_tensors="np")
    ids, mask, types = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
    ours = art.load(threads=2)(ids, mask, types)
    err = max_error(ours, reference(model, ids, mask, types), mask)
    print(f"qemu all-MiniLM-L6-v2 seq 128: max error {err:.2e}")
    assert err <= TOL


def test_adb_flow_with_stand_in(tmp_path, monkeypatch):
    """push, shell, pull through an adb on PATH; the stand-in runs bertc_run under qemu."""
    monkeypatch.setenv("PATH", f"{STAND_IN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("BERTC_FAKE_ADB_ROOT", str(tmp_path / "phone"))
    model = tiny_model("bert")
    art = bertc.compile(model, target="android-arm64", seq_len=16, out=tmp_path / "m.bertc")
    phone = art.load(threads=2, device="adb:FAKE123", cores="0-1")
    ids, mask, types = random_inputs(1, 12, 120, seed=2, pad_from=9)
    assert max_error(phone(ids, mask, types), reference(model, ids, mask, types), mask) <= TOL
    log = (tmp_path / "phone" / "adb.log").read_text().splitlines()
    assert any(line.startswith("-s FAKE123 push") and "m.bertc" in line for line in log)
    assert any(line.startswith("-s FAKE123 pull") and "last_hidden_state.bin" in line for line in log)
    assert (tmp_path / "phone" / "data/local/tmp/bertc/m.bertc/weights.bin").exists()

    r = subprocess.run([sys.executable, "-m", "bertc.cli", "bench", str(art.path), "--device", "adb:FAKE123",
                        "--runs", "3", "--warmup", "1", "--threads", "2", "--cores", "0"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert {"p50_ms", "p90_ms", "first_run_ms", "peak_rss_kb"} <= set(report)
    assert report["p50_ms"] <= report["p90_ms"] and report["cores"] == "0" and report["device"] == "adb:FAKE123"
    check_neon(report)


def test_device_errors(tmp_path, monkeypatch):
    art = bertc.compile(tiny_model("bert"), target="android-arm64", seq_len=8, out=tmp_path / "m.bertc")
    with pytest.raises(bertc.BertcError, match="for aarch64.*--device qemu"):
        bertc.load(art.path, device="host")
    with pytest.raises(bertc.BertcError, match="only host artifacts run in this process"):
        CompiledModel(art.path)
    with pytest.raises(bertc.BertcError, match="unknown device 'usb'"):
        bertc.load(art.path, device="usb")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(bertc.BertcError, match="adb on PATH"):
        bertc.load(art.path, device="adb")
    r = subprocess.run(["qemu-aarch64", str(art.path / "bertc_run"), str(art.path), "--input-ids", "/nonexistent",
                        "--cores", "9-2"], capture_output=True, text=True, check=False, env={"PATH": "/usr/bin"})
    assert r.returncode == 6 and "--cores 9-2" in r.stderr


def test_missing_toolchain_says_how_to_get_one(monkeypatch, tmp_path):
    for name in toolchain.FINDERS:
        monkeypatch.setitem(toolchain.FINDERS, name, lambda: None)
    with pytest.raises(bertc.BertcError, match="Android NDK.*ANDROID_NDK_HOME.*pip install ziglang"):
        bertc.compile(tiny_model("bert"), target="android-arm64", seq_len=8, out=tmp_path / "x.bertc")
    assert not (tmp_path / "x.bertc").exists()


def test_toolchains_command_lists_what_each_target_uses():
    r = subprocess.run([sys.executable, "-m", "bertc.cli", "toolchains"], capture_output=True, text=True, check=False)
    assert r.returncode == 0
    assert "android-arm64   zig" in r.stdout and "host            cc" in r.stdout
    assert "ANDROID_NDK_HOME" in r.stdout  # how to get the NDK, which is not installed here


def test_fp16_weights_on_neon_fp16_arithmetic(minilm_path, tmp_path):
    """--dtype fp16: half-float GEMM weights and FP16 multiply-adds; its error against PyTorch's
    fp32 is bounded and reported beside the fp32 artifact's."""
    model = T.AutoModel.from_pretrained(minilm_path).eval()
    ids, mask, types = random_inputs(1, 32, 30000, seed=8, pad_from=27)
    ref = reference(model, ids, mask, types)
    errors = {}
    for dtype in ("fp32", "fp16"):
        art = bertc.compile(minilm_path, target="android-arm64", seq_len=32, out=tmp_path / f"{dtype}.bertc",
                            dtype=dtype)
        assert art.manifest.dtype == dtype
        phone = art.load(threads=2)
        errors[dtype] = max_error(phone(ids, mask, types), ref, mask)
        assert phone.last_report["kernels"].get("bertc_linear_packed_f16") == ("neon" if dtype == "fp16" else None)
    print(f"max |bertc - torch fp32| on MiniLM: fp32 {errors['fp32']:.2e}, fp16 {errors['fp16']:.2e}")
    assert errors["fp32"] <= TOL
    assert errors["fp32"] < errors["fp16"] <= 5e-2  # half precision: about 3 decimal digits per weight


def test_fp16_needs_an_arm64_target(tmp_path):
    with pytest.raises(bertc.BertcError, match="--dtype fp16 needs an ARM64 target"):
        bertc.compile(tiny_model("bert"), target="host", seq_len=8, out=tmp_path / "x.bertc", dtype="fp16")
