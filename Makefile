# korean-tiny-llm: `make run` (install, build, serve at http://127.0.0.1:8080) and `make test`.
SHELL := /bin/bash
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
HOST ?= 127.0.0.1
PORT ?= 8080
DATA_DIR ?= var
# Passive OpenMP waiting must be in the environment before libgomp loads (see docs/training-guide.md).
export OMP_WAIT_POLICY ?= PASSIVE
# Let ccache reuse objects across checkouts and with precompiled headers.
export CCACHE_BASEDIR ?= $(CURDIR)
export CCACHE_SLOPPINESS ?= pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_MAXSIZE ?= 5G

# Debian 12 packages: build tools, LibTorch + OpenBLAS, the libraries, the default Korean corpus.
DEB_PACKAGES := build-essential cmake pkg-config ccache git \
  libtorch-dev libgloo-dev libopenblas0-pthread libcpp-httplib-dev nlohmann-json3-dev libsentencepiece-dev \
  libspdlog-dev libgtest-dev libsqlite3-dev libyaml-cpp-dev libutf8proc-dev zlib1g-dev libbz2-dev \
  libreoffice-help-ko debian-faq-ko
# Only for the tests: Node.js clients and the browser test (fonts-nanum: Korean glyphs in its
# screenshots); clang and its runtime (libclang-rt-14-dev: libFuzzer) for the fuzz targets;
# libvalijson-dev: the JSON-schema validator that checks structured output; python3-jinja2:
# the chat template rendered as transformers renders it; g++-aarch64-linux-gnu and qemu-user: the
# kernels built for aarch64 and run under qemu (the kernels_aarch64_qemu test).
DEB_TEST_PACKAGES := chromium fonts-nanum clang libclang-rt-14-dev libvalijson-dev python3-jinja2 \
  g++-aarch64-linux-gnu qemu-user
# `make fuzz`: seconds per fuzz target, and how many run at once.
FUZZ_SECONDS ?= 600
FUZZ_JOBS ?= 1

.PHONY: deps test-deps build test fuzz run web clean format

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $$missing; \
	fi

test-deps: deps
	@missing=$$(for p in $(DEB_TEST_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $$missing; \
	fi
	@if [ -f tests/e2e/package.json ] && [ ! -d tests/e2e/node_modules ]; then cd tests/e2e && npm install --no-audit --no-fund; fi
	@if [ -f tests/server/node/package.json ] && [ ! -d tests/server/node/node_modules ]; then cd tests/server/node && npm install --no-audit --no-fund; fi
	@# llama.cpp as the peer: prebuilt CPU binaries only (--omit=optional skips the GPU variants;
	@# NODE_LLAMA_CPP_SKIP_DOWNLOAD: never fetch or build llama.cpp's sources).
	@if [ -f tests/export/llama/package.json ] && [ ! -d tests/export/llama/node_modules/@node-llama-cpp/linux-x64 ]; then \
	  cd tests/export/llama && export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true && \
	  npm i -E node-llama-cpp@3.21.1 --omit=optional --no-audit --no-fund && \
	  npm i -E @node-llama-cpp/linux-x64@3.21.1 --omit=optional --no-audit --no-fund; fi

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt web
	cmake --build $(BUILD) -j $(JOBS)

web:
	@if [ -f web/package.json ] && [ ! -d web/node_modules ]; then \
	  if command -v npm >/dev/null; then cd web && npm install --no-audit --no-fund; \
	  else echo "npm not found: the dashboard's charts need it (apt-get install npm)"; fi; fi

test: test-deps build
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 900

# libFuzzer targets (tests/fuzz/), clang-built into build-fuzz/; the corpus grows in
# build-fuzz/corpus/<target>, the committed seeds stay as they are.
fuzz: test-deps
	FUZZ_JOBS=$(FUZZ_JOBS) tests/fuzz/fuzz.sh run $(FUZZ_SECONDS)

run: build
	$(BUILD)/ktl serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR) --quickstart

clean:
	rm -rf $(BUILD) build-fuzz $(TSAN_BUILD)

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

# The long fault runs (docs/deployment.md, "What survives what"): every op of a checkpoint save,
# a metrics flush and prepare-data failed in turn, and 50 power-loss rounds. `make test` runs
# a sample of each. Not part of `make test`.
.PHONY: chaos
chaos: test-deps build
	cd $(BUILD) && KTL_FAULT_WALK=full KTL_POWER_LOSS_ROUNDS=50 \
	  ctest --output-on-failure -j 1 --timeout 7200 -R '^(FaultWalkTest|JobStateFaults|ServeFaultTest)\.'

# ThreadSanitizer (docs/deployment.md, "Thread sanitizer"): ktl's own code instrumented in
# build-tsan/ (LibTorch, libgomp and OpenBLAS are not), then the engine, scheduling and server
# tests, with the ktl they start, under one thread per library pool. Not part of `make test`.
# Any report fails the run; reports of child processes land in build-tsan/tsan-reports/.
TSAN_BUILD ?= build-tsan
TSAN_TARGETS := ktl ktl_spm ktl_scheduling_tests ktl_engine_tests ktl_server_unit_tests \
  ktl_server_model_manager_tests ktl_server_connection_tests ktl_job_routes_tests \
  ktl_structured_output_tests ktl_server_stress_tests ktl_server_integration_tests \
  ktl_serve_jobs_e2e_tests
# Left out: in tests/server/, a ktl sft run and 160 schema samples (too slow under TSan) and the
# Node.js client; KernelThreads checks that OpenMP runs 2 threads, which OMP_THREAD_LIMIT forbids.
TSAN_EXCLUDE := ^(sft_chat_e2e|structured_output_e2e|server_openai_node_client|KernelThreads\..*)$$
# One thread in each library pool (the tests ask LibTorch for 2: OMP_THREAD_LIMIT caps them), so
# no uninstrumented pool hands ktl's data between threads behind TSan's back.
TSAN_ENV := TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(abspath tests/tsan.supp) log_path=$(abspath $(TSAN_BUILD))/tsan-reports/report" \
  OMP_NUM_THREADS=1 OMP_THREAD_LIMIT=1 OPENBLAS_NUM_THREADS=1

.PHONY: tsan
tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Release -DKTL_SANITIZE=thread
	nice -n 10 cmake --build $(TSAN_BUILD) -j $(JOBS) --target $(TSAN_TARGETS)
	rm -rf $(TSAN_BUILD)/tsan-reports && mkdir -p $(TSAN_BUILD)/tsan-reports
	@rc=0; for d in scheduling engine server; do \
	  (cd $(TSAN_BUILD)/tests/$$d && $(TSAN_ENV) ctest --output-on-failure -j 2 --timeout 1800 \
	    -E '$(TSAN_EXCLUDE)') || rc=1; done; \
	reports=$$(ls $(TSAN_BUILD)/tsan-reports); \
	if [ -n "$$reports" ]; then cat $(TSAN_BUILD)/tsan-reports/*; \
	  echo "ThreadSanitizer reports: $$(echo $$reports | wc -w) (in $(TSAN_BUILD)/tsan-reports/)"; rc=1; \
	else echo "ThreadSanitizer: no reports"; fi; exit $$rc
