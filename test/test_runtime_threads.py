"""One loaded model shared by threads (bertc.h, "Threads"): outputs as if each call ran alone, close()
racing calls ends them cleanly, and a closed model or missing ids is a BertcError. The threaded checks
run in a child process (runtime/tests/threads_check.py), so that a crash fails the test instead of
killing pytest; `make test-sanitize` runs the same script under ASan."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import tiny_model

import bertc
from bertc.toolchain import RUNTIME

CHECK = RUNTIME / "tests" / "threads_check.py"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("threads") / "bert.bertc"
    bertc.compile(tiny_model("bert"), seq_len=16, batch=2, out=out)
    return out


@pytest.mark.parametrize("check", ["same-outputs", "close-race", "c-api"])
def test_one_model_from_many_threads(artifact, check):
    r = subprocess.run([sys.executable, str(CHECK), str(artifact), check, "--threads", "6", "--calls", "60"],
                       capture_output=True, text=True, check=False, timeout=300)
    assert r.returncode == 0, f"rc {r.returncode} (a negative rc is a signal: -11 a segfault)\n{r.stdout}{r.stderr[-3000:]}"


def test_call_after_close_names_the_fix(artifact):
    model = bertc.load(artifact)
    ids = np.ones((2, 16), np.int64)
    model(ids)
    model.close()
    model.close()  # twice is harmless
    with pytest.raises(bertc.BertcError, match="is closed; load it again"):
        model(ids)
    with pytest.raises(bertc.BertcError, match="is closed"):
        model.op_times()


def test_none_ids_names_the_fix(artifact):
    model = bertc.load(artifact)
    with pytest.raises(bertc.BertcError, match="input_ids is None; pass the token ids"):
        model(None)
