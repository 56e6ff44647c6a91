"""Pick numeric precision: warn about slow half precision on CPU, choose mixed precision.

On a CPU without native bf16/fp16 instructions (no AVX512-BF16 or AMX), half-precision
matmuls fall back to slow paths: training runs about 30x slower than in float32.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

HALF_DTYPES = ("bfloat16", "float16")
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")


def cpu_has_fast_half(dtype: str) -> bool:
    """True when this CPU computes `dtype` (bfloat16 or float16) natively through oneDNN."""
    import torch

    check = {"bfloat16": "_is_mkldnn_bf16_supported",
             "float16": "_is_mkldnn_fp16_supported"}[dtype]
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):
        return False


def slow_dtype_warning(dtype: str, device: str) -> str | None:
    """A warning when `dtype` would run on a CPU without fast half precision, else None."""
    if dtype not in HALF_DTYPES or device != "cpu" or cpu_has_fast_half(dtype):
        return None
    return (f"model.dtype {dtype} on this CPU: it has no native {dtype} support, so training "
            "and generation run about 30x slower than in float32; set model.dtype: float32 "
            "(the CPU default), or train on a GPU")


def gpu_supports_bf16() -> bool:
    """True when a CUDA GPU is present and computes bf16 natively (Ampere or newer)."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_mixed_precision(setting: str) -> str:
    """Return accelerate's mixed_precision for a config value: no, bf16 or fp16.

    auto means bf16 on a GPU that supports it and no (float32) everywhere else; on CPU
    every setting becomes no, with a warning when half precision was asked for.
    """
    import torch

    if setting not in MIXED_PRECISIONS:
        raise ValueError(f"mixed precision {setting!r}: expected one of {MIXED_PRECISIONS}")
    if not torch.cuda.is_available():
        if setting in ("bf16", "fp16"):
            logger.warning("training.mixed_precision %s ignored: no GPU; a CPU without "
                           "native half precision runs it about 30x slower, so training "
                           "stays float32", setting)
        return "no"
    if setting == "auto":
        return "bf16" if gpu_supports_bf16() else "no"
    return setting
