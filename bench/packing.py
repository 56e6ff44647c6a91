"""Training speed: padded vs packed micro-batches, plain vs chunked output layer + loss.

Runs real optimizer steps of the training loop on the default model (LoRA, lr 0 so every
variant sees the same weights and must report the same loss), interleaving the variants
step by step so machine noise hits them alike. Then times the output layer + loss alone and
measures its peak memory (peak RSS growth, one subprocess per variant).

    python bench/packing.py --rows 200 --batch 8 --steps 5
    python bench/packing.py --loss-only --supervised 8192

Datasets come from $TUNESMITH_DATASETS (default: dolly-prompt-response).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from tunesmith.config.schema import TrainingConfig
from tunesmith.data import load_conversations
from tunesmith.formatting.chat import ChatFormatter
from tunesmith.modeling.adapters import LoraSettings
from tunesmith.modeling.loading import load_model
from tunesmith.modeling.loss import SupervisedLoss, chunked_cross_entropy
from tunesmith.tokenization.examples import tokenize_conversations
from tunesmith.training.checkpoint import LoopState
from tunesmith.training.loop import Schedule, TrainInputs, _optimizer_step, _Session
from tunesmith.training.methods import build_method

ROOT = Path(__file__).resolve().parent.parent
DOLLY = "dolly-prompt-response/dolly_hhrlhf_train_small.jsonl"
VARIANTS = {"padded+plain": (False, None), "packed+plain": (True, None),
            "padded+chunked": (False, 1024), "packed+chunked": (True, 1024)}


def datasets() -> Path:
    return Path(os.environ.get("TUNESMITH_DATASETS", ROOT.parent / "shared" / "datasets"))


def train_steps(args: argparse.Namespace) -> None:
    """Time `args.steps` optimizer steps per variant; the first step is a warm-up."""
    from accelerate import Accelerator

    loaded = load_model("smollm2-135m-instruct")
    method = build_method("lora", LoraSettings(16, 32, 0.0, "all-linear", []))
    model = method.prepare(loaded.model)
    rows = load_conversations([str(datasets() / args.data)]).conversations[: args.rows]
    examples = tokenize_conversations(rows, ChatFormatter(loaded.tokenizer),
                                      args.max_length).examples
    print(f"{len(examples)} examples, {sum(len(e.input_ids) for e in examples)} tokens, "
          f"batch {args.batch}, max_length {args.max_length}, threads {torch.get_num_threads()}")
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    inputs = TrainInputs(model, method, examples, [], loaded.tokenizer.pad_token_id,
                         Path("unused"), max_length=args.max_length)
    stats = {name: {"seconds": 0.0, "tokens": 0, "losses": []} for name in VARIANTS}
    for step in range(args.steps + 1):
        for name, (packing, chunk) in VARIANTS.items():
            cfg = TrainingConfig(batch_size=args.batch, packing=packing, max_grad_norm=1.0,
                                 pack_length=args.pack_length)
            schedule = Schedule([len(e.input_ids) for e in examples], cfg, 1)
            state = LoopState(step=step)
            started = time.perf_counter()
            run = _Session(accelerator, SupervisedLoss(model, chunk), optimizer, scheduler,
                           schedule, 0, state, args.pack_length or args.max_length)
            loss = _optimizer_step(run, inputs, cfg)
            if step:  # step 0 warms up allocator and kernels
                stats[name]["seconds"] += time.perf_counter() - started
                stats[name]["tokens"] += state.tokens
            stats[name]["losses"].append(round(loss, 6))
            print(f"step {step} {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr,
                  flush=True)
    _report_steps(stats)


def _report_steps(stats: dict[str, dict[str, Any]]) -> None:
    base = stats["padded+plain"]
    for name, row in stats.items():
        rate = row["tokens"] / row["seconds"]
        print(f"{name:15s} {rate:8.1f} tok/s  {row['seconds']:7.1f} s  "
              f"x{rate / (base['tokens'] / base['seconds']):.3f} vs padded+plain  "
              f"losses {row['losses']}")


def loss_once(rows: int, head_grad: bool, chunk: int | None) -> dict[str, float]:
    """Output layer + loss forward/backward on [rows, 576] hidden states of a 49152 vocab."""
    torch.manual_seed(0)
    hidden = torch.randn(rows, 576, requires_grad=True)
    weight = (torch.randn(49152, 576) * 0.02).requires_grad_(head_grad)
    targets = torch.randint(0, 49152, (rows,))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if chunk:
        loss = chunked_cross_entropy(hidden, weight, targets, chunk)
    else:
        logits = (hidden @ weight.T).float()  # what SupervisedLoss does without chunks
        loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    loss.backward()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_mib": (peak - before) / 1024}


def loss_only(args: argparse.Namespace) -> None:
    """Each variant in its own process, so peak RSS belongs to that variant alone."""
    for head_grad in (False, True):
        for chunk in (None, 1024):
            runs = []
            for _ in range(args.repeats):
                code = ("import json,sys; sys.path.insert(0, 'bench'); import packing; "
                        f"print(json.dumps(packing.loss_once({args.supervised}, {head_grad}, "
                        f"{chunk})))")
                out = subprocess.run([sys.executable, "-c", code], check=True, text=True,
                                     capture_output=True, cwd=ROOT).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
            best = min(r["seconds"] for r in runs)
            peak = max(r["peak_mib"] for r in runs)
            print(f"N={args.supervised} head {'trained' if head_grad else 'frozen '} "
                  f"{'chunked' if chunk else 'plain  '}: best {best:6.2f} s of "
                  f"{args.repeats}, peak +{peak:7.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DOLLY, help="JSONL under $TUNESMITH_DATASETS")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--pack-length", type=int, default=None)
    parser.add_argument("--loss-only", action="store_true")
    parser.add_argument("--supervised", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.loss_only:
        loss_only(args)
    else:
        train_steps(args)


if __name__ == "__main__":
    main()
