"""Atomic checkpoints: trainable weights, optimizer, scheduler, RNG and data position."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from tunesmith.errors import CheckpointError

STATE_FILE = "state.json"


@dataclass
class LoopState:
    """Where training stands; `step` optimizer steps are done."""

    step: int = 0
    tokens: int = 0
    supervised_tokens: int = 0
    skipped_batches: int = 0
    best_eval_loss: float | None = None
    best_step: int | None = None
    fingerprint: dict[str, Any] | None = None


def save_checkpoint(
    directory: Path, state: LoopState, weights: dict[str, Any], optimizer: Any, scheduler: Any
) -> Path:
    """Write `directory/step-NNNNNN` through a temporary folder and a rename."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{state.step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory))
    try:
        torch.save(weights, tmp / "weights.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
        torch.save(rng, tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint (half-written ones never carry a final name)."""
    done = sorted(p for p in directory.glob("step-*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def check_fingerprint(path: Path, saved: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """Refuse a checkpoint written by a different method or data than the current config."""
    if saved is None:
        return
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, config {current.get(k)!r}"
                           for k in changed)
        raise CheckpointError(f"{path} was trained with other settings ({detail}); use the "
                              "same config or a new output_dir")


def read_weights(path: Path) -> dict[str, Any]:
    """The trainable weights of a checkpoint, or a CheckpointError naming what is wrong."""
    try:
        return torch.load(path / "weights.pt", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read weights.pt ({type(err).__name__}: "
                              f"{err}); delete this checkpoint folder to use the one before "
                              "it") from None


def load_checkpoint(path: Path, optimizer: Any, scheduler: Any) -> tuple[LoopState, dict]:
    """Restore optimizer, scheduler and RNG; return the loop state and trainable weights."""
    try:
        state = LoopState(**json.loads((path / STATE_FILE).read_text()))
        weights = torch.load(path / "weights.pt", weights_only=True)
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        rng = torch.load(path / "rng.pt", weights_only=False)
    except (OSError, EOFError, ValueError, KeyError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"{path}: cannot resume from this checkpoint ({err})") from None
    random.setstate(rng["python"])
    torch.set_rng_state(rng["torch"])
    return state, weights


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the `keep` newest checkpoints, and folders a killed save left behind."""
    done = sorted(p for p in directory.glob("step-*") if (p / STATE_FILE).is_file())
    for old in done[:-keep] + list(directory.glob(".tmp-*")):
        shutil.rmtree(old, ignore_errors=True)
