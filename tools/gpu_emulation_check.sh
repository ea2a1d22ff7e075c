#!/usr/bin/env bash
# The GPU path's Swift side, checked without a GPU (scripts/test runs it): cuda/host_emulation.c implements the C ABI
# of cuda/nanochat_cuda.h on the host with the kernels' semantics, so `--device-type cuda` runs every op's device body
# (the GPT's forward and backward through the autograd tape, MuonAdamW's device step) for real, on the CPU.
#   1. nanochat verify --device-type cuda on every model and optimizer fixture (upstream's PyTorch outputs)
#   2. base-train --device-type cuda --gpu-precision fp32 against the CPU loop, both resumed from the same CPU
#      checkpoint at step 2 (the device takes the CPU's weights and optimizer state): the same losses step by step and
#      the same final weights within 1e-4 of each tensor's largest value (tools/compare_runs.py), backout_lambda within
#      50% (its gradient nearly cancels: each sums it in its own order and Adam magnifies the noise). They start from
#      step 2 because at initialisation both projections are zero, every layer's output is a multiple of x0 and the
#      final RMSNorm cancels the multiple: the true gradients of the three scalar mixes are exactly zero, both runs hold
#      rounding noise there, and Adam's first step turns it into +-lr of either sign.
#   3. after its first step, that device run allocates no device memory (the caching allocator, cuda/caching_allocator.h,
#      hands freed blocks out again; the count comes from the allocator itself)
#   4. a device run resumed from its own checkpoint (weights and optimizer state written back through the CPU
#      objects) continues exactly.
#   5. the same device run with its gradients through NCCL at world size 1 (NANOCHAT_NCCL=1): the optimizer's sharded
#      path, every collective kind called, the same losses and weights (on a GPU: NCCL itself, from the system).
#   6. the same run with --gpu-precision bf16 (bf16 products, attention and logits): every loss within 1% of fp32
#   7. that run in the stand-in's no-work mode (NANOCHAT_EMULATION_NO_WORK=1) hands out the same device memory
# The kernels themselves are checked on a GPU by cuda/op_check.cu (scripts/gpu-check). Ends with "N passed, N failed".
# usage: tools/gpu_emulation_check.sh NANOCHAT FIXTURES_DIR   (LIBRARY=libnanochat_cuda.so: the same on a real GPU;
#        DEPTH, STEPS: the size of the base-train comparison, default 2 and 8)
set -uo pipefail
n=$(realpath "$1"); fixtures=$(realpath "$2")
cd "$(dirname "$0")/.."
check=gpu_emulation_check; source tools/device_check_setup.sh

for f in "$fixtures"/gpt_*.safetensors "$fixtures"/optim_*.safetensors; do
  out=$($n verify --device-type cuda "$f" 2>&1)
  if [[ $? -eq 0 ]] && grep -q "^PASS" <<<"$out"; then ok "verify --device-type cuda $(basename "$f"): $(grep '^PASS' <<<"$out")"
  else bad "verify --device-type cuda $(basename "$f")"; echo "$out"; fi
done

$n tok-train --vocab-size 1024 --input "$fixtures/corpus_austen_700k.txt" --split-blank-lines >/dev/null 2>&1 \
  && $n dataset shard --input "$fixtures/corpus_austen_700k.txt" --paragraph-chars 200 --val-docs 100 --docs-per-shard 2500 >/dev/null \
  || { bad "could not make the tokenizer and shards"; echo "gpu_emulation_check: $passed passed, $failed failed"; exit 1; }
# windows S and L, value embeddings, 2 accumulation steps (GQA is in the fixtures: base-train's models have none)
train=(base-train --core-metric-every -1 --depth ${DEPTH:-2} --head-dim 64 --max-seq-len 128 --window-pattern SL --device-batch-size 2
       --total-batch-size 512 --warmup-steps 2 --eval-every 4 --eval-tokens 512 --sample-every -1 --num-iterations ${STEPS:-8})
$n "${train[@]}" --device-type cpu --save-every 2 --checkpoint-dir "$work/start" >"$work/start.log" 2>&1 || cat "$work/start.log"
for run in cpu gpu; do mkdir -p "$work/$run" && cp "$work"/start/*000002* "$work/start/metrics.jsonl" "$work/$run/"; done
$n "${train[@]}" --device-type cpu --resume-from-step 2 --checkpoint-dir "$work/cpu" >"$work/cpu.log" 2>&1 || cat "$work/cpu.log"
$n "${train[@]}" --device-type cuda --gpu-precision fp32 --resume-from-step 2 --checkpoint-dir "$work/gpu" >"$work/gpu.log" 2>&1 || cat "$work/gpu.log"
if grep -q "^device: " "$work/gpu.log" \
   && python3 tools/compare_runs.py "$work/cpu" "$work/gpu" --tol 1e-4 --min-steps ${STEPS:-8} --loose backout_lambda | tail -1; then
  ok "base-train on the (emulated) device = on the CPU from the same checkpoint, losses and final weights: $(grep 'val bpb' "$work/gpu.log" | tail -1)"
else bad "base-train on the (emulated) device differs from the CPU"; tail -5 "$work/gpu.log"; fi
# the caching allocator: after the first optimizer step a step makes no device allocation (evaluations included)
if grep -qE "^device allocations: ([0-9]+) after the first step, \1 after the last" "$work/gpu.log"; then
  ok "no device allocation after the first step: $(grep '^device allocations' "$work/gpu.log")"
else bad "the device allocated memory after the first step"; grep "^device allocations" "$work/gpu.log"; fi
# a step moves nothing between host and device but its inputs and targets (2 micro-steps x 256 ids x 2, int32) and its
# loss (one float: the micro-batches' losses are summed on the device)
if grep -qE "^host<->device per step: 4 copies in \(4096 bytes.*, 1 out \(4 bytes" "$work/gpu.log"; then
  ok "a step copies only its token ids and targets in and its loss out: $(grep '^host<->device' "$work/gpu.log")"
else bad "a step moved more between host and device than its inputs and losses"; grep "^host<->device" "$work/gpu.log"; fi
# the device's own checkpoint resumes exactly
$n "${train[@]}" --device-type cuda --gpu-precision fp32 --save-every 4 --checkpoint-dir "$work/dev" >/dev/null 2>&1
cp -r "$work/dev" "$work/res"
rm -f "$work/res/model_000008.safetensors" "$work/res/meta_000008.json"
$n "${train[@]}" --device-type cuda --gpu-precision fp32 --resume-from-step 4 --checkpoint-dir "$work/res" >"$work/res.log" 2>&1 || cat "$work/res.log"
# bit for bit on the stand-in; on a GPU the scatter-adds' atomics sum in no fixed order, so 1e-4 there
if python3 tools/compare_runs.py "$work/dev" "$work/res" --tol "$([[ -n ${LIBRARY:-} ]] && echo 1e-4 || echo 1e-6)" --min-steps ${STEPS:-8} | tail -1; then ok "a device run resumed at step 4 from its own checkpoint = uninterrupted"
else bad "a device run resumed at step 4 differs"; tail -5 "$work/res.log"; fi
# the gradients through NCCL with one rank (NANOCHAT_NCCL=1): the optimizer's sharded path (reduce-scatter, reduce,
# all-reduce, all-gather, every one really called) gives the run without NCCL
NANOCHAT_NCCL=1 $n "${train[@]}" --device-type cuda --gpu-precision fp32 --checkpoint-dir "$work/nccl" >"$work/nccl.log" 2>&1 || cat "$work/nccl.log"
summary=$(grep "^NCCL .*rank 0 of 1: " "$work/nccl.log")
if [[ $summary == *all-gather* && $summary == *all-reduce* && $summary == *reduce-scatter* && $summary == *" reduce"[,\;]* ]] \
   && python3 tools/compare_runs.py "$work/dev" "$work/nccl" --tol "$([[ -n ${LIBRARY:-} ]] && echo 1e-4 || echo 1e-6)" --min-steps ${STEPS:-8} | tail -1; then
  ok "world size 1 through NCCL = without NCCL: $summary"
else bad "the run through NCCL differs or called no collectives: ${summary:-no NCCL summary}"; tail -5 "$work/nccl.log"; fi
# the bf16 mode (products, attention and the lm_head's logits in bf16, fp32 accumulation and master weights) follows
# the exact fp32 run: every step's loss within 1%
$n "${train[@]}" --device-type cuda --gpu-precision bf16 --checkpoint-dir "$work/bf16" >"$work/bf16.log" 2>&1 || cat "$work/bf16.log"
if python3 tools/compare_runs.py "$work/dev" "$work/bf16" --tol 1e-2 --param-tol 0.5 --min-steps ${STEPS:-8} | tail -1; then
  ok "--gpu-precision bf16 (bf16 logits included) = fp32 within 1% at every step"
else bad "the bf16 run strays from the fp32 one"; tail -5 "$work/bf16.log"; fi
# the stand-in's no-work mode (kernels return at once; tools/memory_at_scale.sh measures full-size steps with it) hands out
# the same device memory as the run that computes
if [[ -z ${LIBRARY:-} ]]; then
  NANOCHAT_EMULATION_NO_WORK=1 $n "${train[@]}" --device-type cuda --gpu-precision bf16 --checkpoint-dir "$work/nowork" >"$work/nowork.log" 2>&1 || cat "$work/nowork.log"
  peak() { grep -oE "[0-9.]+ GB handed out at the most, [0-9.]+ GB held" "$1"; }
  kept() { grep "^kept from a forward" "$1"; }
  if [[ -n $(peak "$work/bf16.log") && $(peak "$work/nowork.log") == "$(peak "$work/bf16.log")" && -n $(kept "$work/bf16.log") \
        && $(kept "$work/nowork.log") == "$(kept "$work/bf16.log")" ]]; then
    ok "the no-work mode allocates as the run that computes: $(peak "$work/nowork.log"); $(kept "$work/nowork.log")"
  else bad "the no-work mode's memory differs: $(peak "$work/nowork.log"), $(kept "$work/nowork.log") vs $(peak "$work/bf16.log"), $(kept "$work/bf16.log")"; fi
fi
echo "gpu_emulation_check: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
