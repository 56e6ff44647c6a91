"""Peak memory per process of each way to train on several processes, against the estimate.

Trains the default model on the bundled sample data (batch 4 per process, 4 steps, a final
checkpoint, no generation) once in one process, then on 2 CPU processes under DDP and FSDP2
(torchrun, gloo) and, with --deepspeed, under DeepSpeed ZeRO-2 and ZeRO-3 (accelerate launch
with the shipped configs). For each run it reads rank 0's own records: `peak_rss_gb` of the
last `metrics.jsonl` row (the training steps) and of `summary.json` (the whole run, after the
final checkpoint), and prints them beside `tunesmith estimate` for the same layout.

    python bench/process_memory.py [--methods lora,full] [--deepspeed] [--json out.json]

Each run takes 20-60 s on 2 CPU cores. Memory does not depend on the machine being idle.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "sample" / "config.yaml"
SETTINGS = ["training.max_steps=4", "training.save_every=0", "training.eval_every=0",
            "evaluation.enabled=false", "training.batch_size=4"]
# layout: (launcher, extra environment, estimate flags)
LAYOUTS = {
    "one process": ("python", {}, []),
    "DDP": ("torchrun", {}, ["--processes", "2"]),
    "FSDP2": ("torchrun", {"ACCELERATE_USE_FSDP": "true"},
              ["--processes", "2", "--sharding", "fsdp"]),
    "ZeRO-2": ("deepspeed_zero2", {}, None),
    "ZeRO-3": ("deepspeed_zero3", {}, None),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(launcher: str) -> list[str]:
    """How each layout starts tunesmith (see docs/distributed.md)."""
    port = str(free_port())
    if launcher == "python":
        return [sys.executable, "-m", "tunesmith.cli.main"]
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", port, "-m",
                "tunesmith.cli.main"]
    config = ROOT / "examples" / "distributed" / f"{launcher}.yaml"
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port",
            port, "-m", "tunesmith.cli.main"]


def train(layout: str, method: str, work: Path) -> dict:
    """One short run; rank 0's recorded peaks."""
    launcher, extra, _ = LAYOUTS[layout]
    out = work / f"{method}-{layout.replace(' ', '-')}"
    env = {**os.environ, "OMP_NUM_THREADS": "1" if launcher != "python" else
           os.environ.get("OMP_NUM_THREADS", "2"), **extra}
    args = command(launcher) + ["train", str(CONFIG), f"output_dir={out}",
                                f"method.name={method}", *SETTINGS]
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"training_gb": [row for row in rows if "peak_rss_gb" in row][-1]["peak_rss_gb"],
            "run_gb": json.loads((out / "summary.json").read_text())["training"]["peak_rss_gb"]}


def estimate(layout: str, method: str) -> float | None:
    """`tunesmith estimate`'s peak for the layout, or None where it has no model."""
    flags = LAYOUTS[layout][2]
    if flags is None:
        return None
    args = [sys.executable, "-m", "tunesmith.cli.main", "estimate", str(CONFIG), "--json",
            f"method.name={method}", "training.batch_size=4", "training.max_steps=4", *flags]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["memory"]["peak_gb"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--deepspeed", action="store_true", help="also ZeRO-2 and ZeRO-3")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    layouts = [name for name in LAYOUTS if args.deepspeed or not name.startswith("ZeRO")]
    results = []
    print("| method | layout | training steps | whole run | estimate | estimate / run |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            for layout in layouts:
                seen = {"method": method, "layout": layout, **train(layout, method,
                                                                     Path(tmp))}
                seen["estimate_gb"] = estimate(layout, method)
                results.append(seen)
                if "error" in seen:
                    print(f"| {method} | {layout} | failed: {seen['error']} | | | |")
                    continue
                guess = seen["estimate_gb"]
                ratio = f"{guess / seen['run_gb']:.2f}" if guess else "not modelled"
                shown = f"{guess:.2f} GB" if guess else "-"
                print(f"| {method} | {layout} | {seen['training_gb']:.2f} GB | "
                      f"{seen['run_gb']:.2f} GB | {shown} | {ratio} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
