"""Attach LoRA-family adapters with PEFT, save them, and merge them into the base."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.errors import ExportError
from tunesmith.modeling.tokens import PAD_TO_MULTIPLE, AddedTokens, regrow_embeddings

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
    token_layout: AddedTokens | None = None  # how added tokens grew the embedding


EMBEDDING_LAYOUT_FILE = "tunesmith_added_tokens.json"

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
    tie = _ties_trained_embedding(model, settings)
    # a tied head trained in full is the embedding trained in full: the rows of added tokens
    # train with it (PEFT refuses both on one matrix)
    token_ids = [] if tie else list(settings.trainable_token_ids)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        modules_to_save=settings.modules_to_save or None,
        use_rslora=settings.variant == "rslora",
        use_dora=settings.variant == "dora",
        trainable_token_indices=token_ids or None,
        # Without this PEFT trains a copy of a tied embedding while the head keeps the old
        # weights, and the merged model (which re-ties them) no longer matches training.
        ensure_weight_tying=tie,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def load_adapter(model: Any, adapter_dir: str | Path) -> Any:
    """Load a saved PEFT adapter onto its base model, first growing the embedding as
    training did when the adapter added tokens (the adapter holds only their rows)."""
    from peft import PeftModel

    layout_file = Path(adapter_dir) / EMBEDDING_LAYOUT_FILE
    if layout_file.is_file():
        layout = AddedTokens.from_dict(json.loads(layout_file.read_text(encoding="utf-8")))
        regrow_embeddings(model, layout)
    elif (Path(adapter_dir) / "tokenizer_config.json").is_file():
        _grow_to_tokenizer(model, adapter_dir)
    return PeftModel.from_pretrained(model, str(adapter_dir))


def _grow_to_tokenizer(model: Any, adapter_dir: str | Path) -> None:
    """Size the embedding to the adapter's tokenizer (adapters that store whole embeddings)."""
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(adapter_dir))
    if vocab > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(vocab, pad_to_multiple_of=PAD_TO_MULTIPLE,
                                      mean_resizing=False)


def save_adapter(peft_model: Any, path: str | Path, layout: AddedTokens | None = None) -> None:
    """Write the adapter weights and, with added tokens, how the embedding grew.

    PEFT stores the trained rows of added tokens once (`trainable_tokens_delta` of the
    embedding; a tied head shares them). Saving the embedding layers as well would add the
    whole grown matrix twice when the head is tied (embedding and head), about 2 x 113 MB
    for a 135M model, though every row but the trained ones can be rebuilt from the base.
    """
    peft_model.save_pretrained(path, safe_serialization=True, save_embedding_layers=False)
    if layout is not None:
        text = json.dumps(layout.to_dict(), indent=2)
        (Path(path) / EMBEDDING_LAYOUT_FILE).write_text(text, encoding="utf-8")


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
