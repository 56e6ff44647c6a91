"""Atomic export of the PEFT adapter and of a merged transformers model directory."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunesmith.errors import ExportError
from tunesmith.files import give_default_modes
from tunesmith.training.checkpoint import STATE_FILE
from tunesmith.training.methods import Method

logger = logging.getLogger(__name__)

MERGE_TOLERANCE = 1e-3


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; rename it into place only on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}-*"):  # left by a killed export
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield tmp
        give_default_modes(tmp)
        old = None
        if final.exists():  # moved aside whole, so `final` is never half deleted
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}-old-", dir=final.parent))
            final.rename(old / final.name)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class MergeCheck:
    """Largest logit difference between the adapter model and the merged model."""

    max_abs_diff: float
    tokens: int


def export_adapter(model: Any, method: Method, target: Path, tokenizer: Any = None,
                   origin: dict[str, Any] | None = None) -> bool:
    """Write the adapter folder (and the tokenizer, which may hold added tokens); False when
    the method has no adapter (full fine-tuning)."""
    if not method.has_adapter:
        return False
    with atomic_dir(target) as tmp:
        method.save_adapter(model, tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        _write_manifest(tmp, origin)
    return True


def checkpoint_origin(checkpoint: Path) -> dict[str, Any]:
    """Where exported weights come from: a checkpoint folder and its step."""
    step = json.loads((checkpoint / STATE_FILE).read_text()).get("step")
    return {"checkpoint": checkpoint.name, "step": step}


def training_origin(training: Any) -> dict[str, Any]:
    """The step of the weights a run ends with: the best one's when it restored them."""
    if training is None:
        return {}
    if training.restored_best:
        return {"checkpoint": "best", "step": training.best_step}
    return {"step": training.steps}


def _write_manifest(folder: Path, origin: dict[str, Any] | None) -> None:
    """tunesmith_export.json: the folder's files and the training step they come from."""
    files = sorted(p.name for p in folder.iterdir())
    (folder / "tunesmith_export.json").write_text(
        json.dumps({"files": files, **(origin or {})}, indent=2))


def _logits(model: Any, probe: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=probe).logits.float()  # [B, T, V]


def merge_and_check(model: Any, method: Method, probe: torch.Tensor) -> tuple[Any, MergeCheck]:
    """Merge the method into the base and compare logits on `probe` ids ([B, T]).

    The reference is the method's export model: for QLoRA the adapter on the full-precision
    base, since the merge happens there.
    """
    source = method.export_model(model)
    before = _logits(source, probe)
    merged = method.merged(source)
    after = _logits(merged, probe)
    diff = float((before - after).abs().max())
    if diff > MERGE_TOLERANCE and next(merged.parameters()).dtype == torch.float32:
        raise ExportError(f"merged logits differ from the adapter model by {diff:.2e} "
                          f"(tolerance {MERGE_TOLERANCE}); the merge is wrong")
    return merged, MergeCheck(diff, int(probe.numel()))


def export_merged(
    merged: Any, tokenizer: Any, stop_ids: list[int], target: Path,
    extra_files: Callable[[Path], None] | None = None, origin: dict[str, Any] | None = None,
) -> None:
    """Write safetensors weights, tokenizer, chat template and a generation config whose
    stop ids include the trained end-of-turn token."""
    from transformers import GenerationConfig

    with atomic_dir(target) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        generation = GenerationConfig.from_model_config(merged.config)
        generation.eos_token_id = stop_ids if len(stop_ids) > 1 else stop_ids[0]
        generation.pad_token_id = tokenizer.pad_token_id
        generation.save_pretrained(tmp)
        if extra_files is not None:
            extra_files(tmp)
        _write_manifest(tmp, origin)
    logger.info("merged model written to %s", target)
