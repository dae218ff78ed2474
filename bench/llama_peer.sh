#!/usr/bin/env bash
# ktl next to llama.cpp (the prebuilt binaries of node-llama-cpp 3.21.1, installed by
# `make test-deps` under tests/export/llama/node_modules) on the same random-init model_small
# checkpoint, in one run, 2 threads each:
#   1-stream decode tok/s, N-stream aggregate decode tok/s, TTFT of a 512-token prompt;
#   ktl fp32 / bf16 / int8 (`ktl bench --json`), llama.cpp f32 / q8_0 (the checkpoint exported
#   with `ktl export --format gguf`). Prints a table with ratios ktl / llama.cpp and the CPU model.
#
#   bench/llama_peer.sh [path/to/ktl]
#     MODEL_CONFIG=configs/model_small.yaml THREADS=2 STREAMS=16 PROMPT=32 GEN=64 PREFILL=512 REPEAT=3
#     TOKENIZER=dir/or/tokenizer.model (default: trained here from the Debian Korean corpus,
#                                       with the config's vocab_size)
#     KEEP=dir (keep the checkpoint, GGUF files and results there)
#
# It builds nothing and passes or fails nothing: it prints figures. Other processes on the same
# cores distort them; run it on a quiet machine, or say the machine was loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
KTL=${1:-build/ktl}
MODEL_CONFIG=${MODEL_CONFIG:-configs/model_small.yaml}
THREADS=${THREADS:-2}
STREAMS=${STREAMS:-16}
PROMPT=${PROMPT:-32}
GEN=${GEN:-64}
PREFILL=${PREFILL:-512}
REPEAT=${REPEAT:-3}
export OMP_WAIT_POLICY=PASSIVE NODE_LLAMA_CPP_SKIP_DOWNLOAD=true

[ -x "$KTL" ] || { echo "$KTL not found: build it first (make build)" >&2; exit 1; }
[ -d tests/export/llama/node_modules/node-llama-cpp ] ||
  { echo "tests/export/llama/node_modules missing: run make test-deps" >&2; exit 1; }

if [ -n "${KEEP:-}" ]; then W=$KEEP; mkdir -p "$W"; else W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; fi
vocab=$(sed -n 's/^vocab_size: *//p' "$MODEL_CONFIG")

# A tokenizer with the config's vocabulary (the checkpoint must match it), then random weights.
if [ -n "${TOKENIZER:-}" ]; then
  tok=$TOKENIZER
elif [ -f "$W/tok/tokenizer.model" ]; then
  tok=$W/tok
else
  echo "# training a $vocab-piece tokenizer on the Debian Korean corpus (prepare-data --default-corpus)" >&2
  "$KTL" prepare-data --default-corpus --output "$W/tok" --vocab-size "$vocab" --quiet >&2
  tok=$W/tok
fi
[ -f "$W/model/model.safetensors" ] ||
  "$KTL" init-model --model-config "$MODEL_CONFIG" --tokenizer "$tok" --out "$W/model" >&2
for dt in f32 q8_0; do
  [ -f "$W/model-$dt.gguf" ] ||
    "$KTL" export --model "$W/model" --format gguf --dtype "$dt" --out "$W/model-$dt.gguf" >&2
done

# The corpus may support fewer pieces than asked; the checkpoint has the tokenizer's vocabulary.
vocab=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$W/model/config.json")

R=$W/results.jsonl
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$R"
# REPEAT rounds, each running every configuration in turn; the table keeps the best figure of
# each (a busy machine only ever makes a run slower).
for round in $(seq "$REPEAT"); do
  for dt in fp32 bf16 int8; do
    echo "# round $round: ktl $dt" >&2
    "$KTL" bench --model "$W/model" --dtype "$dt" --threads "$THREADS" --streams 1 \
      --prompt-tokens "$PREFILL" --gen-tokens 2 --json | sed 's/^{/{"phase":"prefill",/' >> "$R"
    "$KTL" bench --model "$W/model" --dtype "$dt" --threads "$THREADS" --streams "1,$STREAMS" \
      --prompt-tokens "$PROMPT" --gen-tokens "$GEN" --json >> "$R"
  done
  for dt in f32 q8_0; do
    echo "# round $round: llama.cpp $dt" >&2
    node bench/llama_peer.mjs run "$W/model-$dt.gguf" "$dt" --threads "$THREADS" \
      --streams "$STREAMS" --prompt-tokens "$PROMPT" --gen-tokens "$GEN" \
      --prefill-tokens "$PREFILL" >> "$R"
  done
done

flags=$(grep -m1 -o -w -E 'avx2|avx512f|avx512_vnni|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') ($flags), $(nproc) cores; threads $THREADS each;" \
     "load average before: $LOAD0"
echo "model: $MODEL_CONFIG, random init, vocab $vocab; decode: prompt $PROMPT + $GEN new tokens;" \
     "prefill: $PREFILL-token prompt; $(date -u +%Y-%m-%dT%H:%MZ)"
node bench/llama_peer.mjs table "$R"
