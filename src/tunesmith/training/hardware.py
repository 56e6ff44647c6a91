"""Hardware profiles for the estimate: this CPU (measured once, cached) or a catalogued GPU."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from tunesmith.errors import ConfigError
from tunesmith.training.cost import Hardware

# Share of the measured fp32 matmul throughput that CPU training reaches: fitted on the
# steady rate of the Banking77 LoRA epoch in docs/results.md (335 tokens/s, batch 16).
# Short runs on a busy machine came out slower; see "Cost estimate" there.
CPU_EFFICIENCY = 0.50
CPU_RUNTIME_GB = 0.45  # interpreter, torch, transformers, peft and the tokenizer (measured)
# GPUs: dense bf16 tensor-core peak (TFLOPS), memory (GB), bandwidth (GB/s). The share of
# peak that small-batch fine-tuning reaches is an assumption, not measured here.
GPU_EFFICIENCY = 0.35
GPU_RUNTIME_GB = 1.5  # CUDA context, kernels and caching-allocator slack
GPUS = {
    "t4": ("NVIDIA T4 (fp16; no bf16)", 65.0, 16.0, 320.0),
    "l4": ("NVIDIA L4", 121.0, 24.0, 300.0),
    "a10g": ("NVIDIA A10G", 70.0, 24.0, 600.0),
    "rtx4090": ("NVIDIA GeForce RTX 4090", 165.0, 24.0, 1008.0),
    "a100-40": ("NVIDIA A100 40GB", 312.0, 40.0, 1555.0),
    "a100-80": ("NVIDIA A100 80GB", 312.0, 80.0, 2039.0),
    "h100": ("NVIDIA H100 SXM", 989.0, 80.0, 3350.0),
    "h200": ("NVIDIA H200", 989.0, 141.0, 4800.0),
}


def hardware_profile(name: str | None, threads: int | None = None,
                     cache_dir: Path | None = None) -> Hardware:
    """A catalogued GPU by name, or this CPU (`name` None or "cpu")."""
    if name is None or name.lower() == "cpu":
        return cpu_profile(threads, cache_dir)
    key = name.lower().replace(" ", "").replace("_", "-")
    if key not in GPUS:
        raise ConfigError([(f"--hardware {name!r}: unknown; choose cpu or one of "
                            f"{', '.join(GPUS)}")])
    label, tflops, memory, bandwidth = GPUS[key]
    return Hardware(label, "gpu", tflops, bandwidth, GPU_EFFICIENCY, memory, GPU_RUNTIME_GB,
                    note=f"catalogue peak; efficiency {GPU_EFFICIENCY} assumed, not measured")


REMEASURE_SECONDS = 0.3  # a known CPU is measured again this long, once per process
_THIS_PROCESS: dict[tuple[str, str], dict[str, float]] = {}  # (cache file, key) -> speed


def cpu_profile(threads: int | None = None, cache_dir: Path | None = None) -> Hardware:
    """This CPU at `threads` threads: fp32 matmul and copy speed, the best seen so far.

    The first measurement of a CPU takes about a second; each later process measures again
    briefly and keeps the faster figure of each, so a measurement taken while other work
    shared the CPU does not stay in the cache. Within one process the figures stay fixed, so
    its estimates agree with each other.
    """
    import torch

    threads = threads or torch.get_num_threads()
    key = f"{_cpu_name()}|{threads}|{torch.__version__}"
    cache = (cache_dir or _cache_root()) / "hardware.json"
    memo = (str(cache), key)
    if memo in _THIS_PROCESS:
        return _cpu_hardware(threads, _THIS_PROCESS[memo])
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    old = known.get(key)
    new = measure_cpu(threads, REMEASURE_SECONDS) if old else measure_cpu(threads)
    best = {k: max(v, (old or {}).get(k, 0.0)) for k, v in new.items()}
    if best != old:
        known[key] = best
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=2))
        tmp.replace(cache)
    _THIS_PROCESS[memo] = known[key]
    return _cpu_hardware(threads, known[key])


def _cpu_hardware(threads: int, speed: dict[str, float]) -> Hardware:
    return Hardware(f"{_cpu_name()} ({threads} threads)", "cpu", speed["tflops"],
                    speed["bandwidth_gb_s"], CPU_EFFICIENCY, _ram_gb(), CPU_RUNTIME_GB,
                    note=f"fp32 matmul {speed['tflops'] * 1000:.0f} GFLOPS measured")


def measure_cpu(threads: int, seconds: float = 1.0) -> dict[str, float]:
    """Best fp32 matmul FLOPS and copy bandwidth over about `seconds` each."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # many short products: the fastest one is the least disturbed by other processes
        a, b = torch.randn(512, 512), torch.randn(512, 512)
        flops = _best_rate(lambda: torch.mm(a, b), 2 * 512**3, seconds)
        src = torch.empty(32 * 1024 * 1024)  # 128 MB: far beyond the caches
        dst = torch.empty_like(src)
        copy = _best_rate(lambda: dst.copy_(src), 2 * src.numel() * 4, seconds / 2)
    finally:
        torch.set_num_threads(before)
    return {"tflops": flops / 1e12, "bandwidth_gb_s": copy / 1e9}


def _best_rate(work: object, units: float, seconds: float) -> float:
    """Units per second of the fastest run of `work` (the least disturbed by other load)."""
    best, runs, deadline = float("inf"), 0, time.perf_counter() + seconds
    work()  # warm-up: thread pool and page faults
    while runs < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        work()
        best, runs = min(best, time.perf_counter() - start), runs + 1
    return units / best


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def _ram_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


def _cache_root() -> Path:
    env = os.environ.get("TUNESMITH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tunesmith"
