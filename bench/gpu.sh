#!/usr/bin/env bash
# bench/gpu.sh: on a machine with an NVIDIA GPU and a pip PyTorch (CUDA), build ktl against that
# PyTorch's LibTorch and run what needs the GPU:
#   1. configure with -DKTL_TORCH_FROM_PYTHON=ON (nvcc, CUDA arch and nvtx3 found as
#      /work/shared/gpu's reference script did), build ktl and the tests;
#   2. the tests that exercise CUDA when present (engine, model, trainer, distributed; they print
#      which devices were skipped), and the header self-containment check on LibTorch 2.x;
#   3. MFU: `ktl bench-train --device cuda` vs bench/torch_train_ref.py (eager, SDPA, fused
#      AdamW) on the same shapes: model_small (8k vocabulary) 4x512 and 16x1024, bf16 and fp32;
#   4. the engine benchmark `ktl bench --device cuda` (the torch-ops path) on a random-init
#      model_small, fp32, bf16 and int8 (int8 runs as bf16 on the GPU), 1/8/32 streams.
# Not covered: data parallel over NCCL (needs 2+ GPUs; docs/deployment.md has the recipe).
# The project's other C++ libraries must be findable: installed (Debian/Ubuntu `make deps`), or
# unpacked .debs under KTL_DEPS_PREFIX (see docs/deployment.md, "Building against a pip LibTorch").
# Results: $OUT (default /tmp/ktl-gpu) summary.txt and logs. BUDGET seconds bound the whole run.
#
#   OUT=/tmp/gpu BUDGET=540 bash bench/gpu.sh
set -uo pipefail

T0=$(date +%s)
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/ktl-gpu}"
B="${BUILD_DIR:-$REPO/build-gpu}"
BUDGET="${BUDGET:-540}"
JOBS="${JOBS:-$(nproc)}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
left() { echo $((BUDGET - ($(date +%s) - T0))); }
say() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$SUMMARY"; }
# run LABEL SECONDS CMD...: time-boxed, output to $OUT/LABEL.log, last lines to the summary.
run() {
  local label=$1 want=$2 l
  shift 2
  l=$(($(left) - 10))
  ((l < want)) && want=$l
  if ((want < 5)); then say "$label: skipped (out of time)"; return 1; fi
  timeout "$want" "$@" >"$OUT/$label.log" 2>&1
  local rc=$?
  say "$label: rc=$rc"
  tail -n 4 "$OUT/$label.log" | sed 's/^/    /' | tee -a "$SUMMARY" >/dev/null
  return $rc
}

eval "$($PY - <<'PYEOF'
import os, shlex, torch
print(f"TORCH_VERSION={shlex.quote(torch.__version__)}")
print(f"CUDA_OK={int(torch.cuda.is_available())}")
print(f"NGPU={torch.cuda.device_count()}")
cc = "%d%d" % torch.cuda.get_device_capability(0) if torch.cuda.is_available() else "90"
print(f"CUDA_ARCH={cc}")
print(f"GPU_NAME={shlex.quote(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')}")
print(f"TORCH_INC={shlex.quote(os.path.join(os.path.dirname(torch.__file__), 'include'))}")
PYEOF
)" || { say "python3 cannot import torch"; exit 1; }
say "torch $TORCH_VERSION, cuda available $CUDA_OK, $NGPU GPU(s): $GPU_NAME (sm_$CUDA_ARCH)"

NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "${NVCC:-/usr/local/cuda/bin/nvcc}")")}"
NVTX_DIR=""
for c in "$CUDA_HOME/include" "$CUDA_HOME/targets/x86_64-linux/include" "$TORCH_INC"; do
  [ -f "$c/nvtx3/nvToolsExt.h" ] && NVTX_DIR=$c && break
done
ARGS=(-S "$REPO" -B "$B" -DCMAKE_BUILD_TYPE=Release -DKTL_TORCH_FROM_PYTHON=ON
  "-DKTL_PYTHON=$PY" "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH" "-DCUDAToolkit_ROOT=$CUDA_HOME"
  -DCMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE=PRE_TEST)
[ -n "$NVCC" ] && ARGS+=("-DCMAKE_CUDA_COMPILER=$NVCC")
[ -n "$NVTX_DIR" ] && ARGS+=("-Dnvtx3_dir=$NVTX_DIR")
if [ -n "${KTL_DEPS_PREFIX:-}" ]; then
  # Debian's spdlog 1.10 needs Debian's fmt 9 before torch's bundled fmt.
  ARGS+=("-DCMAKE_PREFIX_PATH=$KTL_DEPS_PREFIX/usr"
    "-DCMAKE_CXX_FLAGS=-isystem $KTL_DEPS_PREFIX/usr/include -isystem $KTL_DEPS_PREFIX/usr/include/x86_64-linux-gnu")
  export PKG_CONFIG_PATH="$KTL_DEPS_PREFIX/usr/lib/x86_64-linux-gnu/pkgconfig:$KTL_DEPS_PREFIX/usr/share/pkgconfig"
  export LD_LIBRARY_PATH="$KTL_DEPS_PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
run configure 180 cmake "${ARGS[@]}" || exit 1
grep -E "LibTorch .* from|gloo|NCCL" "$OUT/configure.log" | sed 's/^/    /' >>"$SUMMARY"
run build 400 cmake --build "$B" -j "$JOBS" || exit 1

KTL="$B/ktl"
SMALL="$OUT/model_small_8k.yaml"
sed 's/^vocab_size:.*/vocab_size: 8000/' "$REPO/configs/model_small.yaml" >"$SMALL"
run tests 240 ctest --test-dir "$B" -R 'Engine|engine|model|trainer|Distributed|headers' --timeout 200 \
  --output-on-failure
grep -hiE "skipped" "$OUT/tests.log" | sort -u | head -10 | sed 's/^/    /' >>"$SUMMARY"

for shape in "4 512" "16 1024"; do
  set -- $shape
  for p in true false; do
    run "ktl-train-${1}x${2}-bf16-$p" 120 "$KTL" bench-train --model-config "$SMALL" \
      --device cuda --batch-size "$1" --seq-len "$2" --bf16 "$p" --steps 10 --warmup 3
    run "torch-train-${1}x${2}-bf16-$p" 120 "$PY" "$REPO/bench/torch_train_ref.py" \
      --model-config "$SMALL" --device cuda --batch-size "$1" --seq-len "$2" --bf16 "$p" --sdpa
  done
done
for dt in fp32 bf16 int8; do
  run "ktl-engine-bench-$dt" 100 "$KTL" bench --device cuda --random-init --model-config "$SMALL" \
    --dtype "$dt" --streams 1,8,32 --prompt-tokens 128 --gen-tokens 128 --json
done
say "done; logs in $OUT"
