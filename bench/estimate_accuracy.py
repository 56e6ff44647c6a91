"""Compare `tunesmith estimate` with real short trainings of the default model on this machine.

Trains LoRA and full fine-tuning on the first 300 Banking77 rows (max_steps 25, batch 8,
fp32, 2 threads) in a subprocess each, and measures the peak RSS (VmHWM, from wait4) and the
wall time per optimizer step between step 5 and the last step (the fastest of --repeat runs).
On a shared machine other work inflates wall time, and CPU time too (waiting threads spin),
so the 1-minute load average before and after each run is recorded: trust only runs that
started on an idle machine. Prints estimate vs measured and their ratio.

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
    load_before = os.getloadavg()[0]
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
            "process_wall_s": wall, "tokens_per_step": (last["tokens"] - first["tokens"]) / steps,
            "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


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
            best = min(runs, key=lambda r: r["wall_s_per_step"])
            out[method] = {**best, "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
                           "config": run_config(work, data, method, steps, threads),
                           "runs": len(runs)}
    return out


def interleaved_ratio(steps: int = 6, threads: int = 2) -> dict:
    """Seconds per full fine-tuning step / per LoRA step, measured in alternation.

    Both models train in one process on the same 8 Banking77 rows, one step each in turn, so
    load from other processes slows both alike; the ratio survives a busy machine even where
    absolute times do not.
    """
    import torch

    from tunesmith.config import load_config
    from tunesmith.modeling.adapters import LoraSettings
    from tunesmith.modeling.loading import load_model
    from tunesmith.modeling.loss import SupervisedLoss
    from tunesmith.data.loading import load_conversations
    from tunesmith.data.shapes import RowMapping
    from tunesmith.formatting.chat import ChatFormatter
    from tunesmith.tokenization.examples import tokenize_conversations
    from tunesmith.tokenization.batching import collate
    from tunesmith.training.methods import FullMethod, LoraMethod

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = banking77_rows(Path(tmp) / "rows.csv", 8)
        path = Path(tmp) / "run.yaml"
        path.write_text(yaml.safe_dump(run_config(Path(tmp), data, "lora", 1, threads)))
        config = load_config(str(path), [])
        loaded = load_model(config.model.name, config.model.cache_dir, "float32")
        convs = load_conversations([str(data)], "mapped",
                                   RowMapping(**config.data.mapping)).conversations
        formatter = ChatFormatter(loaded.tokenizer, config.data.system_prompt)
        examples = tokenize_conversations(convs, formatter, 256).examples
    batch = collate(examples[:8], loaded.tokenizer.pad_token_id)
    tensors = {"input_ids": batch.input_ids, "labels": batch.labels,
               "attention_mask": batch.attention_mask}
    lora = SupervisedLoss(LoraMethod(LoraSettings(r=16, alpha=32)).prepare(
        load_model(config.model.name, config.model.cache_dir, "float32").model))
    full = SupervisedLoss(FullMethod().prepare(loaded.model))
    times: dict[str, list[float]] = {"lora": [], "full": []}
    for name, module in [("lora", lora), ("full", full)] * (steps + 1):
        optimizer = getattr(module, "_bench_opt", None) or torch.optim.AdamW(
            [p for p in module.parameters() if p.requires_grad], lr=1e-5)
        module._bench_opt = optimizer
        start = time.perf_counter()
        loss, count = module(**tensors)
        (loss / count).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times[name].append(time.perf_counter() - start)
    lora_s, full_s = (sorted(times[k][1:])[len(times[k][1:]) // 2] for k in ("lora", "full"))
    return {"lora_s": lora_s, "full_s": full_s, "ratio": full_s / lora_s}


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
    parser.add_argument("--ratio", action="store_true",
                        help="also time full vs LoRA steps in alternation (busy machines)")
    args = parser.parse_args()
    if args.ratio:
        sys.path.insert(0, str(ROOT / "src"))
        print(f"interleaved full/LoRA step time: {json.dumps(interleaved_ratio())}", flush=True)
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
                     ("s/step (wall)", est["time"]["seconds_per_step"],
                      got["wall_s_per_step"]),
                     ("s/step (CPU s/threads)", est["time"]["seconds_per_step"],
                      got["cpu_s_per_step"] / got["config"]["training"]["threads"])]
            for name, e, m in pairs:
                print(f"{method:6} {name:22} {e:10.3f} {m:10.3f} {e / m:6.2f}")
            print(f"{method:6} load average during the run: {got.get('load_1min', '?')}")


if __name__ == "__main__":
    main()
