"""Read what a tunesmith run directory holds: the summary, per-step losses, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def summary(run: Path) -> dict:
    """The `training` section of the run's summary.json."""
    return json.loads((run / "summary.json").read_text())["training"]


def losses(run: Path) -> dict[int, float]:
    """Train loss by step, from metrics.jsonl."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def checkpoint(run: Path, step: int, name: str) -> dict:
    """One file (weights.pt, optimizer.pt, ...) of the run's checkpoint at `step`."""
    return torch.load(run / "checkpoints" / f"step-{step:07d}" / name, weights_only=True)
