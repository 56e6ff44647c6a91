"""Training throughput: tunesmith against TRL SFTTrainer + PEFT, side by side in one run.

Every side trains in its own subprocess (clean peak RSS) with the same model, data, LoRA
(r=16, alpha 32, all linear layers) or full fine-tuning, batch size, max length, learning
rate and schedule, fp32, 2 threads, gradient checkpointing off. Rows:

- tunesmith: its own config (`load_config` + dotted overrides, `--tunesmith-set k=v`), data
  preparation (`prepare_data`), method and loop (`tunesmith.training.loop.train`).
- trl: SFTTrainer as a user sets it up: conversational prompt/completion rows (the same
  conversations tunesmith kept), completion-only loss, its default padding collator.
- trl padding_free: the same with `padding_free=True` (SDPA on CPU).
- trl_allocator (on request, `--rows ...,trl_allocator`): TRL under the allocator tunesmith
  loads. The tunesmith row runs as its CLI does: under tcmalloc or jemalloc when the system
  has one (tunesmith.training.allocator); TRL rows use glibc's malloc, as TRL does. The
  table's last column names each row's allocator.
- loss curve: TRL replays tunesmith's batch plan (`Schedule`) on tunesmith's tokenized
  examples (input_ids + completion mask), LoRA initialised with the same seed; the bench
  prints the largest |loss difference| over the first `--loss-steps` steps.

Throughput counts only timed steps (after `--warmup` steps) and only real tokens:

    supervised tokens/s = supervised tokens in the timed steps / their wall seconds

Peak RSS is each process's VmHWM read when the step after the timed ones starts (every side
runs at least one more step), so both sides are measured over the same number of steps.

MFU divides the model FLOPs of the timed steps by their wall time and by the fp32 matmul
peak this script measures (best `torch.mm` of 4096 x 4096 matrices on 2 threads, measured
before and after the runs):

    FLOPs = c * N_linear * T_real + 6 * N_lora * T_real + c * V * H * T_sup
            + 12 * layers * d_attn * sum over sequences of L * (L + 1) / 2

with c = 4 for a frozen base (forward 2, input gradients 2) and 6 for full fine-tuning
(plus weight gradients 2); N_linear = the weights of the decoder's linear layers (embedding
and output head excluded), N_lora = LoRA weights, T_real = non-padding tokens, T_sup =
supervised tokens (both sides apply the output head, V x H, to supervised positions only),
L = the real length of each sequence (attention: QK^T and AV, 4 * d_attn FLOPs per
query-key pair forward, three times that with the backward). Padding earns nothing.

    python bench/train_throughput.py                     # Banking77, LoRA, ~15 min idle
    python bench/train_throughput.py --quick             # ~3 min smoke run
    python bench/train_throughput.py --dataset dolly --method full --json out.json
    python bench/train_throughput.py --tunesmith-set training.packing=true

With `--precision bf16` both sides train under bf16 autocast (float32 weights, bf16 matrix
products: tunesmith's `training.mixed_precision: bf16`, TRL's `bf16=True`), on a CPU that
computes bf16 natively (AMX); MFU is then against the bf16 matmul peak, measured the same way.

Datasets come from $TUNESMITH_DATASETS (banking77/, dolly-prompt-response/).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
SIDES = Path(__file__).resolve().parent / "throughput_sides.py"
THREADS = 2
DATASETS = {
    "banking77": ["data.train=[\"${TUNESMITH_DATASETS}/banking77/train.csv\"]",
                  "data.format=mapped", "data.mapping.user='{text}'",
                  "data.mapping.assistant_json={intent: '{category}'}",
                  "data.system_prompt=Classify the banking customer's intent. Answer in JSON.",
                  "data.max_length=256"],
    "dolly": [("data.train=[\"${TUNESMITH_DATASETS}/dolly-prompt-response/"
               "dolly_hhrlhf_train_small.jsonl\"]"), "data.max_length=512"],
}


def measure_peak(precision: str = "fp32", size: int = 4096, repeats: int = 5) -> float:
    """Best matmul rate (FLOP/s) of `torch.mm` on square fp32 or bf16 matrices, 2 threads."""
    torch.set_num_threads(THREADS)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)  # warm-up: first call allocates and picks the kernel
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def side_env(allocator: bool) -> dict[str, str]:
    """A worker's environment: with the allocator the tunesmith CLI would load (tcmalloc or
    jemalloc, when installed; see tunesmith.training.allocator), or with glibc's malloc."""
    from tunesmith.training.allocator import DONE, relaunch_env

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", DONE)}
    env.update(OMP_NUM_THREADS=str(THREADS), TOKENIZERS_PARALLELISM="false")
    # /dev/null for this process's maps: what this bench itself runs under does not matter
    return (relaunch_env(env, maps=Path(os.devnull)) or env) if allocator else env


def spawn(role: str, spec: dict[str, Any], out_path: Path, allocator: bool) -> dict[str, Any]:
    """Run one side in a fresh interpreter; return its result or the error it printed."""
    spec_path = out_path.with_suffix(".spec.json")
    spec_path.write_text(json.dumps(spec))
    cmd = [sys.executable, str(SIDES), role, str(spec_path), str(out_path)]
    env = side_env(allocator)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out_path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        return {"error": " | ".join(tail) or f"exit {proc.returncode}"}
    if role == "prepare":
        return {}
    return {**json.loads(out_path.read_text()), "allocator": env.get("LD_PRELOAD") or "glibc"}


def flops(shape: dict[str, int], step: dict[str, int], full: bool) -> float:
    """Model FLOPs of one step (formula in the module docstring)."""
    c = 6 if full else 4
    return (c * shape["linear"] * step["tokens"] + 6 * shape["lora"] * step["tokens"]
            + c * shape["head"] * step["supervised"]
            + 12 * shape["layers"] * shape["d_attn"] * step["pairs"])


def summarise(result: dict[str, Any], window: tuple[int, int], peak: float,
              full: bool) -> dict[str, Any]:
    """Throughput, MFU and memory of the timed steps: `window` = (warm-up, timed) steps."""
    if "error" in result:
        return {"error": result["error"]}
    steps = result["steps"]
    warmup, count = window
    timed = steps[warmup : warmup + count]
    if len(timed) < count:
        return {"error": f"only {len(steps)} steps ran; expected {warmup} warm-up + {count}"}
    seconds = timed[-1]["end_s"] - (steps[warmup - 1]["end_s"] if warmup else 0.0)
    sup = sum(s["supervised"] for s in timed)
    real = sum(s["tokens"] for s in timed)
    padded = sum(s["padded"] for s in timed)
    work = sum(flops(result["shape"], s, full) for s in timed)
    # peak RSS over the warm-up and timed steps only: read when the next step starts, so a
    # side that runs longer (tunesmith's loss curve) is measured over the same steps
    after = steps[warmup + count]["peak_before"] if len(steps) > warmup + count \
        else result["peak_rss_bytes"]
    return {"timed_steps": len(timed), "seconds": seconds, "supervised_tokens": sup,
            "real_tokens": real, "padded_tokens": padded,
            "supervised_tok_s": sup / seconds, "real_tok_s": real / seconds,
            "padding_share": 1 - real / padded if padded else 0.0,
            "mfu": work / seconds / peak, "peak_rss_mib": after / 2**20,
            "trainable_params": result["shape"]["trainable"], "examples": result["examples"],
            "allocator": result.get("allocator", "glibc")}


def loss_gap(ours: dict[str, Any], theirs: dict[str, Any], steps: int) -> dict[str, Any]:
    """Largest |loss difference| over the first `steps` steps, and at step 1."""
    if "error" in ours or "error" in theirs:
        return {"error": theirs.get("error") or ours.get("error")}
    a = [s["loss"] for s in ours["steps"][:steps]]
    b = [s["loss"] for s in theirs["steps"][:steps]]
    n = min(len(a), len(b))
    diffs = [abs(x - y) for x, y in zip(a[:n], b[:n])]
    return {"steps": n, "max_abs_diff": max(diffs) if diffs else None,
            "initial_diff": diffs[0] if diffs else None,
            "tunesmith": a[:n], "trl": b[:n]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; `--quick` shrinks every count for a smoke run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), default="banking77")
    p.add_argument("--method", choices=["lora", "full"], default="lora")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=None, help="default: per dataset")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: both sides under bf16 autocast (a CPU with native bf16)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--steps", type=int, default=8, help="timed steps")
    p.add_argument("--loss-steps", type=int, default=50, help="steps of the loss curve")
    p.add_argument("--quick", action="store_true", help="1 + 3 steps, 5-step loss curve")
    p.add_argument("--rows", default="tunesmith,trl,trl_padding_free,loss",
                   help="comma-separated subset of the rows to run; trl_allocator = TRL "
                        "under the allocator tunesmith loads")
    p.add_argument("--tunesmith-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra tunesmith config override (repeatable)")
    p.add_argument("--json", type=Path, help="also write every number to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.steps, args.loss_steps = 1, 3, 5
    return args


def base_overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides both sides share (tunesmith reads them; TRL copies them)."""
    items = [*DATASETS[args.dataset], f"model.name={args.model}", f"method.name={args.method}",
             "method.r=16", "method.alpha=32", "method.target_modules=all-linear",
             f"training.batch_size={args.batch_size}", f"training.lr={args.lr}",
             "training.seed=0", "data.seed=0"]
    if args.max_length:
        items.append(f"data.max_length={args.max_length}")
    return items


def run_rows(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Run every requested side in its own process; return the raw results."""
    wanted = set(args.rows.split(","))
    timed = args.warmup + args.steps
    longest = max(timed, args.loss_steps if "loss" in wanted else 0)
    spec = {"overrides": base_overrides(args), "tunesmith_set": args.tunesmith_set,
            "precision": args.precision,
            "trl_inputs": str(tmp / "trl_inputs.json")}
    jobs = {
        "prepare": ("prepare", {**spec, "replay_steps": args.loss_steps}),
        "tunesmith": ("tunesmith", {**spec, "steps": longest}),
        # one step more than timed: its start reads the peak RSS of the timed steps
        "trl": ("trl", {**spec, "steps": timed + 1}),
        "trl_padding_free": ("trl", {**spec, "steps": timed + 1, "padding_free": True}),
        "trl_allocator": ("trl", {**spec, "steps": timed + 1}),
        "loss": ("trl", {**spec, "steps": args.loss_steps, "replay": True,
                         "schedule_steps": longest}),
    }
    if wanted & {"trl", "trl_padding_free", "trl_allocator", "loss"}:
        wanted.add("prepare")
    results = {}
    for name, (role, job) in jobs.items():
        if name not in wanted:
            continue
        started = time.perf_counter()
        out = spec["trl_inputs"] if role == "prepare" else tmp / f"{name}.json"
        results[name] = spawn(role, job, Path(out), name in ("tunesmith", "trl_allocator"))
        error = results[name].get("error")
        print(f"{name}: done in {time.perf_counter() - started:.0f} s"
              + (f" (failed: {error})" if error else ""), file=sys.stderr)
    return results


def ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}x" if isinstance(a, float) and isinstance(b, float) and b else "-"


def table(rows: dict[str, dict[str, Any]], peak: float, gap: dict[str, Any] | None,
          precision: str = "fp32") -> str:
    """The Markdown table printed at the end."""
    lines = [(f"{precision} matmul peak (torch.mm 4096, {THREADS} threads): "
              f"{peak / 1e9:.1f} GFLOP/s"), "",
             ("| row | supervised tok/s | real tok/s | padding | MFU | peak RSS MiB | "
              "vs TRL tok/s | vs TRL RSS | allocator |"), "|---|---|---|---|---|---|---|---|---|"]
    ref = rows.get("trl", {})
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'][:150]} | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {r['supervised_tok_s']:.1f} | {r['real_tok_s']:.1f} | "
            f"{r['padding_share']:.0%} | {r['mfu']:.1%} | {r['peak_rss_mib']:.0f} | "
            f"{ratio(r['supervised_tok_s'], ref.get('supervised_tok_s'))} | "
            f"{ratio(r['peak_rss_mib'], ref.get('peak_rss_mib'))} | {r['allocator']} |")
    if gap is not None:
        if "error" in gap:
            lines += ["", f"loss curve: failed: {gap['error']}"]
        else:
            lines += ["", (f"loss curve, same batches (tunesmith vs TRL replay), first "
                           f"{gap['steps']} steps: max |diff| {gap['max_abs_diff']:.2e}, "
                           f"step 1 |diff| {gap['initial_diff']:.2e}")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TUNESMITH_DATASETS", str(ROOT.parent / "shared" / "datasets"))
    peak = measure_peak(args.precision)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        raw = run_rows(args, Path(tmp))
    # the best of two measurements, before and after: a busy moment lowers one, not both
    peak = max(peak, measure_peak(args.precision))
    summary = {name: summarise(r, (args.warmup, args.steps), peak, args.method == "full")
               for name, r in raw.items() if name not in ("loss", "prepare")}
    gap = loss_gap(raw["tunesmith"], raw["loss"], args.loss_steps) \
        if "loss" in raw and "tunesmith" in raw else None
    print(table(summary, peak, gap, args.precision))
    if args.json:
        payload = {"args": {k: str(v) if isinstance(v, Path) else v
                            for k, v in vars(args).items()},
                   "matmul_peak_flops": peak, "rows": summary, "loss_curve": gap,
                   "torch_threads": THREADS, "per_step": raw}
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
