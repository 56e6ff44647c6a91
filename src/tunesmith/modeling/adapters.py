"""Attach LoRA-family adapters with PEFT, save them, and merge them into the base."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from tunesmith.errors import ExportError

logger = logging.getLogger(__name__)


@dataclass
class LoraSettings:
    """LoRA hyper-parameters; `variant` is lora, rslora or dora."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"
    modules_to_save: list[str] = field(default_factory=list)
    variant: str = "lora"


def attach_lora(model: Any, settings: LoraSettings) -> Any:
    """Wrap `model` in a PEFT LoRA model; only adapter (and modules_to_save) weights train."""
    from peft import LoraConfig, get_peft_model

    targets = settings.target_modules
    if isinstance(targets, list) and targets == ["all-linear"]:
        targets = "all-linear"  # PEFT's keyword for every linear layer but the output head
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        modules_to_save=settings.modules_to_save or None,
        use_rslora=settings.variant == "rslora",
        use_dora=settings.variant == "dora",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def load_adapter(model: Any, adapter_dir: str) -> Any:
    """Load a saved PEFT adapter onto a base model."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir)


def merge_adapter(peft_model: Any) -> Any:
    """Merge LoRA weights and fully trained module copies into the base; return the base.

    PEFT's merge folds the low-rank updates in and replaces `modules_to_save` wrappers by
    their trained copies; we then check that no adapter module is left behind.
    """
    merged = peft_model.merge_and_unload()
    leftovers = [name for name, _ in merged.named_modules()
                 if "lora_" in name or "modules_to_save" in name or "original_module" in name]
    if leftovers:
        raise ExportError(f"merge left adapter modules unmerged: {', '.join(leftovers[:5])}")
    return merged
