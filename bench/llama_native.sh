#!/usr/bin/env bash
# ktl next to llama.cpp built natively from the source node-llama-cpp 3.21.1 ships
# (tests/export/llama/node_modules/node-llama-cpp/llama/gitRelease.bundle, a September 2026
# llama.cpp), in one interleaved run on the same random-init checkpoint:
#   1-stream and N-stream decode (same prompt and generation lengths), 512-token prefill, peak RSS;
#   ktl fp32 / int8 (`ktl bench --json`) against llama.cpp f32 / q8_0 (llama-batched-bench for
#   decode, llama-bench for prefill and again for 1-stream decode, keeping the better; the
#   batched run under /usr/bin/time for its peak RSS); and the machine's limits
#   (ktl_machine_limits), so each decode figure comes with its share of them.
#
#   bench/llama_native.sh build            clone + build into the cache (once per machine)
#   bench/llama_native.sh [run] [path/to/ktl]
#     KTL_LLAMA_CACHE=~/.cache/ktl-llama   machine-local, outside the repo; never committed
#     FLAVOR=native|avx2                   native: GGML_NATIVE=ON; avx2: AVX2+FMA only, AVX-512
#                                          off, and ktl under --kernels avx2
#     MODEL_CONFIG=configs/model_small.yaml THREADS=2 STREAMS=16 PROMPT=32 GEN=64 PREFILL=512
#     REPEAT=3 KEEP=dir TOKENIZER=dir
#
# This llama.cpp builds `llama-cli` only with its server (LLAMA_BUILD_SERVER); the classic
# command-line generator is `llama-completion`, built instead.
#
# It passes or fails nothing: it prints figures (the best of REPEAT interleaved rounds; a busy
# machine only makes a run slower). Run it on a quiet machine or say it was loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${KTL_LLAMA_CACHE:-$HOME/.cache/ktl-llama}
FLAVOR=${FLAVOR:-native}
BUNDLE=tests/export/llama/node_modules/node-llama-cpp/llama/gitRelease.bundle
BIN=$CACHE/build-$FLAVOR/bin

build() {
  [ -f "$BUNDLE" ] || { echo "$BUNDLE missing: run make test-deps" >&2; exit 1; }
  mkdir -p "$CACHE"
  [ -d "$CACHE/src/.git" ] || git clone -q "$BUNDLE" "$CACHE/src"
  local flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF
               -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=ON)
  for fl in native avx2; do
    if [ "$fl" = native ]; then extra=(-DGGML_NATIVE=ON)
    else extra=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
                -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF
                -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF); fi
    cmake -S "$CACHE/src" -B "$CACHE/build-$fl" "${flags[@]}" "${extra[@]}" > "$CACHE/cmake-$fl.log"
    cmake --build "$CACHE/build-$fl" -j"$(nproc)" --target llama-bench llama-batched-bench llama-completion \
      > "$CACHE/build-$fl.log" 2>&1 || { tail -20 "$CACHE/build-$fl.log"; exit 1; }
    echo "built $CACHE/build-$fl/bin (llama-bench, llama-batched-bench, llama-completion)"
  done
}

if [ "${1:-run}" = build ]; then build; exit 0; fi
[ "${1:-}" = run ] && shift
KTL=${1:-build/ktl}
MODEL_CONFIG=${MODEL_CONFIG:-configs/model_small.yaml}
THREADS=${THREADS:-2} STREAMS=${STREAMS:-16} PROMPT=${PROMPT:-32} GEN=${GEN:-64}
PREFILL=${PREFILL:-512} REPEAT=${REPEAT:-3}
# Each runtime runs with its own threading defaults: ktl sets OMP_WAIT_POLICY=PASSIVE itself
# (core/base/runtime_tuning.h); llama.cpp's OpenMP barriers want libgomp's default spinning.
# Passive waiting (exported by the Makefile, or left in a shell) halved llama.cpp's 1-stream
# decode here (q8_0 84-100 against 182-193 tok/s), so it is removed for llama.cpp's runs.
LLAMA_ENV=(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT)
[ -x "$KTL" ] || { echo "$KTL not found: build it first" >&2; exit 1; }
[ -x "$BIN/llama-batched-bench" ] || { echo "no llama.cpp in $BIN: bench/llama_native.sh build" >&2; exit 1; }
KERNELS=()
if [ "$FLAVOR" = avx2 ]; then
  # ktl under the same ceiling: its kernels, LibTorch, oneDNN and OpenBLAS capped at AVX2
  # (core/base/kernel_ceiling.h); the table takes the limits' AVX2 peaks.
  KERNELS=(--kernels avx2)
  export KTL_KERNELS=avx2
fi

if [ -n "${KEEP:-}" ]; then W=$KEEP; mkdir -p "$W"; else W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; fi
vocab=$(sed -n 's/^vocab_size: *//p' "$MODEL_CONFIG")
if [ -n "${TOKENIZER:-}" ]; then tok=$TOKENIZER; else
  tok=$W/tok
  [ -f "$tok/tokenizer.model" ] ||
    "$KTL" prepare-data --default-corpus --output "$tok" --vocab-size "$vocab" --quiet >&2
fi
[ -f "$W/model/model.safetensors" ] ||
  "$KTL" init-model --model-config "$MODEL_CONFIG" --tokenizer "$tok" --out "$W/model" >&2
for dt in f32 q8_0; do
  [ -f "$W/model-$dt.gguf" ] ||
    "$KTL" export --model "$W/model" --format gguf --dtype "$dt" --out "$W/model-$dt.gguf" >&2
done

R=$W/results.jsonl
: > "$R"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
# This machine's limits, measured now on the same threads (bench/machine_limits.cpp): the table
# gives each figure's share of them.
LIMITS=$(dirname "$KTL")/ktl_machine_limits
if [ -x "$LIMITS" ]; then "$LIMITS" --threads "$THREADS" | sed 's/^{/{"who":"limits",/' >> "$R"; fi
rss() { sed -n 's/.*Maximum resident set size (kbytes): *//p' "$1"; }
for round in $(seq "$REPEAT"); do
  for dt in fp32 int8; do
    echo "# round $round: ktl $dt" >&2
    /usr/bin/time -v "$KTL" bench --model "$W/model" --dtype "$dt" --threads "$THREADS" "${KERNELS[@]}" \
      --streams "1,$STREAMS" --prompt-tokens "$PROMPT" --gen-tokens "$GEN" --json \
      > "$W/out" 2> "$W/time"
    sed "s/^{/{\"who\":\"ktl\",\"dtype\":\"$dt\",\"rss_kb\":$(rss "$W/time"),/" "$W/out" >> "$R"
    "$KTL" bench --model "$W/model" --dtype "$dt" --threads "$THREADS" "${KERNELS[@]}" --streams 1 \
      --prompt-tokens "$PREFILL" --gen-tokens 2 --json |
      sed "s/^{/{\"who\":\"ktl\",\"dtype\":\"$dt\",\"phase\":\"prefill\",/" >> "$R"
  done
  for dt in f32 q8_0; do
    echo "# round $round: llama.cpp $dt" >&2
    /usr/bin/time -v "${LLAMA_ENV[@]}" "$BIN/llama-batched-bench" -m "$W/model-$dt.gguf" -t "$THREADS" -tb "$THREADS" \
      -c $(( (PROMPT + GEN) * STREAMS + 256 )) -b 2048 -ub 512 -npp "$PROMPT" -ntg "$GEN" \
      -npl "1,$STREAMS" --output-format jsonl > "$W/out" 2> "$W/time" || { tail "$W/time"; exit 1; }
    grep '^{' "$W/out" | sed "s/^{/{\"who\":\"llama\",\"dtype\":\"$dt\",\"rss_kb\":$(rss "$W/time"),/" >> "$R"
    # llama-bench: the prefill, and 1-stream decode a second way (its tg test, from an empty
    # context); the table keeps llama.cpp's better 1-stream figure of the two tools.
    "${LLAMA_ENV[@]}" "$BIN/llama-bench" -m "$W/model-$dt.gguf" -t "$THREADS" -p "$PREFILL" -n "$GEN" -r 1 -o jsonl \
      2>/dev/null | grep '^{' | sed "s/^{/{\"who\":\"llama\",\"dtype\":\"$dt\",\"phase\":\"prefill\",/" >> "$R"
  done
done

# The limits again after the rounds: this VM's read rate moved 2x between runs, so the table
# gives both and takes the higher (the shares are then the lower bound).
if [ -x "$LIMITS" ]; then "$LIMITS" --threads "$THREADS" | sed 's/^{/{"who":"limits",/' >> "$R"; fi
flags=$(grep -m1 -o -w -E 'avx2|avx512f|avx512_vnni|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') ($flags), family $(sed -n 's/^cpu family\t*: //p' /proc/cpuinfo | head -1) model $(sed -n 's/^model\t*: //p' /proc/cpuinfo | head -1), $(nproc) cores; threads $THREADS each; llama.cpp $FLAVOR; load average before: $LOAD0; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
echo "model: $MODEL_CONFIG, random init; decode: prompt $PROMPT + $GEN new tokens; prefill: $PREFILL tokens; $(date -u +%Y-%m-%dT%H:%MZ)"
python3 bench/llama_native_table.py "$R" "$STREAMS" "$FLAVOR"
