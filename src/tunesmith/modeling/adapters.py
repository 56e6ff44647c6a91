"""Attach LoRA-family adapters with PEFT, save them, and merge them into the base."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from tunesmith.errors import ExportError
from tunesmith.modeling.tokens import PAD_TO_MULTIPLE

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
    trainable_token_ids: list[int] = field(default_factory=list)


EMBEDDING_NAMES = ("embed_tokens", "lm_head")


def _ties_trained_embedding(model: Any, settings: LoraSettings) -> bool:
    """True when the model ties its head to the embedding and the adapter copies either."""
    # PEFT ties trainable token rows on its own; only full copies need the flag.
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    return tied and any(m.split(".")[-1] in EMBEDDING_NAMES for m in settings.modules_to_save)


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
        trainable_token_indices=list(settings.trainable_token_ids) or None,
        # Without this PEFT trains a copy of a tied embedding while the head keeps the old
        # weights, and the merged model (which re-ties them) no longer matches training.
        ensure_weight_tying=_ties_trained_embedding(model, settings),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def load_adapter(model: Any, adapter_dir: str) -> Any:
    """Load a saved PEFT adapter onto a base model, first growing its embeddings to the
    adapter's tokenizer when the adapter added tokens (the adapter holds their rows)."""
    from pathlib import Path

    from peft import PeftModel

    if (Path(adapter_dir) / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        vocab = len(AutoTokenizer.from_pretrained(adapter_dir))
        if vocab > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(vocab, pad_to_multiple_of=PAD_TO_MULTIPLE,
                                          mean_resizing=False)
    return PeftModel.from_pretrained(model, adapter_dir)


def save_adapter(peft_model: Any, path: Any, with_embeddings: bool) -> None:
    """Write the adapter; `with_embeddings` also stores the (resized) embedding and head."""
    peft_model.save_pretrained(path, safe_serialization=True,
                               save_embedding_layers=with_embeddings)


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
