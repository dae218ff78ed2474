#!/usr/bin/env bash
# The best model N minutes can make: candidates (model shape, learning rate, data) trained for
# the same wall-clock budget on this machine, compared by test bits per character and zero-shot
# task accuracy. Built to be immune to load while it trains:
#   1. each candidate's throughput is measured first, back to back, with `ktl bench-train` at
#      every core (run this part on an idle machine: it defines the budgets);
#   2. its budget in steps = MINUTES x 60 x tok/s x LOOP_SHARE / tokens per step (LOOP_SHARE: the
#      training loop's evaluations cost ~3% at eval_steps 250);
#   3. every candidate trains for exactly its steps, JOBS at a time with one thread each, so the
#      result depends on the steps, not on what else ran meanwhile (the LR schedule decays over
#      the budget, as --max-minutes does);
#   4. test bpc over the whole test split, NSMC and KorNLI zero-shot acc / acc_norm.
# Prints a markdown table (also OUT/table.md).
#
#   bench/compute_optimal.sh CANDIDATES OUT [path/to/ktl]
#       MINUTES=60 JOBS=2 THREADS=0 LOOP_SHARE=0.97 RECIPE=configs/recipes/tiny.yaml
# CANDIDATES: one per line, "name model.yaml data_dir learning_rate [more ktl train flags]";
# '#' starts a comment. bench/compute_optimal/candidates.txt is the set behind the training
# guide's table. Budgets already in OUT/budget-NAME are kept (delete them to re-measure).
set -euo pipefail
cd "$(dirname "$0")/.."
CANDS=${1:?usage: bench/compute_optimal.sh CANDIDATES OUT [ktl]}
OUT=${2:?usage: bench/compute_optimal.sh CANDIDATES OUT [ktl]}
KTL=$(realpath "${3:-build/ktl}")
MINUTES=${MINUTES:-60}
JOBS=${JOBS:-2}
THREADS=${THREADS:-0}
LOOP_SHARE=${LOOP_SHARE:-0.97}
RECIPE=${RECIPE:-configs/recipes/tiny.yaml}
mkdir -p "$OUT"
grep -v '^\s*#' "$CANDS" | grep -v '^\s*$' > "$OUT/candidates"

cfg() { sed -n "s/^$2: *\([0-9.e+-]*\).*/\1/p" "$1" | head -1; }
BATCH=$(cfg "$RECIPE" batch_size)
SEQ=$(cfg "$RECIPE" max_seq_length)

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# 1-2. budgets
while read -r name model data lr rest <&3; do
  [ -s "$OUT/budget-$name" ] && continue
  tps=$("$KTL" bench-train --model-config "$model" --batch-size "$BATCH" --seq-len "$SEQ" \
          --threads "$THREADS" --steps 8 --warmup 2 2>/dev/null |
        sed -n 's/.*| \([0-9]*\) tok\/s |.*/\1/p')
  steps=$(python3 -c "print(int($MINUTES*60*$tps*$LOOP_SHARE/($BATCH*$SEQ)))")
  echo "$tps $steps" > "$OUT/budget-$name"
  echo "budget $name: $tps tok/s -> $steps steps for $MINUTES min"
done 3< "$OUT/candidates"

# 3. training, JOBS at a time (a finished run's final/ is kept)
train_one() {
  local name=$1 model=$2 data=$3 lr=$4; shift 4
  local steps; steps=$(cut -d' ' -f2 "$OUT/budget-$name")
  [ -e "$OUT/$name/final/meta.json" ] && return 0
  "$KTL" train --config "$RECIPE" --model-config "$model" --data "$data" \
    --output-dir "$OUT/$name" --max-steps "$steps" --max-minutes 0 --learning-rate "$lr" \
    --num-threads 1 --save-steps 1000000 --sample-steps 1000000 --keep-last-checkpoints 1 "$@" \
    > "$OUT/train-$name.log" 2>&1
}
export -f train_one; export OUT KTL RECIPE
xargs -P "$JOBS" -L 1 bash -c 'train_one "$@"' _ < "$OUT/candidates"

# 4. evaluation and the table
{
  echo "| candidate | params | tok/s | steps (tokens) | test bpc | NSMC acc | KorNLI acc / acc_norm |"
  echo "|---|---|---|---|---|---|---|"
  while read -r name model data lr rest <&3; do
    read -r tps steps < "$OUT/budget-$name"
    m="$OUT/$name/final"
    bpc=$("$KTL" eval --model "$m" --data "$data" --split test --max-batches 100000 \
            --bf16 false --num-threads "$THREADS" 2>/dev/null | sed -n 's/^bits per character: *\([0-9.]*\).*/\1/p' | tail -1)
    task() { "$KTL" eval --model "$m" --task "$1" --json --num-threads "$THREADS" 2>/dev/null | tail -1; }
    nsmc=$(task nsmc-sentiment | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["acc"])')
    nli=$(task kornli | python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f / %.3f" % (j["acc"], j["acc_norm"]))')
    params=$("$KTL" info --model-config "$model" | sed -n 's/^parameters .*(\([0-9.]*M\);.*/\1/p')
    echo "| $name (lr $lr $rest) | $params | $tps | $steps ($((steps * BATCH * SEQ))) | $bpc | $nsmc | $nli |"
  done 3< "$OUT/candidates"
} | tee "$OUT/table.md"
