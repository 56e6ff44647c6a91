"""Compare `tunesmith estimate` with real short trainings of the default model on this machine.

Trains LoRA and full fine-tuning on the first 300 Banking77 rows (max_steps 25, batch 8,
fp32) in a subprocess each, and measures the peak RSS (VmHWM, from wait4) and the time per
optimizer step. Time per step is the CPU time of the training process between step 5 and the
last step divided by the thread count (the wall time the steps take on an idle machine with
both threads busy); wall time per step is printed too, because on a shared machine it is
inflated by other work. Prints estimate vs measured and their ratio.

    TUNESMITH_DATASETS=... python bench/estimate_accuracy.py [--steps 25] [--repeat 1]
        [--methods lora,full] [--saved measured.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ROWS = 300
FIRST_TIMED_STEP = 5  # steps before this warm up allocators and caches


def banking77_rows(path: Path, rows: int) -> Path:
    """The first `rows` rows of Banking77's train.csv, copied into a temp file."""
    folder = Path(os.environ.get("TUNESMITH_DATASETS", ROOT.parent / "shared" / "datasets"))
    with (folder / "banking77" / "train.csv").open(encoding="utf-8") as handle:
        table = list(csv.reader(handle))[: rows + 1]
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows(table)
    return path


def run_config(work: Path, data: Path, method: str, steps: int, threads: int) -> dict:
    """A train-only config: the Banking77 example settings, short and without evaluation."""
    return {
        "output_dir": str(work / f"run-{method}"),
        "data": {"train": [str(data)], "format": "mapped", "eval_fraction": 0.0,
                 "mapping": {"user": "{text}", "assistant_json": {"intent": "{category}"}},
                 "system_prompt": "Classify the banking customer's intent. Answer in JSON.",
                 "max_length": 256},
        "method": {"name": method, "r": 16, "alpha": 32},
        "training": {"max_steps": steps, "batch_size": 8, "lr": 1e-4, "eval_every": 0,
                     "save_every": 0, "threads": threads},
        "evaluation": {"enabled": False}, "export": {"adapter": False, "merged": False},
    }


def measure(config_path: Path, run_dir: Path) -> dict:
    """Train once in a subprocess; return peak RSS and time per step."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "tunesmith.cli.main", "train", str(config_path)]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    stderr = child.stderr.read() if child.stderr else ""
    if status != 0:
        raise SystemExit(f"training failed:\n{stderr[-2000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    first, last = rows[FIRST_TIMED_STEP - 1], rows[-1]
    steps = last["step"] - first["step"]
    return {"peak_rss_gb": usage.ru_maxrss * 1024 / 1e9,
            "cpu_s_per_step": (last["cpu_s"] - first["cpu_s"]) / steps,
            "wall_s_per_step": (last["elapsed_s"] - first["elapsed_s"]) / steps,
            "process_wall_s": wall, "tokens_per_step": (last["tokens"] - first["tokens"]) / steps}


def measure_all(methods: list[str], steps: int, repeat: int, threads: int) -> dict:
    """Measure every method `repeat` times; keep the lowest time and the highest peak."""
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="tunesmith-estimate-") as tmp:
        work = Path(tmp)
        data = banking77_rows(work / "banking77-300.csv", ROWS)
        for method in methods:
            runs = []
            for attempt in range(repeat):
                cfg = run_config(work / f"try{attempt}", data, method, steps, threads)
                path = work / f"{method}-{attempt}.yaml"
                path.write_text(yaml.safe_dump(cfg))
                runs.append(measure(path, Path(cfg["output_dir"])))
                print(f"measured {method} #{attempt + 1}: {json.dumps(runs[-1])}", flush=True)
            best = min(runs, key=lambda r: r["cpu_s_per_step"])
            out[method] = {**best, "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
                           "config": run_config(work, data, method, steps, threads),
                           "runs": len(runs)}
    return out


def estimate_for(cfg: dict, data: Path) -> dict:
    """What `tunesmith estimate` says for the same config on this CPU."""
    from tunesmith.config import load_config
    from tunesmith.planning import estimate_run

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.yaml"
        cfg = {**cfg, "data": {**cfg["data"], "train": [str(data)]}}
        path.write_text(yaml.safe_dump(cfg))
        return estimate_run(load_config(str(path), []), hardware=None)


def main() -> None:
    """Measure, estimate and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--saved", help="read (or write) measurements from this JSON file")
    args = parser.parse_args()
    saved = Path(args.saved) if args.saved else None
    if saved is not None and saved.is_file():
        measured = json.loads(saved.read_text())
    else:
        measured = measure_all(args.methods.split(","), args.steps, args.repeat, args.threads)
        if saved is not None:
            saved.write_text(json.dumps(measured, indent=2))
    report(measured)


def report(measured: dict) -> None:
    """Print estimate vs measured for each method."""
    sys.path.insert(0, str(ROOT / "src"))
    print(f"{'method':6} {'quantity':22} {'estimate':>10} {'measured':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        data = banking77_rows(Path(tmp) / "banking77-300.csv", ROWS)
        for method, got in measured.items():
            est = estimate_for(got["config"], data)
            pairs = [("peak memory GB", est["memory"]["peak_gb"], got["peak_rss_gb"]),
                     ("s/step (cpu/threads)", est["time"]["seconds_per_step"],
                      got["cpu_s_per_step"] / got["config"]["training"]["threads"]),
                     ("s/step (wall, busy)", est["time"]["seconds_per_step"],
                      got["wall_s_per_step"])]
            for name, e, m in pairs:
                print(f"{method:6} {name:22} {e:10.3f} {m:10.3f} {e / m:6.2f}")


if __name__ == "__main__":
    main()
