#!/usr/bin/env python3
"""Writes Tests/Fixtures/upstream_checkpoint: a base directory made by upstream nanochat's own code, as a user of
upstream has it on disk, and what upstream computes from it. Test tooling only (needs torch, rustbpe, tiktoken and an
upstream checkout).

- tokenizer/tokenizer.pkl and token_bytes.pt: upstream's RustBPETokenizer trained on the Austen fixture (vocab 512),
  saved by its own save() and by tok_train's token_bytes code;
- base_checkpoints/d2/model_000005.pt and meta_000005.json (no optimizer shard: this build does not read them): a 2-layer GPT (n_embd 64, 2 heads,
  1 KV head, window pattern SL, seq 128) trained 5 AdamW steps on the CPU, saved by upstream's save_checkpoint, with
  wte and the value embeddings in bf16 as a GPU run writes them;
- chatsft_checkpoints/d2/model_000003.pt (the same model 3 more steps on one conversation) and
  chatrl_checkpoints/d2/model_000001.pt (RL's meta: only model_config);
- hostile/: files that must be refused without running anything: pickles that call os.system / builtins.eval /
  subprocess (each would `touch /tmp/nanochat-pickle-ran`), a state dict with an int64 weight, one with a wrong shape, a
  zip whose entries are deflated, a legacy (pre-zip) torch.save file, a tokenizer.pkl holding a dict;
- reference.json: token ids of a text; upstream's logits (build_model on the CPU, float32) for them; the SFT loss of
  one conversation rendered by upstream's render_conversation, from the base checkpoint; and upstream's chat_cli
  greedy answers (the script itself, `-i sft -p PROMPT -t 0`).

usage: make_upstream_checkpoint_fixture.py UPSTREAM_CHECKOUT AUSTEN_TXT OUT_DIR
"""
import json, os, shutil, subprocess, sys

checkout, corpus, out = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
sys.path.insert(0, checkout)
os.environ["NANOCHAT_BASE_DIR"] = out
os.environ["NANOCHAT_DTYPE"] = "float32"
if os.path.exists(out):
    shutil.rmtree(out)
os.makedirs(out)

import torch
from nanochat.tokenizer import RustBPETokenizer
from nanochat.gpt import GPT, GPTConfig
from nanochat.checkpoint_manager import save_checkpoint, build_model

torch.manual_seed(0)
text = open(corpus, encoding="utf-8").read()
docs = [d for d in text.split("\n\n") if d.strip()]
tok = RustBPETokenizer.train_from_iterator(iter(docs), 512)
tok_dir = os.path.join(out, "tokenizer")
tok.save(tok_dir)
special = set(tok.encode_special(s) for s in tok.get_special_tokens())
sizes = [0 if i in special else len(tok.decode_single_token_bytes(i)) for i in range(tok.get_vocab_size())]
torch.save(torch.tensor(sizes, dtype=torch.int32, device="cpu"), os.path.join(tok_dir, "token_bytes.pt"))

config = dict(sequence_len=128, vocab_size=512, n_layer=2, n_head=2, n_kv_head=1, n_embd=64, window_pattern="SL")
model = GPT(GPTConfig(**config))
model.init_weights()
ids = tok.encode(" ".join(docs[:200]), prepend=tok.get_bos_token_id())
data = torch.tensor(ids[: 4 * 129 * 5], dtype=torch.long).view(5, 4, 129)
opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
for step in range(5):  # (5 batches, each seen 8 times: a model that says something)
  for _ in range(8):
    loss = model(data[step, :, :-1].contiguous(), targets=data[step, :, 1:].contiguous())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def state(m):
    # as a GPU run saves it: the embeddings in bf16, the rest float32
    sd = m.state_dict()
    for k in list(sd):
        if k == "transformer.wte.weight" or k.startswith("value_embeds."):
            sd[k] = sd[k].to(torch.bfloat16)
    return sd


user_config = {"run": "dummy", "depth": 2, "aspect_ratio": 32, "head_dim": 64, "max_seq_len": 128, "window_pattern": "SL",
               "num_iterations": 5, "target_flops": -1.0, "device_batch_size": 4, "total_batch_size": 512, "fp8": False,
               "model_tag": None, "eval_every": 250, "device_type": ""}
save_checkpoint(os.path.join(out, "base_checkpoints", "d2"), 5, state(model), None,
                {"step": 5, "val_bpb": 3.25, "model_config": config, "user_config": user_config, "device_batch_size": 4,
                 "max_seq_len": 128, "total_batch_size": 512, "dataloader_state_dict": {"pq_idx": 0, "rg_idx": 1, "epoch": 1},
                 "loop_state": {"min_val_bpb": 3.25, "smooth_train_loss": float(loss), "total_training_time": 1.5}})

# the SFT loss of one conversation from the base checkpoint, as upstream's chat_sft computes a step's loss
base, _, _ = build_model(os.path.join(out, "base_checkpoints", "d2"), 5, torch.device("cpu"), "eval")
conversation = {"messages": [{"role": "system", "content": "You are nanochat."},
                             {"role": "user", "content": "What is the capital of France?"},
                             {"role": "assistant", "content": "The capital of France is Paris."}]}
conv_ids, mask = tok.render_conversation(conversation)
inputs = torch.tensor([conv_ids[:-1]], dtype=torch.long)
targets = torch.tensor([[t if m == 1 else -1 for t, m in zip(conv_ids[1:], mask[1:])]], dtype=torch.long)
with torch.no_grad():
    sft_loss = float(base(inputs, targets=targets))

# a few SFT steps on that conversation: the chat checkpoints
sft = base
sft.train()
opt2 = torch.optim.AdamW(sft.parameters(), lr=1e-3)
for _ in range(3):
    l = sft(inputs, targets=targets)
    l.backward()
    opt2.step()
    opt2.zero_grad(set_to_none=True)
save_checkpoint(os.path.join(out, "chatsft_checkpoints", "d2"), 3, state(sft), None,
                {"step": 3, "val_bpb": 3.1, "model_config": config, "user_config": {"run": "dummy", "model_step": None}})
save_checkpoint(os.path.join(out, "chatrl_checkpoints", "d2"), 1, state(sft), None, {"model_config": config})

# upstream's logits for a text, from the base checkpoint as its load path builds it on the CPU
text_ids = tok.encode("It is a truth universally acknowledged, that a single man in possession", prepend=tok.get_bos_token_id())
base2, _, _ = build_model(os.path.join(out, "base_checkpoints", "d2"), 5, torch.device("cpu"), "eval")
with torch.no_grad():
    logits = base2(torch.tensor([text_ids], dtype=torch.long))[0]

answers = {}
for prompt in ["What is the capital of France?", "Tell me a story."]:
    r = subprocess.run([sys.executable, "-m", "scripts.chat_cli", "-i", "sft", "-p", prompt, "-t", "0", "--device-type", "cpu"],
                       cwd=checkout, env=dict(os.environ), capture_output=True, text=True, check=True)
    answers[prompt] = r.stdout.split("\nAssistant: ", 1)[1].rstrip("\n")

with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump({"text_ids": text_ids, "logits": [[round(float(v), 7) for v in row] for row in logits],
               "conversation": conversation, "conversation_ids": conv_ids, "conversation_mask": mask, "sft_loss": sft_loss,
               "chat_cli": answers, "torch": torch.__version__}, f)
# hostile and broken files: the reader must refuse each, naming what is wrong, and run none of them
import pickle, zipfile
hostile = os.path.join(out, "hostile")
os.makedirs(hostile)


class RunsShell:
    def __reduce__(self):
        return (os.system, ("touch /tmp/nanochat-pickle-ran",))


class RunsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch /tmp/nanochat-pickle-ran')",))


class RunsSubprocess:
    def __reduce__(self):
        return (subprocess.call, (["touch", "/tmp/nanochat-pickle-ran"],))


torch.save({"transformer.wte.weight": RunsShell()}, os.path.join(hostile, "os_system.pt"))
with open(os.path.join(hostile, "eval_tokenizer.pkl"), "wb") as f:
    pickle.dump(RunsEval(), f)
with open(os.path.join(hostile, "subprocess.pkl"), "wb") as f:
    pickle.dump({"mergeable_ranks": RunsSubprocess()}, f, protocol=2)
with open(os.path.join(hostile, "dict_tokenizer.pkl"), "wb") as f:
    pickle.dump({"pat_str": "x"}, f)
sd = state(model)
sd["lm_head.weight"] = sd["lm_head.weight"].to(torch.int64)
torch.save(sd, os.path.join(hostile, "int64_weight.pt"))
sd = state(model)
sd["lm_head.weight"] = sd["lm_head.weight"][:, :32].contiguous()
torch.save(sd, os.path.join(hostile, "wrong_shape.pt"))
small = {"resid_lambdas": torch.ones(2)}
torch.save(small, os.path.join(hostile, "legacy.pt"), _use_new_zipfile_serialization=False)
torch.save(small, os.path.join(hostile, "small.pt"))
good = zipfile.ZipFile(os.path.join(hostile, "small.pt"))
with zipfile.ZipFile(os.path.join(hostile, "deflated.pt"), "w", compression=zipfile.ZIP_DEFLATED) as z:
    for info in good.infolist():
        z.writestr(info.filename, good.read(info.filename))
os.remove(os.path.join(hostile, "small.pt"))
print("wrote", out)
