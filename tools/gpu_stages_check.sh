#!/usr/bin/env bash
# Every stage after pretraining on the GPU, checked without one (scripts/test runs it): through cuda/host_emulation.c,
# the host stand-in of the CUDA library's ABI, each command below runs with --device-type cuda --gpu-precision fp32 and
# with --device-type cpu from the same checkpoint, and the two must agree. A device tensor that reached a CPU op would
# stop the run (Tensor.data refuses device memory), so agreement means the stage ran its device path.
#   1. chat-sft, SFT_STEPS steps (default 4): the same losses step by step and the same final weights (tools/compare_runs.py, 1e-4)
#   2. chat-rl, 2 steps (rollouts by the engine with its KV cache on the device): the same losses and weights
#   3. chat-eval (categorical and generative tasks): the same accuracy on each task
#   4. base-eval CORE: the same option chosen for every example, mean losses within 1e-5
#   5. chat-cli, greedy: the same answer
#   6. chat-web, two greedy requests batched together: the same answers
# usage: tools/gpu_stages_check.sh NANOCHAT BASE_DIR  (BASE_DIR: tokenizer, task data, eval bundle, a base checkpoint)
#        LIBRARY=libnanochat_cuda.so: the same on a real GPU
set -uo pipefail
n=$(realpath "$1"); src=$(realpath "$2")
cd "$(dirname "$0")/.."
check=gpu_stages_check; source tools/device_check_setup.sh
mkdir -p "$work/base"
cp -r "$src/tokenizer" "$src/task_data" "$src/base_checkpoints" "$work/base/" && cp -r "$src/eval_bundle" "$work/base/" 2>/dev/null
cp "$src"/identity_conversations.jsonl "$work/base/" 2>/dev/null
on() { local dev=$1; shift; $n "$@" --device-type "$dev" --gpu-precision fp32; }

tag=$(ls "$work/base/base_checkpoints" | sort -V | tail -1)  # what each stage saves under (the largest d<N>)
steps=${SFT_STEPS:-4}
sft=(chat-sft -i base --load-optimizer 0 --num-iterations $steps --eval-every 2 --eval-tokens 2048 --chatcore-every -2 --rows-per-task 50
     --identity-epochs 1 --gsm8k-epochs 1 --mmlu-epochs 1)
ck=$work/base/chatsft_checkpoints; mkdir -p "$work/runs"
for dev in cpu cuda; do
  rm -rf "$ck"; on $dev "${sft[@]}" >"$work/sft_$dev.log" 2>&1 || tail -5 "$work/sft_$dev.log"; mv "$ck/$tag" "$work/runs/sft_$dev"
done
if grep -q "^device: " "$work/sft_cuda.log" \
   && python3 tools/compare_runs.py "$work/runs/sft_cpu" "$work/runs/sft_cuda" --tol 1e-4 --min-steps $steps --loose backout_lambda | tail -1; then
  ok "chat-sft on the device = on the CPU: $(grep 'validation bpb' "$work/sft_cuda.log" | tail -1); $(grep '^host<->device' "$work/sft_cuda.log")"
else bad "chat-sft on the device differs from the CPU"; tail -5 "$work/sft_cuda.log"; fi
grep -qE "^device allocations: ([0-9]+) after the first step, \1 after the last" "$work/sft_cuda.log" \
  && ok "chat-sft: no device allocation after the first step" || { bad "chat-sft allocated device memory after the first step"; grep "^device alloc" "$work/sft_cuda.log"; }
mkdir -p "$ck" && cp -r "$work/runs/sft_cpu" "$ck/$tag"  # the SFT model every later stage starts from

rl=(chat-rl --num-iterations 2 --examples-per-step 2 --num-samples 4 --device-batch-size 4 --max-new-tokens 24 --eval-every 2 --eval-examples 4)
rk=$work/base/chatrl_checkpoints
for dev in cpu cuda; do
  rm -rf "$rk"; on $dev "${rl[@]}" >"$work/rl_$dev.log" 2>&1 || tail -5 "$work/rl_$dev.log"; mv "$rk/$tag" "$work/runs/rl_$dev"
done
if python3 tools/compare_runs.py "$work/runs/rl_cpu" "$work/runs/rl_cuda" --tol 1e-4 --min-steps 2 --loose backout_lambda | tail -1 \
   && [[ "$(grep pass@ "$work/rl_cpu.log" | sed 's/(.*//')" == "$(grep pass@ "$work/rl_cuda.log" | sed 's/(.*//')" ]]; then
  ok "chat-rl on the device = on the CPU (rollouts, pass@k, losses, weights)"
else bad "chat-rl on the device differs from the CPU"; tail -3 "$work/rl_cpu.log" "$work/rl_cuda.log"; fi

for dev in cpu cuda; do
  on $dev chat-eval -i sft -a 'ARC-Easy|GSM8K|SpellingBee' -x 4 -m 24 2>&1 | grep accuracy | sed 's/ in .*//' >"$work/eval_$dev.txt"
done
if [[ -s "$work/eval_cpu.txt" ]] && cmp -s "$work/eval_cpu.txt" "$work/eval_cuda.txt"; then
  ok "chat-eval on the device = on the CPU: $(tr '\n' ';' <"$work/eval_cuda.txt")"
else bad "chat-eval on the device differs from the CPU"; cat "$work/eval_cpu.txt" "$work/eval_cuda.txt"; fi

if [[ -f "$work/base/eval_bundle/core.yaml" ]]; then
  for dev in cpu cuda; do on $dev base-eval --eval core --max-per-task 12 --dump-examples "$work/core_$dev.json" >/dev/null 2>&1; done
  if python3 - "$work/core_cpu.json" "$work/core_cuda.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
worst, n = 0.0, 0
for ta, tb in zip(a, b):
    assert ta["label"] == tb["label"] and len(ta["details"]) == len(tb["details"])
    for ea, eb in zip(ta["details"], tb["details"]):
        for k, va in ea.items():  # the choice (or the match), the verdict: equal; the losses: close
            vb = eb[k]
            if isinstance(va, float): worst = max(worst, abs(va - vb))
            elif isinstance(va, list) and va and isinstance(va[0], float): worst = max([worst] + [abs(x - y) for x, y in zip(va, vb)])
            else: assert va == vb, (ta["label"], k, va, vb)
        n += 1
assert n > 0 and worst < 1e-5, worst
print(f"CORE: {n} examples, the same choice and verdict on both, losses within {worst:.1e}")
PY
  then ok "base-eval CORE on the device picks what the CPU picks"
  else bad "base-eval CORE on the device differs from the CPU"; fi
fi

for dev in cpu cuda; do on $dev chat-cli -i sft -p "What is 2+2?" -t 0 2>/dev/null >"$work/cli_$dev.txt"; done
if cmp -s "$work/cli_cpu.txt" "$work/cli_cuda.txt"; then ok "chat-cli greedy on the device = on the CPU"
else bad "chat-cli greedy answers differ"; cat "$work/cli_cpu.txt" "$work/cli_cuda.txt"; fi
# chat-web on the device: two requests answered together by the continuous batcher, greedy, as on the CPU
serve() {  # serve DEVICE PORT: the two answers, one per line
  $n chat-web -i sft -p $2 --num-workers 2 --device-type $1 --gpu-precision fp32 >"$work/web_$1.log" 2>&1 &  # $! is the server
  local pid=$! i
  for i in $(seq 1 150); do curl -sf "localhost:$2/health" >/dev/null 2>&1 && break; sleep 0.2; done
  i=0; local asks=()
  for q in "What is 2+2?" "Name a color."; do
    i=$((i + 1))
    curl -s "localhost:$2/v1/chat/completions" -o "$work/web_$1_$i.json" \
      -d "{\"model\":\"nanochat\",\"temperature\":0,\"max_tokens\":12,\"messages\":[{\"role\":\"user\",\"content\":\"$q\"}]}" &
    asks+=($!)
  done
  wait "${asks[@]}"
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
  python3 -c "import json,sys; print('\n'.join(json.load(open(f))['choices'][0]['message']['content'].replace('\n', ' ') for f in sys.argv[1:]))" \
    "$work/web_$1_1.json" "$work/web_$1_2.json"
}
free_port() { python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
web_cpu=$(serve cpu "$(free_port)"); web_cuda=$(serve cuda "$(free_port)")
if grep -q "^device: " "$work/web_cuda.log" && [[ -n $web_cpu && "$web_cpu" == "$web_cuda" ]]; then
  ok "chat-web on the device (2 requests batched together, greedy) = on the CPU"
else bad "chat-web on the device answered otherwise than on the CPU: [$web_cpu] vs [$web_cuda]"; tail -3 "$work/web_cuda.log"; fi
echo "gpu_stages_check: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
