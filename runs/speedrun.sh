#!/usr/bin/env bash
# Upstream's GPU pipeline (runs/speedrun.sh, 8xH100, about 1.5 hours) with upstream's sizes: a 32768-token tokenizer
# on 2B characters, a d24 base model at a tokens:params ratio of 8, CORE, then mid-training, SFT, RL and the chat
# evaluations, and the report card. It needs the CUDA backend for training, which has not landed yet (cuda/README.md):
# until it has, this script checks for it and stops with that message, before downloading anything.
#   ./runs/speedrun.sh        (NANOCHAT_BASE_DIR=/some/dir to keep artifacts elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."

export NANOCHAT_BASE_DIR=${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}
DEPTH=${DEPTH:-24}
NPROC=${NPROC:-8}
nanochat=.build/release/nanochat

scripts/bootstrap --with-tasks
swift build -c release 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]'

# Training on the GPU goes through `--device cuda`, which base-train does not have yet.
if ! $nanochat base-train --help | grep -q -- '--device'; then
  echo "speedrun.sh needs the CUDA training backend (base-train --device cuda), which has not landed yet:"
  echo "the kernels pass their checks on an H100 (cuda/README.md) but training is not wired to them."
  echo "On a CPU, run ./runs/runcpu.sh instead."
  exit 2
fi
if $nanochat device | grep -q 'CUDA backend unavailable'; then
  echo "speedrun.sh needs an NVIDIA GPU with the CUDA library built (cuda/build.sh); \`nanochat device\` says:"
  $nanochat device
  exit 2
fi

$nanochat report reset
# data: 8 shards for the tokenizer now, 170 for pretraining in the background
$nanochat dataset download -n 8
$nanochat dataset download -n 170 &
download=$!
$nanochat tok-train --vocab-size 32768 --max-chars 2000000000
$nanochat tok-eval
$nanochat dataset tasks --online
$nanochat dataset identity
wait $download
launch="mpirun -np $NPROC"
$launch $nanochat base-train --device cuda --depth "$DEPTH" --target-param-data-ratio 8 --device-batch-size 16
$launch $nanochat base-eval --device cuda --device-batch-size 16
$launch $nanochat mid-train --device cuda
$launch $nanochat chat-eval --device cuda -i mid
$launch $nanochat chat-sft --device cuda
$launch $nanochat chat-eval --device cuda -i sft
$launch $nanochat chat-rl --device cuda
$launch $nanochat chat-eval --device cuda -i rl -a GSM8K
$nanochat report generate --hourly-rate 24
echo "Chat with it: $nanochat chat-web -i rl   (or chat-cli -i rl)"
