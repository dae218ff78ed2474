#!/usr/bin/env bash
# The real training loop against its benchmark, on the same model, batch and precision:
# `ktl bench-train` (steps alone, random tokens) and `ktl train` (real shards, logging every
# LOG steps, evaluation every EVAL steps, metrics) alternate ROUNDS times so a load change on a
# shared machine hits both; prints each figure and the ratio of the medians.
# The train figure is the trainer's own "throughput:" line: tokens over the loop's wall time
# minus evaluation, checkpoint and sample time.
#
#   bench/train_vs_bench.sh DATA_DIR [path/to/ktl]
#       MODEL=configs/model_tiny.yaml BATCH=8 SEQ=256 BF16=false STEPS=40 ROUNDS=2 EVAL=20 LOG=10
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: bench/train_vs_bench.sh DATA_DIR [ktl]}
KTL=${2:-build/ktl}
MODEL=${MODEL:-configs/model_tiny.yaml}
BATCH=${BATCH:-8}
SEQ=${SEQ:-256}
BF16=${BF16:-false}
STEPS=${STEPS:-40}
ROUNDS=${ROUNDS:-2}
EVAL=${EVAL:-20}
LOG=${LOG:-10}
THREADS=${THREADS:-2}
export OMP_WAIT_POLICY=PASSIVE
OUT=$(mktemp -d /tmp/ktl-train-vs-bench.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

bench=() train=()
for r in $(seq 1 "$ROUNDS"); do
  b=$("$KTL" bench-train --model-config "$MODEL" --batch-size "$BATCH" --seq-len "$SEQ" \
        --bf16 "$BF16" --threads "$THREADS" --steps "$STEPS" --warmup 2 2>/dev/null |
      sed -n 's/.*| \([0-9]*\) tok\/s |.*/\1/p')
  "$KTL" train --model-config "$MODEL" --data "$DATA" --output-dir "$OUT/run$r" \
    --batch-size "$BATCH" --max-seq-length "$SEQ" --bf16 "$BF16" --num-threads "$THREADS" \
    --max-steps "$STEPS" --warmup-steps 5 --eval-steps "$EVAL" --log-steps "$LOG" \
    --save-steps 0 --sample-steps 0 > "$OUT/train$r.log" 2>&1
  t=$(sed -n 's/.*throughput: \([0-9]*\) tok\/s over the loop.*/\1/p' "$OUT/train$r.log" | tail -1)
  echo "round $r: bench-train $b tok/s, train loop $t tok/s (excl. eval)"
  bench+=("$b") train+=("$t")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mb=$(median "${bench[@]}") mt=$(median "${train[@]}")
echo "median: bench-train $mb tok/s, train $mt tok/s, ratio $(awk -v a="$mt" -v b="$mb" 'BEGIN {printf "%.3f", a/b}')"
