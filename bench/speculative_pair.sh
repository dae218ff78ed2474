#!/usr/bin/env bash
# Speculative decoding, measured on a trained model and its distilled draft (ktl distill):
#   ktl: plain against speculative decoding (`ktl bench --prompts`: greedy, the same prompts,
#     interleaved, outputs compared) in fp32 and int8, at 1 and N streams; prompt lookup on a
#     copy-heavy prompt set;
#   llama.cpp (the native peer, bench/llama_native.sh build): the same pair exported to GGUF,
#     llama-completion plain against llama-speculative -md, greedy, same prompts.
#
#   bench/speculative_pair.sh TARGET_DIR DRAFT_DIR PROMPTS.txt [COPY_PROMPTS.txt] [path/to/ktl]
#     THREADS=1 GEN=128 NUM=100 STREAMS=16 K=auto LOOKUP=3 LLAMA_NUM=20 ROUNDS=1
#     KTL_LLAMA_CACHE=~/.cache/ktl-llama FLAVOR=native KEEP=dir
#
# One prompt per line ("\n" inside a line is a newline). It passes or fails nothing: it prints
# figures with the CPU model; say whether the machine was loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=$1 DRAFT=$2 PROMPTS=$3 COPY=${4:-} KTL=${5:-build/ktl}
THREADS=${THREADS:-1} GEN=${GEN:-128} NUM=${NUM:-100} STREAMS=${STREAMS:-16} K=${K:-auto}
LOOKUP=${LOOKUP:-3} LLAMA_NUM=${LLAMA_NUM:-20} ROUNDS=${ROUNDS:-1}
CACHE=${KTL_LLAMA_CACHE:-$HOME/.cache/ktl-llama}
BIN=$CACHE/build-${FLAVOR:-native}/bin
# ktl sets its own OpenMP waiting (PASSIVE, short spin); llama.cpp keeps libgomp's default
# spinning, which passive waiting halved here (bench/llama_native.sh).
unset OMP_WAIT_POLICY GOMP_SPINCOUNT
if [ -n "${KEEP:-}" ]; then W=$KEEP; mkdir -p "$W"; else W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; fi

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), family $(sed -n 's/^cpu family\t*: //p' /proc/cpuinfo | head -1) model $(sed -n 's/^model\t*: //p' /proc/cpuinfo | head -1), $(nproc) cores; threads $THREADS; load before: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "target $TARGET, draft $DRAFT; $NUM prompts of $PROMPTS x $GEN tokens, greedy"
common=(--model "$TARGET" --threads "$THREADS" --gen-tokens "$GEN" --num-prompts "$NUM" --rounds "$ROUNDS")
for dt in fp32 int8; do
  "$KTL" bench "${common[@]}" --dtype "$dt" --prompts "$PROMPTS" --draft-model "$DRAFT" \
    --speculative "$K" --streams "1,$STREAMS"
done
if [ -n "$COPY" ]; then
  echo "prompt lookup (n-gram $LOOKUP) on $COPY:"
  for dt in fp32 int8; do
    "$KTL" bench "${common[@]}" --dtype "$dt" --prompts "$COPY" --prompt-lookup "$LOOKUP" \
      --speculative "$K" --streams "1,$STREAMS"
  done
fi

[ -x "$BIN/llama-speculative" ] || { echo "no llama-speculative in $BIN: bench/llama_native.sh build" >&2; exit 0; }
for dt in f32 q8_0; do
  for m in target draft; do
    dir=$TARGET; [ $m = draft ] && dir=$DRAFT
    [ -f "$W/$m-$dt.gguf" ] || "$KTL" export --model "$dir" --format gguf --dtype "$dt" --out "$W/$m-$dt.gguf" >&2
  done
done
# llama.cpp: each prompt alone (one stream), plain then speculative; tokens/s summed over prompts.
for dt in f32 q8_0; do
  plain_tok=0 plain_ms=0 spec_tok=0 spec_s=0 acc_sum=0 n=0
  while IFS= read -r line && [ "$n" -lt "$LLAMA_NUM" ]; do
    [ -z "${line// }" ] && continue
    n=$((n + 1))
    p=$(printf '%b' "$line")
    # </dev/null: the tools must not eat the prompt file this loop reads.
    out=$("$BIN/llama-completion" -m "$W/target-$dt.gguf" -p "$p" -n "$GEN" --temp 0 --top-k 1 \
      -t "$THREADS" -no-cnv --ignore-eos < /dev/null 2>&1 || true)
    # "eval time =  X ms /  N runs"
    read -r ms runs < <(echo "$out" | sed -n 's/.*[^_]eval time = *\([0-9.]*\) ms \/ *\([0-9]*\) runs.*/\1 \2/p' | tail -1) || true
    plain_ms=$(python3 -c "print($plain_ms + ${ms:-0})"); plain_tok=$((plain_tok + ${runs:-0}))
    out=$("$BIN/llama-speculative" -m "$W/target-$dt.gguf" -md "$W/draft-$dt.gguf" -p "$p" -n "$GEN" \
      --temp 0 --top-k 1 -t "$THREADS" -td "$THREADS" --ignore-eos --spec-draft-n-max 4 < /dev/null 2>&1 || true)
    read -r tok sec < <(echo "$out" | sed -n 's/.*decoded *\([0-9]*\) tokens in *\([0-9.]*\) seconds.*/\1 \2/p' | tail -1) || true
    acc=$(echo "$out" | sed -n 's/.*accept *= *\([0-9.]*\)%.*/\1/p' | tail -1)
    spec_tok=$((spec_tok + ${tok:-0})); spec_s=$(python3 -c "print($spec_s + ${sec:-0})")
    acc_sum=$(python3 -c "print($acc_sum + ${acc:-0})")
  done < "$PROMPTS"
  python3 - "$dt" "$n" "$plain_tok" "$plain_ms" "$spec_tok" "$spec_s" "$acc_sum" <<'PY'
import sys
dt, n, pt, pms, st, ss, acc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
plain = pt / (pms / 1000) if pms else 0
spec = st / ss if ss else 0
print(f"llama.cpp {dt}, 1 stream, {n} prompts: decode {plain:.1f} -> {spec:.1f} tok/s "
      f"({spec / plain if plain else 0:.2f}x, llama-speculative -md, draft max 4) | acceptance {acc / max(n, 1):.1f}%")
PY
done
