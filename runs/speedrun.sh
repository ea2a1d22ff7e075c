#!/usr/bin/env bash
# Upstream's GPU pipeline (runs/speedrun.sh) with upstream's sizes, every stage on the GPU (--device-type cuda): a
# 32768-token tokenizer on 2B characters, a d24 base model at a tokens:params ratio of 8, CORE and bits per byte,
# mid-training, SFT, RL, the chat evaluations, and the report card.
#
# Upstream runs it on 8 GPUs (torchrun --nproc_per_node=8). Here every training and evaluation stage runs as NPROC
# ranks (default: every GPU nvidia-smi lists), one GPU each, the gradients reduced through NCCL: started by torchrun
# as upstream does when it is on PATH, else by mpirun. The tokenizer and the report run once.
#
#   ./runs/speedrun.sh                          (NANOCHAT_BASE_DIR=/some/dir to keep artifacts elsewhere)
#   NPROC=8 ./runs/speedrun.sh                  (LAUNCHER=mpirun to start the ranks with MPI instead of torchrun)
#
# Knobs (environment), upstream's values by default; the GPU check (scripts/gpu-check) runs every stage at a small
# size in a few minutes with them:
#   DEPTH=24  RATIO=8 (tokens : scaling params)  DEVICE_BATCH=16  BASE_ITERS=-1 (-1: from RATIO)
#   MID_ITERS=-1  SFT_ITERS=-1  RL_ITERS=-1 (-1: an epoch of each stage's data)  EVAL_TOKENS (mid/SFT validation)
#   CORE_MAX=-1 (CORE examples per task; at least 11: the 10-shot tasks draw their shots from them)
#   BPB_TOKENS (bits-per-byte tokens per split)  EVAL_MAX=-1 (chat-eval problems per task)
#   RL_SAMPLES=16  RL_EXAMPLES=16 (questions per RL step)  NEW_TOKENS (RL's and chat-eval's longest answer)
#   HOURLY_RATE=24 (the report's cost)
#   PREPARED=1: the tokenizer, shards, task data and eval bundle are already in NANOCHAT_BASE_DIR (no download)
#   NANOCHAT=path: a nanochat binary built elsewhere (no bootstrap, no swift build: a GPU machine without Swift)
#   PRECISION=bf16|fp32 (--gpu-precision)  SEQ_LEN, TOTAL_BATCH (base-train's --max-seq-len, --total-batch-size)
set -euo pipefail
cd "$(dirname "$0")/.."

export NANOCHAT_BASE_DIR=${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}
DEPTH=${DEPTH:-24}; RATIO=${RATIO:-8}; DEVICE_BATCH=${DEVICE_BATCH:-16}; BASE_ITERS=${BASE_ITERS:--1}
MID_ITERS=${MID_ITERS:--1}; SFT_ITERS=${SFT_ITERS:--1}; RL_ITERS=${RL_ITERS:--1}
CORE_MAX=${CORE_MAX:--1}; EVAL_MAX=${EVAL_MAX:--1}; RL_SAMPLES=${RL_SAMPLES:-16}; RL_EXAMPLES=${RL_EXAMPLES:-16}
HOURLY_RATE=${HOURLY_RATE:-24}; PRECISION=${PRECISION:-bf16}
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
NPROC=${NPROC:-$(( gpus > 0 ? gpus : 1 ))}
if [[ $gpus -gt 0 && $NPROC -gt $gpus ]]; then echo "speedrun: NPROC=$NPROC but this machine has $gpus GPU(s): one rank per GPU, so NPROC=$gpus"; NPROC=$gpus; fi
# the training and evaluation stages run as NPROC ranks, one GPU each (LOCAL_RANK), NCCL between them
launch=()
if [[ $NPROC -gt 1 ]]; then
  if [[ ${LAUNCHER:-torchrun} == torchrun ]] && command -v torchrun >/dev/null; then
    launch=(torchrun --standalone --nproc_per_node="$NPROC" --no-python)
  elif command -v mpirun >/dev/null; then
    launch=(mpirun -np "$NPROC")
  else
    echo "speedrun: NPROC=$NPROC needs torchrun (PyTorch) or mpirun (scripts/bootstrap --with-mpi) to start the ranks"; exit 2
  fi
fi
echo "speedrun: $NPROC rank(s)${launch:+ (${launch[*]})}; upstream runs this on 8 GPUs"

if [[ -n ${NANOCHAT:-} ]]; then
  nanochat=$NANOCHAT
else
  scripts/bootstrap --with-tasks
  swift build -c release 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]'
  nanochat=.build/release/nanochat
fi
if ! $nanochat device --require-cuda; then
  echo "speedrun.sh needs an NVIDIA GPU and the CUDA library (cuda/build.sh, or NANOCHAT_CUDA_LIB); on a CPU, run ./runs/runcpu.sh"
  exit 2
fi
gpu="--device-type cuda --gpu-precision $PRECISION"
iters() { [[ $1 -gt 0 ]] && echo "--num-iterations $1" || true; }
limit() { [[ $2 -gt 0 ]] && echo "$1 $2" || true; }  # a flag only when its knob is set (its default is "all")

$nanochat report reset
if [[ -z ${PREPARED:-} ]]; then
  # data: 8 shards for the tokenizer now, 170 for pretraining in the background
  $nanochat dataset download -n 8
  $nanochat dataset download -n 170 &
  download=$!
  $nanochat tok-train --vocab-size 32768 --max-chars 2000000000
  $nanochat tok-eval
  $nanochat dataset tasks --online
  $nanochat dataset identity
  wait $download
fi
"${launch[@]}" $nanochat base-train $gpu --core-metric-every -1 --depth "$DEPTH" --target-param-data-ratio "$RATIO" --device-batch-size "$DEVICE_BATCH" $(iters "$BASE_ITERS") \
  ${SEQ_LEN:+--max-seq-len $SEQ_LEN} ${TOTAL_BATCH:+--total-batch-size $TOTAL_BATCH} ${EVAL_TOKENS:+--eval-tokens $EVAL_TOKENS} --sample-every -1
"${launch[@]}" $nanochat base-eval $gpu --device-batch-size "$DEVICE_BATCH" $(limit --max-per-task "$CORE_MAX") ${BPB_TOKENS:+--split-tokens $BPB_TOKENS}
"${launch[@]}" $nanochat mid-train $gpu $(iters "$MID_ITERS") ${EVAL_TOKENS:+--eval-tokens $EVAL_TOKENS}
answers=${NEW_TOKENS:+-m $NEW_TOKENS}
"${launch[@]}" $nanochat chat-eval $gpu -i mid $(limit -x "$EVAL_MAX") $answers
"${launch[@]}" $nanochat chat-sft $gpu $(iters "$SFT_ITERS") ${EVAL_TOKENS:+--eval-tokens $EVAL_TOKENS} --chatcore-max-cat "$EVAL_MAX" \
  --chatcore-max-sample "$([[ $EVAL_MAX -gt 0 ]] && echo "$EVAL_MAX" || echo 24)"
"${launch[@]}" $nanochat chat-eval $gpu -i sft $(limit -x "$EVAL_MAX") $answers
"${launch[@]}" $nanochat chat-rl $gpu $(iters "$RL_ITERS") --num-samples "$RL_SAMPLES" --examples-per-step "$RL_EXAMPLES" \
  --device-batch-size "$(( RL_SAMPLES < 8 ? RL_SAMPLES : 8 ))" ${NEW_TOKENS:+--max-new-tokens $NEW_TOKENS} --eval-examples "$([[ $EVAL_MAX -gt 0 ]] && echo "$EVAL_MAX" || echo 400)"
"${launch[@]}" $nanochat chat-eval $gpu -i rl -a GSM8K $(limit -x "$EVAL_MAX") $answers
$nanochat report generate --hourly-rate "$HOURLY_RATE"
echo "Chat with it: $nanochat chat-web -i rl --device-type cuda   (or chat-cli -i rl --device-type cuda)"
