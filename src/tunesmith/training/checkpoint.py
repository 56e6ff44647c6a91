"""Atomic checkpoints: trainable weights, optimizer, scheduler, RNG and data position."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunesmith.errors import CheckpointError
from tunesmith.files import give_default_modes

State = dict[str, Any] | Callable[[], dict[str, Any]]  # a state dict, or how to gather it

STATE_FILE = "state.json"
BEST_DIR = "best"  # beside the step-NNNNNNN folders; prune_checkpoints never touches it


@dataclass
class LoopState:
    """Where training stands; `step` optimizer steps are done."""

    step: int = 0
    tokens: int = 0
    supervised_tokens: int = 0
    skipped_batches: int = 0
    best_eval_loss: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0  # the early-stopping patience counter
    stop_reason: str | None = None
    fingerprint: dict[str, Any] | None = None
    mixed_precision: str | None = None  # what the steps so far ran in (no, bf16, fp16)
    processes: int | None = None  # data-parallel processes: the schedule depends on them
    # [step, eval loss] of every evaluation so far, so a resumed run reports the whole run's
    eval_losses: list[list[float]] = field(default_factory=list)


def save_checkpoint(
    directory: Path, state: LoopState, weights: State, optimizer: State, scheduler: Any,
) -> Path:
    """Write `directory/step-NNNNNN` through a temporary folder and a rename.

    `optimizer` is the optimizer's state dict (gathered whole when the model is sharded).
    Either may be a function that returns it: it is then called when its file is written,
    so the weights are on disk and dropped before the optimizer state is gathered.
    """

    def write(tmp: Path) -> None:
        torch.save(weights() if callable(weights) else weights, tmp / "weights.pt")
        torch.save(optimizer() if callable(optimizer) else optimizer, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
        torch.save(rng, tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))

    return _write_atomically(directory, f"step-{state.step:07d}", write)


def save_best(directory: Path, state: LoopState, weights: dict[str, Any]) -> Path:
    """Write the best weights so far to `directory/best` (weights and state only)."""

    def write(tmp: Path) -> None:
        torch.save(weights, tmp / "weights.pt")
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))

    return _write_atomically(directory, BEST_DIR, write)


def best_checkpoint(directory: Path) -> Path | None:
    """The best-eval-loss checkpoint, if the run kept one."""
    path = directory / BEST_DIR
    return path if (path / STATE_FILE).is_file() else None


def _write_atomically(directory: Path, name: str, write: Any) -> Path:
    """Fill a temporary folder with `write(tmp)`, then rename it to `directory/name`.

    A reader never sees a half-written folder: the old one is moved aside before the new
    one takes its name, and only then deleted.
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory))
    try:
        write(tmp)
        give_default_modes(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory))
            final.rename(old / name)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint (half-written ones never carry a final name)."""
    done = sorted(p for p in directory.glob("step-*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


# The config keys behind each position of a fingerprint's lists (tunesmith.pipeline)
FINGERPRINT_FIELDS = {
    "method": ("method.name", "method.r", "method.alpha", "method.target_modules",
               "method.modules_to_save", "method.quantization", "method.double_quant"),
    "batch": ("training.batch_size", "training.grad_accum", "training.seed",
              "training.batch_tokens", "training.packing"),
}


def _differences(key: str, saved: Any, current: Any) -> list[str]:
    """'name: X in the checkpoint, Y now' for each setting behind `key` that changed."""
    names = FINGERPRINT_FIELDS.get(key)
    if names and isinstance(saved, list) and isinstance(current, list):
        out = []
        for i, name in enumerate(names):
            was = saved[i] if i < len(saved) else None
            now = current[i] if i < len(current) else None
            if was != now:
                out.append(f"{name}: {was!r} in the checkpoint, {now!r} now")
        if out:
            return out
    return [f"{key}: {saved!r} in the checkpoint, {current!r} now"]


def check_fingerprint(path: Path, saved: dict[str, Any] | None, current: dict[str, Any],
                      keys: tuple[str, ...] | None = None) -> None:
    """Refuse a checkpoint written by a different method or data than the current config
    (only the fingerprint's `keys` when given)."""
    if saved is None:
        return
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k)
                     and (keys is None or k in keys))
    if changed:
        detail = "; ".join(d for k in changed
                           for d in _differences(k, saved.get(k), current.get(k)))
        raise CheckpointError(f"{path} was trained with other settings ({detail}); use the "
                              "same config or a new output_dir")


def check_resumable(run_dir: Path, resume: bool, fingerprint: dict[str, Any],
                    processes: int) -> Path | None:
    """The checkpoint a run into `run_dir` continues from, or a CheckpointError why it may not.

    Reads only the checkpoint's state.json, so a refused run stops before it writes into the
    run directory or loads anything.
    """
    last = latest_checkpoint(run_dir / "checkpoints")
    if last is None:
        return None
    if not resume:
        raise CheckpointError(f"{run_dir} already holds checkpoints ({last.name}); continue "
                              "it with --resume, or choose a new output_dir")
    try:
        state = json.loads((last / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{last}: cannot resume from this checkpoint ({err})") from None
    check_fingerprint(last, state.get("fingerprint"), fingerprint)
    check_processes(last, state.get("processes"), processes)
    return last


def check_processes(path: Path, saved: int | None, processes: int) -> None:
    """Refuse to resume a checkpoint on another number of data-parallel processes."""
    if saved not in (None, processes):
        raise CheckpointError(
            f"{path} was trained on {saved} process(es), this launch has {processes}: the "
            f"data order and learning-rate schedule depend on the number; resume with {saved} "
            "(torchrun --nproc_per_node or accelerate --num_processes)")


def read_weights(path: Path) -> dict[str, Any]:
    """The trainable weights of a checkpoint, or a CheckpointError naming what is wrong."""
    try:
        return torch.load(path / "weights.pt", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read weights.pt ({type(err).__name__}: "
                              f"{err}); delete this checkpoint folder to use the one before "
                              "it") from None


def load_checkpoint(path: Path, load_optimizer: Any, scheduler: Any) -> tuple[LoopState, dict]:
    """Restore optimizer, scheduler and RNG; return the loop state and trainable weights.

    `load_optimizer` takes the saved optimizer state dict and loads it (into shards if the
    model is sharded).
    """
    try:
        state = LoopState(**json.loads((path / STATE_FILE).read_text()))
        weights = torch.load(path / "weights.pt", weights_only=True)
        load_optimizer(torch.load(path / "optimizer.pt", weights_only=True))
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
