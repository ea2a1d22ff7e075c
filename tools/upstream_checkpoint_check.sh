#!/usr/bin/env bash
# Upstream's checkpoints here, and ours there (scripts/test runs it; prints "ok: ..." / "FAILED: ..." lines and a
# summary line).
#   1. upstream's own base directory (Tests/Fixtures/upstream_checkpoint: tokenizer.pkl, token_bytes.pt, base, SFT and
#      RL checkpoints saved by upstream's code): chat-cli's greedy answers equal upstream's chat_cli; chat-eval,
#      base-eval, infer-bench and `export` read it; chat-sft and chat-rl start from it;
#   2. ours exported (`nanochat export --upstream`) is read by torch.load(weights_only=True), pickle.load and tiktoken
#      with the same tensors and token ids, and read back here gives the same answers.
# usage: tools/upstream_checkpoint_check.sh NANOCHAT_BINARY FIXTURES TASKS_BASE_DIR [TORCH_PYTHON]
#   TASKS_BASE_DIR: a base directory with task_data, shards and a tiny model of ours (scripts/test's); TORCH_PYTHON: a
#   python with torch, safetensors and tiktoken for part 2 (skipped, and said, without one).
set -uo pipefail
n=$1 fixtures=$2 tasks=$3 py=${4:-}
passed=0 failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAILED: $*"; failed=$((failed + 1)); }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. upstream's files, as a user of upstream has them, beside our task data and shards
up=$work/upstream
mkdir -p "$up"
cp -r "$fixtures/upstream_checkpoint/"{tokenizer,base_checkpoints,chatsft_checkpoints,chatrl_checkpoints} "$up/"
ln -s "$tasks/task_data" "$up/task_data"
ln -s "$tasks/base_data_climbmix" "$up/base_data_climbmix"
ref=$fixtures/upstream_checkpoint/reference.json
same=0
for prompt in "What is the capital of France?" "Tell me a story."; do
  NANOCHAT_BASE_DIR=$up $n chat-cli -i sft -p "$prompt" -t 0 --device-type cpu 2>/dev/null >"$work/answer.txt"
  python3 - "$ref" "$prompt" "$work/answer.txt" <<'EOF' && same=$((same + 1))
import json, sys
want = json.load(open(sys.argv[1]))["chat_cli"][sys.argv[2]]
got = open(sys.argv[3]).read().split("Assistant: ", 1)[1].rstrip("\n")
sys.exit(0 if got == want else 1)
EOF
done
if [[ $same == 2 ]]; then ok "chat-cli on upstream's SFT checkpoint (model_000003.pt, tokenizer.pkl): greedy answers equal upstream's chat_cli on 2 prompts"
else bad "chat-cli's greedy answers on upstream's checkpoint differ from upstream's chat_cli ($same of 2 equal)"; fi

# chat-cli's decoding options on the same model: top-p this small at temperature 1 is greedy; --stop cuts the greedy
# answer before the stop text
prompt="Tell me a story."
NANOCHAT_BASE_DIR=$up $n chat-cli -i sft -p "$prompt" -t 1 --top-p 0.000001 --device-type cpu 2>/dev/null >"$work/topp.txt"
NANOCHAT_BASE_DIR=$up $n chat-cli -i sft -p "$prompt" -t 0 --stop "her," --device-type cpu 2>/dev/null >"$work/stop.txt"
if python3 - "$ref" "$prompt" "$work/topp.txt" "$work/stop.txt" <<'EOF'
import json, sys
want = json.load(open(sys.argv[1]))["chat_cli"][sys.argv[2]]
topp = open(sys.argv[3]).read().split("Assistant: ", 1)[1].rstrip("\n")
stop = open(sys.argv[4]).read().split("Assistant: ", 1)[1].rstrip("\n")
sys.exit(0 if topp == want and "her," in want and stop == want[:want.index("her,")].rstrip("\n") else 1)
EOF
then ok "chat-cli --top-p 0.000001 -t 1 gives the greedy answer; --stop 'her,' ends it before the stop text"
else bad "chat-cli --top-p / --stop"; fi

# chat-web serves it: the OpenAI route's greedy answer is upstream's chat_cli answer (its first 24 tokens)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
NANOCHAT_BASE_DIR=$up $n chat-web -i sft --host 127.0.0.1 -p "$port" --device-type cpu >"$work/web.log" 2>&1 &
web=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
curl -s "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"messages": [{"role": "user", "content": "What is the capital of France?"}], "temperature": 0, "max_tokens": 24}' >"$work/web.json"
kill "$web" 2>/dev/null; wait "$web" 2>/dev/null
if python3 - "$ref" "$work/web.json" <<'EOF'
import json, sys
want = json.load(open(sys.argv[1]))["chat_cli"]["What is the capital of France?"]
got = json.load(open(sys.argv[2]))["choices"][0]["message"]["content"]
sys.exit(0 if got and want.startswith(got) else 1)
EOF
then ok "chat-web serves upstream's SFT checkpoint: its greedy answer is the start of upstream's chat_cli answer"
else bad "chat-web on upstream's checkpoint"; head -c 300 "$work/web.json"; tail -3 "$work/web.log"; fi

if out=$(NANOCHAT_BASE_DIR=$up $n chat-eval -i sft -a 'ARC-Easy|SpellingBee' -x 4 -m 16 --device-type cpu 2>&1) && grep -q accuracy <<<"$out"; then
  ok "chat-eval -i sft reads upstream's checkpoint: $(grep -m1 accuracy <<<"$out" | sed 's/ in .*//')"
else bad "chat-eval on upstream's checkpoint"; tail -3 <<<"$out"; fi
if out=$(NANOCHAT_BASE_DIR=$up $n base-eval --eval bpb,sample --split-tokens 2048 --device-batch-size 4 --max-tokens 8 --device-type cpu 2>&1) \
   && grep -q "val bpb" <<<"$out"; then
  ok "base-eval reads upstream's base checkpoint: $(grep 'val bpb' <<<"$out")"
else bad "base-eval on upstream's checkpoint"; tail -3 <<<"$out"; fi
if out=$(NANOCHAT_BASE_DIR=$up $n infer-bench --prompt-tokens 32 --decode-tokens 8 --batch-sizes 1,2 --device-type cpu 2>&1) \
   && tail -1 <<<"$out" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); assert d["step"] == 5 and len(d["sweep"]) == 2'; then
  ok "infer-bench -i base reads upstream's checkpoint (step 5), last line JSON with a 2-point sweep"
else bad "infer-bench on upstream's checkpoint"; tail -3 <<<"$out"; fi
NANOCHAT_BASE_DIR=$up $n dataset identity --count 20 >/dev/null
if out=$(NANOCHAT_BASE_DIR=$up $n chat-sft -i base --num-iterations 2 --device-batch-size 2 --total-batch-size 256 --eval-every -1 \
           --chatcore-every -2 --rows-per-task 20 --identity-epochs 0 --device-type cpu 2>&1) \
   && grep -q "upstream's checkpoint; its optimizer shards" <<<"$out" && [[ -f $up/chatsft_checkpoints/d2/model_000002.safetensors ]] \
   && out2=$(NANOCHAT_BASE_DIR=$up $n chat-rl --num-iterations 1 --examples-per-step 1 --num-samples 2 --device-batch-size 2 \
           --max-new-tokens 8 --eval-every -1 --device-type cpu 2>&1); then
  ok "chat-sft starts from upstream's base checkpoint (2 steps, optimizer fresh, as it says) and chat-rl from that"
else bad "chat-sft/chat-rl from upstream's checkpoint"; tail -3 <<<"$out"; tail -3 <<<"${out2:-}"; fi

# 2. ours, exported: torch and tiktoken read it; we read it back
exp=$work/export
if NANOCHAT_BASE_DIR=$tasks $n export --upstream "$exp" -i base >"$work/export.log" 2>&1; then
  ok "export --upstream: $(tail -1 "$work/export.log" | cut -c1-80)..."
else bad "export --upstream failed"; tail -3 "$work/export.log"; fi
text="It is a truth universally acknowledged, that a single man"
ours_ids=$(printf '%s\n' "\"$text\"" | NANOCHAT_BASE_DIR=$tasks $n tok-encode)
if [[ -n $py ]] && $py -c "import torch, safetensors, tiktoken" 2>/dev/null; then
  if $py - "$exp" "$tasks/base_checkpoints/d2" "$text" "$ours_ids" <<'EOF'
import glob, json, os, pickle, sys
import torch
from safetensors.torch import load_file
exp, ours_dir, text, ours_ids = sys.argv[1:]
pt = sorted(glob.glob(os.path.join(exp, "base_checkpoints", "d2", "model_*.pt")))[-1]
step = os.path.basename(pt)[6:12]
sd = torch.load(pt, map_location="cpu", weights_only=True)  # upstream's load_checkpoint, with torch's safe loader
ours = load_file(os.path.join(ours_dir, f"model_{step}.safetensors"))
assert set(sd) == set(ours), (set(sd) ^ set(ours))
for k in ours:
    assert sd[k].dtype == torch.float32 and torch.equal(sd[k], ours[k]), k
enc = pickle.load(open(os.path.join(exp, "tokenizer", "tokenizer.pkl"), "rb"))  # upstream's RustBPETokenizer.from_directory
ids = enc.encode_ordinary(text)
assert ids == json.loads(ours_ids), (ids, ours_ids)
tb = torch.load(os.path.join(exp, "tokenizer", "token_bytes.pt"), weights_only=True)
assert tb.dtype == torch.int32 and tb.shape[0] == enc.n_vocab
meta = json.load(open(os.path.join(exp, "base_checkpoints", "d2", f"meta_{step}.json")))
assert meta["model_config"]["n_layer"] == 2 and isinstance(meta["user_config"]["depth"], int)
print(f"torch.load(weights_only=True): {len(sd)} tensors equal to ours bit for bit; tiktoken: {len(ids)} ids equal; token_bytes {tuple(tb.shape)}")
EOF
  then ok "the export reads in torch and tiktoken as upstream reads it"; else bad "torch/tiktoken could not read the export as ours"; fi
else
  echo "!! SKIPPED the torch/tiktoken reading of the export (no python with torch, safetensors and tiktoken given)"
fi
ln -s "$tasks/task_data" "$exp/task_data"
a=$(NANOCHAT_BASE_DIR=$tasks $n base-eval --eval sample --max-tokens 12 --device-type cpu 2>/dev/null | grep -A3 '== samples')
b=$(NANOCHAT_BASE_DIR=$exp $n base-eval --eval sample --max-tokens 12 --device-type cpu 2>/dev/null | grep -A3 '== samples')
if [[ -n $a && $a == "$b" ]]; then ok "the export read back here samples what the original does"; else bad "the export read back samples differently"; fi

echo "upstream_checkpoint_check: $passed passed, $failed failed"
