#!/usr/bin/env bash
# Data parallelism over MPI, end to end (scripts/test runs it): a tiny model trained by 2 ranks against one process
# with twice the accumulation steps (shared memory and TCP), resuming, refusing another world size, and the two
# faults (a rank killed, a rank stopped), 3 ranks with padded Muon stacks, the optimizer state split, and the
# gradients' reductions started inside the backward. Ends with "mpi_check: N passed, N failed".
# usage: tools/mpi_check.sh NANOCHAT FIXTURES_DIR
set -uo pipefail
n=$(realpath "$1"); fixtures=$2
cd "$(dirname "$0")/.."
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export NANOCHAT_BASE_DIR=$work
# Open MPI refuses to start as root unless told; CI containers run as root
[[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun --oversubscribe -np 2 -x NANOCHAT_NUM_THREADS=1)
passed=0; failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
bad() { echo "FAILED: $1"; failed=$((failed + 1)); }

# shards with 2+ row groups each: lane l of 2 reads row groups l, l+2, ...
$n tok-train --vocab-size 1024 --input "$fixtures/corpus_austen_700k.txt" --split-blank-lines >/dev/null 2>&1 \
  && $n dataset shard --input "$fixtures/corpus_austen_700k.txt" --paragraph-chars 200 --val-docs 100 --docs-per-shard 2500 >/dev/null \
  || { echo "mpi_check: could not make the tokenizer and shards"; echo "mpi_check: 0 passed, 1 failed"; exit 1; }
train=(base-train --core-metric-every -1 --depth 2 --head-dim 64 --max-seq-len 256 --window-pattern L --device-batch-size 4 --total-batch-size 2048
       --warmup-steps 3 --eval-every -1 --sample-every -1)

# 1. 2 ranks x 1 thread, device batch 4 == 1 process with 2 accumulation steps of 4, step by step (12 steps)
NANOCHAT_NUM_THREADS=1 $n "${train[@]}" --num-iterations 12 --checkpoint-dir "$work/one" >"$work/one.log" 2>&1 || { cat "$work/one.log"; }
"${mpi[@]}" $n "${train[@]}" --num-iterations 12 --checkpoint-dir "$work/two" >"$work/two.log" 2>&1 || cat "$work/two.log"
if python3 tools/compare_runs.py "$work/one" "$work/two" --tol 1e-5 --min-steps 10 | tail -1; then ok "2 ranks (shared memory) = 1 process x 2 accumulation steps"
else bad "2 ranks (shared memory) differ from 1 process x 2 accumulation steps"; fi

# 2. the same over TCP, as between machines
"${mpi[@]}" --mca btl tcp,self $n "${train[@]}" --num-iterations 12 --checkpoint-dir "$work/tcp" >"$work/tcp.log" 2>&1 || cat "$work/tcp.log"
if python3 tools/compare_runs.py "$work/one" "$work/tcp" --tol 1e-5 --min-steps 10 | tail -1; then ok "2 ranks over TCP (--mca btl tcp,self) = 1 process"
else bad "2 ranks over TCP differ from 1 process"; fi

# 3. resume at step 6 with 2 ranks continues exactly; 1 rank is refused with the reason
"${mpi[@]}" $n "${train[@]}" --num-iterations 12 --save-every 6 --checkpoint-dir "$work/res" >/dev/null 2>&1
rm -f "$work/res/model_000012.safetensors" "$work/res/meta_000012.json"
"${mpi[@]}" $n "${train[@]}" --num-iterations 12 --resume-from-step 6 --checkpoint-dir "$work/res" >"$work/res.log" 2>&1
if python3 tools/compare_runs.py "$work/one" "$work/res" --tol 1e-5 --min-steps 10 | tail -1; then ok "2 ranks resumed at step 6 = uninterrupted"
else bad "2 ranks resumed at step 6 differ"; cat "$work/res.log"; fi
msg=$(NANOCHAT_NUM_THREADS=1 $n "${train[@]}" --num-iterations 12 --resume-from-step 6 --checkpoint-dir "$work/res" 2>&1)
if [[ $? -ne 0 ]] && grep -q "was written by 2 rank(s), this run has 1" <<<"$msg"; then ok "a 1-rank resume of a 2-rank checkpoint is refused: $(grep -o 'error: .*' <<<"$msg" | head -c 140)..."
else bad "a 1-rank resume of a 2-rank checkpoint was not refused: $msg"; fi

# the nanochat process of rank $1 of the running job
rank_pid() { for p in $(pgrep -f "nanochat base-train"); do tr '\0' '\n' </proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && echo "$p"; done; }
# starts a long 2-rank run in $work/$1 (extra mpirun arguments after it), waits for step 8
long_run() {
  local dir=$1; shift
  "${mpi[@]}" "$@" $n "${train[@]}" --num-iterations 100000 --save-every 1 --checkpoint-dir "$work/$dir" >"$work/$dir.log" 2>&1 &
  job=$!
  local t=0
  until grep -q "step 00008" "$work/$dir.log" 2>/dev/null || (( t > 600 )); do sleep 0.1; t=$((t + 1)); done
}
# waits up to $1 s for the job; kills it (and says so) if it is still there
finish_within() {
  local limit=$1 t=0
  while kill -0 "$job" 2>/dev/null && (( t < limit * 10 )); do sleep 0.1; t=$((t + 1)); done
  if kill -0 "$job" 2>/dev/null; then kill -9 "$job"; pkill -9 -f "nanochat base-train"; wait "$job" 2>/dev/null; return 1; fi
  wait "$job"; rc=$?; return 0
}

# 4. a rank killed mid-run: mpirun ends the job at once and names the rank; every checkpoint on disk is whole and
#    the newest one resumes
long_run kill
kill -9 "$(rank_pid 1)"
if finish_within 30 && [[ $rc -ne 0 ]] && grep -q "rank 1" "$work/kill.log"; then ok "rank 1 killed: the job ends (exit $rc): $(grep -o 'mpirun noticed that process rank 1.*' "$work/kill.log" | head -1)"
else bad "rank 1 killed: the job did not end within 30 s naming rank 1"; tail -20 "$work/kill.log"; fi
whole=1; newest=-1
for meta in "$work"/kill/meta_*.json; do
  s=$(basename "$meta" .json); s=${s#meta_}
  for f in model_$s.safetensors optim_${s}_rank0.safetensors optim_${s}_rank1.safetensors; do
    [[ -f $work/kill/$f ]] || { whole=0; echo "meta_$s.json without $f"; }
  done
  newest=$((10#$s))
done
if [[ $whole == 1 && $newest -gt 0 ]] \
   && "${mpi[@]}" $n "${train[@]}" --num-iterations $((newest + 2)) --resume-from-step $newest --checkpoint-dir "$work/kill" >"$work/kill2.log" 2>&1; then
  ok "after the kill every checkpoint is whole, and the newest (step $newest) resumes"
else bad "after the kill a checkpoint is partial or the newest ($newest) does not resume"; tail -5 "$work/kill2.log"; fi

# 5. a rank that stops answering (SIGSTOP): the others give up after NANOCHAT_COLLECTIVE_TIMEOUT and the job ends
long_run stop -x NANOCHAT_COLLECTIVE_TIMEOUT=5
kill -STOP "$(rank_pid 1)"
if finish_within 40 && [[ $rc -ne 0 ]] && grep -q "waited more than 5 s" "$work/stop.log"; then ok "rank 1 stopped: $(grep -o 'rank 0 of 2 waited.*(collective #[0-9]*)' "$work/stop.log" | head -1); the job ends (exit $rc)"
else bad "rank 1 stopped: the job did not end within 40 s"; tail -20 "$work/stop.log"; fi
pkill -9 -f "nanochat base-train" 2>/dev/null

# 6. evaluation sums across ranks: rank r scores batches r, r+2, ... of one stream, so 2 ranks give one process's
#    bits per byte (to float rounding of the sums), and only rank 0 prints
one=$(NANOCHAT_NUM_THREADS=1 $n base-eval --eval bpb --checkpoint "$work/one" --device-batch-size 4 --split-tokens 16384 2>&1 | grep -E '^(train|val) bpb: ')
two=$("${mpi[@]}" $n base-eval --eval bpb --checkpoint "$work/one" --device-batch-size 4 --split-tokens 16384 2>&1 | grep -E '^(train|val) bpb: ')
if [[ -n $one && "$one" == "$two" ]]; then ok "base-eval bpb, 1 process and 2 ranks: $(echo $one)"
else bad "base-eval bpb under 2 ranks: '$one' vs '$two'"; fi

# 7. three ranks (oversubscribed): the Muon stacks of this 2-layer model (2 matrices per shape) are padded to 3, so
#    rank 2 owns only padding; and 2 ranks x 2 accumulation steps, where the last micro-step's backward hands the
#    summed gradients over. Both equal one process with as many micro-steps.
NANOCHAT_NUM_THREADS=1 $n "${train[@]}" --total-batch-size 3072 --num-iterations 12 --checkpoint-dir "$work/one3" >"$work/one3.log" 2>&1 || cat "$work/one3.log"
mpirun --oversubscribe -np 3 -x NANOCHAT_NUM_THREADS=1 $n "${train[@]}" --total-batch-size 3072 --num-iterations 12 --checkpoint-dir "$work/three" >"$work/three.log" 2>&1 || cat "$work/three.log"
# three gradients are summed in MPI's grouping, not the accumulation's ((g0 + g1) + g2), and at initialisation the
# scalar mixes' true gradients are exactly zero (rounding noise that Adam's first step turns into +-lr): the losses
# agree to 1e-5 and the weights to the few percent that makes in 12 steps (the same before the reductions overlapped
# the backward; 2 ranks, where a + b = b + a, agree to the bit)
if python3 tools/compare_runs.py "$work/one3" "$work/three" --tol 1e-5 --param-tol 0.1 --min-steps 10 | tail -1; then ok "3 ranks (Muon stacks padded 2 -> 3) = 1 process x 3 accumulation steps"
else bad "3 ranks differ from 1 process x 3 accumulation steps"; fi
NANOCHAT_NUM_THREADS=1 $n "${train[@]}" --total-batch-size 4096 --num-iterations 12 --checkpoint-dir "$work/one4" >"$work/one4.log" 2>&1 || cat "$work/one4.log"
"${mpi[@]}" $n "${train[@]}" --total-batch-size 4096 --num-iterations 12 --checkpoint-dir "$work/two2" >"$work/two2.log" 2>&1 || cat "$work/two2.log"
# (four gradients: (g0 + g2) + (g1 + g3) against ((g0 + g1) + g2) + g3, the same rounding as above)
if python3 tools/compare_runs.py "$work/one4" "$work/two2" --tol 1e-5 --param-tol 0.1 --min-steps 10 | tail -1; then ok "2 ranks x 2 accumulation steps = 1 process x 4"
else bad "2 ranks x 2 accumulation steps differ from 1 process x 4"; fi

# 8. the optimizer state is split: each rank's file holds about 1/N of one process's (the small AdamW tensors are
#    replicated, as upstream; with 3 ranks rank 2's Muon state is for padding)
state=$(python3 - "$work" <<'PY'
import os, sys
w = sys.argv[1]
size = lambda run, r: os.path.getsize(f"{w}/{run}/optim_000012_rank{r}.safetensors")
whole = os.path.getsize(f"{w}/one/optim_000012_rank0.safetensors")
ranks = [size("two", r) / whole for r in range(2)]
print(" ".join(f"{x:.3f}" for x in ranks), "ok" if all(0.45 < x < 0.56 for x in ranks) else "bad")
PY
)
if [[ $state == *ok ]]; then ok "optimizer state per rank / one process's, 2 ranks: ${state% ok}"
else bad "optimizer state per rank is not about half: $state"; fi

# 9. overlap: the gradients' reductions start inside the backward (metrics: comm_bytes_in_backward of comm_bytes)
overlap=$(python3 - "$work/two2/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"comm_bytes"' in l]
shares = [r["comm_bytes_in_backward"] / r["comm_bytes"] for r in rows]
print(f"{min(shares):.2f}")
PY
)
if python3 -c "import sys; sys.exit(0 if float('$overlap') > 0.5 else 1)" 2>/dev/null; then ok "at least $overlap of each step's bytes started inside the backward"
else bad "too little overlap: '$overlap' of the bytes started inside the backward"; fi

echo "mpi_check: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
