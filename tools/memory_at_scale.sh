#!/usr/bin/env bash
# The device memory and host time of full-size GPU training steps, measured on any machine: base-train --device-type
# cuda against the host stand-in (cuda/host_emulation.c) in its no-work mode (NANOCHAT_EMULATION_NO_WORK=1: the kernels
# return at once; allocations, copies and the Swift side run as usual). For each depth (device batch 32, seq 2048,
# total 524,288, vocabulary 32768, bf16, as upstream's runs) it prints:
#   - the most bytes the caching allocator handed out (the peak a GPU run reports, less cuBLASLt's and cuDNN's own
#     workspaces), against which upstream's max_memory_allocated is compared;
#   - what one forward keeps for its backward, per token and layer;
#   - the host's time to issue one micro-batch (ops, tape, allocator, launches through the ABI): all that a CUDA graph
#     of the micro-batch could save.
# usage: tools/memory_at_scale.sh NANOCHAT [DEPTH ...]   (default depths 12 20)
# Needs pretraining shards in $NANOCHAT_BASE_DIR (default ~/.cache/nanochat: `nanochat dataset prepare` makes them)
# for a 32768-token vocabulary.
set -euo pipefail
n=$(realpath "$1"); shift
depths=("$@"); [[ ${#depths[@]} -gt 0 ]] || depths=(12 20)
cd "$(dirname "$0")/.."
base=${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}
[[ -d $base/base_data_climbmix ]] || { echo "no pretraining shards in $base/base_data_climbmix: run 'nanochat dataset prepare' first" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cc -O2 -shared -fPIC -Icuda cuda/host_emulation.c -o "$work/libnanochat_cuda.so" -lm
mkdir -p "$work/base" && ln -s "$(realpath "$base/base_data_climbmix")" "$work/base/base_data_climbmix"
export NANOCHAT_BASE_DIR=$work/base NANOCHAT_CUDA_LIB=$work/libnanochat_cuda.so NANOCHAT_EMULATION_NO_WORK=1
$n tok-train --vocab-size 32768 >"$work/tok.log" 2>&1 || { cat "$work/tok.log"; exit 1; }
grep -q "vocab size 32768" "$work/tok.log" || { echo "the shards are too small for a 32768-token vocabulary: $(tail -1 "$work/tok.log")" >&2; exit 1; }
for d in "${depths[@]}"; do
  log=$work/d$d.log
  $n base-train --device-type cuda --gpu-precision bf16 --depth "$d" --device-batch-size 32 --max-seq-len 2048 \
    --total-batch-size 524288 --num-iterations 6 --eval-every -1 --eval-tokens 65536 --core-metric-every -1 \
    --sample-every -1 --save-every -1 --checkpoint-dir "$work/ck$d" >"$log" 2>&1 || { tail -5 "$log"; exit 1; }
  peak=$(grep -oE "[0-9.]+ GB handed out at the most" "$log" | grep -oE "^[0-9.]+")
  kept=$(grep "^kept from a forward" "$log" | sed 's/^kept from a forward for its backward: //')
  # a step's time less its wait for data (the loader cannot keep up with kernels that take no time), over its 8
  # micro-batches (the optimizer step included): the median of the steps after the first
  host=$(python3 -c '
import re, statistics, sys
steps = re.findall(r"dt: ([0-9.]+)ms \| data wait: ([0-9.]+)ms", open(sys.argv[1]).read())[1:]
print(f"{statistics.median(float(dt) - float(w) for dt, w in steps) / 8:.1f}")' "$log")
  echo "d$d (device batch 32, seq 2048): peak $peak GB handed out; kept for the backward $kept; host $host ms per micro-batch"
done
