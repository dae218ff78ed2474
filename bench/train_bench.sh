#!/usr/bin/env bash
# Training throughput: tokens/s and achieved GFLOP/s for model_tiny and model_small, fp32 and
# bf16, on 2 threads with random tokens, plus peak RSS of model_small with and without gradient
# checkpointing (each configuration in its own process, so peak RSS is per configuration).
#
#   bench/train_bench.sh [path/to/ktl]        STEPS=5 WARMUP=2 THREADS=2 to change the run length
#
# Achieved GFLOP/s counts model FLOPs: 3 x forward (backward = 2 x forward) with dense attention
# at the full sequence length; the recompute of gradient checkpointing is not counted.
# Run on a quiet machine: other processes on the same cores distort every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
KTL=${1:-build/ktl}
STEPS=${STEPS:-5}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
export OMP_WAIT_POLICY=PASSIVE

# The trainer's "precision:" line goes to stderr; results to stdout.
run() { "$KTL" bench-train --threads "$THREADS" "$@"; }
timed() { run --steps "$STEPS" --warmup "$WARMUP" "$@"; }

echo "# matmul peak on $THREADS threads"
run --model-config configs/model_tiny.yaml --batch-size 1 --seq-len 16 --steps 1 --warmup 0 --bf16 false --peak
echo "# throughput (model | precision | batch | threads | checkpointing | tok/s | GFLOP/s | s/step | peak RSS)"
for prec in false true; do
  timed --model-config configs/model_tiny.yaml --batch-size 8 --seq-len 256 --bf16 "$prec"
done
for prec in false true; do
  timed --model-config configs/model_small.yaml --batch-size 4 --seq-len 512 --bf16 "$prec"
done
echo "# model_small memory: gradient checkpointing off vs on (bf16)"
run --model-config configs/model_small.yaml --batch-size 4 --seq-len 512 --bf16 true --steps 2 --warmup 1
run --model-config configs/model_small.yaml --batch-size 4 --seq-len 512 --bf16 true --steps 2 --warmup 1 --gradient-checkpointing
