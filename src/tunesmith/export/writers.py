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
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass
class MergeCheck:
    """Largest logit difference between the adapter model and the merged model."""

    max_abs_diff: float
    tokens: int


def export_adapter(model: Any, method: Method, target: Path, tokenizer: Any = None) -> bool:
    """Write the adapter folder (and the tokenizer, which may hold added tokens); False when
    the method has no adapter (full fine-tuning)."""
    if not method.has_adapter:
        return False
    with atomic_dir(target) as tmp:
        method.save_adapter(model, tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return True


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
    extra_files: Callable[[Path], None] | None = None,
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
        files = sorted(p.name for p in tmp.iterdir())
        (tmp / "tunesmith_export.json").write_text(json.dumps({"files": files}, indent=2))
    logger.info("merged model written to %s", target)
