"""Evaluation throughput: tunesmith's batched generation vs one-at-a-time transformers generate.

Both sides get the same chat prompts (Banking77 test messages rendered with the chat
template), greedy decoding and the same stop tokens. Prints prompts/s and generated tokens/s
for each side (fastest of `--repeats` alternating runs: the machine may stall), the speed
ratio, and whether the answers are identical token for token.

    python bench/eval_generation.py [--prompts 48] [--batch-size 16] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import torch

from tunesmith.data.records import Message
from tunesmith.evaluation.generation import generate
from tunesmith.formatting.chat import ChatFormatter
from tunesmith.modeling.loading import DEFAULT_MODEL, load_model

SYSTEM = "Classify the banking customer's intent. Answer in JSON."


def banking_messages(count: int) -> list[str]:
    root = Path(__file__).resolve().parent.parent
    base = Path(os.environ.get("TUNESMITH_DATASETS", root.parent / "shared" / "datasets"))
    with (base / "banking77" / "test.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [rows[i * (len(rows) // count)]["text"].strip() for i in range(count)]


def one_at_a_time(model, prompts, stop_ids, pad_id, max_new_tokens) -> list[list[int]]:
    """The plain baseline: transformers generate, one unpadded prompt per call."""
    outputs = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 do_sample=False, max_new_tokens=max_new_tokens,
                                 eos_token_id=stop_ids, pad_token_id=pad_id,
                                 temperature=None, top_p=None, top_k=None)
        new = out[0, len(prompt):].tolist()
        cut = next((i for i, t in enumerate(new) if t in stop_ids), len(new))
        outputs.append(new[:cut])
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per side")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    formatter = ChatFormatter(loaded.tokenizer, SYSTEM)
    prompts = [formatter.prompt_ids([Message("user", text)])
               for text in banking_messages(args.prompts)]
    stop_ids = sorted({formatter.end_of_turn_id, loaded.tokenizer.eos_token_id} - {None})
    ours_times, theirs_times = [], []
    for _ in range(args.repeats):  # alternate the sides; the fastest run of each counts
        started = time.perf_counter()
        batched = generate(loaded.model, loaded.tokenizer, prompts, stop_ids,
                           args.batch_size, args.max_new_tokens)
        ours_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        plain = one_at_a_time(loaded.model, prompts, stop_ids, loaded.tokenizer.pad_token_id,
                              args.max_new_tokens)
        theirs_times.append(time.perf_counter() - started)
    ours, theirs = min(ours_times), min(theirs_times)
    print("runs (s): tunesmith " + ", ".join(f"{t:.1f}" for t in ours_times)
          + "; one-at-a-time " + ", ".join(f"{t:.1f}" for t in theirs_times))
    same = sum(g.token_ids == p for g, p in zip(batched, plain, strict=True))
    tokens = sum(len(p) for p in plain)
    print(f"model {args.model}, {len(prompts)} prompts, batch {args.batch_size}, "
          f"max_new_tokens {args.max_new_tokens}, {args.threads} threads, "
          f"{tokens} generated tokens")
    print(f"tunesmith batched : {ours:7.1f} s  {len(prompts) / ours:6.2f} prompts/s  "
          f"{sum(len(g.token_ids) for g in batched) / ours:7.1f} tokens/s")
    print(f"transformers 1x1  : {theirs:7.1f} s  {len(prompts) / theirs:6.2f} prompts/s  "
          f"{tokens / theirs:7.1f} tokens/s")
    print(f"speed ratio (tunesmith / one-at-a-time): {theirs / ours:.2f}x")
    print(f"identical answers token for token: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
