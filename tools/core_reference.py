#!/usr/bin/env python3
"""PyTorch reference for CORE: upstream's scoring logic (nanochat/core_eval.py, as its behaviour is specified), run on
one of our checkpoints with the PyTorch model of tools/torch_reference.py, on the same bundle and the same examples.
It checks `nanochat base-eval --eval core --dump-examples OURS.json` example by example and measures both speeds.

Upstream's logic, written out here independently:
- each task's JSONL is shuffled with random.Random(1337) and cut to --max-per-task;
- example i takes random.Random(1234 + i).sample([j != i], k) as its few-shot examples;
- prompts: MC  "{shot.query}{d}{shot.choices[shot.gold]}\\n\\n"... + "{query}{d}{choice}" per choice;
           schema "{shot.context_options[shot.gold]}{d}{shot.continuation}\\n\\n"... + "{option}{d}{continuation}";
           LM  shots "{strip(ctx)}{d}{cont}\\n\\n"; without = strip(shots + strip(ctx) + d), with = shots + strip(ctx) + d + cont;
- every prompt is BOS-prefixed; MC spans start at the options' common token prefix, schema spans are the common suffix,
  LM spans are [len(without), len(with));
- one forward per example over its options, right-padded with BOS; cross-entropy against the inputs shifted left;
  MC/schema pick the lowest mean loss over [s-1, e-1) (first minimum); LM is correct iff the argmax matches [s, e)
  (compared here by the count of matching positions as well, a finer check than the verdict).

usage: core_reference.py CHECKPOINT_DIR STEP TOKENIZER_DIR BUNDLE_DIR --max-per-task N [--tasks a,b] [--compare OURS.json]
Needs torch, safetensors, tiktoken, pyyaml (pip); never needed by users.
"""
import argparse, json, os, random, sys, time

import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import GPT  # noqa: E402
from tiktoken_check import load as load_tokenizer  # noqa: E402


def render(item, shots, kind, d):
    if kind == "multiple_choice":
        prefix = "".join(f"{s['query']}{d}{s['choices'][s['gold']]}\n\n" for s in shots)
        return [prefix + item["query"] + d + c for c in item["choices"]]
    if kind == "schema":
        prefix = "".join(f"{s['context_options'][s['gold']]}{d}{s['continuation']}\n\n" for s in shots)
        return [prefix + o + d + item["continuation"] for o in item["context_options"]]
    prefix = "".join(f"{s['context'].strip()}{d}{s['continuation']}\n\n" for s in shots)
    base = prefix + item["context"].strip() + d
    return [base.strip(), base + item["continuation"]]


def spans(tokens, kind):
    if kind == "multiple_choice":
        n = min(len(t) for t in tokens)
        common = next((i for i in range(n) if any(t[i] != tokens[0][i] for t in tokens)), n)
        return [(common, len(t)) for t in tokens]
    if kind == "schema":
        n = min(len(t) for t in tokens)
        common = next((i for i in range(n) if any(t[-1 - i] != tokens[0][-1 - i] for t in tokens)), n)
        return [(len(t) - common, len(t)) for t in tokens]
    without, with_ = tokens
    assert with_[:len(without)] == without, "context tokens are not a prefix of context + continuation"
    return [(len(without), len(with_))]


@torch.no_grad()
def evaluate_task(model, enc, bos, items, kind, shots_k, delim):
    details = []
    for i, item in enumerate(items):
        shots = []
        if shots_k > 0:
            rng = random.Random(1234 + i)
            shots = [items[j] for j in rng.sample([j for j in range(len(items)) if j != i], shots_k)]
        prompts = render(item, shots, kind, delim)
        tokens = [[bos] + enc.encode_ordinary(p) for p in prompts]
        sp = spans(tokens, kind)
        if kind == "language_modeling":
            tokens = tokens[1:]  # only "with" is forwarded
        T = max(len(t) for t in tokens)
        ids = torch.full((len(tokens), T), bos, dtype=torch.long)
        for r, t in enumerate(tokens):
            ids[r, :len(t)] = torch.tensor(t)
        logits, _ = model(ids, torch.full_like(ids, -1))
        targets = torch.roll(ids, shifts=-1, dims=1)
        losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none").view(ids.shape)
        preds = logits.argmax(dim=-1)
        if kind == "language_modeling":
            s, e = sp[0]
            hits = preds[0, s - 1:e - 1] == ids[0, s:e]
            details.append({"index": i, "correct": bool(torch.all(hits).item()), "matched": int(hits.sum().item())})
        else:
            means = [losses[r, s - 1:e - 1].mean().item() for r, (s, e) in enumerate(sp)]
            chosen = means.index(min(means))
            details.append({"index": i, "correct": chosen == item["gold"], "chosen": chosen, "meanLosses": means})
    return details


def compare(ours, ref, kinds, tie=1e-5):
    """Per example: the same chosen option (MC, schema) or the same verdict (LM), except near-ties."""
    failures, report = 0, []
    by_label = {t["label"]: t for t in ours}
    for label, ref_details in ref.items():
        mine = by_label.get(label)
        if mine is None:
            report.append(f"  {label}: missing from our results"); failures += 1; continue
        agree = ties = bad = 0
        for a, b in zip(mine["details"], ref_details):
            if kinds[label] == "language_modeling":
                ok = a["correct"] == b["correct"] and a.get("matched") == b["matched"]
            else:
                ok = a["chosen"] == b["chosen"]
                if not ok:
                    lb = sorted(b["meanLosses"]); la = sorted(a["meanLosses"])
                    if (len(lb) > 1 and lb[1] - lb[0] < tie) or (len(la) > 1 and la[1] - la[0] < tie):
                        ties += 1; continue
            agree += ok; bad += not ok
        max_diff = max((abs(x - y) for a, b in zip(mine["details"], ref_details) if "meanLosses" in b
                        for x, y in zip(a["meanLosses"], b["meanLosses"])), default=0.0)
        n = len(ref_details)
        if len(mine["details"]) != n:
            bad += 1
        failures += bad
        report.append(f"  {label:34s} {kinds[label]:17s} {agree}/{n} agree, {ties} near-ties (<{tie:g}), {bad} differ"
                      + (f", max |mean loss diff| {max_diff:.2e}" if kinds[label] != "language_modeling" else ""))
    return failures, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint_dir"); ap.add_argument("step", type=int); ap.add_argument("tokenizer_dir"); ap.add_argument("bundle")
    ap.add_argument("--max-per-task", type=int, default=-1); ap.add_argument("--tasks", default="")
    ap.add_argument("--compare"); ap.add_argument("--out")
    a = ap.parse_args()
    meta = json.load(open(os.path.join(a.checkpoint_dir, f"meta_{a.step:06d}.json")))
    model = GPT(meta["model_config"])
    model.load_state_dict(load_file(os.path.join(a.checkpoint_dir, f"model_{a.step:06d}.safetensors")), strict=True)
    model.eval()
    enc = load_tokenizer(a.tokenizer_dir)
    bos = enc.encode_single_token("<|bos|>")
    cfg = yaml.safe_load(open(os.path.join(a.bundle, "core.yaml")))
    wanted = set(filter(None, a.tasks.split(",")))
    results, kinds, total_examples, total_seconds = {}, {}, 0, 0.0
    for task in cfg["icl_tasks"]:
        label = task["label"]
        if wanted and label not in wanted:
            continue
        data = [json.loads(l.strip()) for l in open(os.path.join(a.bundle, "eval_data", task["dataset_uri"]), encoding="utf-8")]
        random.Random(1337).shuffle(data)
        if a.max_per_task > 0:
            data = data[:a.max_per_task]
        t0 = time.time()
        results[label] = evaluate_task(model, enc, bos, data, task["icl_task_type"], task["num_fewshot"][0],
                                       task.get("continuation_delimiter", " "))
        dt = time.time() - t0
        kinds[label] = task["icl_task_type"]
        acc = sum(d["correct"] for d in results[label]) / len(data)
        total_examples += len(data); total_seconds += dt
        print(f"reference {label}: {len(data)} examples, accuracy {acc:.4f}, {dt:.2f}s ({len(data) / dt:.1f} examples/s)", flush=True)
    print(f"reference: {total_examples} examples in {total_seconds:.1f}s: {total_examples / total_seconds:.2f} examples/s")
    if a.out:
        json.dump({"results": results, "seconds": total_seconds, "examples": total_examples}, open(a.out, "w"))
    if a.compare:
        ours = json.load(open(a.compare))
        failures, report = compare(ours, results, kinds)
        print("CORE per-example comparison, ours vs the PyTorch reference:")
        print("\n".join(report))
        our_seconds = sum(t["seconds"] for t in ours if t["label"] in results)
        print(f"speed: ours {total_examples / our_seconds:.2f} examples/s, reference {total_examples / total_seconds:.2f} "
              f"examples/s, ratio {total_seconds / our_seconds:.2f}x")
        print("CORE reference comparison: " + ("PASSED" if failures == 0 else f"FAILED ({failures} examples differ)"))
        sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
