"""Progress on a terminal and the same keys in metrics.jsonl."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tunesmith.data.records import dumps_strict

logger = logging.getLogger(__name__)


class Progress:
    """A progress bar (on a terminal) or periodic log lines, plus a metrics.jsonl writer."""

    def __init__(self, total: int, start: int, metrics_path: Path | None, enabled: bool) -> None:
        self.total = total
        self.metrics_path = metrics_path
        self.enabled = enabled
        self.bar = None
        self.last_log = time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

    def record(self, row: dict[str, Any]) -> None:
        """Write one metrics row and refresh the display."""
        if not self.enabled:
            return
        if self.metrics_path is not None:
            with self.metrics_path.open("a", encoding="utf-8") as out:
                out.write(dumps_strict(row) + "\n")
        if "eval_loss" in row and "loss" not in row:
            message = f"step {row['step']}: eval loss {row['eval_loss']:.4f}"
            if self.bar is not None:
                self.bar.write(message)  # printed above the bar, not through it
            else:
                logger.info(message)
            return
        if self.bar is not None:
            self.bar.update(row["step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}",
                                 tok_s=f"{row['tokens_per_s']:.0f}")
        elif time.monotonic() - self.last_log > 30 or row["step"] in (1, self.total):
            self.last_log = time.monotonic()
            logger.info("step %d/%d loss %.4f lr %.2e tok/s %.0f eta %s", row["step"],
                        self.total, row["loss"], row["lr"], row["tokens_per_s"],
                        _clock(row.get("eta_s", 0)))

    def info(self, message: str) -> None:
        """Print a line above the bar (or log it)."""
        if self.bar is not None:
            self.bar.write(message)
        logger.info(message)

    def warn(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(f"warning: {message}")
        logger.warning(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def peak_memory() -> dict[str, float]:
    """This process's peak memory so far, in GB: resident RAM, and the GPU's allocated
    memory when CUDA is in use (both high-water marks: reading them costs no sync)."""
    import resource

    import torch

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; bytes on macOS
    peak = {"peak_rss_gb": round(maxrss * (1 if sys.platform == "darwin" else 1024) / 1e9, 3)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
    return peak


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def trim_metrics(path: Path, step: int) -> None:
    """Keep only complete metric rows up to `step`: a killed run may have logged past its
    last checkpoint, or died mid-line."""
    if not path.is_file():
        return
    kept = [line for line, row in _rows(path) if row.get("step", 0) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    tmp.replace(path)


def logged_eval_losses(path: Path, step: int) -> list[list[float]]:
    """[step, eval loss] of the evaluations `metrics.jsonl` logged up to `step`: the history
    of a checkpoint written before checkpoints kept it."""
    if not path.is_file():
        return []
    return [[row["step"], row["eval_loss"]] for _, row in _rows(path)
            if "eval_loss" in row and row.get("step", 0) <= step]


def _rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, row) of every complete line of a metrics file; a torn last line is skipped."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append((line, row))
    return rows
