"""Weights memory, peak RSS and seconds per step of LoRA on an fp32, nf4, int8 or int4 base.

Each base runs in its own process so that peak RSS belongs to that base alone. Training is
LoRA r=16 on all linear layers, AdamW, batch 4 x 128 random tokens; the first step (warm-up)
is left out of s/step. Weights memory counts quantized data plus its scales. Needs
tunesmith[qlora].

    python bench/qlora_memory.py [--model smollm2-135m-instruct] [--steps 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

BASES = ("fp32", "nf4", "int8", "int4")


def measure(model_name: str, base: str, steps: int, threads: int) -> dict:
    """Load one base, attach LoRA, train `steps` steps on random tokens; return the numbers."""
    import torch

    from tunesmith.modeling.adapters import LoraSettings
    from tunesmith.modeling.loading import load_model
    from tunesmith.modeling.quantization import QuantSettings, quiet_imports, weights_bytes
    from tunesmith.training.methods import build_method

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    quant = None if base == "fp32" else QuantSettings(base)
    started = time.perf_counter()
    with quiet_imports():
        model = load_model(model_name, quantization=quant).model
    load_s = time.perf_counter() - started
    weights = weights_bytes(model)
    method = build_method("lora" if base == "fp32" else "qlora", LoraSettings(), base,
                          load_base=lambda: None)
    model = method.prepare(model)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (4, 128))  # [batch, seq]
    times, losses = [], []
    for _ in range(steps + 1 if steps else 0):  # --steps 0: weights memory only
        tick = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - tick)
        losses.append(round(float(loss), 3))
    times = times or [float("nan")]
    steady = times[1:] or [float("nan")]
    return {"base": base, "weights_mib": round(weights / 2**20, 1), "load_s": round(load_s, 1),
            "s_per_step": round(sum(steady) / len(steady), 2),
            "min_s_per_step": round(min(steady), 2), "first_step_s": round(times[0], 2),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bases", default=",".join(BASES))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: measure one base
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.model, args.one, args.steps, args.threads)))
        return
    rows = []
    for base in args.bases.split(","):
        command = [sys.executable, __file__, "--one", base, "--model", args.model,
                   "--steps", str(args.steps), "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| base | weights MiB | peak RSS GiB | s/step (mean / min) | first step s | load s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['base']} | {r['weights_mib']} | {r['peak_rss_gib']} | "
              f"{r['s_per_step']} / {r['min_s_per_step']} | {r['first_step_s']} | "
              f"{r['load_s']} |")


if __name__ == "__main__":
    main()
