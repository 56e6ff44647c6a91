"""Load a base model with quantized linear weights for QLoRA (bitsandbytes or torchao).

nf4 goes through bitsandbytes (4-bit NormalFloat blocks of 64, optional double quantization);
int8 and int4 are torchao weight-only schemes. Only the decoder's linear layers are quantized:
the embeddings and the output head stay in full precision. Compute stays float32 on CPU,
where bf16 matmuls run about 30x slower than fp32.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import ModelError

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("nf4", "int8", "int4")
INSTALL_HINT = "install the QLoRA extra with `pip install 'tunesmith[qlora]'`"
INT4_GROUP_SIZE = 64
# Loggers that print harmless import-time noise once bitsandbytes or torchao is installed:
# torchao's prebuilt kernels for other Python versions, torch's pytree deprecations, and
# bitsandbytes' optional hub kernels.
NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "bitsandbytes", "kernels")


@dataclass
class QuantSettings:
    """Base-weight quantization: `kind` is nf4, int8 or int4."""

    kind: str = "nf4"
    double_quant: bool = False
    compute_dtype: str = "float32"


def require_backend(kind: str) -> None:
    """Raise a ModelError naming the missing package when the QLoRA extra is not installed."""
    if kind not in QUANTIZATIONS:
        raise ModelError(f"method.quantization {kind!r}: expected one of "
                         f"{', '.join(QUANTIZATIONS)}")
    package = "bitsandbytes" if kind == "nf4" else "torchao"
    if importlib.util.find_spec(package) is None:
        raise ModelError(f"method.quantization {kind!r} needs the package {package!r}, which "
                         f"is not installed; {INSTALL_HINT}")


@contextmanager
def quiet_imports() -> Iterator[None]:
    """Silence the import-time warnings of bitsandbytes and torchao (they are harmless)."""
    saved = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _decoder_linear(module: Any, fqn: str) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) and not fqn.endswith("lm_head")


def _torchao_config(kind: str) -> Any:
    import torch
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    if kind == "int8":
        return Int8WeightOnlyConfig()
    # Int4WeightOnlyConfig has no CPU kernel; the generic intx scheme does.
    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP_SIZE))


def load_quantized(source: str, settings: QuantSettings) -> Any:
    """Load the model at `source` (a local dir or hub id) with quantized decoder linears."""
    import torch
    from transformers import AutoModelForCausalLM

    require_backend(settings.kind)
    compute = getattr(torch, settings.compute_dtype)
    with quiet_imports():
        if settings.kind == "nf4":
            from transformers import BitsAndBytesConfig

            config = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=settings.double_quant,
                bnb_4bit_compute_dtype=compute, llm_int8_skip_modules=["lm_head"])
            model = AutoModelForCausalLM.from_pretrained(
                source, quantization_config=config, device_map="cpu", dtype=torch.float32)
            _check_linears(model, settings.kind)
        else:
            from torchao.quantization import quantize_

            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
            _check_linears(model, settings.kind)
            quantize_(model, _torchao_config(settings.kind), filter_fn=_decoder_linear)
    logger.info("base weights quantized to %s: %.1f MiB", settings.kind,
                weights_bytes(model) / 2**20)
    return model


def _check_linears(model: Any, kind: str) -> None:
    """Raise when a decoder linear layer is too narrow for the quantization blocks."""
    if kind == "int8":
        return
    narrow = [name for name, module in model.named_modules()
              if _decoder_linear(module, name) and hasattr(module, "in_features")
              and module.in_features % 64]
    if narrow:
        width = model.get_submodule(narrow[0]).in_features
        raise ModelError(f"method.quantization {kind!r} quantizes blocks of 64 input "
                         f"features, but {narrow[0]} has {width}; use int8 or plain lora "
                         "for this model")


def is_quantized(model: Any) -> bool:
    """True when any weight of `model` is stored quantized (bitsandbytes or torchao)."""
    return any(type(t).__module__.startswith(("bitsandbytes", "torchao"))
               for p in model.parameters() for t in (p, p.data))


def _tensor_bytes(tensor: Any) -> int:
    """Storage bytes of a tensor; a torchao tensor subclass counts its inner data and scales."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def _bnb_state_bytes(param: Any) -> int:
    """Bytes of a bitsandbytes block-scale state (absmax, and its own scales if nested)."""
    state = getattr(param, "quant_state", None)
    if state is None:
        return 0
    nested = getattr(state, "state2", None)
    return _tensor_bytes(state.absmax) + (_tensor_bytes(nested.absmax) if nested else 0)


def weights_bytes(model: Any) -> int:
    """Bytes held by the model's weights and buffers, quantization scales included."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(_tensor_bytes(t.data) + _bnb_state_bytes(t) for t in tensors)


def keep_training_layout(model: Any) -> int:
    """Keep bitsandbytes from repacking 4-bit weights for its CPU inference kernel; return
    how many layers were told.

    On a CPU with AVX512-BF16 the first eval-mode forward without gradients (an eval-loss
    pass) repacks every 4-bit weight for a bf16 inference kernel and never unpacks it. Later
    training steps then run the base matmuls in bf16 through an op without a backward:
    gradients through the frozen base are silently dropped. Eval and training must share
    the float32 dequantize-then-matmul path.
    """
    layers = [m for m in model.modules() if hasattr(m, "support_avx512bf16_for_cpu")]
    for module in layers:
        module.support_avx512bf16_for_cpu = False
    return len(layers)


def nf4_weights(model: Any) -> int:
    """Number of base weights `model` stores in bitsandbytes 4-bit blocks."""
    from math import prod

    states = [getattr(p, "quant_state", None) for p in model.parameters()]
    return sum(prod(s.shape) for s in states if s is not None)


def nf4_cpu_warning(model: Any, bandwidth_gb_s: float, traffic: float = 4.5) -> str:
    """The warning for nf4 training on a CPU: what bitsandbytes does there and what it costs.

    `traffic` is the bytes one expanded weight moves (half a byte of codes read, four bytes
    of float32 written), `bandwidth_gb_s` this CPU's measured memory bandwidth.
    """
    weights = nf4_weights(model)
    seconds = 2 * weights * traffic / (bandwidth_gb_s * 1e9)  # forward + backward
    return (f"method.quantization nf4 on CPU: bitsandbytes has no 4-bit training kernel for "
            f"CPUs, so every forward and backward pass first expands all {weights / 1e6:,.1f}M "
            f"base weights to float32, at least {seconds:.2f} s per micro-batch at this CPU's "
            "memory bandwidth on top of the matmuls (more on a busy machine; `tunesmith "
            "estimate` includes it). Its optional hub kernel serves inference only. On CPU "
            "prefer plain lora when the float32 base fits in memory, or "
            "method.quantization: int8 (torchao expands each weight once, not twice)")


def prepare_quantized(model: Any) -> Any:
    """Freeze the quantized base and let gradients reach the adapters through it."""
    from peft import prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False):
        # Gradient checkpointing stays the loop's choice (training.gradient_checkpointing).
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        keep_training_layout(model)
        return model
    for param in model.parameters():
        param.requires_grad_(False)
    return model
