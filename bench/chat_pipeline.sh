#!/usr/bin/env bash
# The measured run of docs/training-guide.md ("What to expect" under instruction tuning):
# base (60 minutes of the tiny recipe) -> SFT -> {DPO with random rejected answers, ORPO, DPO with
# on-policy rejected answers}, all on one leak-free split of chatbot-qa.tsv, then every model
# answers all test prompts greedily (chrF / ROUGE-L with bootstrap intervals).
#
#   bench/chat_pipeline.sh WORK_DIR [path/to/ktl]
#     DATA=../shared/data/ko  BASE_MINUTES=60  THREADS=1
#
# Logs go to WORK_DIR/*.log (peak RSS and wall time of each step from /usr/bin/time). A finished
# step is skipped when run again (its final/ link exists). Prints figures; passes nothing.
set -euo pipefail
W=${1:?usage: bench/chat_pipeline.sh WORK_DIR [ktl]}
K=$(realpath "${2:-build/ktl}")
SRC=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(realpath "${DATA:-$SRC/../shared/data/ko}")
T="--num-threads ${THREADS:-1}"
mkdir -p "$W" && cd "$W"
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
run() { local name=$1; shift; [ -e "$name/final" ] && return 0; stamp "$name"
        /usr/bin/time -v "$K" "$@" > "$name.log" 2>&1; }

[ -f data/train.bin ] || { stamp data; "$K" prepare-data --input "$DATA" --output data \
  --vocab-size 8000 --tokenizer-source-cap 1000000 > data.log 2>&1; }
run base train --config "$SRC/configs/recipes/tiny.yaml" --model-config "$SRC/configs/model_tiny.yaml" \
  --data data --output-dir base --max-minutes "${BASE_MINUTES:-60}" --max-steps 100000 --eval-steps 500 $T
[ -f prefs.jsonl ] || "$K" chat-data --input "$DATA/chatbot-qa.tsv" --split-out split \
  --build-prefs prefs.jsonl > chatdata.log 2>&1
"$K" eval --model base/final --data data --split test --max-batches 100000 --bf16 false $T > eval-base.log 2>&1
run sft sft --init-from base/final --data split --output-dir sft --max-steps 300 --batch-size 8 \
  --max-seq-length 256 $T
run dpo-random dpo --init-from sft/final --data prefs.jsonl --output-dir dpo-random --beta 0.1 \
  --learning-rate 2e-5 --max-steps 200 $T
run orpo dpo --init-from sft/final --data prefs.jsonl --output-dir orpo --loss orpo --orpo-lambda 0.1 \
  --learning-rate 2e-5 --max-steps 200 $T
run dpo-onpolicy dpo --init-from sft/final --data prefs.jsonl --output-dir dpo-onpolicy \
  --rejected-from-model --beta 0.1 --learning-rate 2e-5 --max-steps 200 $T
for m in base sft dpo-random orpo dpo-onpolicy; do
  stamp "chat eval $m"
  "$K" eval --chat --model "$m/final" --data split --split test --answers 557 --show 10 --bf16 false \
    $T > "chat-$m.log" 2>&1
  grep -E "assistant loss|chrF|ROUGE" "chat-$m.log" | sed "s/^/$m: /"
done
grep -h "val step 200" dpo-random.log orpo.log dpo-onpolicy.log || true
stamp done
