#!/usr/bin/env bash
# Ranks started by torchrun, upstream's launcher, without MPI (scripts/test runs it when .venv-torch has torch):
# `torchrun --standalone --nproc_per_node=N --no-python nanochat base-train ...` finds rank 0 through torchrun's own
# store (PyTorch's TCPStore) and sums over TCP (Distributed/TorchrunCommunicator.swift). Checks: 2 ranks equal one
# process with 2 accumulation steps, 3 ranks one with 3, a killed rank and a stopped rank end the job with a message
# naming it, and the newest checkpoint then resumes under torchrun. Ends with "torchrun_check: N passed, N failed".
# usage: tools/torchrun_check.sh NANOCHAT FIXTURES_DIR TORCHRUN
set -uo pipefail
n=$(realpath "$1"); fixtures=$2; torchrun=$(realpath "$3")
cd "$(dirname "$0")/.."
work=$(mktemp -d); trap 'pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"' EXIT
export NANOCHAT_BASE_DIR=$work NANOCHAT_NUM_THREADS=1
passed=0; failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
bad() { echo "FAILED: $1"; failed=$((failed + 1)); }
run() { local np=$1; shift; "$torchrun" --standalone --nproc_per_node=$np --no-python "$n" "$@"; }

$n tok-train --vocab-size 1024 --input "$fixtures/corpus_austen_700k.txt" --split-blank-lines >/dev/null 2>&1 \
  && $n dataset shard --input "$fixtures/corpus_austen_700k.txt" --paragraph-chars 200 --val-docs 100 --docs-per-shard 2500 >/dev/null \
  || { echo "torchrun_check: could not make the tokenizer and shards"; echo "torchrun_check: 0 passed, 1 failed"; exit 1; }
train=(base-train --core-metric-every -1 --depth 2 --head-dim 64 --max-seq-len 256 --window-pattern L --device-batch-size 4
       --warmup-steps 3 --eval-every -1 --sample-every -1)

# 1. 2 ranks = 1 process x 2 accumulation steps (rank 0 sums in rank order: to the bit)
$n "${train[@]}" --total-batch-size 2048 --num-iterations 12 --checkpoint-dir "$work/one" >"$work/one.log" 2>&1 || cat "$work/one.log"
run 2 "${train[@]}" --total-batch-size 2048 --num-iterations 12 --checkpoint-dir "$work/two" >"$work/two.log" 2>&1 || tail -20 "$work/two.log"
if python3 tools/compare_runs.py "$work/one" "$work/two" --tol 1e-5 --min-steps 10 | tail -1; then ok "torchrun, 2 ranks = 1 process x 2 accumulation steps"
else bad "torchrun's 2 ranks differ from 1 process x 2 accumulation steps"; fi

# 2. 3 ranks = 1 process x 3 (losses to 1e-5; the weights as in mpi_check's 3 ranks: rounding that Muon and Adam grow)
$n "${train[@]}" --total-batch-size 3072 --num-iterations 12 --checkpoint-dir "$work/one3" >"$work/one3.log" 2>&1 || cat "$work/one3.log"
run 3 "${train[@]}" --total-batch-size 3072 --num-iterations 12 --checkpoint-dir "$work/three" >"$work/three.log" 2>&1 || tail -20 "$work/three.log"
if python3 tools/compare_runs.py "$work/one3" "$work/three" --tol 1e-5 --param-tol 0.1 --min-steps 10 | tail -1; then ok "torchrun, 3 ranks = 1 process x 3 accumulation steps"
else bad "torchrun's 3 ranks differ from 1 process x 3"; fi

# starts a long 2-rank run in $work/$1 and waits for its step 8; prints torchrun's pid
long_run() {
  rm -rf "$work/$1"
  NANOCHAT_COLLECTIVE_TIMEOUT=5 run 2 "${train[@]}" --total-batch-size 2048 --num-iterations 100000 --save-every 3 \
    --checkpoint-dir "$work/$1" >"$work/$1.log" 2>&1 &
  echo $!
  for _ in $(seq 300); do grep -q "step 00008" "$work/$1.log" 2>/dev/null && break; sleep 0.2; done
}
# the nanochat process of rank $1 of the runs under way (torchrun gives each its RANK)
rank_pid() { for p in $(pgrep -f "$work/.*base-train|base-train.*$work"); do grep -qz "^RANK=$1$" /proc/$p/environ 2>/dev/null && echo $p; done | head -1; }

# 3. rank 1 killed: rank 0 names it and ends at once, torchrun ends the job; the newest checkpoint resumes
pid=$(long_run kill | head -1)
victim=$(rank_pid 1); t0=$(date +%s); kill -9 "$victim"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; bad "the job still ran 10 s after rank 1 was killed"; } \
  || { msg=$(grep -m1 "nanochat: rank 0 of 2: .* with rank 1 failed" "$work/kill.log")
       [[ -n $msg ]] && ok "rank 1 killed: the job ended within $(( $(date +%s) - t0 )) s: ${msg:0:150}" || { bad "rank 1 killed: no message naming it"; tail -5 "$work/kill.log"; }; }
newest=$(ls "$work/kill"/model_*.safetensors 2>/dev/null | sort | tail -1 | grep -oE '[0-9]+' | tail -1)
if [[ -n $newest ]] && run 2 "${train[@]}" --total-batch-size 2048 --num-iterations $((10#$newest + 2)) --resume-from-step $((10#$newest)) \
     --checkpoint-dir "$work/kill" >"$work/resume.log" 2>&1; then ok "after the kill the newest checkpoint (step $((10#$newest))) resumes under torchrun"
else bad "the newest checkpoint after the kill did not resume"; tail -5 "$work/resume.log"; fi

# 4. rank 1 stopped (SIGSTOP): rank 0 gives up after NANOCHAT_COLLECTIVE_TIMEOUT (5 s) naming it
pid=$(long_run stop | head -1)
victim=$(rank_pid 1); kill -STOP "$victim"
msg=""; for _ in $(seq 200); do msg=$(grep -m1 "nanochat: rank 0 of 2: .* with rank 1 failed: waiting more than 5 s" "$work/stop.log") && break; sleep 0.1; done
kill -9 "$victim" "$pid" 2>/dev/null
[[ -n $msg ]] && ok "rank 1 stopped: ${msg:0:160}" || { bad "rank 1 stopped: rank 0 did not give up naming it"; tail -5 "$work/stop.log"; }

echo "torchrun_check: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
