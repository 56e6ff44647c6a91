"""Training methods as strategy objects: what trains, how it is saved, how it merges."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tunesmith.errors import ConfigError
from tunesmith.modeling.adapters import LoraSettings, attach_lora, merge_adapter, save_adapter
from tunesmith.modeling.quantization import (
    is_quantized,
    nf4_cpu_warning,
    prepare_quantized,
    require_backend,
)
from tunesmith.training.cost import expansion_bytes
from tunesmith.training.hardware import cpu_profile

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

    def export_model(self, model: Any) -> Any:
        """Return the trained model that exports are written from and checked against."""

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
        save_adapter(model, path, self.settings.token_layout)

    def export_model(self, model: Any) -> Any:
        return model

    def merged(self, model: Any) -> Any:
        return merge_adapter(model)


class QloraMethod(LoraMethod):
    """LoRA on a frozen quantized base (nf4, int8 or int4).

    Merging into quantized weights would round the update away, so exports move the trained
    adapter onto the base reloaded in full precision (`load_base`) and merge there.
    """

    def __init__(self, settings: LoraSettings, quantization: str,
                 load_base: Callable[[], Any]) -> None:
        super().__init__(settings)
        require_backend(quantization)
        self.name = "qlora"
        self.quantization = quantization
        self.load_base = load_base

    def prepare(self, model: Any) -> Any:
        import torch

        if self.quantization == "nf4" and not torch.cuda.is_available():
            bandwidth = cpu_profile(torch.get_num_threads()).bandwidth_gb_s
            logger.warning(nf4_cpu_warning(model, bandwidth, expansion_bytes("nf4")))
        return super().prepare(prepare_quantized(model))

    def export_model(self, model: Any) -> Any:
        if not is_quantized(model):
            return model
        logger.info("moving the adapter onto the full-precision base for export")
        full = attach_lora(self.load_base(), self.settings)
        _load_trainable(full, self.trainable_state(model))
        return full

    def merged(self, model: Any) -> Any:
        return merge_adapter(self.export_model(model))


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

    def export_model(self, model: Any) -> Any:
        return model

    def merged(self, model: Any) -> Any:
        return model


def build_method(name: str, lora: LoraSettings, quantization: str = "nf4",
                 load_base: Callable[[], Any] | None = None) -> Method:
    """Return the strategy for a method name from the config.

    `load_base` loads the base model in full precision; QLoRA exports merge into it.
    """
    if name in ("lora", "rslora", "dora"):
        lora.variant = name
        return LoraMethod(lora)
    if name == "qlora":
        if load_base is None:
            raise ConfigError(["method.name: qlora needs a full-precision loader for export"])
        return QloraMethod(lora, quantization, load_base)
    if name == "full":
        return FullMethod()
    raise ValueError(f"unknown method {name!r}; expected lora, rslora, dora, qlora or full")
