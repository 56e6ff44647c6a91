"""Micro-batches by example count vs by token budget: tokens per micro-batch on real data.

Builds the training loop's own schedule (no training) for `batch_size` examples and for a
token budget of the same mean size (`batch_size` x the mean example length unless
--budget is given), padded and packed, and prints per micro-batch: how many there are, the
computed tokens (padded width x rows when padded, the packed row when packed) at the median,
p99 and maximum, and the share of computed tokens that are real.

    python bench/batch_tokens.py --rows 2000 --batch 8 --max-length 1024

Datasets come from $TUNESMITH_DATASETS (default: dolly-prompt-response).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from tunesmith.config.schema import TrainingConfig
from tunesmith.data import load_conversations
from tunesmith.formatting.chat import ChatFormatter
from tunesmith.modeling.inventory import load_tokenizer
from tunesmith.tokenization.examples import tokenize_conversations
from tunesmith.training.schedule import schedule_for

ROOT = Path(__file__).resolve().parent.parent
DOLLY = "dolly-prompt-response/dolly_hhrlhf_train_small.jsonl"


def datasets() -> Path:
    return Path(os.environ.get("TUNESMITH_DATASETS", ROOT.parent / "shared" / "datasets"))


def computed(rows: list[int], lengths: list[int], packing: bool) -> int:
    """Tokens the model computes for one micro-batch: the packed row, or rows x widest."""
    if not rows:
        return 0
    sizes = [lengths[i] for i in rows]
    return sum(sizes) if packing else len(sizes) * max(sizes)


def report(name: str, lengths: list[int], cfg: TrainingConfig) -> None:
    """One line of statistics over every micro-batch of one epoch."""
    schedule = schedule_for(lengths, cfg, 1)
    batches = [rows for step in range(schedule.per_epoch)
               for rows in schedule.micro_batches(step, 0)]
    tokens = np.array([computed(rows, lengths, cfg.packing) for rows in batches])
    real = sum(lengths[i] for rows in batches for i in rows)
    examples = np.array([len(rows) for rows in batches])
    p50, p99 = np.percentile(tokens, [50, 99])
    print(f"{name:26} {len(batches):6d} {examples.mean():8.1f} {p50:8.0f} {p99:8.0f} "
          f"{tokens.max():8d} {tokens.max() / tokens.mean():8.2f} {real / tokens.sum():7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DOLLY)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()

    tokenizer = load_tokenizer("smollm2-135m-instruct", None)
    rows = load_conversations([str(datasets() / args.data)]).conversations[: args.rows]
    examples = tokenize_conversations(rows, ChatFormatter(tokenizer), args.max_length).examples
    lengths = [len(e.input_ids) for e in examples]
    budget = args.budget or round(args.batch * float(np.mean(lengths)))
    print(f"{args.data}: {len(lengths)} examples, length mean {np.mean(lengths):.0f}, "
          f"p50 {np.median(lengths):.0f}, max {max(lengths)}; budget {budget} tokens")
    print(f"{'schedule':26} {'micro':>6} {'examples':>8} {'p50 tok':>8} {'p99 tok':>8} "
          f"{'max tok':>8} {'max/mean':>8} {'real':>7}")
    for packing in (False, True):
        kind = "packed" if packing else "padded"
        report(f"batch_size {args.batch}, {kind}", lengths,
               TrainingConfig(batch_size=args.batch, packing=packing))
        report(f"batch_tokens {budget}, {kind}", lengths,
               TrainingConfig(batch_tokens=budget, packing=packing))


if __name__ == "__main__":
    main()
