"""Training methods as strategy objects: what trains, how it is saved, how it merges."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from tunesmith.modeling.adapters import LoraSettings, attach_lora, merge_adapter

logger = logging.getLogger(__name__)


class Method(Protocol):
    """What the loop needs from a fine-tuning method."""

    name: str
    has_adapter: bool

    def prepare(self, model: Any) -> Any:
        """Return the model to train, with only the trainable weights requiring grad."""

    def trainable_state(self, model: Any) -> dict[str, Any]:
        """Return the weights a checkpoint must hold."""

    def load_trainable_state(self, model: Any, state: dict[str, Any]) -> None:
        """Restore the weights from `trainable_state`."""

    def save_adapter(self, model: Any, path: Path) -> None:
        """Write the adapter directory (only called when `has_adapter`)."""

    def merged(self, model: Any) -> Any:
        """Return a plain transformers model with the training folded in."""


def _trainable(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _load_trainable(model: Any, state: dict[str, Any]) -> None:
    params = dict(model.named_parameters())
    missing = [name for name in state if name not in params]
    if missing:
        raise KeyError(f"checkpoint weights not in the model: {missing[:3]}")
    for name, value in state.items():
        params[name].data.copy_(value)


class LoraMethod:
    """LoRA (and rsLoRA, DoRA) adapters through PEFT on a frozen base."""

    has_adapter = True

    def __init__(self, settings: LoraSettings) -> None:
        self.settings = settings
        self.name = settings.variant

    def prepare(self, model: Any) -> Any:
        peft_model = attach_lora(model, self.settings)
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in peft_model.parameters())
        logger.info("%s r=%d: %d trainable of %d parameters (%.2f%%)", self.name,
                    self.settings.r, trainable, total, 100 * trainable / total)
        return peft_model

    def trainable_state(self, model: Any) -> dict[str, Any]:
        return _trainable(model)

    def load_trainable_state(self, model: Any, state: dict[str, Any]) -> None:
        _load_trainable(model, state)

    def save_adapter(self, model: Any, path: Path) -> None:
        model.save_pretrained(path, safe_serialization=True)

    def merged(self, model: Any) -> Any:
        return merge_adapter(model)


class FullMethod:
    """Full fine-tuning: every weight trains."""

    name = "full"
    has_adapter = False

    def prepare(self, model: Any) -> Any:
        for param in model.parameters():
            param.requires_grad_(True)
        logger.info("full fine-tuning: %d parameters",
                    sum(p.numel() for p in model.parameters()))
        return model

    def trainable_state(self, model: Any) -> dict[str, Any]:
        return _trainable(model)

    def load_trainable_state(self, model: Any, state: dict[str, Any]) -> None:
        _load_trainable(model, state)

    def save_adapter(self, model: Any, path: Path) -> None:
        raise NotImplementedError("full fine-tuning has no adapter; export the merged model")

    def merged(self, model: Any) -> Any:
        return model


def build_method(name: str, lora: LoraSettings) -> Method:
    """Return the strategy for a method name from the config."""
    if name in ("lora", "rslora", "dora"):
        lora.variant = name
        return LoraMethod(lora)
    if name == "full":
        return FullMethod()
    raise ValueError(f"unknown method {name!r}; expected lora, rslora, dora or full")
